//! Competitive Squeeze-and-Excitation ResNets (Hu et al. 2018, "Competitive Inner-Imaging Squeeze and Excitation
//! for Residual Network", arXiv 1807.08920): our own definitions, since the authors' code is MXNet only. Python
//! reference: `scripts/reference_models.py::CmpeSeResNet`, with the same names, shapes and registration order.
//!
//! The backbone is our CIFAR ResNet (`resnet20` … `resnet110` of src/models/resnet.rs, depth 6n+2): `conv1` 3×3
//! (16) + `bn1` + ReLU, three stages `layer1…3` of n post-activation basic blocks (16/32/64 planes, strides
//! 1/2/2), option A shortcuts by default (`shortcut=B`: a `downsample` projection), `avgpool`, `fc`. In every
//! block the excitation that rescales the residual branch is computed from BOTH the residual branch (after `bn2`)
//! and the identity (the shortcut's output), each squeezed by a global average (u and v, C values each):
//! out = ReLU(residual · g(u, v) + identity). The block registers `conv1 bn1 conv2 bn2 [downsample] se`.
//!
//! - `cmpe_se_resnet{20,32,44,56,110}`: the paper's CMPE-SE "double FC" form: [u, v] concatenated (2C values),
//!   `se.fc1` (Linear 2C → R, no bias) + ReLU, `se.fc2` (Linear R → C, no bias), sigmoid. (The authors' MXNet code
//!   squeezes u and v through an FC + ReLU of their own each before concatenating: the block-diagonal case of one
//!   FC over the concatenation, with 2R hidden units.)
//! - `cmpe_se_ii_resnet{20,32,44,56,110}`: the paper's inner imaging: u and v reshaped into a 2-channel h×w
//!   "image" (h·w = C, h the largest divisor of C not above √C: 4×4, 4×8, 8×8), `se.conv` (3×3, padding 1,
//!   2 → R channels, no bias) + `se.bn`, averaged over its channels and flattened back to C values, `se.fc1`
//!   (C → R, no bias) + ReLU, `se.fc2` (R → C, no bias), sigmoid. The authors' code folds the pair into a
//!   one-channel (2k)×(C/k) image and convolves it unpadded; ours keeps the two vectors as two channels and pads,
//!   so that the map keeps C positions.
//!
//! The bottleneck width R is C/16 as in the paper, but at least 16 (so 16 at these widths): the squeezed identity
//! is non-negative and much the same for every sample, so each ReLU unit over it starts dead for the whole batch
//! with a chance near ½, and the paper's 1–4 units at 16–64 channels (8 with timm's SE rule) would often all die
//! at once (2^−R per block) and leave the SE without a gradient. Initialisation as the CIFAR ResNet: convs (the SE
//! conv too) kaiming-normal (fan_out, ReLU), BatchNorm 1/0, Linear PyTorch's default. Any image of at least 1×1
//! works (the paper trains at 32×32).
use tch::Tensor;

use super::resnet::{conv, Downsample, Shortcut};
use super::{classifier_head_methods, forward_head_of_features, Model, ModelConfig, ModelEntry};
use crate::error::Result;
use crate::nn::{BatchNorm, ClassifierHead, Conv2d, Linear, Module, Path};

/// Which competitive SE the blocks carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpeVariant {
    /// The two squeezed vectors through their own FC each, concatenated, one FC to the gate.
    DoubleFc,
    /// The two squeezed vectors as a 2-channel image, a 3×3 conv, then the SE bottleneck.
    InnerImaging,
}

/// The height of the inner image of `channels` values: the largest divisor not above √channels.
fn inner_image_side(channels: i64) -> i64 {
    (1..=channels).take_while(|d| d * d <= channels).filter(|d| channels % d == 0).max().unwrap_or(1)
}

/// The least bottleneck width (see the module docs).
const MIN_REDUCED: i64 = 16;

