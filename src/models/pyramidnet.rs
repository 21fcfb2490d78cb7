//! Deep Pyramidal Residual Networks (Han, Kim & Kim 2017) as pytorchcv builds them (`pytorchcv/models/pyramidnet.py`
//! for ImageNet, `pyramidnet_cifar.py` for CIFAR): the width grows by α / (number of units) at every unit instead
//! of doubling at each stage.
//!
//! Widths: unit j (from 1) of a stage has `round(last + j · α / units)` channels, where `last` is the unrounded
//! width of the previous stage's last unit (16 for CIFAR, 64 for ImageNet, before the first), computed in f64 and
//! rounded half to even as Python's `round` (a growth below 1, as 110-a48's 48/54, repeats widths: 20, 20);
//! bottleneck widths are then ×4.
//!
//! `features.init_block`: for CIFAR a 3×3 `conv` + `bn` without ReLU; for ImageNet a 7×7/2 `conv` + `bn` + ReLU +
//! 3×3/2 max `pool`. Then stages `stage1…` of units `unit1…` (stride 2 on the first unit of every stage but the
//! first). A unit (`PyrUnit`) is a pre-activation `body` then `bn`, added to the identity without a final ReLU:
//! basic `body.conv1` (`bn` → 3×3 `conv` with the stride, no ReLU) and `body.conv2` (`bn` → ReLU → 3×3 `conv`);
//! bottleneck `body.conv1` (`bn` → 1×1, no ReLU), `body.conv2` (`bn` → ReLU → 3×3 with the stride), `body.conv3`
//! (`bn` → ReLU → 1×1), width out/4. The identity is average-pooled 2×2 with the stride and `ceil_mode=True` (so
//! odd maps keep their last row and column, averaged over what lies inside) where the unit strides, and
//! zero-padded with the missing channels at the end: no shortcut parameters. Then `post_activ` (`bn` + ReLU),
//! `final_pool` and the classifier `output`.
//!
//! CIFAR: basic units (depth − 2) / 6 per stage, bottleneck (depth − 2) / 9, three stages; `final_pool` is
//! pytorchcv's `AvgPool2d(8)`, so inputs are 29–32 per side (the last map must be 8×8). ImageNet
//! (`pyramidnet101_a360`): bottleneck units 3-4-23-3; pytorchcv's `final_pool` is `AvgPool2d(7)` (224×224 only),
//! the global average there, which we use, so any size works. Initialisation as pytorchcv: convs kaiming-uniform
//! (gain √2), BatchNorm 1/0, `output` PyTorch's default.
use tch::Tensor;

use super::{classifier_head_methods, forward_head_of_features, Model, ModelConfig, ModelEntry};
use crate::error::{Error, Result};
use crate::nn::conv_block::{cv_conv, ConvBlock};
use crate::nn::{AdaptiveAvgPool2d, BatchNorm, ClassifierHead, Conv2d, ConvConfig, Module, Path, Pool2d, PoolKind};

/// A PyramidNet recipe.
#[derive(Debug, Clone, PartialEq)]
pub struct PyramidNetConfig {
    /// Units per stage.
    pub layers: Vec<usize>,
    pub alpha: f64,
    pub bottleneck: bool,
    /// CIFAR (3×3 stem, 16 channels, `AvgPool2d(8)`) or ImageNet (7×7/2 stem + max pool, 64 channels).
    pub cifar: bool,
}

impl PyramidNetConfig {
    /// pytorchcv's CIFAR PyramidNet of `depth` layers.
    pub fn cifar(depth: usize, alpha: f64, bottleneck: bool) -> Self {
        let per_stage = if bottleneck { (depth - 2) / 9 } else { (depth - 2) / 6 };
        PyramidNetConfig { layers: vec![per_stage; 3], alpha, bottleneck, cifar: true }
    }
    /// pytorchcv's ImageNet PyramidNet-101.
    pub fn imagenet101(alpha: f64) -> Self {
        PyramidNetConfig { layers: vec![3, 4, 23, 3], alpha, bottleneck: true, cifar: false }
    }
    fn init_channels(&self) -> i64 {
        if self.cifar {
            16
        } else {
            64
        }
    }
    /// Each unit's output channels, stage by stage, as pytorchcv computes them.
    pub fn channels(&self) -> Vec<Vec<i64>> {
        let units: usize = self.layers.iter().sum();
        let growth = self.alpha / units as f64;
        let mut last = self.init_channels() as f64;
        let mut channels = vec![];
        for &n in &self.layers {
            let stage: Vec<f64> = (0..n).map(|i| (i + 1) as f64 * growth + last).collect();
            last = *stage.last().expect("a stage has units");
            let expansion = if self.bottleneck { 4 } else { 1 };
            channels.push(stage.iter().map(|c| c.round_ties_even() as i64 * expansion).collect());
        }
        channels
    }
}

