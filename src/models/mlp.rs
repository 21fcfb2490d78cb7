//! Multi-layer perceptron: `features` (Flatten, then Linear [+ BatchNorm1d] + activation [+ Dropout] per hidden
//! layer) and a `classifier` Linear. Python reference: `scripts/reference_models.py::MLP`.
use tch::Tensor;

use super::{classifier_head_methods, forward_head_of_features, Model, ModelConfig, ModelEntry};
use crate::error::{Error, Result};
use crate::nn::{Activation, BatchNorm, ClassifierHead, Dropout, Flatten, Linear, Module, Path, Sequential};

#[derive(Debug, Clone, PartialEq)]
pub struct MlpConfig {
    pub in_features: i64,
    pub hidden: Vec<i64>,
    pub num_outputs: i64,
    pub activation: Activation,
    pub dropout: f64,
    pub batch_norm: bool,
}

impl MlpConfig {
    pub fn from_model_config(c: &ModelConfig, default_hidden: &[i64]) -> Result<Self> {
        let hidden = match c.options.get("hidden") {
            None => default_hidden.to_vec(),
            Some(h) if h.is_empty() || h == "none" => vec![],
            Some(h) => h
                .split(['x', '-', '/'])
                .map(|s| s.trim().parse::<i64>().ok().filter(|&v| v > 0))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| Error::config(format!("mlp option hidden={h} must be sizes like 64x32")))?,
        };
        let dropout: f64 = c.opt("dropout", 0.0)?;
        if !(0.0..1.0).contains(&dropout) {
            return Err(Error::config(format!("mlp option dropout={dropout} must be in [0, 1)")));
        }
        // The parameters, counted before any is allocated: training holds them about four times (weights,
        // gradients, two optimizer slots).
        let in_features: i64 = c.input_shape.iter().product();
        let params = hidden
            .iter()
            .chain([&c.num_outputs])
            .try_fold((0u64, in_features.max(1) as u64), |(sum, width), &h| {
                let layer = width.checked_mul(h as u64)?.checked_add(h as u64)?;
                Some((sum.checked_add(layer)?, h as u64))
            })
            .map(|(sum, _)| sum);
        match params {
            Some(p) => crate::util::check_memory(p.saturating_mul(16), format!("mlp with {p} parameters"))?,
            None => return Err(Error::config("mlp option hidden: the layer sizes overflow; give sizes like 64x32")),
        }
        Ok(MlpConfig {
            in_features,
            hidden,
            num_outputs: c.num_outputs,
            activation: c.opt("activation", Activation::Relu)?,
            dropout,
            batch_norm: c.opt("batch_norm", false)?,
        })
    }
}

#[derive(Debug)]
pub struct Mlp {
    features: Sequential,
    classifier: ClassifierHead,
}

impl Mlp {
    pub fn new(p: &Path, c: &MlpConfig) -> Self {
        let fp = p.sub("features");
        let mut features = Sequential::new();
        features.push(Flatten::new(&fp.sub(0)));
        let mut width = c.in_features;
        for &h in &c.hidden {
            features.push(Linear::new(&fp.sub(features.next_index()), width, h));
            if c.batch_norm {
                features.push(BatchNorm::new1d(&fp.sub(features.next_index()), h));
            }
            // A learnable PReLU has its own `weight`, as nn.PReLU(); the others are parameterless.
            features.push_boxed(c.activation.layer(&fp.sub(features.next_index())));
            if c.dropout > 0.0 {
                features.push(Dropout::new(&fp.sub(features.next_index()), c.dropout));
            }
            width = h;
        }
        let classifier = ClassifierHead::linear(&p.sub("classifier"), width, c.num_outputs);
        Mlp { features, classifier }
    }
}

forward_head_of_features!(Mlp);

impl Model for Mlp {
    fn forward_features(&self, xs: &Tensor, train: bool) -> Tensor {
        self.features.forward_t(xs, train)
    }
    fn forward_head(&self, features: &Tensor, train: bool) -> Tensor {
        self.classifier.forward_t(features, train)
    }
    classifier_head_methods!(classifier);
}

const OPTIONS: &[&str] = &["hidden", "activation", "dropout", "batch_norm"];

pub fn entries() -> Vec<ModelEntry> {
    vec![
        ModelEntry {
            name: "mlp",
            family: "mlp",
            description: "multi-layer perceptron (options: hidden=64x64, activation, dropout, batch_norm)",
            default_input: &[2],
            default_classes: 2,
            first_layer: "features.1",
            classifier: "classifier",
            options: OPTIONS,
            build: |p, c| Ok(Box::new(Mlp::new(p, &MlpConfig::from_model_config(c, &[64, 64])?))),
        },
        ModelEntry {
            name: "perceptron",
            family: "mlp",
            description: "single-layer perceptron: one Linear layer, no hidden layer",
            default_input: &[2],
            default_classes: 2,
            first_layer: "classifier",
            classifier: "classifier",
            options: &[],
            build: |p, c| Ok(Box::new(Mlp::new(p, &MlpConfig::from_model_config(c, &[])?))),
        },
    ]
}
