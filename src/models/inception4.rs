//! Inception v4 and Inception-ResNet v2 (Szegedy et al. 2017, "Inception-v4, Inception-ResNet and the Impact of
//! Residual Connections on Learning") as timm builds them (`timm/models/inception_v4.py`,
//! `inception_resnet_v2.py`), and the conv-block kit that src/models/bninception.rs shares.
//!
//! Every conv is timm's `ConvNormAct`: `conv` (no bias, padding 0 unless given) → `bn` (eps 1e-3) → ReLU.
//! Branches are concatenated along the channels in the order they are built. The max pools are 3×3/2 without
//! padding (floor mode); the average pools in front of 1×1 convs are 3×3/1 with padding 1 that is NOT counted
//! (`count_include_pad=False`: a border pixel averages fewer values).
//! - `inception_v4`: `features.0…21` — stem convs `0/1/2` (3×3/2, 3×3, 3×3 pad 1), `3` Mixed3a (max pool ‖ 3×3/2
//!   `conv`), `4` Mixed4a (`branch0.0/1`, `branch1.0…3` with 1×7/7×1), `5` Mixed5a (3×3/2 `conv` ‖ max pool),
//!   `6–9` InceptionA, `10` ReductionA, `11–17` InceptionB, `18` ReductionB, `19–21` InceptionC (whose branches 1
//!   and 2 end in a split into a 1×3 and a 3×1 conv: `branch1_0`, `branch1_1a/1b`, `branch2_0…2_2`,
//!   `branch2_3a/3b`). A single-conv branch is the block itself (`branch0.conv`); a sequence is indexed, the pool
//!   counted (`branch3.1.conv` after the average pool at `branch3.0`). Global average pool `global_pool`, then
//!   `last_linear` (1536 → classes).
//! - `inception_resnet_v2`: stem `conv2d_1a/2a/2b`, `maxpool_3a`, `conv2d_3b/4a`, `maxpool_5a`, `mixed_5b`; then
//!   `repeat.0…9` (Block35, scale 0.17), `mixed_6a`, `repeat_1.0…19` (Block17, 0.10), `mixed_7a`, `repeat_2.0…8`
//!   (Block8, 0.20), `block8` (scale 1, no ReLU), `conv2d_7b` (1×1 to 1536), `global_pool`, `classif`. A residual
//!   block concatenates its branches, maps them back with a 1×1 conv `conv2d` (with bias, no BatchNorm), and adds
//!   `scale ×` that to its input before the ReLU. The scales are code constants, not state-dict entries.
//!
//! Both take at least 75×75 inputs (five unpadded 3×3/2 convs or max pools bring that to 1×1; trained at 299×299).
//! timm defines no initialisation of its own for these two: PyTorch's defaults (convs and linears U(±1/√fan_in),
//! BatchNorm 1/0). `forward_features` returns the last map; `forward_head` pools, flattens and classifies
//! (timm's `drop_rate` is 0).
use tch::{Device, Kind, Tensor};

use super::image_channels;
use super::{classifier_head_methods, forward_head_of_features, Model, ModelConfig, ModelEntry};
use crate::error::Result;
use crate::nn::{
    trace, AdaptiveAvgPool2d, BatchNorm, ClassifierHead, Conv2d, ConvConfig, Dropout, Linear, Module, Path, Pool2d,
    PoolKind,
};

/// How a family initialises its convs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Init {
    /// PyTorch's default: weight and bias U(±1/√fan_in).
    Torch,
    /// pytorchcv's `kaiming_uniform_(weight)` (bound √(6/fan_in)), bias 0.
    KaimingUniform,
}

/// How a family builds its conv blocks: BatchNorm eps, conv bias, initialisation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConvStyle {
    pub(crate) eps: f64,
    pub(crate) bias: bool,
    pub(crate) init: Init,
}

/// timm's `ConvNormAct` of these models.
const TIMM: ConvStyle = ConvStyle { eps: 1e-3, bias: false, init: Init::Torch };

/// A conv's shape: channels, kernel (h, w), stride, padding (h, w).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cv {
    c_in: i64,
    c_out: i64,
    kernel: [i64; 2],
    stride: i64,
    padding: [i64; 2],
}

/// A 1×1 conv.
pub(crate) fn k1(c_in: i64, c_out: i64) -> Cv {
    Cv { c_in, c_out, kernel: [1, 1], stride: 1, padding: [0, 0] }
}

