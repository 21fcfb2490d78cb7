//! Highway Networks (Srivastava, Greff & Schmidhuber 2015, "Highway Networks" and "Training Very Deep
//! Networks"): our own definitions, no package has them. Python references: `scripts/reference_models.py`
//! `HighwayMLP` and `HighwayCNN`, with the same names, shapes and registration order.
//!
//! A highway layer computes y = H(x)·T(x) + x·(1 − T(x)), H = act(W_H x + b_H) the plain transform and
//! T = sigmoid(W_T x + b_T) the transform gate (1 − T is the carry gate). b_T starts at `gate_bias` (−2 by default,
//! inside the paper's −1 to −3), so every layer first mostly carries its input through; all other weights keep
//! PyTorch's default initialisation.
//!
//! - `highway_mlp` (options `depth` = 10 layers, `width` = 50, `activation` = relu, `gate_bias` = −2): the input
//!   flattened, `stem` (Linear to `width`) + activation, `layers.{i}.h` and `layers.{i}.t` (Linear width → width),
//!   `classifier` (Linear). Any input shape.
//! - `highway_cnn` (options `stages` = 3, `depth` = 2 layers per stage, `width` = 32 channels, `activation`,
//!   `gate_bias`): `stem` (3×3 conv, padding 1, to `width`) + activation; stage s holds `stages.{s}.{i}.h` and
//!   `stages.{s}.{i}.t` (3×3 convs width → width, padding 1, with biases); stages after the first start with a 2×2
//!   max pool; then the global average and `classifier`. Images [C, H, W] of at least 2^(stages−1) pixels a side
//!   (1×8×8 digits, 3×32×32 CIFAR).
//!
//! `forward_features` returns the last highway layer's output (a vector for the MLP, a map for the CNN);
//! `forward_head` pools (CNN) and applies `classifier`.
use tch::Tensor;

use super::{classifier_head_methods, forward_head_of_features, Model, ModelConfig, ModelEntry};
use crate::error::{Error, Result};
use crate::nn::{Activation, ClassifierHead, Conv2d, ConvConfig, Linear, Module, Path};

/// The options both models share, parsed and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct HighwayConfig {
    /// Highway layers (per stage for the CNN).
    pub depth: i64,
    /// Units (MLP) or channels (CNN) of every highway layer.
    pub width: i64,
    pub activation: Activation,
    /// The initial bias of the transform gate T.
    pub gate_bias: f64,
    /// CNN stages (a 2×2 max pool before each but the first); 1 for the MLP.
    pub stages: i64,
}

impl HighwayConfig {
    fn parse(c: &ModelConfig, name: &str, depth: i64, width: i64, stages: i64) -> Result<Self> {
        let h = HighwayConfig {
            depth: c.opt("depth", depth)?,
            width: c.opt("width", width)?,
            activation: c.opt("activation", Activation::Relu)?,
            gate_bias: c.opt("gate_bias", -2.0)?,
            stages: c.opt("stages", stages)?,
        };
        if h.depth < 1 || h.width < 1 || h.stages < 1 || h.stages > 8 {
            return Err(Error::config(format!(
                "{name}: depth={} and width={} must be at least 1, stages={} from 1 to 8",
                h.depth, h.width, h.stages
            )));
        }
        if !h.gate_bias.is_finite() {
            return Err(Error::config(format!("{name}: gate_bias={} must be a finite number, e.g. -2", h.gate_bias)));
        }
        if h.activation.has_parameters() || h.activation == Activation::Softmax {
            return Err(Error::config(format!(
                "{name}: activation={} is not an element-wise activation without parameters; use e.g. relu or tanh",
                h.activation
            )));
        }
        Ok(h)
    }
}

fn fill_bias(bias: &Option<Tensor>, value: f64) {
    if let Some(b) = bias {
        tch::no_grad(|| {
            let _ = b.shallow_clone().fill_(value);
        });
    }
}

/// y = H(x)·T(x) + x·(1 − T(x)) with H and T two layers of the same shape (`h`, `t`).
#[derive(Debug)]
struct Highway<L: Module> {
    h: L,
    t: L,
    activation: Activation,
}

impl<L: Module> Module for Highway<L> {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let h = self.activation.apply(&self.h.forward_t(xs, train));
        let t = self.t.forward_t(xs, train).sigmoid();
        // H·T + x·(1 − T), in the reference's order of operations (float rounding compounds over depth).
        &h * &t + xs * (1.0 - &t)
    }
}

/// `highway_mlp`.
#[derive(Debug)]
pub struct HighwayMlp {
    stem: Linear,
    layers: Vec<Highway<Linear>>,
    classifier: ClassifierHead,
    activation: Activation,
}

impl HighwayMlp {
    pub fn new(p: &Path, c: &HighwayConfig, in_features: i64, num_outputs: i64) -> Self {
        let stem = Linear::new(&p.sub("stem"), in_features, c.width);
        let layers = (0..c.depth)
            .map(|i| {
                let lp = p.sub("layers").sub(i);
                let h = Linear::new(&lp.sub("h"), c.width, c.width);
                let t = Linear::new(&lp.sub("t"), c.width, c.width);
                fill_bias(&t.bias, c.gate_bias);
                Highway { h, t, activation: c.activation }
            })
            .collect();
        let classifier = ClassifierHead::linear(&p.sub("classifier"), c.width, num_outputs);
        HighwayMlp { stem, layers, classifier, activation: c.activation }
    }
}