/// Competitive SE: residual · g(avg(residual), avg(identity)) + identity, g = σ(`fc2`(ReLU(`fc1`(z)))).
#[derive(Debug)]
struct CmpeSe {
    /// The inner image's height, side conv and BatchNorm (inner imaging); `None` for double FC.
    inner: Option<(i64, Conv2d, BatchNorm)>,
    fc1: Linear,
    fc2: Linear,
}

impl CmpeSe {
    fn new(p: &Path, channels: i64, variant: CmpeVariant) -> Self {
        let reduced = (channels / 16).max(MIN_REDUCED);
        let (inner, z) = match variant {
            CmpeVariant::DoubleFc => (None, 2 * channels),
            CmpeVariant::InnerImaging => {
                let conv = conv(&p.sub("conv"), 2, reduced, 3, 1, 1);
                let bn = BatchNorm::new2d(&p.sub("bn"), reduced);
                (Some((inner_image_side(channels), conv, bn)), channels)
            }
        };
        let fc1 = Linear::with_bias(&p.sub("fc1"), z, reduced, false);
        let fc2 = Linear::with_bias(&p.sub("fc2"), reduced, channels, false);
        CmpeSe { inner, fc1, fc2 }
    }

    fn forward_t(&self, residual: &Tensor, identity: &Tensor, train: bool) -> Tensor {
        let u = residual.mean_dim([2i64, 3].as_slice(), false, None);
        let v = identity.mean_dim([2i64, 3].as_slice(), false, None);
        let z = match &self.inner {
            None => Tensor::cat(&[u, v], 1),
            Some((side, conv, bn)) => {
                let (n, c) = (u.size()[0], u.size()[1]);
                let image = Tensor::stack(&[u, v], 1).reshape([n, 2, *side, c / side]);
                let z = bn.forward_t(&conv.forward_t(&image, train), train);
                z.mean_dim([1i64].as_slice(), false, None).flatten(1, -1)
            }
        };
        let gate = self.fc2.forward_t(&self.fc1.forward_t(&z, train).relu(), train).sigmoid();
        residual * gate.unsqueeze(2).unsqueeze(3) + identity
    }
}

/// A post-activation basic block with competitive SE: `conv1 bn1 conv2 bn2 [downsample] se`.
#[derive(Debug)]
struct Block {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
    downsample: Downsample,
    se: CmpeSe,
}

impl Block {
    fn new(p: &Path, c_in: i64, planes: i64, stride: i64, shortcut: Shortcut, variant: CmpeVariant) -> Self {
        Block {
            conv1: conv(&p.sub("conv1"), c_in, planes, 3, stride, 1),
            bn1: BatchNorm::new2d(&p.sub("bn1"), planes),
            conv2: conv(&p.sub("conv2"), planes, planes, 3, 1, 1),
            bn2: BatchNorm::new2d(&p.sub("bn2"), planes),
            downsample: Downsample::new(p, c_in, planes, stride, shortcut, 1),
            se: CmpeSe::new(&p.sub("se"), planes, variant),
        }
    }
}

impl Module for Block {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let ys = self.bn1.forward_t(&self.conv1.forward_t(xs, train), train).relu();
        let ys = self.bn2.forward_t(&self.conv2.forward_t(&ys, train), train);
        let identity = self.downsample.forward_t(xs, train);
        self.se.forward_t(&ys, &identity, train).relu()
    }
}

/// A CIFAR ResNet of depth 6n+2 with competitive SE in every block.
#[derive(Debug)]
pub struct CmpeSeResNet {
    conv1: Conv2d,
    bn1: BatchNorm,
    blocks: Vec<Block>,
    head: ClassifierHead,
}