/// A square `kernel` with `stride` and `padding` on every side.
pub(crate) fn sq(c_in: i64, c_out: i64, kernel: i64, stride: i64, padding: i64) -> Cv {
    Cv { c_in, c_out, kernel: [kernel, kernel], stride, padding: [padding, padding] }
}

/// A stride-1 conv of a rectangular kernel (1×7, 7×1, 1×3, 3×1) padded to keep the size.
pub(crate) fn rect(c_in: i64, c_out: i64, kernel: [i64; 2]) -> Cv {
    Cv { c_in, c_out, kernel, stride: 1, padding: [kernel[0] / 2, kernel[1] / 2] }
}

/// `conv` → `bn` → ReLU: timm's `ConvNormAct`, pytorchcv's `ConvBlock`. Kernels may be rectangular.
#[derive(Debug)]
pub(crate) struct ConvBnAct {
    name: String,
    weight: Tensor,
    bias: Option<Tensor>,
    stride: i64,
    padding: [i64; 2],
    bn: BatchNorm,
}

impl ConvBnAct {
    pub(crate) fn new(p: &Path, cv: Cv, style: ConvStyle) -> Self {
        let cp = p.sub("conv");
        let shape = [cv.c_out, cv.c_in, cv.kernel[0], cv.kernel[1]];
        let fan_in = (cv.c_in * cv.kernel[0] * cv.kernel[1]) as f64;
        let opts = (Kind::Float, Device::Cpu);
        let (bound, bias_bound) = match style.init {
            Init::Torch => (1.0 / fan_in.sqrt(), 1.0 / fan_in.sqrt()),
            Init::KaimingUniform => ((6.0 / fan_in).sqrt(), 0.0),
        };
        let weight = cp.param("weight", Tensor::empty(shape, opts).uniform_(-bound, bound));
        let bias =
            style.bias.then(|| cp.param("bias", Tensor::empty([cv.c_out], opts).uniform_(-bias_bound, bias_bound)));
        let mut bn = BatchNorm::new2d(&p.sub("bn"), cv.c_out);
        bn.eps = style.eps;
        ConvBnAct { name: cp.name().to_string(), weight, bias, stride: cv.stride, padding: cv.padding, bn }
    }
}

impl Module for ConvBnAct {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let ys = xs.conv2d(&self.weight, self.bias.as_ref(), [self.stride], self.padding, [1], 1);
        let n = self.weight.numel() + self.bias.as_ref().map_or(0, |b| b.numel());
        trace::record(&self.name, "Conv2d", &ys, n as i64);
        self.bn.forward_t(&ys, train).relu()
    }
}

/// Conv blocks in a chain, the i-th (from 0) at `p.sub(name(i))`.
pub(crate) fn chain(p: &Path, cvs: &[Cv], style: ConvStyle, name: impl Fn(usize) -> String) -> Vec<ConvBnAct> {
    cvs.iter().enumerate().map(|(i, &cv)| ConvBnAct::new(&p.sub(name(i)), cv, style)).collect()
}

/// The 3×3 average pool of timm's Inception branches: stride 1, padding 1 not counted in the average.
#[derive(Debug)]
struct AvgPoolExcludePad {
    name: String,
}

impl Module for AvgPoolExcludePad {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Tensor {
        let ys = xs.avg_pool2d([3, 3], [1, 1], [1, 1], false, false, None);
        trace::record(&self.name, "AvgPool2d", &ys, 0);
        ys
    }
}

/// One branch of an Inception block: an optional pool, a chain of conv blocks, and optionally a split into two
/// conv blocks whose outputs are concatenated (Inception v4's InceptionC).
#[derive(Debug)]
pub(crate) struct Branch {
    pre: Option<Box<dyn Module>>,
    convs: Vec<ConvBnAct>,
    split: Option<(ConvBnAct, ConvBnAct)>,
}

impl Branch {
    pub(crate) fn convs(convs: Vec<ConvBnAct>) -> Self {
        Branch { pre: None, convs, split: None }
    }
    pub(crate) fn pooled(pool: impl Module + 'static, convs: Vec<ConvBnAct>) -> Self {
        Branch { pre: Some(Box::new(pool)), convs, split: None }
    }
    fn split(convs: Vec<ConvBnAct>, a: ConvBnAct, b: ConvBnAct) -> Self {
        Branch { pre: None, convs, split: Some((a, b)) }
    }
}

