//! ResNets (He et al. 2016) as torchvision builds them, and the CIFAR ResNets of the paper's §4.2.
//!
//! ImageNet models (`resnet18` … `resnext101_64x4d`): torchvision's `ResNet` with V1.5 bottlenecks (stride on the
//! 3×3 conv): stem `conv1` 7×7/2 + `bn1` + ReLU + 3×3/2 max pool, four stages `layer1`…`layer4` of 64/128/256/512
//! planes, `avgpool` to 1×1 and `fc`; a block's shortcut is a `downsample` = 1×1 conv + BatchNorm projection where
//! the shape changes. Names, shapes and registration order are torchvision's, so its state dicts load strictly.
//! Initialisation as torchvision: convs kaiming-normal (fan_out, ReLU), BatchNorm 1/0, `fc` PyTorch's default;
//! zero-init-residual off.
//!
//! CIFAR models (`resnet20/32/44/56/110`, depth 6n+2): a 3×3 `conv1` + `bn1` + ReLU stem (no max pool), three
//! stages of n basic blocks with 16/32/64 planes (strides 1/2/2), global average pool and `fc` (0.27M parameters
//! for resnet20 … 1.7M for resnet110 at 10 classes, as the paper's table 6). The shortcut across a change of
//! shape is the paper's option A by default: parameter-free, subsample by the stride (`x[:, :, ::2, ::2]`) and
//! zero-pad the new channels evenly on both sides; option B (`resnet20:shortcut=B`) is a `downsample` projection
//! (1×1 conv + BatchNorm) as in the ImageNet models. Python reference: `scripts/reference_models.py::CifarResNet`.
//!
//! `forward_features` returns the last stage's feature map (timm's convention); `forward_head` pools, flattens and
//! applies `fc`.
use tch::Tensor;

use super::{Model, ModelConfig, ModelEntry};
use crate::error::{Error, Result};
use crate::nn::{AdaptiveAvgPool2d, BatchNorm, Conv2d, ConvConfig, Linear, Module, Path, Pool2d, PoolKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    /// Two 3×3 convs (resnet18/34 and the CIFAR models).
    Basic,
    /// 1×1 reduce, 3×3 (grouped for ResNeXt), 1×1 expand ×4.
    Bottleneck,
}

impl BlockKind {
    pub fn expansion(self) -> i64 {
        match self {
            BlockKind::Basic => 1,
            BlockKind::Bottleneck => 4,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stem {
    /// 7×7/2 conv, BatchNorm, ReLU, 3×3/2 max pool.
    ImageNet,
    /// 3×3 conv, BatchNorm, ReLU.
    Cifar,
}

/// The shortcut of a block whose input and output shapes differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shortcut {
    /// Option A: subsample by the stride and zero-pad the extra channels; no parameters.
    A,
    /// Option B: a 1×1 conv (with the stride) + BatchNorm projection, named `downsample.0/1`.
    B,
}

impl std::str::FromStr for Shortcut {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "A" | "a" => Ok(Shortcut::A),
            "B" | "b" => Ok(Shortcut::B),
            other => Err(Error::config(format!("resnet option shortcut={other}: use A (zero-pad) or B (projection)"))),
        }
    }
}

/// A ResNet: block type, blocks per stage and the planes of each stage, stem, shortcut, and ResNeXt grouping.
#[derive(Debug, Clone, PartialEq)]
pub struct ResNetConfig {
    pub block: BlockKind,
    pub layers: Vec<usize>,
    pub planes: Vec<i64>,
    pub stem: Stem,
    pub shortcut: Shortcut,
    pub groups: i64,
    /// Channels per group of a bottleneck's 3×3 conv at 64 planes (64 = plain ResNet, 128 = wide ResNet-50-2).
    pub width_per_group: i64,
}