forward_head_of_features!(HighwayMlp);

impl Model for HighwayMlp {
    fn forward_features(&self, xs: &Tensor, train: bool) -> Tensor {
        let ys = self.activation.apply(&self.stem.forward_t(&xs.flatten(1, -1), train));
        self.layers.iter().fold(ys, |ys, layer| layer.forward_t(&ys, train))
    }
    fn forward_head(&self, features: &Tensor, train: bool) -> Tensor {
        self.classifier.forward_t(features, train)
    }
    classifier_head_methods!(classifier);
}

/// `highway_cnn`.
#[derive(Debug)]
pub struct HighwayCnn {
    stem: Conv2d,
    stages: Vec<Vec<Highway<Conv2d>>>,
    classifier: ClassifierHead,
    activation: Activation,
}

impl HighwayCnn {
    pub fn new(p: &Path, c: &HighwayConfig, in_channels: i64, num_outputs: i64) -> Self {
        let same = ConvConfig { padding: 1, ..Default::default() };
        let stem = Conv2d::new(&p.sub("stem"), in_channels, c.width, 3, same);
        let stages = (0..c.stages)
            .map(|s| {
                (0..c.depth)
                    .map(|i| {
                        let lp = p.sub("stages").sub(s).sub(i);
                        let h = Conv2d::new(&lp.sub("h"), c.width, c.width, 3, same);
                        let t = Conv2d::new(&lp.sub("t"), c.width, c.width, 3, same);
                        fill_bias(&t.bias, c.gate_bias);
                        Highway { h, t, activation: c.activation }
                    })
                    .collect()
            })
            .collect();
        let classifier = ClassifierHead::linear(&p.sub("classifier"), c.width, num_outputs);
        HighwayCnn { stem, stages, classifier, activation: c.activation }
    }
}

forward_head_of_features!(HighwayCnn);

impl Model for HighwayCnn {
    fn forward_features(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut ys = self.activation.apply(&self.stem.forward_t(xs, train));
        for (s, stage) in self.stages.iter().enumerate() {
            if s > 0 {
                ys = ys.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false);
            }
            ys = stage.iter().fold(ys, |ys, layer| layer.forward_t(&ys, train));
        }
        ys
    }
    fn forward_head(&self, features: &Tensor, train: bool) -> Tensor {
        self.classifier.forward_t(&features.mean_dim([2i64, 3].as_slice(), false, None), train)
    }
    classifier_head_methods!(classifier);
}

fn build_mlp(p: &Path, c: &ModelConfig) -> Result<Box<dyn Model>> {
    let h = HighwayConfig::parse(c, "highway_mlp", 10, 50, 1)?;
    let in_features: i64 = c.input_shape.iter().product();
    if c.input_shape.is_empty() || in_features < 1 {
        return Err(Error::config(format!(
            "highway_mlp takes inputs of at least one feature, got {:?}",
            c.input_shape
        )));
    }
    Ok(Box::new(HighwayMlp::new(p, &h, in_features, c.num_outputs)))
}

fn build_cnn(p: &Path, c: &ModelConfig) -> Result<Box<dyn Model>> {
    let h = HighwayConfig::parse(c, "highway_cnn", 2, 32, 3)?;
    let min = 1i64 << (h.stages - 1);
    match c.input_shape.as_slice() {
        [ch, height, width] if *ch > 0 && *height >= min && *width >= min => {
            Ok(Box::new(HighwayCnn::new(p, &h, *ch, c.num_outputs)))
        }
        shape => Err(Error::config(format!(
            "highway_cnn takes images [C, H, W] of at least {min}×{min} ({} stages, a 2×2 max pool between two), \
             got {shape:?}",
            h.stages
        ))),
    }
}

const OPTIONS: &[&str] = &["depth", "width", "activation", "gate_bias", "stages"];

pub fn entries() -> Vec<ModelEntry> {
    vec![
        ModelEntry {
            name: "highway_mlp",
            family: "highway",
            description: "fully connected Highway Network (Srivastava et al. 2015; options: depth=10, width=50, \
                          activation=relu, gate_bias=-2)",
            default_input: &[1, 8, 8],
            default_classes: 10,
            first_layer: "stem",
            classifier: "classifier",
            options: &OPTIONS[..4],
            build: build_mlp,
        },
        ModelEntry {
            name: "highway_cnn",
            family: "highway",
            description: "convolutional Highway Network, 3×3 conv H and T (options: stages=3, depth=2 per stage, \
                          width=32, activation=relu, gate_bias=-2)",
            default_input: &[1, 8, 8],
            default_classes: 10,
            first_layer: "stem",
            classifier: "classifier",
            options: OPTIONS,
            build: build_cnn,
        },
    ]
}