impl Module for Branch {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let ys = match &self.pre {
            Some(pool) => pool.forward_t(xs, train),
            None => xs.shallow_clone(),
        };
        let ys = self.convs.iter().fold(ys, |ys, conv| conv.forward_t(&ys, train));
        match &self.split {
            None => ys,
            Some((a, b)) => Tensor::cat(&[a.forward_t(&ys, train), b.forward_t(&ys, train)], 1),
        }
    }
}

fn concat(branches: &[Branch], xs: &Tensor, train: bool) -> Tensor {
    Tensor::cat(&branches.iter().map(|b| b.forward_t(xs, train)).collect::<Vec<_>>(), 1)
}

/// An Inception block: its branches concatenated.
#[derive(Debug)]
pub(crate) struct Concat(pub(crate) Vec<Branch>);

impl Module for Concat {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        concat(&self.0, xs, train)
    }
}

/// An Inception-ResNet block: relu?(x + scale · conv1x1(concat(branches))), the 1×1 conv with a bias and PyTorch's
/// default initialisation.
#[derive(Debug)]
pub(crate) struct Residual {
    branches: Vec<Branch>,
    conv: Conv2d,
    scale: f64,
    relu: bool,
}

impl Residual {
    /// `conv` at `conv_path`, from the branches' `c_cat` channels back to `channels`.
    pub(crate) fn new(
        branches: Vec<Branch>,
        conv_path: &Path,
        c_cat: i64,
        channels: i64,
        scale: f64,
        relu: bool,
    ) -> Self {
        let conv = Conv2d::new(conv_path, c_cat, channels, 1, ConvConfig::default());
        Residual { branches, conv, scale, relu }
    }
}

impl Module for Residual {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let ys = self.conv.forward_t(&concat(&self.branches, xs, train), train) * self.scale + xs;
        if self.relu {
            ys.relu()
        } else {
            ys
        }
    }
}

/// pytorchcv's `InceptHead` before its classifier (Inception-ResNet v1): `dropout` → `fc1` (no bias, to 512) →
/// BatchNorm1d `bn`.
#[derive(Debug)]
pub(crate) struct Embedding {
    pub(crate) dropout: Dropout,
    pub(crate) fc1: Linear,
    pub(crate) bn: BatchNorm,
}

/// An Inception network: a list of feature blocks, global average pooling, an optional embedding, the classifier.
#[derive(Debug)]
pub struct InceptionNet {
    features: Vec<Box<dyn Module>>,
    pool: AdaptiveAvgPool2d,
    embedding: Option<Embedding>,
    classifier: ClassifierHead,
}

impl InceptionNet {
    /// `pool_path` names the global pool (it has no parameters), `classifier_path` the final Linear layer of
    /// `c_last` inputs.
    pub(crate) fn new(
        features: Vec<Box<dyn Module>>,
        pool_path: &Path,
        embedding: Option<Embedding>,
        classifier_path: &Path,
        c_last: i64,
        num_outputs: i64,
    ) -> Self {
        InceptionNet {
            features,
            pool: AdaptiveAvgPool2d::new(pool_path, [1, 1]),
            embedding,
            classifier: ClassifierHead::linear(classifier_path, c_last, num_outputs),
        }
    }
}

forward_head_of_features!(InceptionNet);

impl Model for InceptionNet {
    fn forward_features(&self, xs: &Tensor, train: bool) -> Tensor {
        self.features.iter().fold(xs.shallow_clone(), |ys, block| block.forward_t(&ys, train))
    }
    fn forward_head(&self, features: &Tensor, train: bool) -> Tensor {
        let mut ys = self.pool.forward_t(features, train).flatten(1, -1);
        if let Some(e) = &self.embedding {
            ys = e.bn.forward_t(&e.fc1.forward_t(&e.dropout.forward_t(&ys, train), train), train);
        }
        self.classifier.forward_t(&ys, train)
    }
    classifier_head_methods!(classifier);
}

fn max_pool(p: &Path) -> Pool2d {
    Pool2d::new(p, PoolKind::Max, 3, 2, 0)
}

fn avg_pool(p: &Path) -> AvgPoolExcludePad {
    AvgPoolExcludePad { name: p.name().to_string() }
}

