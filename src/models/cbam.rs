//! CBAM-ResNets (Woo et al. 2018, "CBAM: Convolutional Block Attention Module") and BAM-ResNets (Park et al. 2018,
//! "BAM: Bottleneck Attention Module") as pytorchcv builds them (`pytorchcv/models/cbamresnet.py`, `bamresnet.py`).
//!
//! Both are pytorchcv ResNets: `features.init_block` (7×7/2 `conv` block + 3×3/2 max `pool`), stages
//! `features.stage1…4` of units `unit1…` (basic `body.conv1/conv2` for 18/34, bottleneck `body.conv1/2/3` with the
//! stride on the 3×3 for 50), an `identity_conv` (1×1 conv + BatchNorm) where the shape changes, the final pool and
//! the classifier `output`. Every conv is a `ConvBlock`: `conv` + `bn` (+ ReLU), hence the doubled `conv.conv` names.
//! - CBAM: every unit applies `cbam` to its residual branch before the addition: a channel gate (one shared
//!   `mlp.fc1 → ReLU → mlp.fc2` of Linear layers over the global average and the global max, summed, sigmoid)
//!   then a spatial gate (channel max and channel mean → 7×7 conv block `conv` without ReLU → sigmoid).
//! - BAM: the first unit of stages 2–4 (the strided ones) first multiplies its input by 1 + σ(channel × spatial):
//!   channel `ch_att` = global average → `init_fc` (Linear + BatchNorm1d + ReLU) → `final_fc`; spatial `sp_att` =
//!   1×1 `init_conv` block → two 3×3 blocks of dilation 4 `dil_convs.conv1/2` → 1×1 `final_conv`, all with biases;
//!   the unit itself is pytorchcv's `ResUnit`, named `res_unit`. Reduction 16 in both (`channels // 16`).
//!
//! pytorchcv's `final_pool` is `AvgPool2d(7)`, which only fits 224×224 inputs, where it is the global average; we
//! use the global average, which equals it there and lets any input size through. Initialisation as
//! pytorchcv: convs kaiming-uniform (gain √2) with zero biases, BatchNorm 1/0, Linear PyTorch's default.
use tch::Tensor;

use super::{classifier_head_methods, forward_head_of_features, Model, ModelConfig, ModelEntry};
use crate::error::Result;
use crate::nn::conv_block::{cv_conv, ConvBlock};
use crate::nn::{
    AdaptiveAvgPool2d, BatchNorm, ClassifierHead, Conv2d, ConvConfig, Linear, Module, Path, Pool2d, PoolKind,
};

/// pytorchcv's `ResBlock` (`conv1` 3×3 with the stride, `conv2` 3×3) or `ResBottleneck` (`conv1` 1×1, `conv2` 3×3
/// with the stride, `conv3` 1×1 to `c_out`, width `c_out / 4`); the last block has no ReLU.
#[derive(Debug)]
pub(crate) struct Body {
    convs: Vec<ConvBlock>,
}

impl Body {
    pub(crate) fn new(p: &Path, c_in: i64, c_out: i64, stride: i64, bottleneck: bool) -> Self {
        // (c_in, c_out, kernel, stride) per conv.
        let specs = if bottleneck {
            let mid = c_out / 4;
            vec![(c_in, mid, 1, 1), (mid, mid, 3, stride), (mid, c_out, 1, 1)]
        } else {
            vec![(c_in, c_out, 3, stride), (c_out, c_out, 3, 1)]
        };
        let last = specs.len() - 1;
        let convs = specs
            .into_iter()
            .enumerate()
            .map(|(i, (ci, co, k, s))| ConvBlock::plain(&p.sub(format!("conv{}", i + 1)), ci, co, k, s, i < last))
            .collect();
        Body { convs }
    }
}

impl Module for Body {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.convs.iter().fold(xs.shallow_clone(), |ys, conv| conv.forward_t(&ys, train))
    }
}

/// CBAM: a channel gate (shared MLP over average and max) then a spatial gate (7×7 conv over channel max and mean).
#[derive(Debug)]
struct CbamBlock {
    fc1: Linear,
    fc2: Linear,
    spatial: ConvBlock,
}

impl CbamBlock {
    fn new(p: &Path, channels: i64) -> Self {
        let mlp = p.sub("ch_gate").sub("mlp");
        let mid = channels / 16;
        let fc1 = Linear::new(&mlp.sub("fc1"), channels, mid);
        let fc2 = Linear::new(&mlp.sub("fc2"), mid, channels);
        let spatial = ConvBlock::plain(&p.sub("sp_gate").sub("conv"), 2, 1, 7, 1, false);
        CbamBlock { fc1, fc2, spatial }
    }
    fn mlp(&self, xs: &Tensor, train: bool) -> Tensor {
        self.fc2.forward_t(&self.fc1.forward_t(xs, train).relu(), train)
    }
}