impl CmpeSeResNet {
    pub fn new(
        p: &Path,
        depth: usize,
        variant: CmpeVariant,
        shortcut: Shortcut,
        in_channels: i64,
        num_outputs: i64,
    ) -> Self {
        let n = (depth - 2) / 6;
        let conv1 = conv(&p.sub("conv1"), in_channels, 16, 3, 1, 1);
        let bn1 = BatchNorm::new2d(&p.sub("bn1"), 16);
        let mut c_in = 16;
        let mut blocks = vec![];
        for (i, planes) in [16, 32, 64].into_iter().enumerate() {
            let lp = p.sub(format!("layer{}", i + 1));
            for j in 0..n {
                let stride = if i > 0 && j == 0 { 2 } else { 1 };
                blocks.push(Block::new(&lp.sub(j), c_in, planes, stride, shortcut, variant));
                c_in = planes;
            }
        }
        let head = ClassifierHead::pooled(&p.sub("avgpool"), &p.sub("fc"), 64, num_outputs);
        CmpeSeResNet { conv1, bn1, blocks, head }
    }
}

forward_head_of_features!(CmpeSeResNet);

impl Model for CmpeSeResNet {
    fn forward_features(&self, xs: &Tensor, train: bool) -> Tensor {
        let ys = self.bn1.forward_t(&self.conv1.forward_t(xs, train), train).relu();
        self.blocks.iter().fold(ys, |ys, block| block.forward_t(&ys, train))
    }
    fn forward_head(&self, features: &Tensor, train: bool) -> Tensor {
        self.head.forward_t(features, train)
    }
    classifier_head_methods!(head);
}

fn build(p: &Path, c: &ModelConfig, name: &str, depth: usize, variant: CmpeVariant) -> Result<Box<dyn Model>> {
    let in_channels = super::image_channels(c, name, 1, "")?;
    let shortcut = c.options.get("shortcut").map(|s| s.parse()).transpose()?.unwrap_or(Shortcut::A);
    Ok(Box::new(CmpeSeResNet::new(p, depth, variant, shortcut, in_channels, c.num_outputs)))
}

macro_rules! entry {
    ($name:literal, $depth:literal, $variant:expr, $description:literal) => {
        ModelEntry {
            name: $name,
            family: "cmpe_se",
            description: $description,
            default_input: &[3, 32, 32],
            default_classes: 10,
            first_layer: "conv1",
            classifier: "fc",
            options: &["shortcut"],
            build: |p, c| build(p, c, $name, $depth, $variant),
        }
    };
}

pub fn entries() -> Vec<ModelEntry> {
    use CmpeVariant::{DoubleFc, InnerImaging};
    vec![
        entry!("cmpe_se_resnet20", 20, DoubleFc, "CIFAR ResNet-20 with competitive SE, double FC (Hu et al. 2018)"),
        entry!("cmpe_se_resnet32", 32, DoubleFc, "CIFAR ResNet-32 with competitive SE, double FC (Hu et al. 2018)"),
        entry!("cmpe_se_resnet44", 44, DoubleFc, "CIFAR ResNet-44 with competitive SE, double FC (Hu et al. 2018)"),
        entry!("cmpe_se_resnet56", 56, DoubleFc, "CIFAR ResNet-56 with competitive SE, double FC (Hu et al. 2018)"),
        entry!("cmpe_se_resnet110", 110, DoubleFc, "CIFAR ResNet-110 with competitive SE, double FC (Hu et al. 2018)"),
        entry!("cmpe_se_ii_resnet20", 20, InnerImaging, "CIFAR ResNet-20 with inner-imaging competitive SE"),
        entry!("cmpe_se_ii_resnet32", 32, InnerImaging, "CIFAR ResNet-32 with inner-imaging competitive SE"),
        entry!("cmpe_se_ii_resnet44", 44, InnerImaging, "CIFAR ResNet-44 with inner-imaging competitive SE"),
        entry!("cmpe_se_ii_resnet56", 56, InnerImaging, "CIFAR ResNet-56 with inner-imaging competitive SE"),
        entry!("cmpe_se_ii_resnet110", 110, InnerImaging, "CIFAR ResNet-110 with inner-imaging competitive SE"),
    ]
}