/// A single-conv branch: the block at `p`.
fn one(p: &Path, cv: Cv) -> Vec<ConvBnAct> {
    vec![ConvBnAct::new(p, cv, TIMM)]
}

/// An `nn.Sequential` of conv blocks at `p.0`, `p.1`, … (from `p.first` where a pool comes first).
fn seq(p: &Path, first: usize, cvs: &[Cv]) -> Vec<ConvBnAct> {
    chain(p, cvs, TIMM, |i| (first + i).to_string())
}

/// The three stem convs every timm Inception starts with: 3×3/2, 3×3, 3×3 pad 1 (to 64 channels).
fn stem(paths: [Path; 3], in_channels: i64) -> Vec<Box<dyn Module>> {
    let cvs = [sq(in_channels, 32, 3, 2, 0), sq(32, 32, 3, 1, 0), sq(32, 64, 3, 1, 1)];
    paths.iter().zip(cvs).map(|(p, cv)| Box::new(ConvBnAct::new(p, cv, TIMM)) as Box<dyn Module>).collect()
}

// Inception v4's blocks.

fn mixed3a(p: &Path) -> Concat {
    Concat(vec![
        Branch::pooled(max_pool(&p.sub("maxpool")), vec![]),
        Branch::convs(one(&p.sub("conv"), sq(64, 96, 3, 2, 0))),
    ])
}

fn mixed4a(p: &Path) -> Concat {
    Concat(vec![
        Branch::convs(seq(&p.sub("branch0"), 0, &[k1(160, 64), sq(64, 96, 3, 1, 0)])),
        Branch::convs(seq(
            &p.sub("branch1"),
            0,
            &[k1(160, 64), rect(64, 64, [1, 7]), rect(64, 64, [7, 1]), sq(64, 96, 3, 1, 0)],
        )),
    ])
}

fn mixed5a(p: &Path) -> Concat {
    Concat(vec![
        Branch::convs(one(&p.sub("conv"), sq(192, 192, 3, 2, 0))),
        Branch::pooled(max_pool(&p.sub("maxpool")), vec![]),
    ])
}

/// The average-pool branch: `p.0` the pool, `p.1` a 1×1 conv block.
fn pool_branch(p: &Path, c_in: i64, c_out: i64) -> Branch {
    Branch::pooled(avg_pool(&p.sub(0)), seq(p, 1, &[k1(c_in, c_out)]))
}

fn inception_a(p: &Path) -> Concat {
    Concat(vec![
        Branch::convs(one(&p.sub("branch0"), k1(384, 96))),
        Branch::convs(seq(&p.sub("branch1"), 0, &[k1(384, 64), sq(64, 96, 3, 1, 1)])),
        Branch::convs(seq(&p.sub("branch2"), 0, &[k1(384, 64), sq(64, 96, 3, 1, 1), sq(96, 96, 3, 1, 1)])),
        pool_branch(&p.sub("branch3"), 384, 96),
    ])
}

fn reduction_a(p: &Path) -> Concat {
    Concat(vec![
        Branch::convs(one(&p.sub("branch0"), sq(384, 384, 3, 2, 0))),
        Branch::convs(seq(&p.sub("branch1"), 0, &[k1(384, 192), sq(192, 224, 3, 1, 1), sq(224, 256, 3, 2, 0)])),
        Branch::pooled(max_pool(&p.sub("branch2")), vec![]),
    ])
}

fn inception_b(p: &Path) -> Concat {
    Concat(vec![
        Branch::convs(one(&p.sub("branch0"), k1(1024, 384))),
        Branch::convs(seq(&p.sub("branch1"), 0, &[k1(1024, 192), rect(192, 224, [1, 7]), rect(224, 256, [7, 1])])),
        Branch::convs(seq(
            &p.sub("branch2"),
            0,
            &[
                k1(1024, 192),
                rect(192, 192, [7, 1]),
                rect(192, 224, [1, 7]),
                rect(224, 224, [7, 1]),
                rect(224, 256, [1, 7]),
            ],
        )),
        pool_branch(&p.sub("branch3"), 1024, 128),
    ])
}

fn reduction_b(p: &Path) -> Concat {
    Concat(vec![
        Branch::convs(seq(&p.sub("branch0"), 0, &[k1(1024, 192), sq(192, 192, 3, 2, 0)])),
        Branch::convs(seq(
            &p.sub("branch1"),
            0,
            &[k1(1024, 256), rect(256, 256, [1, 7]), rect(256, 320, [7, 1]), sq(320, 320, 3, 2, 0)],
        )),
        Branch::pooled(max_pool(&p.sub("branch2")), vec![]),
    ])
}