impl ResNetConfig {
    /// torchvision's `ResNet(block, layers)`.
    pub fn imagenet(block: BlockKind, layers: &[usize]) -> Self {
        ResNetConfig {
            block,
            layers: layers.to_vec(),
            planes: vec![64, 128, 256, 512],
            stem: Stem::ImageNet,
            shortcut: Shortcut::B,
            groups: 1,
            width_per_group: 64,
        }
    }
    /// ResNeXt `groups`×`width_per_group`d, or a wide ResNet (`groups` 1, `width_per_group` 128).
    pub fn grouped(self, groups: i64, width_per_group: i64) -> Self {
        ResNetConfig { groups, width_per_group, ..self }
    }
    /// The CIFAR ResNet of depth 6n+2 (He et al. 2016 §4.2).
    pub fn cifar(depth: usize, shortcut: Shortcut) -> Self {
        let n = (depth - 2) / 6;
        ResNetConfig {
            block: BlockKind::Basic,
            layers: vec![n; 3],
            planes: vec![16, 32, 64],
            stem: Stem::Cifar,
            shortcut,
            groups: 1,
            width_per_group: 64,
        }
    }

    pub fn resnet18() -> Self {
        Self::imagenet(BlockKind::Basic, &[2, 2, 2, 2])
    }
    pub fn resnet34() -> Self {
        Self::imagenet(BlockKind::Basic, &[3, 4, 6, 3])
    }
    pub fn resnet50() -> Self {
        Self::imagenet(BlockKind::Bottleneck, &[3, 4, 6, 3])
    }
    pub fn resnet101() -> Self {
        Self::imagenet(BlockKind::Bottleneck, &[3, 4, 23, 3])
    }
    pub fn resnet152() -> Self {
        Self::imagenet(BlockKind::Bottleneck, &[3, 8, 36, 3])
    }
    pub fn wide_resnet50_2() -> Self {
        Self::resnet50().grouped(1, 128)
    }
    pub fn wide_resnet101_2() -> Self {
        Self::resnet101().grouped(1, 128)
    }
    pub fn resnext50_32x4d() -> Self {
        Self::resnet50().grouped(32, 4)
    }
    pub fn resnext101_32x8d() -> Self {
        Self::resnet101().grouped(32, 8)
    }
    pub fn resnext101_64x4d() -> Self {
        Self::resnet101().grouped(64, 4)
    }
}

/// torchvision's `kaiming_normal_(weight, mode="fan_out", nonlinearity="relu")` (fan_out = c_out·k·k, not divided
/// by the groups, as PyTorch computes it), and a zero bias.
pub(crate) fn kaiming_normal_fan_out(conv: &Conv2d) {
    let size = conv.weight.size();
    let fan_out: i64 = size[0] * size[2..].iter().product::<i64>();
    tch::no_grad(|| {
        let _ = conv.weight.shallow_clone().normal_(0.0, (2.0 / fan_out as f64).sqrt());
        if let Some(b) = &conv.bias {
            let _ = b.shallow_clone().zero_();
        }
    });
}

pub(crate) fn conv(p: &Path, c_in: i64, c_out: i64, kernel: i64, stride: i64, groups: i64) -> Conv2d {
    let config = ConvConfig { stride, padding: kernel / 2, groups, bias: false, ..Default::default() };
    let conv = Conv2d::new(p, c_in, c_out, kernel, config);
    kaiming_normal_fan_out(&conv);
    conv
}

/// A block's shortcut: identity, option B projection or option A zero-padding (shared with the CMPE-SE ResNets).
#[derive(Debug)]
pub(crate) enum Downsample {
    Identity,
    Projection(Conv2d, BatchNorm),
    /// Option A: keep every `stride`-th pixel, then `front` zero channels before and `back` after.
    Pad {
        stride: i64,
        front: i64,
        back: i64,
    },
}

impl Downsample {
    pub(crate) fn new(p: &Path, c_in: i64, c_out: i64, stride: i64, shortcut: Shortcut) -> Self {
        if stride == 1 && c_in == c_out {
            return Downsample::Identity;
        }
        match shortcut {
            Shortcut::A => {
                let front = (c_out - c_in) / 2;
                Downsample::Pad { stride, front, back: c_out - c_in - front }
            }
            Shortcut::B => {
                let p = p.sub("downsample");
                Downsample::Projection(conv(&p.sub(0), c_in, c_out, 1, stride, 1), BatchNorm::new2d(&p.sub(1), c_out))
            }
        }
    }