/// pytorchcv's `PreConvBlock`: `bn` → [ReLU] → `conv` (no bias).
#[derive(Debug)]
struct PreConv {
    bn: BatchNorm,
    conv: Conv2d,
    relu: bool,
}

impl PreConv {
    fn new(p: &Path, c_in: i64, c_out: i64, kernel: i64, stride: i64, relu: bool) -> Self {
        let bn = BatchNorm::new2d(&p.sub("bn"), c_in);
        let config = ConvConfig { stride, padding: kernel / 2, bias: false, ..Default::default() };
        PreConv { bn, conv: cv_conv(&p.sub("conv"), c_in, c_out, kernel, config), relu }
    }
}

impl Module for PreConv {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let ys = self.bn.forward_t(xs, train);
        let ys = if self.relu { ys.relu() } else { ys };
        self.conv.forward_t(&ys, train)
    }
}

/// pytorchcv's `PyrUnit`: `body` + `bn`, plus the pooled, zero-padded identity.
#[derive(Debug)]
struct PyrUnit {
    body: Vec<PreConv>,
    bn: BatchNorm,
    identity_pool: Option<Pool2d>,
    pad: i64,
}

impl PyrUnit {
    fn new(p: &Path, c_in: i64, c_out: i64, stride: i64, bottleneck: bool) -> Self {
        let b = p.sub("body");
        // (c_in, c_out, kernel, stride, relu) per conv.
        let specs = if bottleneck {
            let mid = c_out / 4;
            vec![(c_in, mid, 1, 1, false), (mid, mid, 3, stride, true), (mid, c_out, 1, 1, true)]
        } else {
            vec![(c_in, c_out, 3, stride, false), (c_out, c_out, 3, 1, true)]
        };
        let body = specs
            .into_iter()
            .enumerate()
            .map(|(i, (ci, co, k, s, relu))| PreConv::new(&b.sub(format!("conv{}", i + 1)), ci, co, k, s, relu))
            .collect();
        let bn = BatchNorm::new2d(&p.sub("bn"), c_out);
        let identity_pool =
            (stride != 1).then(|| Pool2d::new(&p.sub("identity_pool"), PoolKind::Avg, 2, stride, 0).with_ceil_mode());
        PyrUnit { body, bn, identity_pool, pad: c_out - c_in }
    }
}

impl Module for PyrUnit {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let ys = self.body.iter().fold(xs.shallow_clone(), |ys, conv| conv.forward_t(&ys, train));
        let ys = self.bn.forward_t(&ys, train);
        let identity = match &self.identity_pool {
            Some(pool) => pool.forward_t(xs, train),
            None => xs.shallow_clone(),
        };
        let identity = if self.pad > 0 { identity.constant_pad_nd([0, 0, 0, 0, 0, self.pad]) } else { identity };
        ys + identity
    }
}

/// The final pool: pytorchcv's `AvgPool2d(8)` for CIFAR, the global average for ImageNet.
#[derive(Debug)]
enum FinalPool {
    Fixed(Pool2d),
    Global(AdaptiveAvgPool2d),
}

/// pytorchcv's `PyramidNet` and `CIFARPyramidNet`.
#[derive(Debug)]
pub struct PyramidNet {
    init_block: ConvBlock,
    init_pool: Option<Pool2d>,
    units: Vec<PyrUnit>,
    post_bn: BatchNorm,
    final_pool: FinalPool,
    output: ClassifierHead,
}