fn inception_c(p: &Path) -> Concat {
    let c = |name: &str, cv| ConvBnAct::new(&p.sub(name), cv, TIMM);
    Concat(vec![
        Branch::convs(one(&p.sub("branch0"), k1(1536, 256))),
        Branch::split(
            vec![c("branch1_0", k1(1536, 384))],
            c("branch1_1a", rect(384, 256, [1, 3])),
            c("branch1_1b", rect(384, 256, [3, 1])),
        ),
        Branch::split(
            vec![
                c("branch2_0", k1(1536, 384)),
                c("branch2_1", rect(384, 448, [3, 1])),
                c("branch2_2", rect(448, 512, [1, 3])),
            ],
            c("branch2_3a", rect(512, 256, [1, 3])),
            c("branch2_3b", rect(512, 256, [3, 1])),
        ),
        pool_branch(&p.sub("branch3"), 1536, 256),
    ])
}

/// timm's `inception_v4`.
pub fn inception_v4(p: &Path, in_channels: i64, num_outputs: i64) -> InceptionNet {
    let f = p.sub("features");
    let mut features = stem([f.sub(0), f.sub(1), f.sub(2)], in_channels);
    features.push(Box::new(mixed3a(&f.sub(3))));
    features.push(Box::new(mixed4a(&f.sub(4))));
    features.push(Box::new(mixed5a(&f.sub(5))));
    for i in 6..22 {
        let b = f.sub(i);
        features.push(Box::new(match i {
            6..=9 => inception_a(&b),
            10 => reduction_a(&b),
            11..=17 => inception_b(&b),
            18 => reduction_b(&b),
            _ => inception_c(&b),
        }));
    }
    InceptionNet::new(features, &p.sub("global_pool"), None, &p.sub("last_linear"), 1536, num_outputs)
}

// Inception-ResNet v2's blocks.

fn mixed_5b(p: &Path) -> Concat {
    Concat(vec![
        Branch::convs(one(&p.sub("branch0"), k1(192, 96))),
        Branch::convs(seq(&p.sub("branch1"), 0, &[k1(192, 48), sq(48, 64, 5, 1, 2)])),
        Branch::convs(seq(&p.sub("branch2"), 0, &[k1(192, 64), sq(64, 96, 3, 1, 1), sq(96, 96, 3, 1, 1)])),
        pool_branch(&p.sub("branch3"), 192, 64),
    ])
}

fn block35(p: &Path) -> Residual {
    let branches = vec![
        Branch::convs(one(&p.sub("branch0"), k1(320, 32))),
        Branch::convs(seq(&p.sub("branch1"), 0, &[k1(320, 32), sq(32, 32, 3, 1, 1)])),
        Branch::convs(seq(&p.sub("branch2"), 0, &[k1(320, 32), sq(32, 48, 3, 1, 1), sq(48, 64, 3, 1, 1)])),
    ];
    Residual::new(branches, &p.sub("conv2d"), 128, 320, 0.17, true)
}

fn mixed_6a(p: &Path) -> Concat {
    Concat(vec![
        Branch::convs(one(&p.sub("branch0"), sq(320, 384, 3, 2, 0))),
        Branch::convs(seq(&p.sub("branch1"), 0, &[k1(320, 256), sq(256, 256, 3, 1, 1), sq(256, 384, 3, 2, 0)])),
        Branch::pooled(max_pool(&p.sub("branch2")), vec![]),
    ])
}

fn block17(p: &Path) -> Residual {
    let branches = vec![
        Branch::convs(one(&p.sub("branch0"), k1(1088, 192))),
        Branch::convs(seq(&p.sub("branch1"), 0, &[k1(1088, 128), rect(128, 160, [1, 7]), rect(160, 192, [7, 1])])),
    ];
    Residual::new(branches, &p.sub("conv2d"), 384, 1088, 0.10, true)
}

