//! AlexNet as torchvision builds it (the one-GPU form of Krizhevsky 2014, "One weird trick"): `features` = conv
//! 64@11×11/4 pad 2, ReLU, max pool 3/2, conv 192@5×5 pad 2, ReLU, max pool, conv 384, ReLU, conv 256, ReLU, conv
//! 256 (3×3 pad 1), ReLU, max pool; `avgpool` adapts to 6×6; `classifier` = Dropout 0.5, Linear 4096, ReLU,
//! Dropout 0.5, Linear 4096, ReLU, Linear classes (indices 1/4/6). Inputs of at least 63×63. PyTorch's default
//! initialisation, as torchvision. `forward_features` returns the last pool's map; `forward_head` pools to 6×6,
//! flattens and classifies.
use tch::Tensor;

use super::{forward_head_of_features, Model, ModelEntry};
use crate::error::Error;
use crate::nn::{
    Act, Activation, AdaptiveAvgPool2d, Conv2d, ConvConfig, Dropout, Linear, Module, Path, Pool2d, PoolKind, Sequential,
};

#[derive(Debug)]
pub struct AlexNet {
    features: Sequential,
    avgpool: AdaptiveAvgPool2d,
    classifier: Sequential,
    path: Path,
    num_outputs: i64,
}

impl AlexNet {
    pub fn new(p: &Path, in_channels: i64, num_outputs: i64) -> Self {
        let fp = p.sub("features");
        let mut features = Sequential::new();
        // (c_out, kernel, stride, padding, max pool after)
        let convs = [
            (64, 11, 4, 2, true),
            (192, 5, 1, 2, true),
            (384, 3, 1, 1, false),
            (256, 3, 1, 1, false),
            (256, 3, 1, 1, true),
        ];
        let mut c_in = in_channels;
        for (c_out, kernel, stride, padding, pool) in convs {
            let config = ConvConfig { stride, padding, ..Default::default() };
            features.push(Conv2d::new(&fp.sub(features.next_index()), c_in, c_out, kernel, config));
            features.push(Act::new(&fp.sub(features.next_index()), Activation::Relu));
            if pool {
                features.push(Pool2d::new(&fp.sub(features.next_index()), PoolKind::Max, 3, 2, 0));
            }
            c_in = c_out;
        }
        let avgpool = AdaptiveAvgPool2d::new(&p.sub("avgpool"), [6, 6]);
        let cp = p.sub("classifier");
        let mut classifier = Sequential::new();
        classifier.push(Dropout::new(&cp.sub(0), 0.5));
        classifier.push(Linear::new(&cp.sub(1), c_in * 6 * 6, 4096));
        classifier.push(Act::new(&cp.sub(2), Activation::Relu));
        classifier.push(Dropout::new(&cp.sub(3), 0.5));
        classifier.push(Linear::new(&cp.sub(4), 4096, 4096));
        classifier.push(Act::new(&cp.sub(5), Activation::Relu));
        classifier.push(Linear::new(&cp.sub(6), 4096, num_outputs));
        AlexNet { features, avgpool, classifier, path: p.clone(), num_outputs }
    }
}

forward_head_of_features!(AlexNet);

impl Model for AlexNet {
    fn forward_features(&self, xs: &Tensor, train: bool) -> Tensor {
        self.features.forward_t(xs, train)
    }
    fn forward_head(&self, features: &Tensor, train: bool) -> Tensor {
        self.classifier.forward_t(&self.avgpool.forward_t(features, train).flatten(1, -1), train)
    }
    fn reset_classifier(&mut self, num_outputs: i64) {
        let head = self.path.sub("classifier").sub(6).replace(|p| Linear::new(p, 4096, num_outputs));
        self.classifier.replace_last(head);
        self.num_outputs = num_outputs;
    }
    fn num_outputs(&self) -> i64 {
        self.num_outputs
    }
}

pub fn entries() -> Vec<ModelEntry> {
    vec![ModelEntry {
        name: "alexnet",
        family: "alexnet",
        description: "torchvision AlexNet (one-GPU form), inputs of at least 63×63",
        // The smallest valid input, for the registry tests (trained at 224×224).
        default_input: &[3, 63, 63],
        default_classes: 1000,
        first_layer: "features.0",
        classifier: "classifier.6",
        options: &[],
        build: |p, c| {
            let in_channels = match c.input_shape.as_slice() {
                [ch, h, w] if *ch > 0 && *h >= 63 && *w >= 63 => *ch,
                shape => {
                    return Err(Error::config(format!(
                        "alexnet takes images [C, H, W] of at least 63×63, got {shape:?}"
                    )))
                }
            };
            Ok(Box::new(AlexNet::new(p, in_channels, c.num_outputs)))
        },
    }]
}
