//! DenseNet-BC (Huang et al. 2017) as torchvision builds it: `densenet121/161/169/201`.
//!
//! `features` holds, by name: the stem `conv0` 7×7/2, `norm0`, `relu0`, `pool0` (3×3/2 max pool, padding 1); four
//! dense blocks `denseblock1…4` of `denselayer1…n`, each layer BatchNorm-ReLU-conv 1×1 to bn_size·k channels
//! (`norm1`, `conv1`) then BatchNorm-ReLU-conv 3×3 to k channels (`norm2`, `conv2`), its input the concatenation of
//! the block input and every earlier layer's output; between blocks `transition1…3` (`norm`, ReLU, `conv` 1×1
//! halving the channels, `pool` 2×2/2 average); and `norm5`. The head is ReLU, global average pool, `classifier`.
//! Growth rate k, layers per block and stem width: densenet121 32, 6-12-24-16, 64; densenet161 48, 6-12-36-24,
//! 96; densenet169 32, 6-12-32-32, 64; densenet201 32, 6-12-48-32, 64 (bn_size 4, no dropout).
//!
//! Initialisation as torchvision: convs kaiming-normal (fan_in, ReLU), BatchNorm 1/0, `classifier` PyTorch's
//! default weight with a zero bias. densenet121 has 7,978,856 parameters at 1,000 classes. Inputs of at least
//! 29×29 (trained at 224×224). `forward_features` returns `norm5`'s output; `forward_head` applies ReLU, pools,
//! flattens and classifies.
use tch::Tensor;

use super::{forward_head_of_features, Model, ModelConfig, ModelEntry};
use crate::error::{Error, Result};
use crate::nn::{BatchNorm, Conv2d, ConvConfig, Linear, Module, Path, Pool2d, PoolKind};

/// A DenseNet: growth rate, layers per dense block, stem width.
#[derive(Debug, Clone, PartialEq)]
pub struct DenseNetConfig {
    pub growth_rate: i64,
    pub block_config: [usize; 4],
    pub num_init_features: i64,
    pub bn_size: i64,
}

impl DenseNetConfig {
    fn new(growth_rate: i64, block_config: [usize; 4], num_init_features: i64) -> Self {
        DenseNetConfig { growth_rate, block_config, num_init_features, bn_size: 4 }
    }
    pub fn densenet121() -> Self {
        Self::new(32, [6, 12, 24, 16], 64)
    }
    pub fn densenet161() -> Self {
        Self::new(48, [6, 12, 36, 24], 96)
    }
    pub fn densenet169() -> Self {
        Self::new(32, [6, 12, 32, 32], 64)
    }
    pub fn densenet201() -> Self {
        Self::new(32, [6, 12, 48, 32], 64)
    }
}

/// torchvision's `kaiming_normal_(weight)`: N(0, 2 / fan_in).
fn conv(p: &Path, c_in: i64, c_out: i64, kernel: i64, stride: i64, padding: i64) -> Conv2d {
    let conv = Conv2d::new(p, c_in, c_out, kernel, ConvConfig { stride, padding, bias: false, ..Default::default() });
    let std = (2.0 / (c_in * kernel * kernel) as f64).sqrt();
    tch::no_grad(|| {
        let _ = conv.weight.shallow_clone().normal_(0.0, std);
    });
    conv
}

/// BatchNorm, ReLU, conv.
#[derive(Debug)]
struct NormReluConv {
    norm: BatchNorm,
    conv: Conv2d,
}

impl NormReluConv {
    fn new(p: &Path, norm: &str, conv_name: &str, c_in: i64, c_out: i64, kernel: i64) -> Self {
        let norm = BatchNorm::new2d(&p.sub(norm), c_in);
        NormReluConv { norm, conv: conv(&p.sub(conv_name), c_in, c_out, kernel, 1, kernel / 2) }
    }
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.conv.forward_t(&self.norm.forward_t(xs, train).relu(), train)
    }
}

#[derive(Debug)]
struct DenseLayer {
    bottleneck: NormReluConv,
    conv: NormReluConv,
}

#[derive(Debug)]
struct DenseBlock {
    layers: Vec<DenseLayer>,
}

impl DenseBlock {
    fn new(p: &Path, c: &DenseNetConfig, n: usize, c_in: i64) -> Self {
        let width = c.bn_size * c.growth_rate;
        let layers = (0..n)
            .map(|i| {
                let lp = p.sub(format!("denselayer{}", i + 1));
                let c_in = c_in + i as i64 * c.growth_rate;
                DenseLayer {
                    bottleneck: NormReluConv::new(&lp, "norm1", "conv1", c_in, width, 1),
                    conv: NormReluConv::new(&lp, "norm2", "conv2", width, c.growth_rate, 3),
                }
            })
            .collect();
        DenseBlock { layers }
    }
}

impl Module for DenseBlock {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut features = vec![xs.shallow_clone()];
        for layer in &self.layers {
            let ys = layer.bottleneck.forward_t(&Tensor::cat(&features, 1), train);
            features.push(layer.conv.forward_t(&ys, train));
        }
        Tensor::cat(&features, 1)
    }
}

