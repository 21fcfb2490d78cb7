//! MobileNets: v2 as torchvision builds it (`mobilenet_v2`) and v1 as timm names it (`mobilenetv1_100`).
//!
//! MobileNet v2 (Sandler et al. 2018): `features.0` a 3×3/2 conv-BatchNorm-ReLU6 (`features.0.0/1/2`);
//! `features.1…17` inverted residuals (t, c, n, s) = (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
//! (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1), each a `conv` sequence of [1×1 expansion conv-BN-ReLU6 when
//! t ≠ 1,] 3×3 depthwise conv-BN-ReLU6, 1×1 linear projection conv + BN, with the identity added when stride 1
//! keeps the width; `features.18` 1×1 conv-BN-ReLU6 to 1280; global average pool; `classifier` = Dropout 0.2
//! (`classifier.0`) + Linear (`classifier.1`). Option `width` is torchvision's `width_mult` (widths rounded to
//! multiples of 8, the last 1280 only scaled up). Initialisation as torchvision: convs kaiming-normal (fan_out),
//! BatchNorm 1/0, linear N(0, 0.01²) with zero bias. 3,504,872 parameters at 1,000 classes.
//!
//! MobileNet v1 (Howard et al. 2017, table 1), named as timm's `mobilenetv1_100` so its state dicts load strictly:
//! `conv_stem` 3×3/2 (32) + `bn1` + ReLU6, then `blocks.<stage>.<block>` = 13 depthwise-separable blocks (3×3
//! depthwise `conv_dw` + `bn1` + ReLU6, 1×1 `conv_pw` + `bn2` + ReLU6, no skip) in five stages of 64 (1 block),
//! 128 (2), 256 (2), 512 (6) and 1024 (2) channels, the first block of stages 1–4 with stride 2; global average
//! pool; `classifier` (no dropout). Option `width` is the paper's width multiplier α (every width, the stem's
//! included, times α, rounded to a multiple of 8 as timm does). Initialisation as timm: convs
//! N(0, 2 / fan_out) with fan_out = k·k·c_out / groups, BatchNorm 1/0, classifier U(±1/sqrt(classes)) with zero
//! bias. 4,231,976 parameters at width 1 and 1,000 classes. timm is not a dependency of the tests: the Python
//! reference is `scripts/reference_models.py::MobileNetV1`.
//!
//! Both take any input size (trained at 224×224; at 32×32 the last map is 1×1). `forward_features` returns the
//! last feature map; `forward_head` pools, flattens and classifies.
use tch::Tensor;

use super::{forward_head_of_features, image_channels, Model, ModelConfig, ModelEntry};
use crate::error::{Error, Result};
use crate::nn::init::{kaiming_normal_fan_out, normal_linear};
use crate::nn::{Act, Activation, BatchNorm, Conv2d, ConvConfig, Dropout, Linear, Module, Path, Sequential};

/// `v` × width rounded to the nearest multiple of 8, at least 8 and never more than 10% below (torchvision's and
/// timm's `_make_divisible`).
pub fn make_divisible(v: f64) -> i64 {
    let new_v = (8 * ((v + 4.0) as i64 / 8)).max(8);
    if (new_v as f64) < 0.9 * v {
        new_v + 8
    } else {
        new_v
    }
}

fn width_option(c: &ModelConfig, name: &str) -> Result<f64> {
    let width: f64 = c.opt("width", 1.0)?;
    if !(width.is_finite() && width > 0.0) {
        return Err(Error::config(format!("{name} option width={width}: use a positive multiplier such as 0.5")));
    }
    Ok(width)
}

/// torchvision's `Conv2dNormActivation` with ReLU6: `0` conv (no bias), `1` BatchNorm, `2` ReLU6.
fn conv_bn_relu6(p: &Path, c_in: i64, c_out: i64, kernel: i64, stride: i64, groups: i64) -> Sequential {
    let config = ConvConfig { stride, padding: (kernel - 1) / 2, groups, bias: false, ..Default::default() };
    let conv = Conv2d::new(&p.sub(0), c_in, c_out, kernel, config);
    kaiming_normal_fan_out(&conv);
    let mut seq = Sequential::new();
    seq.push(conv);
    seq.push(BatchNorm::new2d(&p.sub(1), c_out));
    seq.push(Act::new(&p.sub(2), Activation::Relu6));
    seq
}

/// torchvision's `InvertedResidual`.
#[derive(Debug)]
struct InvertedResidual {
    conv: Sequential,
    residual: bool,
}

