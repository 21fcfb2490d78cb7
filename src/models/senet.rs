//! Squeeze-and-Excitation ResNets (Hu et al. 2018) as timm builds them (`timm/models/resnet.py`, `attn_layer='se'`).
//!
//! `seresnet18/34/50/101/152` and `seresnext50_32x4d`: a torchvision-shaped ResNet (the recipes of
//! [`ResNetConfig`]: 7×7/2 stem + 3×3/2 max pool, V1.5 bottlenecks, 1×1 conv + BatchNorm `downsample`) where every
//! block rescales its residual branch, after the last BatchNorm and before the addition, by an SE module `se`:
//! global average pool → 1×1 conv `fc1` (with bias) → ReLU → 1×1 conv `fc2` (with bias) → sigmoid gate. The
//! reduced width is timm's `make_divisible(c / 16, 8)` (at least 8). Names and registration order are timm's
//! (`layer1.0.se.fc1.weight` before `layer1.0.downsample.0.weight`), so timm state dicts load strictly; the pool
//! before `fc` is `global_pool`. Initialisation: convs kaiming-normal (fan_out, ReLU) with zero biases, BatchNorm
//! 1/0, `fc` PyTorch's default; timm's zero-init of the last BatchNorm of each block is not applied (a zero gamma
//! would leave the block's convs without a gradient in the first step).
//!
//! `senet154` is timm's (`timm/models/resnet.py`): ResNeXt-152 64×4d bottlenecks (3-8-36-3) with SE, a deep stem
//! `conv1.0/1/3/4/6` (3×3/2 to 64, 3×3 64, 3×3 to 128; BatchNorm `bn1` after it), the first 1×1 conv of each block
//! halved (`block_reduce_first=2`) and 3×3 `downsample` convs where the block strides. timm's legacy layout
//! (`legacy_senet154`, `legacy_seresnet*`: `layer0.conv1`, `se_module.fc1`, ceil-mode stem pool) is not registered.
use tch::Tensor;

use super::resnet::{conv, kaiming_normal_fan_out, BlockKind, ResNetConfig};
use super::{Model, ModelConfig, ModelEntry};
use crate::error::Result;
use crate::nn::{
    Act, Activation, AdaptiveAvgPool2d, BatchNorm, Conv2d, ConvConfig, Linear, Module, Path, Pool2d, PoolKind,
    Sequential,
};

/// A timm SE-ResNet: the ResNet recipe plus timm's stem and block options.
#[derive(Debug, Clone, PartialEq)]
pub struct SeResNetConfig {
    pub resnet: ResNetConfig,
    /// timm's `stem_type='deep'`: three 3×3 convs (64, 64, 128 channels) instead of one 7×7.
    pub deep_stem: bool,
    /// timm's `block_reduce_first`: a bottleneck's first 1×1 conv gives `width / reduce_first` channels.
    pub reduce_first: i64,
    /// timm's `down_kernel_size`: the kernel of a strided block's `downsample` conv (1×1 where the stride is 1).
    pub down_kernel: i64,
}

impl SeResNetConfig {
    fn plain(resnet: ResNetConfig) -> Self {
        SeResNetConfig { resnet, deep_stem: false, reduce_first: 1, down_kernel: 1 }
    }
    /// timm's `senet154`.
    pub fn senet154() -> Self {
        let resnet = ResNetConfig::resnet152().grouped(64, 4);
        SeResNetConfig { resnet, deep_stem: true, reduce_first: 2, down_kernel: 3 }
    }
}

/// timm's `make_divisible(v, 8, round_limit=0)` of `channels / 16`: SEModule's reduced width.
pub(crate) fn se_channels(channels: i64) -> i64 {
    let v = channels as f64 / 16.0;
    (((v + 4.0) as i64) / 8 * 8).max(8)
}

/// timm's `SEModule`: `fc1` (1×1 conv, bias) → ReLU → `fc2` (1×1 conv, bias) → sigmoid, on the global average.
#[derive(Debug)]
pub(crate) struct SeModule {
    fc1: Conv2d,
    fc2: Conv2d,
}

impl SeModule {
    pub(crate) fn new(p: &Path, channels: i64, reduced: i64) -> Self {
        let fc = |name: &str, c_in, c_out| {
            let conv = Conv2d::new(&p.sub(name), c_in, c_out, 1, ConvConfig::default());
            kaiming_normal_fan_out(&conv);
            conv
        };
        SeModule { fc1: fc("fc1", channels, reduced), fc2: fc("fc2", reduced, channels) }
    }
}

