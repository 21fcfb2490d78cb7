//! Residual Attention Networks (Wang et al. 2017) as pytorchcv builds them (`pytorchcv/models/resattnet.py`).
//!
//! `resattnet56` and `resattnet92`: `features.init_block` (7×7/2 `conv` block + 3×3/2 max `pool`), four stages of
//! 256/512/1024/2048 channels, each a strided pre-activation bottleneck `unit1` followed (in stages 1–3) by 1 / 1 / 1
//! (56) or 1 / 2 / 3 (92) attention modules, stage 4 three plain units; then `post_activ` (BatchNorm + ReLU), the
//! global average and the classifier `output`.
//! - A unit (`ResBlock`) is a pre-activation bottleneck `body.conv1/2/3`, each `bn` → ReLU → `conv` (width c/4,
//!   stride on the 3×3), plus a 1×1 `identity_conv` applied to conv1's pre-activation where the shape changes.
//! - An attention module (`AttBlock`, p = 1, t = 2, r = 1): `init_blocks`, then an hourglass `hg` of depth 3 / 2 / 1
//!   (stage 1 / 2 / 3): the trunk `skip_seq.skip1` (two units) and the soft mask branch — `down_seq.down{k}` (3×3/2
//!   max pool + one unit), `up_seq.up{k}` (one unit + ×2 bilinear upsampling, `align_corners=True`) with inner skips
//!   `skip_seq.skip{k}` (x + unit(x)), the trunk added at the top — then `middle_block` (two pre-activation 1×1
//!   convs, sigmoid): trunk · (1 + mask), then `final_block`.
//!
//! Names and registration order are pytorchcv's. Its `final_pool` is `AvgPool2d(7)` (224×224 inputs only), the
//! global average there, which we use. The mask's pools and ×2 upsampling must meet again, so every hourglass level
//! needs an even size: a multiple of 32 (32×32 at least) always works. Initialisation as pytorchcv: convs
//! kaiming-uniform (gain √2), BatchNorm 1/0, Linear PyTorch's default.
use tch::Tensor;

use super::{classifier_head_methods, forward_head_of_features, Model, ModelConfig, ModelEntry};
use crate::error::{Error, Result};
use crate::nn::conv_block::{cv_conv, ConvBlock};
use crate::nn::{AdaptiveAvgPool2d, BatchNorm, ClassifierHead, Conv2d, ConvConfig, Module, Path, Pool2d, PoolKind};

/// pytorchcv's `PreConvBlock`: `bn` → ReLU → `conv` (no bias); registered `bn` first.
#[derive(Debug)]
struct PreConv {
    bn: BatchNorm,
    conv: Conv2d,
}

impl PreConv {
    fn new(p: &Path, c_in: i64, c_out: i64, kernel: i64, stride: i64) -> Self {
        let bn = BatchNorm::new2d(&p.sub("bn"), c_in);
        let config = ConvConfig { stride, padding: kernel / 2, bias: false, ..Default::default() };
        PreConv { bn, conv: cv_conv(&p.sub("conv"), c_in, c_out, kernel, config) }
    }
    /// The output and the pre-activation (after `bn` and ReLU).
    fn forward_pre(&self, xs: &Tensor, train: bool) -> (Tensor, Tensor) {
        let pre = self.bn.forward_t(xs, train).relu();
        (self.conv.forward_t(&pre, train), pre)
    }
}

/// pytorchcv's resattnet `ResBlock`: a pre-activation bottleneck `body` and, where the shape changes, a 1×1
/// `identity_conv` on conv1's pre-activation.
#[derive(Debug)]
struct Unit {
    convs: [PreConv; 3],
    identity_conv: Option<Conv2d>,
}

impl Unit {
    fn new(p: &Path, c_in: i64, c_out: i64, stride: i64) -> Self {
        let b = p.sub("body");
        let mid = c_out / 4;
        let convs = [
            PreConv::new(&b.sub("conv1"), c_in, mid, 1, 1),
            PreConv::new(&b.sub("conv2"), mid, mid, 3, stride),
            PreConv::new(&b.sub("conv3"), mid, c_out, 1, 1),
        ];
        let identity_conv = (c_in != c_out || stride != 1).then(|| {
            let config = ConvConfig { stride, bias: false, ..Default::default() };
            cv_conv(&p.sub("identity_conv"), c_in, c_out, 1, config)
        });
        Unit { convs, identity_conv }
    }
}

