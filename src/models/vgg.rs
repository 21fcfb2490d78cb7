//! VGG (Simonyan & Zisserman 2015) as torchvision builds it: `vgg11/13/16/19` (configurations A/B/D/E) and their
//! `_bn` forms. `features` is one `nn.Sequential` of 3×3 convs (+ BatchNorm) + ReLU with a 2×2 max pool after each
//! block, indices counting the ReLU and pooling layers (`features.0`, `features.3`, … as torchvision);
//! `avgpool` adapts to 7×7, so any input of at least 32×32 gives the classifier 512·7·7 features; `classifier` =
//! Linear 4096, ReLU, Dropout 0.5, Linear 4096, ReLU, Dropout 0.5, Linear classes (indices 0/3/6).
//! Initialisation as torchvision: convs kaiming-normal (fan_out, ReLU) with zero bias, BatchNorm 1/0, linears
//! N(0, 0.01) with zero bias. `forward_features` returns the last pool's map; `forward_head` pools to 7×7,
//! flattens and classifies.
use tch::Tensor;

use super::{forward_head_of_features, Model, ModelConfig, ModelEntry};
use crate::error::{Error, Result};
use crate::nn::init::{kaiming_normal_fan_out, normal_linear};
use crate::nn::{
    Act, Activation, AdaptiveAvgPool2d, BatchNorm, Conv2d, ConvConfig, Dropout, Linear, Module, Path, Pool2d, PoolKind,
    Sequential,
};

/// Marks a 2×2 max pool in a configuration list; other entries are the output channels of a 3×3 conv.
const M: i64 = 0;

#[derive(Debug, Clone, PartialEq)]
pub struct VggConfig {
    pub layers: &'static [i64],
    pub batch_norm: bool,
}

impl VggConfig {
    pub const A: &'static [i64] = &[64, M, 128, M, 256, 256, M, 512, 512, M, 512, 512, M];
    pub const B: &'static [i64] = &[64, 64, M, 128, 128, M, 256, 256, M, 512, 512, M, 512, 512, M];
    pub const D: &'static [i64] = &[64, 64, M, 128, 128, M, 256, 256, 256, M, 512, 512, 512, M, 512, 512, 512, M];
    pub const E: &'static [i64] =
        &[64, 64, M, 128, 128, M, 256, 256, 256, 256, M, 512, 512, 512, 512, M, 512, 512, 512, 512, M];
}

#[derive(Debug)]
pub struct Vgg {
    features: Sequential,
    avgpool: AdaptiveAvgPool2d,
    classifier: Sequential,
    path: Path,
    num_outputs: i64,
}

impl Vgg {
    pub fn new(p: &Path, c: &VggConfig, in_channels: i64, num_outputs: i64) -> Self {
        let fp = p.sub("features");
        let mut features = Sequential::new();
        let mut c_in = in_channels;
        for &v in c.layers {
            if v == M {
                features.push(Pool2d::new(&fp.sub(features.next_index()), PoolKind::Max, 2, 2, 0));
                continue;
            }
            let conv = Conv2d::new(
                &fp.sub(features.next_index()),
                c_in,
                v,
                3,
                ConvConfig { padding: 1, ..Default::default() },
            );
            kaiming_normal_fan_out(&conv);
            features.push(conv);
            if c.batch_norm {
                features.push(BatchNorm::new2d(&fp.sub(features.next_index()), v));
            }
            features.push(Act::new(&fp.sub(features.next_index()), Activation::Relu));
            c_in = v;
        }
        let avgpool = AdaptiveAvgPool2d::new(&p.sub("avgpool"), [7, 7]);
        let cp = p.sub("classifier");
        let mut classifier = Sequential::new();
        for (i, (w_in, w_out)) in [(c_in * 7 * 7, 4096), (4096, 4096)].into_iter().enumerate() {
            let linear = Linear::new(&cp.sub(3 * i), w_in, w_out);
            normal_linear(&linear, 0.01);
            classifier.push(linear);
            classifier.push(Act::new(&cp.sub(3 * i + 1), Activation::Relu));
            classifier.push(Dropout::new(&cp.sub(3 * i + 2), 0.5));
        }
        let head = Linear::new(&cp.sub(6), 4096, num_outputs);
        normal_linear(&head, 0.01);
        classifier.push(head);
        Vgg { features, avgpool, classifier, path: p.clone(), num_outputs }
    }
}

forward_head_of_features!(Vgg);

impl Model for Vgg {
    fn forward_features(&self, xs: &Tensor, train: bool) -> Tensor {
        self.features.forward_t(xs, train)
    }
    fn forward_head(&self, features: &Tensor, train: bool) -> Tensor {
        self.classifier.forward_t(&self.avgpool.forward_t(features, train).flatten(1, -1), train)
    }
    fn reset_classifier(&mut self, num_outputs: i64) {
        let head = self.path.sub("classifier").sub(6).replace(|p| Linear::new(p, 4096, num_outputs));
        normal_linear(&head, 0.01);
        self.classifier.replace_last(head);
        self.num_outputs = num_outputs;
    }
    fn num_outputs(&self) -> i64 {
        self.num_outputs
    }
}

fn build(p: &Path, c: &ModelConfig, name: &str, recipe: VggConfig) -> Result<Box<dyn Model>> {
    let in_channels = match c.input_shape.as_slice() {
        // Five 2×2 pools need at least 32 pixels each way.
        [ch, h, w] if *ch > 0 && *h >= 32 && *w >= 32 => *ch,
        shape => return Err(Error::config(format!("{name} takes images [C, H, W] of at least 32×32, got {shape:?}"))),
    };
    Ok(Box::new(Vgg::new(p, &recipe, in_channels, c.num_outputs)))
}

macro_rules! vgg {
    ($name:literal, $layers:expr, $bn:literal, $description:literal) => {
        ModelEntry {
            name: $name,
            family: "vgg",
            description: $description,
            // The smallest valid input, for the registry tests (trained at 224×224).
            default_input: &[3, 32, 32],
            default_classes: 1000,
            first_layer: "features.0",
            classifier: "classifier.6",
            options: &[],
            build: |p, c| build(p, c, $name, VggConfig { layers: $layers, batch_norm: $bn }),
        }
    };
}

pub fn entries() -> Vec<ModelEntry> {
    vec![
        vgg!("vgg11", VggConfig::A, false, "torchvision VGG-11 (configuration A)"),
        vgg!("vgg11_bn", VggConfig::A, true, "torchvision VGG-11 with BatchNorm"),
        vgg!("vgg13", VggConfig::B, false, "torchvision VGG-13 (configuration B)"),
        vgg!("vgg13_bn", VggConfig::B, true, "torchvision VGG-13 with BatchNorm"),
        vgg!("vgg16", VggConfig::D, false, "torchvision VGG-16 (configuration D)"),
        vgg!("vgg16_bn", VggConfig::D, true, "torchvision VGG-16 with BatchNorm"),
        vgg!("vgg19", VggConfig::E, false, "torchvision VGG-19 (configuration E)"),
        vgg!("vgg19_bn", VggConfig::E, true, "torchvision VGG-19 with BatchNorm"),
    ]
}