impl Module for SeModule {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let s = xs.mean_dim([2i64, 3].as_slice(), true, None);
        let s = self.fc2.forward_t(&self.fc1.forward_t(&s, train).relu(), train).sigmoid();
        xs * s
    }
}

/// A timm `BasicBlock`/`Bottleneck` with `se`: `conv1 bn1 conv2 bn2 [conv3 bn3] se downsample`.
#[derive(Debug)]
struct SeBlock {
    convs: Vec<(Conv2d, BatchNorm)>,
    se: SeModule,
    downsample: Option<(Conv2d, BatchNorm)>,
}

impl SeBlock {
    fn new(p: &Path, sc: &SeResNetConfig, c_in: i64, planes: i64, stride: i64) -> Self {
        let c = &sc.resnet;
        let c_out = planes * c.block.expansion();
        // (c_in, c_out, kernel, stride, groups) per conv.
        let specs = match c.block {
            BlockKind::Basic => vec![(c_in, planes, 3, stride, 1), (planes, planes, 3, 1, 1)],
            BlockKind::Bottleneck => {
                let width = planes * c.width_per_group / 64 * c.groups;
                let first = width / sc.reduce_first;
                vec![(c_in, first, 1, 1, 1), (first, width, 3, stride, c.groups), (width, c_out, 1, 1, 1)]
            }
        };
        let convs = specs
            .into_iter()
            .enumerate()
            .map(|(i, (ci, co, k, s, g))| {
                let conv = conv(&p.sub(format!("conv{}", i + 1)), ci, co, k, s, g);
                (conv, BatchNorm::new2d(&p.sub(format!("bn{}", i + 1)), co))
            })
            .collect();
        let se = SeModule::new(&p.sub("se"), c_out, se_channels(c_out));
        let downsample = (stride != 1 || c_in != c_out).then(|| {
            let p = p.sub("downsample");
            let kernel = if stride == 1 { 1 } else { sc.down_kernel };
            (conv(&p.sub(0), c_in, c_out, kernel, stride, 1), BatchNorm::new2d(&p.sub(1), c_out))
        });
        SeBlock { convs, se, downsample }
    }
}

impl Module for SeBlock {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut ys = xs.shallow_clone();
        let last = self.convs.len() - 1;
        for (i, (conv, bn)) in self.convs.iter().enumerate() {
            ys = bn.forward_t(&conv.forward_t(&ys, train), train);
            if i < last {
                ys = ys.relu();
            }
        }
        let ys = self.se.forward_t(&ys, train);
        let shortcut = match &self.downsample {
            None => xs.shallow_clone(),
            Some((conv, bn)) => bn.forward_t(&conv.forward_t(xs, train), train),
        };
        (ys + shortcut).relu()
    }
}

/// timm's `ResNet` with SE blocks.
#[derive(Debug)]
pub struct SeResNet {
    conv1: Box<dyn Module>,
    bn1: BatchNorm,
    maxpool: Pool2d,
    blocks: Vec<SeBlock>,
    global_pool: AdaptiveAvgPool2d,
    fc: Linear,
    path: Path,
    fc_in: i64,
    num_outputs: i64,
}

impl SeResNet {
    pub fn new(p: &Path, sc: &SeResNetConfig, in_channels: i64, num_outputs: i64) -> Self {
        let c = &sc.resnet;
        let stem = c.planes[0];
        let (conv1, mut c_in): (Box<dyn Module>, i64) = if sc.deep_stem {
            // conv1.0 conv1.1 ReLU conv1.3 conv1.4 ReLU conv1.6, the ReLUs counted in the indices.
            let sp = p.sub("conv1");
            let mut seq = Sequential::new();
            seq.push(conv(&sp.sub(0), in_channels, stem, 3, 2, 1));
            seq.push(BatchNorm::new2d(&sp.sub(1), stem));
            seq.push(Act::new(&sp.sub(2), Activation::Relu));
            seq.push(conv(&sp.sub(3), stem, stem, 3, 1, 1));
            seq.push(BatchNorm::new2d(&sp.sub(4), stem));
            seq.push(Act::new(&sp.sub(5), Activation::Relu));
            seq.push(conv(&sp.sub(6), stem, 2 * stem, 3, 1, 1));
            (Box::new(seq), 2 * stem)
        } else {
            let config = ConvConfig { stride: 2, padding: 3, bias: false, ..Default::default() };
            let conv1 = Conv2d::new(&p.sub("conv1"), in_channels, stem, 7, config);
            kaiming_normal_fan_out(&conv1);
            (Box::new(conv1), stem)
        };
        let bn1 = BatchNorm::new2d(&p.sub("bn1"), c_in);
        let maxpool = Pool2d::new(&p.sub("maxpool"), PoolKind::Max, 3, 2, 1);
        let mut blocks = vec![];
        for (i, (&n, &planes)) in c.layers.iter().zip(&c.planes).enumerate() {
            let lp = p.sub(format!("layer{}", i + 1));
            for j in 0..n {
                let stride = if i > 0 && j == 0 { 2 } else { 1 };
                blocks.push(SeBlock::new(&lp.sub(j), sc, c_in, planes, stride));
                c_in = planes * c.block.expansion();
            }
        }
        let global_pool = AdaptiveAvgPool2d::new(&p.sub("global_pool"), [1, 1]);
        let fc = Linear::new(&p.sub("fc"), c_in, num_outputs);
        SeResNet { conv1, bn1, maxpool, blocks, global_pool, fc, path: p.clone(), fc_in: c_in, num_outputs }
    }
}

