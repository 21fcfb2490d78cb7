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
//! timm's options of the same `ResNet` (`timm/models/resnet.py`), which the SE-ResNets of `senet.rs` are recipes
//! of: an attention module in every block (`Attention::Se`, named `se`), the deep stem (`Stem::Deep`), the first
//! conv of a block reduced (`reduce_first`) and the kernel of a strided `downsample` conv (`down_kernel`).
//!
//! `forward_features` returns the last stage's feature map (timm's convention); `forward_head` pools, flattens and
//! applies `fc`.
use tch::Tensor;

use super::senet::{se_channels, SeModule};
use super::{classifier_head_methods, forward_head_of_features, Model, ModelConfig, ModelEntry};
use crate::error::{Error, Result};
use crate::nn::init::kaiming_normal_fan_out;
use crate::nn::{
    Act, Activation, BatchNorm, ClassifierHead, Conv2d, ConvConfig, Module, Path, Pool2d, PoolKind, Sequential,
};

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
    /// timm's `stem_type='deep'`: `conv1` = three 3×3 convs (to `planes[0]`, `planes[0]`, 2·`planes[0]`; the first
    /// strided) with BatchNorm and ReLU between them, then `bn1`, ReLU, 3×3/2 max pool.
    Deep,
}

/// The attention module of every block, applied to the residual branch before the addition (timm's `attn_layer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attention {
    None,
    /// Squeeze-and-Excitation `se` (timm's `SEModule`, see `senet.rs`).
    Se,
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
    pub attention: Attention,
    /// timm's `block_reduce_first`: a block's first conv gives `width / reduce_first` channels (1 = plain).
    pub reduce_first: i64,
    /// timm's `down_kernel_size`: the kernel of a strided block's `downsample` conv (1×1 where the stride is 1).
    pub down_kernel: i64,
    /// The name of the global pool before `fc`: torchvision's `avgpool`, timm's `global_pool`.
    pub pool_name: &'static str,
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
            attention: Attention::None,
            reduce_first: 1,
            down_kernel: 1,
            pool_name: "avgpool",
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
            attention: Attention::None,
            reduce_first: 1,
            down_kernel: 1,
            pool_name: "avgpool",
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
    /// `kernel`: the projection's kernel where the block strides (1×1 where it does not).
    pub(crate) fn new(p: &Path, c_in: i64, c_out: i64, stride: i64, shortcut: Shortcut, kernel: i64) -> Self {
        if stride == 1 && c_in == c_out {
            return Downsample::Identity;
        }
        let kernel = if stride == 1 { 1 } else { kernel };
        match shortcut {
            Shortcut::A => {
                let front = (c_out - c_in) / 2;
                Downsample::Pad { stride, front, back: c_out - c_in - front }
            }
            Shortcut::B => {
                let p = p.sub("downsample");
                let conv = conv(&p.sub(0), c_in, c_out, kernel, stride, 1);
                Downsample::Projection(conv, BatchNorm::new2d(&p.sub(1), c_out))
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

/// A residual block: `conv1 bn1 conv2 bn2 [conv3 bn3] [se] downsample`, registered in torchvision's (and timm's)
/// order.
#[derive(Debug)]
struct Block {
    convs: Vec<(Conv2d, BatchNorm)>,
    attention: Option<SeModule>,
    downsample: Downsample,
}

impl Block {
    fn new(p: &Path, c: &ResNetConfig, c_in: i64, planes: i64, stride: i64) -> Self {
        let c_out = planes * c.block.expansion();
        // (c_in, c_out, kernel, stride, groups) per conv.
        let specs = match c.block {
            BlockKind::Basic => {
                let first = planes / c.reduce_first;
                vec![(c_in, first, 3, stride, 1), (first, planes, 3, 1, 1)]
            }
            BlockKind::Bottleneck => {
                let width = planes * c.width_per_group / 64 * c.groups;
                let first = width / c.reduce_first;
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
        let attention = match c.attention {
            Attention::None => None,
            Attention::Se => Some(SeModule::new(&p.sub("se"), c_out, se_channels(c_out))),
        };
        let downsample = Downsample::new(p, c_in, c_out, stride, c.shortcut, c.down_kernel);
        Block { convs, attention, downsample }
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
        if let Some(attention) = &self.attention {
            ys = attention.forward_t(&ys, train);
        }
        (ys + self.downsample.forward_t(xs, train)).relu()
    }
}

#[derive(Debug)]
pub struct ResNet {
    conv1: Box<dyn Module>,
    bn1: BatchNorm,
    maxpool: Option<Pool2d>,
    stages: Vec<Vec<Block>>,
    head: ClassifierHead,
}

impl ResNet {
    pub fn new(p: &Path, c: &ResNetConfig, in_channels: i64, num_outputs: i64) -> Self {
        let stem = c.planes[0];
        let maxpool = || Some(Pool2d::new(&p.sub("maxpool"), PoolKind::Max, 3, 2, 1));
        let (conv1, maxpool, mut c_in): (Box<dyn Module>, _, _) = match c.stem {
            Stem::ImageNet => {
                let config = ConvConfig { stride: 2, padding: 3, bias: false, ..Default::default() };
                let conv1 = Conv2d::new(&p.sub("conv1"), in_channels, stem, 7, config);
                kaiming_normal_fan_out(&conv1);
                (Box::new(conv1), maxpool(), stem)
            }
            Stem::Cifar => (Box::new(conv(&p.sub("conv1"), in_channels, stem, 3, 1, 1)), None, stem),
            Stem::Deep => {
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
                (Box::new(seq), maxpool(), 2 * stem)
            }
        };
        let bn1 = BatchNorm::new2d(&p.sub("bn1"), c_in);
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
        let head = ClassifierHead::pooled(&p.sub(c.pool_name), &p.sub("fc"), c_in, num_outputs);
        ResNet { conv1, bn1, maxpool, stages, head }
    }
}

forward_head_of_features!(ResNet);

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
        self.head.forward_t(features, train)
    }
    classifier_head_methods!(head);
}

/// Builds the ResNet `recipe` for the registry entry `name` (shared with the SE-ResNets of `senet.rs`).
pub(crate) fn build(p: &Path, c: &ModelConfig, name: &str, recipe: ResNetConfig) -> Result<Box<dyn Model>> {
    let in_channels = super::image_channels(c, name, 1, "")?;
    Ok(Box::new(ResNet::new(p, &recipe, in_channels, c.num_outputs)))
}

/// An ImageNet ResNet entry (torchvision's, or timm's SE-ResNets in `senet.rs`): family, name, recipe,
/// description.
macro_rules! imagenet {
    ($family:literal, $name:literal, $recipe:expr, $description:literal) => {
        $crate::models::ModelEntry {
            name: $name,
            family: $family,
            description: $description,
            // Small, for the registry tests: any size works (trained at 224×224).
            default_input: &[3, 32, 32],
            default_classes: 1000,
            first_layer: "conv1",
            classifier: "fc",
            options: &[],
            build: |p, c| $crate::models::resnet::build(p, c, $name, $recipe),
        }
    };
}
pub(crate) use imagenet;

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
        imagenet!("resnet", "resnet18", ResNetConfig::resnet18(), "torchvision ResNet-18 (basic blocks 2-2-2-2)"),
        imagenet!("resnet", "resnet34", ResNetConfig::resnet34(), "torchvision ResNet-34 (basic blocks 3-4-6-3)"),
        imagenet!("resnet", "resnet50", ResNetConfig::resnet50(), "torchvision ResNet-50 (bottlenecks 3-4-6-3, V1.5)"),
        imagenet!("resnet", "resnet101", ResNetConfig::resnet101(), "torchvision ResNet-101 (bottlenecks 3-4-23-3)"),
        imagenet!("resnet", "resnet152", ResNetConfig::resnet152(), "torchvision ResNet-152 (bottlenecks 3-8-36-3)"),
        imagenet!("resnet", "wide_resnet50_2", ResNetConfig::wide_resnet50_2(), "torchvision Wide ResNet-50-2"),
        imagenet!("resnet", "wide_resnet101_2", ResNetConfig::wide_resnet101_2(), "torchvision Wide ResNet-101-2"),
        imagenet!("resnet", "resnext50_32x4d", ResNetConfig::resnext50_32x4d(), "torchvision ResNeXt-50 32x4d"),
        imagenet!("resnet", "resnext101_32x8d", ResNetConfig::resnext101_32x8d(), "torchvision ResNeXt-101 32x8d"),
        imagenet!("resnet", "resnext101_64x4d", ResNetConfig::resnext101_64x4d(), "torchvision ResNeXt-101 64x4d"),
        cifar!("resnet20", 20, "CIFAR ResNet-20 (He et al. §4.2; options: shortcut=A|B)"),
        cifar!("resnet32", 32, "CIFAR ResNet-32 (He et al. §4.2; options: shortcut=A|B)"),
        cifar!("resnet44", 44, "CIFAR ResNet-44 (He et al. §4.2; options: shortcut=A|B)"),
        cifar!("resnet56", 56, "CIFAR ResNet-56 (He et al. §4.2; options: shortcut=A|B)"),
        cifar!("resnet110", 110, "CIFAR ResNet-110 (He et al. §4.2; options: shortcut=A|B)"),
    ]
}