impl Module for Unit {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let (ys, pre) = self.convs[0].forward_pre(xs, train);
        let ys = self.convs[1].forward_pre(&ys, train).0;
        let ys = self.convs[2].forward_pre(&ys, train).0;
        match &self.identity_conv {
            Some(conv) => ys + conv.forward_t(&pre, train),
            None => ys + xs,
        }
    }
}

/// `ResBlockSequence`: units `blocks.block1…` of `channels` → `channels`.
fn sequence(p: &Path, channels: i64, length: usize) -> Vec<Unit> {
    (1..=length).map(|i| Unit::new(&p.sub("blocks").sub(format!("block{i}")), channels, channels, 1)).collect()
}

fn run(units: &[Unit], xs: &Tensor, train: bool) -> Tensor {
    units.iter().fold(xs.shallow_clone(), |ys, unit| unit.forward_t(&ys, train))
}

/// The attention module (`AttBlock`): trunk · (1 + soft mask), between `init_blocks` and `final_block`.
#[derive(Debug)]
struct AttBlock {
    init_blocks: Vec<Unit>,
    /// `hg.down_seq.down{k}.pool`.
    pools: Vec<Pool2d>,
    /// `hg.down_seq.down{k}.res_blocks`, k = 1…depth.
    down: Vec<Vec<Unit>>,
    /// `hg.up_seq.up{k}.res_blocks`.
    up: Vec<Vec<Unit>>,
    /// `hg.skip_seq.skip1`: the trunk.
    trunk: Vec<Unit>,
    /// `hg.skip_seq.skip{k}.skip1`, k = 2…depth: x + unit(x).
    skips: Vec<Unit>,
    middle: [PreConv; 2],
    final_block: Unit,
}

impl AttBlock {
    fn new(p: &Path, channels: i64, depth: usize) -> Self {
        let init_blocks = sequence(&p.sub("init_blocks"), channels, 1);
        let hg = p.sub("hg");
        let pools = (1..=depth)
            .map(|k| Pool2d::new(&hg.sub("down_seq").sub(format!("down{k}")).sub("pool"), PoolKind::Max, 3, 2, 1))
            .collect();
        let down = (1..=depth)
            .map(|k| sequence(&hg.sub("down_seq").sub(format!("down{k}")).sub("res_blocks"), channels, 1))
            .collect();
        let up = (1..=depth)
            .map(|k| sequence(&hg.sub("up_seq").sub(format!("up{k}")).sub("res_blocks"), channels, 1))
            .collect();
        let skip = hg.sub("skip_seq");
        let trunk = sequence(&skip.sub("skip1"), channels, 2);
        let skips =
            (2..=depth).map(|k| Unit::new(&skip.sub(format!("skip{k}")).sub("skip1"), channels, channels, 1)).collect();
        let m = p.sub("middle_block");
        let middle = [
            PreConv::new(&m.sub("conv1"), channels, channels, 1, 1),
            PreConv::new(&m.sub("conv2"), channels, channels, 1, 1),
        ];
        let final_block = Unit::new(&p.sub("final_block"), channels, channels, 1);
        AttBlock { init_blocks, pools, down, up, trunk, skips, middle, final_block }
    }
}

fn upsample2(xs: &Tensor) -> Tensor {
    let size = xs.size();
    xs.upsample_bilinear2d([size[2] * 2, size[3] * 2], true, None, None)
}

impl Module for AttBlock {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let x0 = run(&self.init_blocks, xs, train);
        // pytorchcv's Hourglass: down the mask branch keeping every level, then up from the deepest, adding the
        // skip of the level above after each upsampling; the top level's skip is the trunk, added to the mask too.
        let depth = self.down.len();
        let mut levels = vec![x0.shallow_clone()];
        for (pool, down) in self.pools.iter().zip(&self.down) {
            let ys = pool.forward_t(levels.last().unwrap(), train);
            levels.push(run(down, &ys, train));
        }
        let trunk = run(&self.trunk, &x0, train);
        let mut mask = levels[depth].shallow_clone();
        for k in (1..=depth).rev() {
            mask = upsample2(&run(&self.up[k - 1], &mask, train));
            mask = if k > 1 {
                let level = &levels[k - 1];
                // pytorchcv's order of the additions: float rounding is amplified by the deep stream.
                mask + (level + self.skips[k - 2].forward_t(level, train))
            } else {
                mask + &trunk
            };
        }
        let mask = self.middle.iter().fold(mask, |ys, conv| conv.forward_pre(&ys, train).0).sigmoid();
        self.final_block.forward_t(&((mask + 1.0) * trunk), train)
    }
}