impl Module for CbamBlock {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let avg = xs.mean_dim([2i64, 3].as_slice(), false, None);
        let max = xs.amax([2i64, 3].as_slice(), false);
        let gate = (self.mlp(&avg, train) + self.mlp(&max, train)).sigmoid().unsqueeze(2).unsqueeze(3);
        let xs = xs * gate;
        let pooled = Tensor::cat(&[xs.amax([1i64].as_slice(), true), xs.mean_dim([1i64].as_slice(), true, None)], 1);
        let gate = self.spatial.forward_t(&pooled, train).sigmoid();
        xs * gate
    }
}

/// BAM: x · (1 + σ(channel attention × spatial attention)).
#[derive(Debug)]
struct BamBlock {
    init_fc: Linear,
    init_bn: BatchNorm,
    final_fc: Linear,
    init_conv: ConvBlock,
    dil_convs: Vec<ConvBlock>,
    final_conv: Conv2d,
}

impl BamBlock {
    fn new(p: &Path, channels: i64) -> Self {
        let mid = channels / 16;
        let ch = p.sub("ch_att");
        let init_fc = Linear::new(&ch.sub("init_fc").sub("fc"), channels, mid);
        let init_bn = BatchNorm::new1d(&ch.sub("init_fc").sub("bn"), mid);
        let final_fc = Linear::new(&ch.sub("final_fc"), mid, channels);
        let sp = p.sub("sp_att");
        let init_conv = ConvBlock::new(&sp.sub("init_conv"), channels, mid, 1, ConvConfig::default(), true);
        let dilated = ConvConfig { padding: 4, dilation: 4, ..Default::default() };
        let dil_convs = (1..=2)
            .map(|i| ConvBlock::new(&sp.sub("dil_convs").sub(format!("conv{i}")), mid, mid, 3, dilated, true))
            .collect();
        let final_conv = cv_conv(&sp.sub("final_conv"), mid, 1, 1, ConvConfig::default());
        BamBlock { init_fc, init_bn, final_fc, init_conv, dil_convs, final_conv }
    }
}

impl Module for BamBlock {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let ch = xs.mean_dim([2i64, 3].as_slice(), false, None);
        let ch = self.init_bn.forward_t(&self.init_fc.forward_t(&ch, train), train).relu();
        let ch = self.final_fc.forward_t(&ch, train).unsqueeze(2).unsqueeze(3);
        let sp = self.init_conv.forward_t(xs, train);
        let sp = self.dil_convs.iter().fold(sp, |ys, conv| conv.forward_t(&ys, train));
        let sp = self.final_conv.forward_t(&sp, train);
        xs * ((ch * sp).sigmoid() + 1.0)
    }
}

/// Which attention module the ResNet carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attention {
    Cbam,
    Bam,
}

/// A unit: `[bam] body [identity_conv] [cbam]` (BAM's `body` and `identity_conv` under `res_unit`).
#[derive(Debug)]
struct Unit {
    bam: Option<BamBlock>,
    body: Body,
    identity_conv: Option<ConvBlock>,
    cbam: Option<CbamBlock>,
}

impl Unit {
    fn new(p: &Path, attention: Attention, c_in: i64, c_out: i64, stride: i64, bottleneck: bool) -> Self {
        let bam = (attention == Attention::Bam && stride != 1).then(|| BamBlock::new(&p.sub("bam"), c_in));
        let rp = if attention == Attention::Bam { p.sub("res_unit") } else { p.clone() };
        let body = Body::new(&rp.sub("body"), c_in, c_out, stride, bottleneck);
        let identity_conv = (c_in != c_out || stride != 1)
            .then(|| ConvBlock::plain(&rp.sub("identity_conv"), c_in, c_out, 1, stride, false));
        let cbam = (attention == Attention::Cbam).then(|| CbamBlock::new(&p.sub("cbam"), c_out));
        Unit { bam, body, identity_conv, cbam }
    }
}