    pub(crate) fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        match self {
            Downsample::Identity => xs.shallow_clone(),
            Downsample::Projection(conv, bn) => bn.forward_t(&conv.forward_t(xs, train), train),
            Downsample::Pad { stride, front, back } => {
                let xs = xs.slice(2, 0, None, *stride).slice(3, 0, None, *stride);
                xs.constant_pad_nd([0, 0, 0, 0, *front, *back])
            }
        }
    }
}

/// A residual block: `conv1 bn1 conv2 bn2 [conv3 bn3] downsample`, registered in torchvision's order.
#[derive(Debug)]
struct Block {
    convs: Vec<(Conv2d, BatchNorm)>,
    downsample: Downsample,
}

impl Block {
    fn new(p: &Path, c: &ResNetConfig, c_in: i64, planes: i64, stride: i64) -> Self {
        let c_out = planes * c.block.expansion();
        // (c_in, c_out, kernel, stride, groups) per conv.
        let specs = match c.block {
            BlockKind::Basic => vec![(c_in, planes, 3, stride, 1), (planes, planes, 3, 1, 1)],
            BlockKind::Bottleneck => {
                let width = planes * c.width_per_group / 64 * c.groups;
                vec![(c_in, width, 1, 1, 1), (width, width, 3, stride, c.groups), (width, c_out, 1, 1, 1)]
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
        Block { convs, downsample: Downsample::new(p, c_in, c_out, stride, c.shortcut) }
    }
}

impl Module for Block {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut ys = xs.shallow_clone();
        let last = self.convs.len() - 1;
        for (i, (conv, bn)) in self.convs.iter().enumerate() {
            ys = bn.forward_t(&conv.forward_t(&ys, train), train);
            if i < last {
                ys = ys.relu();
            }
        }
        (ys + self.downsample.forward_t(xs, train)).relu()
    }
}

#[derive(Debug)]
pub struct ResNet {
    conv1: Conv2d,
    bn1: BatchNorm,
    maxpool: Option<Pool2d>,
    stages: Vec<Vec<Block>>,
    avgpool: AdaptiveAvgPool2d,
    fc: Linear,
    path: Path,
    fc_in: i64,
    num_outputs: i64,
}

impl ResNet {
    pub fn new(p: &Path, c: &ResNetConfig, in_channels: i64, num_outputs: i64) -> Self {
        let (conv1, maxpool) = match c.stem {
            Stem::ImageNet => {
                let conv1 = Conv2d::new(
                    &p.sub("conv1"),
                    in_channels,
                    c.planes[0],
                    7,
                    ConvConfig { stride: 2, padding: 3, bias: false, ..Default::default() },
                );
                kaiming_normal_fan_out(&conv1);
                (conv1, Some(Pool2d::new(&p.sub("maxpool"), PoolKind::Max, 3, 2, 1)))
            }
            Stem::Cifar => (conv(&p.sub("conv1"), in_channels, c.planes[0], 3, 1, 1), None),
        };
        let bn1 = BatchNorm::new2d(&p.sub("bn1"), c.planes[0]);
        let mut c_in = c.planes[0];
        let mut stages = vec![];
        for (i, (&n, &planes)) in c.layers.iter().zip(&c.planes).enumerate() {
            let lp = p.sub(format!("layer{}", i + 1));
            let stride = if i == 0 { 1 } else { 2 };
            let mut blocks = vec![];
            for j in 0..n {
                blocks.push(Block::new(&lp.sub(j), c, c_in, planes, if j == 0 { stride } else { 1 }));
                c_in = planes * c.block.expansion();
            }
            stages.push(blocks);
        }
        let avgpool = AdaptiveAvgPool2d::new(&p.sub("avgpool"), [1, 1]);
        let fc = Linear::new(&p.sub("fc"), c_in, num_outputs);
        ResNet { conv1, bn1, maxpool, stages, avgpool, fc, path: p.clone(), fc_in: c_in, num_outputs }
    }
}

impl Module for ResNet {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.forward_head(&self.forward_features(xs, train), train)
    }
}