impl InvertedResidual {
    fn new(p: &Path, c_in: i64, c_out: i64, stride: i64, expand_ratio: i64) -> Self {
        let cp = p.sub("conv");
        let hidden = c_in * expand_ratio;
        let mut conv = Sequential::new();
        if expand_ratio != 1 {
            conv.push(conv_bn_relu6(&cp.sub(conv.next_index()), c_in, hidden, 1, 1, 1));
        }
        conv.push(conv_bn_relu6(&cp.sub(conv.next_index()), hidden, hidden, 3, stride, hidden));
        let project =
            Conv2d::new(&cp.sub(conv.next_index()), hidden, c_out, 1, ConvConfig { bias: false, ..Default::default() });
        kaiming_normal_fan_out(&project);
        conv.push(project);
        conv.push(BatchNorm::new2d(&cp.sub(conv.next_index()), c_out));
        InvertedResidual { conv, residual: stride == 1 && c_in == c_out }
    }
}

impl Module for InvertedResidual {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let ys = self.conv.forward_t(xs, train);
        if self.residual {
            xs + ys
        } else {
            ys
        }
    }
}

#[derive(Debug)]
pub struct MobileNetV2 {
    features: Sequential,
    classifier: Sequential,
    path: Path,
    last_channel: i64,
    num_outputs: i64,
}

impl MobileNetV2 {
    /// (expansion t, channels c, blocks n, first stride s).
    const SETTING: [(i64, i64, usize, i64); 7] =
        [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)];

    pub fn new(p: &Path, in_channels: i64, num_outputs: i64, width: f64) -> Self {
        let fp = p.sub("features");
        let mut features = Sequential::new();
        let mut c_in = make_divisible(32.0 * width);
        features.push(conv_bn_relu6(&fp.sub(0), in_channels, c_in, 3, 2, 1));
        for (t, c, n, s) in Self::SETTING {
            let c_out = make_divisible(c as f64 * width);
            for i in 0..n {
                let stride = if i == 0 { s } else { 1 };
                features.push(InvertedResidual::new(&fp.sub(features.next_index()), c_in, c_out, stride, t));
                c_in = c_out;
            }
        }
        let last_channel = make_divisible(1280.0 * width.max(1.0));
        features.push(conv_bn_relu6(&fp.sub(features.next_index()), c_in, last_channel, 1, 1, 1));
        let cp = p.sub("classifier");
        let mut classifier = Sequential::new();
        classifier.push(Dropout::new(&cp.sub(0), 0.2));
        classifier.push(Self::head(&cp, last_channel, num_outputs));
        MobileNetV2 { features, classifier, path: p.clone(), last_channel, num_outputs }
    }
    fn head(cp: &Path, last_channel: i64, num_outputs: i64) -> Linear {
        let linear = Linear::new(&cp.sub(1), last_channel, num_outputs);
        normal_linear(&linear, 0.01);
        linear
    }
}

forward_head_of_features!(MobileNetV2);

impl Model for MobileNetV2 {
    fn forward_features(&self, xs: &Tensor, train: bool) -> Tensor {
        self.features.forward_t(xs, train)
    }
    fn forward_head(&self, features: &Tensor, train: bool) -> Tensor {
        self.classifier.forward_t(&features.adaptive_avg_pool2d([1, 1]).flatten(1, -1), train)
    }
    fn reset_classifier(&mut self, num_outputs: i64) {
        let cp = self.path.sub("classifier");
        let head = cp.sub(1).replace(|_| Self::head(&cp, self.last_channel, num_outputs));
        self.classifier.replace_last(head);
        self.num_outputs = num_outputs;
    }
    fn num_outputs(&self) -> i64 {
        self.num_outputs
    }
}

/// timm's `_init_weight_goog` for a conv: N(0, 2 / fan_out), fan_out = k·k·c_out / groups.
fn goog_conv(p: &Path, c_in: i64, c_out: i64, kernel: i64, stride: i64, groups: i64) -> Conv2d {
    let config = ConvConfig { stride, padding: kernel / 2, groups, bias: false, ..Default::default() };
    let conv = Conv2d::new(p, c_in, c_out, kernel, config);
    let fan_out = kernel * kernel * c_out / groups;
    tch::no_grad(|| {
        let _ = conv.weight.shallow_clone().normal_(0.0, (2.0 / fan_out as f64).sqrt());
    });
    conv
}

/// timm's `DepthwiseSeparableConv` with a pointwise activation and no skip (block type "dsa").
#[derive(Debug)]
struct DepthwiseSeparable {
    conv_dw: Conv2d,
    bn1: BatchNorm,
    conv_pw: Conv2d,
    bn2: BatchNorm,
}

impl DepthwiseSeparable {
    fn new(p: &Path, c_in: i64, c_out: i64, stride: i64) -> Self {
        DepthwiseSeparable {
            conv_dw: goog_conv(&p.sub("conv_dw"), c_in, c_in, 3, stride, c_in),
            bn1: BatchNorm::new2d(&p.sub("bn1"), c_in),
            conv_pw: goog_conv(&p.sub("conv_pw"), c_in, c_out, 1, 1, 1),
            bn2: BatchNorm::new2d(&p.sub("bn2"), c_out),
        }
    }
}