impl Module for SeResNet {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.forward_head(&self.forward_features(xs, train), train)
    }
}

impl Model for SeResNet {
    fn forward_features(&self, xs: &Tensor, train: bool) -> Tensor {
        let ys = self.bn1.forward_t(&self.conv1.forward_t(xs, train), train).relu();
        let mut ys = self.maxpool.forward_t(&ys, train);
        for block in &self.blocks {
            ys = block.forward_t(&ys, train);
        }
        ys
    }
    fn forward_head(&self, features: &Tensor, train: bool) -> Tensor {
        self.fc.forward_t(&self.global_pool.forward_t(features, train).flatten(1, -1), train)
    }
    fn reset_classifier(&mut self, num_outputs: i64) {
        self.fc = self.path.sub("fc").replace(|p| Linear::new(p, self.fc_in, num_outputs));
        self.num_outputs = num_outputs;
    }
    fn num_outputs(&self) -> i64 {
        self.num_outputs
    }
}

fn build(p: &Path, c: &ModelConfig, name: &str, recipe: SeResNetConfig) -> Result<Box<dyn Model>> {
    let in_channels = super::image_channels(c, name, 1, "")?;
    Ok(Box::new(SeResNet::new(p, &recipe, in_channels, c.num_outputs)))
}

macro_rules! seresnet {
    ($name:literal, $recipe:expr, $description:literal) => {
        ModelEntry {
            name: $name,
            family: "senet",
            description: $description,
            // Small, for the registry tests: any size works (trained at 224×224).
            default_input: &[3, 32, 32],
            default_classes: 1000,
            first_layer: "conv1",
            classifier: "fc",
            options: &[],
            build: |p, c| build(p, c, $name, $recipe),
        }
    };
}

pub fn entries() -> Vec<ModelEntry> {
    vec![
        seresnet!(
            "seresnet18",
            SeResNetConfig::plain(ResNetConfig::resnet18()),
            "timm SE-ResNet-18 (basic blocks 2-2-2-2 with SE)"
        ),
        seresnet!(
            "seresnet34",
            SeResNetConfig::plain(ResNetConfig::resnet34()),
            "timm SE-ResNet-34 (basic blocks 3-4-6-3 with SE)"
        ),
        seresnet!(
            "seresnet50",
            SeResNetConfig::plain(ResNetConfig::resnet50()),
            "timm SE-ResNet-50 (bottlenecks 3-4-6-3 with SE)"
        ),
        seresnet!(
            "seresnet101",
            SeResNetConfig::plain(ResNetConfig::resnet101()),
            "timm SE-ResNet-101 (bottlenecks 3-4-23-3 with SE)"
        ),
        seresnet!(
            "seresnet152",
            SeResNetConfig::plain(ResNetConfig::resnet152()),
            "timm SE-ResNet-152 (bottlenecks 3-8-36-3 with SE)"
        ),
        seresnet!(
            "seresnext50_32x4d",
            SeResNetConfig::plain(ResNetConfig::resnext50_32x4d()),
            "timm SE-ResNeXt-50 32x4d"
        ),
        seresnet!("senet154", SeResNetConfig::senet154(), "timm SENet-154 (SE-ResNeXt-152 64x4d, deep stem)"),
    ]
}