impl PyramidNet {
    pub fn new(p: &Path, config: &PyramidNetConfig, in_channels: i64, num_outputs: i64) -> Self {
        let f = p.sub("features");
        let init = f.sub("init_block");
        let mut c_in = config.init_channels();
        let (init_block, init_pool) = if config.cifar {
            (ConvBlock::plain(&init, in_channels, c_in, 3, 1, false), None)
        } else {
            let pool = Pool2d::new(&init.sub("pool"), PoolKind::Max, 3, 2, 1);
            (ConvBlock::plain(&init, in_channels, c_in, 7, 2, true), Some(pool))
        };
        let mut units = vec![];
        for (i, stage) in config.channels().into_iter().enumerate() {
            let sp = f.sub(format!("stage{}", i + 1));
            for (j, c_out) in stage.into_iter().enumerate() {
                let stride = if i > 0 && j == 0 { 2 } else { 1 };
                units.push(PyrUnit::new(&sp.sub(format!("unit{}", j + 1)), c_in, c_out, stride, config.bottleneck));
                c_in = c_out;
            }
        }
        let post_bn = BatchNorm::new2d(&f.sub("post_activ").sub("bn"), c_in);
        let final_pool = if config.cifar {
            FinalPool::Fixed(Pool2d::new(&f.sub("final_pool"), PoolKind::Avg, 8, 1, 0))
        } else {
            FinalPool::Global(AdaptiveAvgPool2d::new(&f.sub("final_pool"), [1, 1]))
        };
        let output = ClassifierHead::linear(&p.sub("output"), c_in, num_outputs);
        PyramidNet { init_block, init_pool, units, post_bn, final_pool, output }
    }
}

forward_head_of_features!(PyramidNet);

impl Model for PyramidNet {
    fn forward_features(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut ys = self.init_block.forward_t(xs, train);
        if let Some(pool) = &self.init_pool {
            ys = pool.forward_t(&ys, train);
        }
        let ys = self.units.iter().fold(ys, |ys, unit| unit.forward_t(&ys, train));
        self.post_bn.forward_t(&ys, train).relu()
    }
    fn forward_head(&self, features: &Tensor, train: bool) -> Tensor {
        let pooled = match &self.final_pool {
            FinalPool::Fixed(pool) => pool.forward_t(features, train),
            FinalPool::Global(pool) => pool.forward_t(features, train),
        };
        self.output.forward_t(&pooled.flatten(1, -1), train)
    }
    classifier_head_methods!(output);
}

fn build(p: &Path, c: &ModelConfig, name: &str, config: PyramidNetConfig) -> Result<Box<dyn Model>> {
    let in_channels = match (c.input_shape.as_slice(), config.cifar) {
        ([ch, h, w], true) if *ch > 0 && (29..=32).contains(h) && (29..=32).contains(w) => *ch,
        ([ch, h, w], false) if *ch > 0 && *h > 0 && *w > 0 => *ch,
        (shape, true) => {
            return Err(Error::config(format!(
                "{name} takes images [C, H, W] of 29 to 32 pixels per side (its 8×8 average pool must see an 8×8 \
                 map, as in pytorchcv), got {shape:?}"
            )))
        }
        (shape, false) => return Err(Error::config(format!("{name} takes images [C, H, W], got {shape:?}"))),
    };
    Ok(Box::new(PyramidNet::new(p, &config, in_channels, c.num_outputs)))
}

macro_rules! cifar {
    ($name:literal, $depth:literal, $alpha:literal, $bottleneck:literal, $description:literal) => {
        ModelEntry {
            name: $name,
            family: "pyramidnet",
            description: $description,
            // The smallest size its 8×8 final pool allows (trained at 32×32).
            default_input: &[3, 29, 29],
            default_classes: 10,
            first_layer: "features.init_block.conv",
            classifier: "output",
            options: &[],
            build: |p, c| build(p, c, $name, PyramidNetConfig::cifar($depth, $alpha, $bottleneck)),
        }
    };
}

pub fn entries() -> Vec<ModelEntry> {
    vec![
        cifar!("pyramidnet110_a48_cifar10", 110, 48.0, false, "pytorchcv CIFAR PyramidNet-110, alpha 48 (basic units)"),
        cifar!(
            "pyramidnet110_a270_cifar10",
            110,
            270.0,
            false,
            "pytorchcv CIFAR PyramidNet-110, alpha 270 (basic units)"
        ),
        cifar!(
            "pyramidnet272_a200_bn_cifar10",
            272,
            200.0,
            true,
            "pytorchcv CIFAR PyramidNet-272, alpha 200 (bottleneck units)"
        ),
        ModelEntry {
            name: "pyramidnet101_a360",
            family: "pyramidnet",
            description: "pytorchcv ImageNet PyramidNet-101, alpha 360 (bottleneck units 3-4-23-3)",
            // Small, for the registry tests: any size works (trained at 224×224).
            default_input: &[3, 32, 32],
            default_classes: 1000,
            first_layer: "features.init_block.conv",
            classifier: "output",
            options: &[],
            build: |p, c| build(p, c, "pyramidnet101_a360", PyramidNetConfig::imagenet101(360.0)),
        },
    ]
}
