//! pytorchcv's Wide ResNets for CIFAR (Zagoruyko & Komodakis 2016), `wrn{depth}_{width}_cifar10`: `features` =
//! `init_block` (conv 16@3×3, no bias), three stages of (depth − 4) / 6 pre-activation basic units
//! (`body.conv1`/`body.conv2` = BatchNorm, ReLU, conv 3×3; `identity_conv` 1×1 on the pre-activation where the
//! shape changes) of 16·w, 32·w, 64·w channels (stages 2 and 3 stride 2), `post_activ` (BatchNorm + ReLU) and an
//! 8×8 average pool; `output` = Linear classes. Inputs of 29–32 per side (the map must pool to 1×1, as in
//! pytorchcv). Convs are initialised as pytorchcv does (Kaiming uniform).
use tch::Tensor;

use super::{classifier_head_methods, forward_head_of_features, Model, ModelConfig, ModelEntry};
use crate::error::{Error, Result};
use crate::nn::conv_block::cv_conv;
use crate::nn::{BatchNorm, ClassifierHead, Conv2d, ConvConfig, Module, Path};

fn conv(p: &Path, c_in: i64, c_out: i64, kernel: i64, stride: i64) -> Conv2d {
    cv_conv(p, c_in, c_out, kernel, ConvConfig { stride, padding: kernel / 2, bias: false, ..Default::default() })
}

/// pytorchcv's `PreResUnit` (basic, `conv1_stride=False`).
#[derive(Debug)]
struct PreResUnit {
    bn1: BatchNorm,
    conv1: Conv2d,
    bn2: BatchNorm,
    conv2: Conv2d,
    identity_conv: Option<Conv2d>,
}

impl PreResUnit {
    fn new(p: &Path, c_in: i64, c_out: i64, stride: i64) -> Self {
        let b = p.sub("body");
        let bn1 = BatchNorm::new2d(&b.sub("conv1").sub("bn"), c_in);
        let conv1 = conv(&b.sub("conv1").sub("conv"), c_in, c_out, 3, stride);
        let bn2 = BatchNorm::new2d(&b.sub("conv2").sub("bn"), c_out);
        let conv2 = conv(&b.sub("conv2").sub("conv"), c_out, c_out, 3, 1);
        let identity_conv =
            (c_in != c_out || stride != 1).then(|| conv(&p.sub("identity_conv"), c_in, c_out, 1, stride));
        PreResUnit { bn1, conv1, bn2, conv2, identity_conv }
    }
}

impl Module for PreResUnit {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let pre = self.bn1.forward_t(xs, train).relu();
        let ys = self.conv1.forward_t(&pre, train);
        let ys = self.conv2.forward_t(&self.bn2.forward_t(&ys, train).relu(), train);
        match &self.identity_conv {
            Some(c) => ys + c.forward_t(&pre, train),
            None => ys + xs,
        }
    }
}

#[derive(Debug)]
pub struct CifarWrn {
    init_block: Conv2d,
    units: Vec<PreResUnit>,
    post_bn: BatchNorm,
    output: ClassifierHead,
}

impl CifarWrn {
    pub fn new(p: &Path, depth: i64, width: i64, in_channels: i64, num_outputs: i64) -> Self {
        let f = p.sub("features");
        let init_block = conv(&f.sub("init_block"), in_channels, 16, 3, 1);
        let mut units = vec![];
        let mut c_in = 16;
        for (i, c) in [16, 32, 64].into_iter().enumerate() {
            let sp = f.sub(format!("stage{}", i + 1));
            for j in 0..(depth - 4) / 6 {
                let stride = if i > 0 && j == 0 { 2 } else { 1 };
                units.push(PreResUnit::new(&sp.sub(format!("unit{}", j + 1)), c_in, c * width, stride));
                c_in = c * width;
            }
        }
        let post_bn = BatchNorm::new2d(&f.sub("post_activ").sub("bn"), c_in);
        let output = ClassifierHead::linear(&p.sub("output"), c_in, num_outputs);
        CifarWrn { init_block, units, post_bn, output }
    }
}

forward_head_of_features!(CifarWrn);

impl Model for CifarWrn {
    fn forward_features(&self, xs: &Tensor, train: bool) -> Tensor {
        let ys = self.init_block.forward_t(xs, train);
        let ys = self.units.iter().fold(ys, |ys, unit| unit.forward_t(&ys, train));
        self.post_bn.forward_t(&ys, train).relu()
    }
    fn forward_head(&self, features: &Tensor, train: bool) -> Tensor {
        let pooled = features.avg_pool2d([8, 8], [1, 1], [0, 0], false, true, None);
        self.output.forward_t(&pooled.flatten(1, -1), train)
    }
    classifier_head_methods!(output);
}

/// The side of the last map (two stride-2 3×3 convs, padding 1) must be 8, for the 8×8 pool to give 1×1.
fn side_ok(h: i64) -> bool {
    let half = |h: i64| (h - 1) / 2 + 1;
    h >= 1 && half(half(h)) == 8
}

fn build(name: &str, depth: i64, width: i64, p: &Path, c: &ModelConfig) -> Result<Box<dyn Model>> {
    match c.input_shape.as_slice() {
        [ch, h, w] if *ch > 0 && side_ok(*h) && side_ok(*w) => {
            Ok(Box::new(CifarWrn::new(p, depth, width, *ch, c.num_outputs)))
        }
        shape => Err(Error::config(format!(
            "{name} takes images [C, H, W] of 29–32 per side (its map must pool to 1×1), got {shape:?}"
        ))),
    }
}

macro_rules! wrn_entry {
    ($name:literal, $depth:literal, $width:literal) => {
        ModelEntry {
            name: $name,
            family: "wrn",
            description: concat!("pytorchcv CIFAR Wide ResNet-", $depth, "-", $width, ", inputs of 29–32 per side"),
            default_input: &[3, 32, 32],
            default_classes: 10,
            first_layer: "features.init_block",
            classifier: "output",
            options: &[],
            build: |p, c| build($name, $depth, $width, p, c),
        }
    };
}

pub fn entries() -> Vec<ModelEntry> {
    vec![
        wrn_entry!("wrn16_10_cifar10", 16, 10),
        wrn_entry!("wrn28_10_cifar10", 28, 10),
        wrn_entry!("wrn40_8_cifar10", 40, 8),
    ]
}