impl Model for ResNet {
    fn forward_features(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut ys = self.bn1.forward_t(&self.conv1.forward_t(xs, train), train).relu();
        if let Some(pool) = &self.maxpool {
            ys = pool.forward_t(&ys, train);
        }
        for block in self.stages.iter().flatten() {
            ys = block.forward_t(&ys, train);
        }
        ys
    }
    fn forward_head(&self, features: &Tensor, train: bool) -> Tensor {
        self.fc.forward_t(&self.avgpool.forward_t(features, train).flatten(1, -1), train)
    }
    fn reset_classifier(&mut self, num_outputs: i64) {
        self.fc = self.path.sub("fc").replace(|p| Linear::new(p, self.fc_in, num_outputs));
        self.num_outputs = num_outputs;
    }
    fn num_outputs(&self) -> i64 {
        self.num_outputs
    }
}

fn build(p: &Path, c: &ModelConfig, name: &str, recipe: ResNetConfig) -> Result<Box<dyn Model>> {
    let in_channels = super::image_channels(c, name, 1, "")?;
    Ok(Box::new(ResNet::new(p, &recipe, in_channels, c.num_outputs)))
}

/// A torchvision ImageNet ResNet entry: name, recipe, description.
macro_rules! imagenet {
    ($name:literal, $recipe:expr, $description:literal) => {
        ModelEntry {
            name: $name,
            family: "resnet",
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

/// A CIFAR ResNet entry of depth 6n+2, option A shortcuts unless `shortcut=B`.
macro_rules! cifar {
    ($name:literal, $depth:literal, $description:literal) => {
        ModelEntry {
            name: $name,
            family: "resnet",
            description: $description,
            default_input: &[3, 32, 32],
            default_classes: 10,
            first_layer: "conv1",
            classifier: "fc",
            options: &["shortcut"],
            build: |p, c| {
                let shortcut = c.options.get("shortcut").map(|s| s.parse()).transpose()?.unwrap_or(Shortcut::A);
                build(p, c, $name, ResNetConfig::cifar($depth, shortcut))
            },
        }
    };
}

pub fn entries() -> Vec<ModelEntry> {
    vec![
        imagenet!("resnet18", ResNetConfig::resnet18(), "torchvision ResNet-18 (basic blocks 2-2-2-2)"),
        imagenet!("resnet34", ResNetConfig::resnet34(), "torchvision ResNet-34 (basic blocks 3-4-6-3)"),
        imagenet!("resnet50", ResNetConfig::resnet50(), "torchvision ResNet-50 (bottlenecks 3-4-6-3, V1.5)"),
        imagenet!("resnet101", ResNetConfig::resnet101(), "torchvision ResNet-101 (bottlenecks 3-4-23-3)"),
        imagenet!("resnet152", ResNetConfig::resnet152(), "torchvision ResNet-152 (bottlenecks 3-8-36-3)"),
        imagenet!("wide_resnet50_2", ResNetConfig::wide_resnet50_2(), "torchvision Wide ResNet-50-2"),
        imagenet!("wide_resnet101_2", ResNetConfig::wide_resnet101_2(), "torchvision Wide ResNet-101-2"),
        imagenet!("resnext50_32x4d", ResNetConfig::resnext50_32x4d(), "torchvision ResNeXt-50 32x4d"),
        imagenet!("resnext101_32x8d", ResNetConfig::resnext101_32x8d(), "torchvision ResNeXt-101 32x8d"),
        imagenet!("resnext101_64x4d", ResNetConfig::resnext101_64x4d(), "torchvision ResNeXt-101 64x4d"),
        cifar!("resnet20", 20, "CIFAR ResNet-20 (He et al. §4.2; options: shortcut=A|B)"),
        cifar!("resnet32", 32, "CIFAR ResNet-32 (He et al. §4.2; options: shortcut=A|B)"),
        cifar!("resnet44", 44, "CIFAR ResNet-44 (He et al. §4.2; options: shortcut=A|B)"),
        cifar!("resnet56", 56, "CIFAR ResNet-56 (He et al. §4.2; options: shortcut=A|B)"),
        cifar!("resnet110", 110, "CIFAR ResNet-110 (He et al. §4.2; options: shortcut=A|B)"),
    ]
}