/// `norm`, ReLU, `conv` 1×1, `pool` 2×2/2 average.
#[derive(Debug)]
struct Transition {
    layer: NormReluConv,
    pool: Pool2d,
}

impl Module for Transition {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.pool.forward_t(&self.layer.forward_t(xs, train), train)
    }
}

#[derive(Debug)]
pub struct DenseNet {
    conv0: Conv2d,
    norm0: BatchNorm,
    pool0: Pool2d,
    /// Dense blocks and transitions, in order.
    stages: Vec<Box<dyn Module>>,
    norm5: BatchNorm,
    classifier: Linear,
    path: Path,
    num_features: i64,
    num_outputs: i64,
}

impl DenseNet {
    pub fn new(p: &Path, c: &DenseNetConfig, in_channels: i64, num_outputs: i64) -> Self {
        let fp = p.sub("features");
        let conv0 = conv(&fp.sub("conv0"), in_channels, c.num_init_features, 7, 2, 3);
        let norm0 = BatchNorm::new2d(&fp.sub("norm0"), c.num_init_features);
        let pool0 = Pool2d::new(&fp.sub("pool0"), PoolKind::Max, 3, 2, 1);
        let mut stages: Vec<Box<dyn Module>> = vec![];
        let mut width = c.num_init_features;
        for (i, &n) in c.block_config.iter().enumerate() {
            stages.push(Box::new(DenseBlock::new(&fp.sub(format!("denseblock{}", i + 1)), c, n, width)));
            width += n as i64 * c.growth_rate;
            if i + 1 < c.block_config.len() {
                let tp = fp.sub(format!("transition{}", i + 1));
                let layer = NormReluConv::new(&tp, "norm", "conv", width, width / 2, 1);
                stages.push(Box::new(Transition { layer, pool: Pool2d::new(&tp.sub("pool"), PoolKind::Avg, 2, 2, 0) }));
                width /= 2;
            }
        }
        let norm5 = BatchNorm::new2d(&fp.sub("norm5"), width);
        DenseNet {
            conv0,
            norm0,
            pool0,
            stages,
            norm5,
            classifier: Self::classifier(p, width, num_outputs),
            path: p.clone(),
            num_features: width,
            num_outputs,
        }
    }
    fn classifier(p: &Path, width: i64, num_outputs: i64) -> Linear {
        let classifier = Linear::new(&p.sub("classifier"), width, num_outputs);
        if let Some(b) = &classifier.bias {
            tch::no_grad(|| {
                let _ = b.shallow_clone().zero_();
            });
        }
        classifier
    }
}

forward_head_of_features!(DenseNet);

impl Model for DenseNet {
    fn forward_features(&self, xs: &Tensor, train: bool) -> Tensor {
        let ys = self.norm0.forward_t(&self.conv0.forward_t(xs, train), train).relu();
        let mut ys = self.pool0.forward_t(&ys, train);
        for stage in &self.stages {
            ys = stage.forward_t(&ys, train);
        }
        self.norm5.forward_t(&ys, train)
    }
    fn forward_head(&self, features: &Tensor, train: bool) -> Tensor {
        self.classifier.forward_t(&features.relu().adaptive_avg_pool2d([1, 1]).flatten(1, -1), train)
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

fn build(p: &Path, c: &ModelConfig, name: &str, recipe: DenseNetConfig) -> Result<Box<dyn Model>> {
    let in_channels = match c.input_shape.as_slice() {
        // The stem and three transitions halve the map five times (29 → 15 → 8 → 4 → 2 → 1).
        [ch, h, w] if *ch > 0 && *h >= 29 && *w >= 29 => *ch,
        shape => return Err(Error::config(format!("{name} takes images [C, H, W] of at least 29×29, got {shape:?}"))),
    };
    Ok(Box::new(DenseNet::new(p, &recipe, in_channels, c.num_outputs)))
}

macro_rules! densenet {
    ($name:literal, $recipe:expr, $description:literal) => {
        ModelEntry {
            name: $name,
            family: "densenet",
            description: $description,
            // The smallest valid input, for the registry tests (trained at 224×224).
            default_input: &[3, 29, 29],
            default_classes: 1000,
            first_layer: "features.conv0",
            classifier: "classifier",
            options: &[],
            build: |p, c| build(p, c, $name, $recipe),
        }
    };
}

pub fn entries() -> Vec<ModelEntry> {
    vec![
        densenet!("densenet121", DenseNetConfig::densenet121(), "torchvision DenseNet-121 (k 32, blocks 6-12-24-16)"),
        densenet!("densenet161", DenseNetConfig::densenet161(), "torchvision DenseNet-161 (k 48, blocks 6-12-36-24)"),
        densenet!("densenet169", DenseNetConfig::densenet169(), "torchvision DenseNet-169 (k 32, blocks 6-12-32-32)"),
        densenet!("densenet201", DenseNetConfig::densenet201(), "torchvision DenseNet-201 (k 32, blocks 6-12-48-32)"),
    ]
}