/// pytorchcv's `ResAttNet`.
#[derive(Debug)]
pub struct ResAttNet {
    init_conv: ConvBlock,
    init_pool: Pool2d,
    /// Plain units and attention modules, stage by stage.
    units: Vec<Box<dyn Module>>,
    post_bn: BatchNorm,
    final_pool: AdaptiveAvgPool2d,
    output: ClassifierHead,
}

impl ResAttNet {
    /// `att_layers`: attention modules in stages 1–3.
    pub fn new(p: &Path, att_layers: [usize; 3], in_channels: i64, num_outputs: i64) -> Self {
        let f = p.sub("features");
        let init = f.sub("init_block");
        let init_conv = ConvBlock::plain(&init.sub("conv"), in_channels, 64, 7, 2, true);
        let init_pool = Pool2d::new(&init.sub("pool"), PoolKind::Max, 3, 2, 1);
        let mut c_in = 64;
        let mut units: Vec<Box<dyn Module>> = vec![];
        for (i, c_out) in [256, 512, 1024, 2048].into_iter().enumerate() {
            let sp = f.sub(format!("stage{}", i + 1));
            let (plain, atts) = if i < 3 { (1, att_layers[i]) } else { (3, 0) };
            for j in 0..plain + atts {
                let up = sp.sub(format!("unit{}", j + 1));
                if j < plain {
                    let stride = if i > 0 && j == 0 { 2 } else { 1 };
                    units.push(Box::new(Unit::new(&up, c_in, c_out, stride)));
                } else {
                    units.push(Box::new(AttBlock::new(&up, c_out, 3 - i)));
                }
                c_in = c_out;
            }
        }
        let post_bn = BatchNorm::new2d(&f.sub("post_activ").sub("bn"), c_in);
        let final_pool = AdaptiveAvgPool2d::new(&f.sub("final_pool"), [1, 1]);
        let output = ClassifierHead::linear(&p.sub("output"), c_in, num_outputs);
        ResAttNet { init_conv, init_pool, units, post_bn, final_pool, output }
    }
}

forward_head_of_features!(ResAttNet);

impl Model for ResAttNet {
    fn forward_features(&self, xs: &Tensor, train: bool) -> Tensor {
        let ys = self.init_pool.forward_t(&self.init_conv.forward_t(xs, train), train);
        let ys = self.units.iter().fold(ys, |ys, unit| unit.forward_t(&ys, train));
        self.post_bn.forward_t(&ys, train).relu()
    }
    fn forward_head(&self, features: &Tensor, train: bool) -> Tensor {
        self.output.forward_t(&self.final_pool.forward_t(features, train).flatten(1, -1), train)
    }
    classifier_head_methods!(output);
}

/// Whether the hourglasses fit a side of `size` pixels: stage k's input (k = 1…3) divides by 2^(4−k).
fn hourglass_fits(size: i64) -> bool {
    // The 7×7/2 conv and the 3×3/2 pool (padded) each halve rounding up, as do the strided units.
    let mut s = (size + 1) / 2;
    s = (s + 1) / 2;
    for depth in [3u32, 2, 1] {
        if s % (1 << depth) != 0 {
            return false;
        }
        s = (s + 1) / 2;
    }
    true
}

fn build(p: &Path, c: &ModelConfig, name: &str, att_layers: [usize; 3]) -> Result<Box<dyn Model>> {
    let in_channels = match c.input_shape.as_slice() {
        [ch, h, w] if *ch > 0 && hourglass_fits(*h) && hourglass_fits(*w) => *ch,
        shape => {
            return Err(Error::config(format!(
                "{name} takes images [C, H, W] whose height and width its attention hourglasses can halve and \
                 double back (a multiple of 32, e.g. 32 or 224), got {shape:?}"
            )))
        }
    };
    Ok(Box::new(ResAttNet::new(p, att_layers, in_channels, c.num_outputs)))
}

macro_rules! entry {
    ($name:literal, $att:expr, $description:literal) => {
        ModelEntry {
            name: $name,
            family: "attention",
            description: $description,
            // The smallest size the hourglasses allow (trained at 224×224).
            default_input: &[3, 32, 32],
            default_classes: 1000,
            first_layer: "features.init_block.conv.conv",
            classifier: "output",
            options: &[],
            build: |p, c| build(p, c, $name, $att),
        }
    };
}

pub fn entries() -> Vec<ModelEntry> {
    vec![
        entry!("resattnet56", [1, 1, 1], "pytorchcv Residual Attention Network-56 (attention modules 1-1-1)"),
        entry!("resattnet92", [1, 2, 3], "pytorchcv Residual Attention Network-92 (attention modules 1-2-3)"),
    ]
}