fn mixed_7a(p: &Path) -> Concat {
    Concat(vec![
        Branch::convs(seq(&p.sub("branch0"), 0, &[k1(1088, 256), sq(256, 384, 3, 2, 0)])),
        Branch::convs(seq(&p.sub("branch1"), 0, &[k1(1088, 256), sq(256, 288, 3, 2, 0)])),
        Branch::convs(seq(&p.sub("branch2"), 0, &[k1(1088, 256), sq(256, 288, 3, 1, 1), sq(288, 320, 3, 2, 0)])),
        Branch::pooled(max_pool(&p.sub("branch3")), vec![]),
    ])
}

fn block8(p: &Path, scale: f64, relu: bool) -> Residual {
    let branches = vec![
        Branch::convs(one(&p.sub("branch0"), k1(2080, 192))),
        Branch::convs(seq(&p.sub("branch1"), 0, &[k1(2080, 192), rect(192, 224, [1, 3]), rect(224, 256, [3, 1])])),
    ];
    Residual::new(branches, &p.sub("conv2d"), 448, 2080, scale, relu)
}

/// timm's `inception_resnet_v2`.
pub fn inception_resnet_v2(p: &Path, in_channels: i64, num_outputs: i64) -> InceptionNet {
    let mut features = stem([p.sub("conv2d_1a"), p.sub("conv2d_2a"), p.sub("conv2d_2b")], in_channels);
    let mut push = |m: Box<dyn Module>| features.push(m);
    push(Box::new(max_pool(&p.sub("maxpool_3a"))));
    push(Box::new(ConvBnAct::new(&p.sub("conv2d_3b"), k1(64, 80), TIMM)));
    push(Box::new(ConvBnAct::new(&p.sub("conv2d_4a"), sq(80, 192, 3, 1, 0), TIMM)));
    push(Box::new(max_pool(&p.sub("maxpool_5a"))));
    push(Box::new(mixed_5b(&p.sub("mixed_5b"))));
    (0..10).for_each(|i| push(Box::new(block35(&p.sub("repeat").sub(i)))));
    push(Box::new(mixed_6a(&p.sub("mixed_6a"))));
    (0..20).for_each(|i| push(Box::new(block17(&p.sub("repeat_1").sub(i)))));
    push(Box::new(mixed_7a(&p.sub("mixed_7a"))));
    (0..9).for_each(|i| push(Box::new(block8(&p.sub("repeat_2").sub(i), 0.20, true))));
    push(Box::new(block8(&p.sub("block8"), 1.0, false)));
    push(Box::new(ConvBnAct::new(&p.sub("conv2d_7b"), k1(2080, 1536), TIMM)));
    InceptionNet::new(features, &p.sub("global_pool"), None, &p.sub("classif"), 1536, num_outputs)
}

/// The smallest input side of timm's Inception v4 / Inception-ResNet v2 and pytorchcv's Inception-ResNet v1.
pub(crate) const MIN_SIDE: i64 = 75;

pub(crate) const MIN_WHY: &str = " (its five unpadded 3×3/2 convs and max pools leave a 1×1 map there)";

fn build_v4(p: &Path, c: &ModelConfig) -> Result<Box<dyn Model>> {
    let in_channels = image_channels(c, "inception_v4", MIN_SIDE, MIN_WHY)?;
    Ok(Box::new(inception_v4(p, in_channels, c.num_outputs)))
}

fn build_irv2(p: &Path, c: &ModelConfig) -> Result<Box<dyn Model>> {
    let in_channels = image_channels(c, "inception_resnet_v2", MIN_SIDE, MIN_WHY)?;
    Ok(Box::new(inception_resnet_v2(p, in_channels, c.num_outputs)))
}

pub fn entries() -> Vec<ModelEntry> {
    vec![
        ModelEntry {
            name: "inception_v4",
            family: "inception",
            description: "timm Inception v4 (stem, 4 InceptionA, 7 InceptionB, 3 InceptionC)",
            // The smallest input (trained at 299×299).
            default_input: &[3, 75, 75],
            default_classes: 1000,
            first_layer: "features.0.conv",
            classifier: "last_linear",
            options: &[],
            build: build_v4,
        },
        ModelEntry {
            name: "inception_resnet_v2",
            family: "inception_resnet",
            description: "timm Inception-ResNet v2 (10 Block35, 20 Block17, 10 Block8 with scaled residuals)",
            default_input: &[3, 75, 75],
            default_classes: 1000,
            first_layer: "conv2d_1a.conv",
            classifier: "classif",
            options: &[],
            build: build_irv2,
        },
    ]
}
