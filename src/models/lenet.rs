//! LeNet-5 (LeCun et al. 1998) for 32×32 inputs: `features` = conv(6,5) act pool conv(16,5) act pool, `classifier` =
//! 400→120→84→classes. Python reference: `scripts/reference_models.py::LeNet5`. ReLU and max pooling by default;
//! `activation=tanh,pool=avg` gives the paper's form.
use tch::Tensor;

use super::{forward_head_of_features, Model, ModelConfig, ModelEntry};
use crate::error::{Error, Result};
use crate::nn::{Activation, Conv2d, ConvConfig, Linear, Module, Path, Pool2d, PoolKind, Sequential};

#[derive(Debug)]
pub struct LeNet5 {
    features: Sequential,
    classifier: Sequential,
    path: Path,
    num_outputs: i64,
}

impl LeNet5 {
    pub fn new(p: &Path, c: &ModelConfig) -> Result<Self> {
        let shape = &c.input_shape;
        if shape.len() != 3 || shape[1] < 16 || shape[2] < 16 {
            return Err(Error::config(format!(
                "lenet5 takes images [C, H, W] of at least 16×16 (32×32 as in the paper), got {shape:?}"
            )));
        }
        let activation: Activation = c.opt("activation", Activation::Relu)?;
        let pool = match c.opt("pool", "max".to_string())?.as_str() {
            "max" => PoolKind::Max,
            "avg" => PoolKind::Avg,
            other => return Err(Error::config(format!("lenet5 option pool={other}: use max or avg"))),
        };
        let fp = p.sub("features");
        let mut features = Sequential::new();
        features.push(Conv2d::new(&fp.sub(0), shape[0], 6, 5, ConvConfig::default()));
        features.push_boxed(activation.layer(&fp.sub(1)));
        features.push(Pool2d::new(&fp.sub(2), pool, 2, 2, 0));
        features.push(Conv2d::new(&fp.sub(3), 6, 16, 5, ConvConfig::default()));
        features.push_boxed(activation.layer(&fp.sub(4)));
        features.push(Pool2d::new(&fp.sub(5), pool, 2, 2, 0));
        let (h, w) = (((shape[1] - 4) / 2 - 4) / 2, ((shape[2] - 4) / 2 - 4) / 2);
        let cp = p.sub("classifier");
        let mut classifier = Sequential::new();
        classifier.push(Linear::new(&cp.sub(0), 16 * h * w, 120));
        classifier.push_boxed(activation.layer(&cp.sub(1)));
        classifier.push(Linear::new(&cp.sub(2), 120, 84));
        classifier.push_boxed(activation.layer(&cp.sub(3)));
        classifier.push(Linear::new(&cp.sub(4), 84, c.num_outputs));
        Ok(LeNet5 { features, classifier, path: p.clone(), num_outputs: c.num_outputs })
    }
}

forward_head_of_features!(LeNet5);

impl Model for LeNet5 {
    fn forward_features(&self, xs: &Tensor, train: bool) -> Tensor {
        self.features.forward_t(xs, train).flatten(1, -1)
    }
    fn forward_head(&self, features: &Tensor, train: bool) -> Tensor {
        self.classifier.forward_t(features, train)
    }
    fn reset_classifier(&mut self, num_outputs: i64) {
        let last = self.path.sub("classifier").sub(4).replace(|p| Linear::new(p, 84, num_outputs));
        self.classifier.replace_last(last);
        self.num_outputs = num_outputs;
    }
    fn num_outputs(&self) -> i64 {
        self.num_outputs
    }
}

pub fn entries() -> Vec<ModelEntry> {
    vec![ModelEntry {
        name: "lenet5",
        family: "lenet",
        description: "LeNet-5 for 32×32 images, 1 or 3 channels (options: activation, pool=max|avg)",
        default_input: &[1, 32, 32],
        default_classes: 10,
        first_layer: "features.0",
        classifier: "classifier.4",
        options: &["activation", "pool"],
        build: |p, c| Ok(Box::new(LeNet5::new(p, c)?)),
    }]
}