impl Module for Unit {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let xs = match &self.bam {
            Some(bam) => bam.forward_t(xs, train),
            None => xs.shallow_clone(),
        };
        let identity = match &self.identity_conv {
            Some(conv) => conv.forward_t(&xs, train),
            None => xs.shallow_clone(),
        };
        let mut ys = self.body.forward_t(&xs, train);
        if let Some(cbam) = &self.cbam {
            ys = cbam.forward_t(&ys, train);
        }
        (ys + identity).relu()
    }
}

/// A pytorchcv CBAM- or BAM-ResNet.
#[derive(Debug)]
pub struct AttentionResNet {
    init_conv: ConvBlock,
    init_pool: Pool2d,
    units: Vec<Unit>,
    final_pool: AdaptiveAvgPool2d,
    output: ClassifierHead,
}

impl AttentionResNet {
    pub fn new(p: &Path, attention: Attention, depth: usize, in_channels: i64, num_outputs: i64) -> Self {
        let (layers, bottleneck) = match depth {
            18 => ([2, 2, 2, 2], false),
            34 => ([3, 4, 6, 3], false),
            50 => ([3, 4, 6, 3], true),
            _ => unreachable!("registered depths only"),
        };
        let f = p.sub("features");
        let init = f.sub("init_block");
        let init_conv = ConvBlock::plain(&init.sub("conv"), in_channels, 64, 7, 2, true);
        let init_pool = Pool2d::new(&init.sub("pool"), PoolKind::Max, 3, 2, 1);
        let expansion = if bottleneck { 4 } else { 1 };
        let mut c_in = 64;
        let mut units = vec![];
        for (i, (&n, planes)) in layers.iter().zip([64, 128, 256, 512]).enumerate() {
            let sp = f.sub(format!("stage{}", i + 1));
            let c_out = planes * expansion;
            for j in 0..n {
                let stride = if i > 0 && j == 0 { 2 } else { 1 };
                units.push(Unit::new(&sp.sub(format!("unit{}", j + 1)), attention, c_in, c_out, stride, bottleneck));
                c_in = c_out;
            }
        }
        let final_pool = AdaptiveAvgPool2d::new(&f.sub("final_pool"), [1, 1]);
        let output = ClassifierHead::linear(&p.sub("output"), c_in, num_outputs);
        AttentionResNet { init_conv, init_pool, units, final_pool, output }
    }
}

forward_head_of_features!(AttentionResNet);

impl Model for AttentionResNet {
    fn forward_features(&self, xs: &Tensor, train: bool) -> Tensor {
        let ys = self.init_pool.forward_t(&self.init_conv.forward_t(xs, train), train);
        self.units.iter().fold(ys, |ys, unit| unit.forward_t(&ys, train))
    }
    fn forward_head(&self, features: &Tensor, train: bool) -> Tensor {
        self.output.forward_t(&self.final_pool.forward_t(features, train).flatten(1, -1), train)
    }
    classifier_head_methods!(output);
}

fn build(p: &Path, c: &ModelConfig, name: &str, attention: Attention, depth: usize) -> Result<Box<dyn Model>> {
    let in_channels = super::image_channels(c, name, 1, "")?;
    Ok(Box::new(AttentionResNet::new(p, attention, depth, in_channels, c.num_outputs)))
}

macro_rules! entry {
    ($name:literal, $attention:expr, $depth:literal, $description:literal) => {
        ModelEntry {
            name: $name,
            family: "cbam",
            description: $description,
            // Small, for the registry tests: any size works (trained at 224×224).
            default_input: &[3, 32, 32],
            default_classes: 1000,
            first_layer: "features.init_block.conv.conv",
            classifier: "output",
            options: &[],
            build: |p, c| build(p, c, $name, $attention, $depth),
        }
    };
}

pub fn entries() -> Vec<ModelEntry> {
    use Attention::{Bam, Cbam};
    vec![
        entry!("cbam_resnet18", Cbam, 18, "pytorchcv CBAM-ResNet-18 (channel + spatial attention in every unit)"),
        entry!("cbam_resnet34", Cbam, 34, "pytorchcv CBAM-ResNet-34 (channel + spatial attention in every unit)"),
        entry!("cbam_resnet50", Cbam, 50, "pytorchcv CBAM-ResNet-50 (channel + spatial attention in every unit)"),
        entry!("bam_resnet18", Bam, 18, "pytorchcv BAM-ResNet-18 (bottleneck attention before stages 2-4)"),
        entry!("bam_resnet34", Bam, 34, "pytorchcv BAM-ResNet-34 (bottleneck attention before stages 2-4)"),
        entry!("bam_resnet50", Bam, 50, "pytorchcv BAM-ResNet-50 (bottleneck attention before stages 2-4)"),
    ]
}