fn relu6(xs: &Tensor) -> Tensor {
    Activation::Relu6.apply(xs)
}

impl Module for DepthwiseSeparable {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let ys = relu6(&self.bn1.forward_t(&self.conv_dw.forward_t(xs, train), train));
        relu6(&self.bn2.forward_t(&self.conv_pw.forward_t(&ys, train), train))
    }
}

#[derive(Debug)]
pub struct MobileNetV1 {
    conv_stem: Conv2d,
    bn1: BatchNorm,
    blocks: Vec<DepthwiseSeparable>,
    classifier: Linear,
    path: Path,
    num_features: i64,
    num_outputs: i64,
}

impl MobileNetV1 {
    /// (channels, blocks, first stride) per stage.
    const STAGES: [(i64, usize, i64); 5] = [(64, 1, 1), (128, 2, 2), (256, 2, 2), (512, 6, 2), (1024, 2, 2)];

    pub fn new(p: &Path, in_channels: i64, num_outputs: i64, width: f64) -> Self {
        let mut c_in = make_divisible(32.0 * width);
        let conv_stem = goog_conv(&p.sub("conv_stem"), in_channels, c_in, 3, 2, 1);
        let bn1 = BatchNorm::new2d(&p.sub("bn1"), c_in);
        let mut blocks = vec![];
        for (i, (channels, n, stride)) in Self::STAGES.into_iter().enumerate() {
            let c_out = make_divisible(channels as f64 * width);
            for j in 0..n {
                let bp = p.sub("blocks").sub(i).sub(j);
                blocks.push(DepthwiseSeparable::new(&bp, c_in, c_out, if j == 0 { stride } else { 1 }));
                c_in = c_out;
            }
        }
        MobileNetV1 {
            conv_stem,
            bn1,
            blocks,
            classifier: Self::classifier(p, c_in, num_outputs),
            path: p.clone(),
            num_features: c_in,
            num_outputs,
        }
    }
    fn classifier(p: &Path, c_in: i64, num_outputs: i64) -> Linear {
        let classifier = Linear::new(&p.sub("classifier"), c_in, num_outputs);
        let bound = 1.0 / (num_outputs as f64).sqrt();
        tch::no_grad(|| {
            let _ = classifier.weight.shallow_clone().uniform_(-bound, bound);
            if let Some(b) = &classifier.bias {
                let _ = b.shallow_clone().zero_();
            }
        });
        classifier
    }
}

forward_head_of_features!(MobileNetV1);

impl Model for MobileNetV1 {
    fn forward_features(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut ys = relu6(&self.bn1.forward_t(&self.conv_stem.forward_t(xs, train), train));
        for block in &self.blocks {
            ys = block.forward_t(&ys, train);
        }
        ys
    }
    fn forward_head(&self, features: &Tensor, train: bool) -> Tensor {
        self.classifier.forward_t(&features.adaptive_avg_pool2d([1, 1]).flatten(1, -1), train)
    }
    fn reset_classifier(&mut self, num_outputs: i64) {
        let classifier = self.path.sub("classifier");
        self.classifier = classifier.replace(|_| Self::classifier(&self.path, self.num_features, num_outputs));
        self.num_outputs = num_outputs;
    }
    fn num_outputs(&self) -> i64 {
        self.num_outputs
    }
}

pub fn entries() -> Vec<ModelEntry> {
    vec![
        ModelEntry {
            name: "mobilenet_v2",
            family: "mobilenet",
            description: "torchvision MobileNet v2 (options: width=1.0, torchvision's width_mult)",
            // Any size works: at 32×32 the last map is 1×1 (trained at 224×224).
            default_input: &[3, 32, 32],
            default_classes: 1000,
            first_layer: "features.0",
            classifier: "classifier.1",
            options: &["width"],
            build: |p, c| {
                let width = width_option(c, "mobilenet_v2")?;
                Ok(Box::new(MobileNetV2::new(p, image_channels(c, "mobilenet_v2", 1, "")?, c.num_outputs, width)))
            },
        },
        ModelEntry {
            name: "mobilenetv1_100",
            family: "mobilenet",
            description: "MobileNet v1 as timm's mobilenetv1_100 (options: width=1.0, the width multiplier)",
            default_input: &[3, 32, 32],
            default_classes: 1000,
            first_layer: "conv_stem",
            classifier: "classifier",
            options: &["width"],
            build: |p, c| {
                let width = width_option(c, "mobilenetv1_100")?;
                Ok(Box::new(MobileNetV1::new(p, image_channels(c, "mobilenetv1_100", 1, "")?, c.num_outputs, width)))
            },
        },
    ]
}
