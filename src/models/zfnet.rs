//! pytorchcv's AlexNet-style nets with local response normalisation: `zfnet` and `zfnetb` (Zeiler & Fergus 2013)
//! and `alexnet_lrn` (pytorchcv's `alexnet`, the two-GPU paper's form of Krizhevsky 2012 on one device).
//! `features.stage{i}` = units `unit{j}` (conv + ReLU, then LRN in stages 1 and 2) and a max pool 3/2 with
//! `ceil_mode`; the map must come out at exactly 6×6 (no adaptive pool, as in pytorchcv), so inputs are 199–230
//! square for `alexnet_lrn` and 207–238 for the ZFNets. `output` = `fc1`/`fc2` (Linear 4096, ReLU, Dropout 0.5,
//! each under `.fc`) and `fc3` (Linear classes). Convs are initialised as pytorchcv does (Kaiming uniform, zero
//! bias), linears with PyTorch's default.
use tch::Tensor;

use super::{classifier_head_methods, forward_head_of_features, Model, ModelConfig, ModelEntry};
use crate::error::{Error, Result};
use crate::nn::conv_block::cv_conv;
use crate::nn::{
    trace, ClassifierHead, Conv2d, ConvConfig, Dropout, Linear, Module, Path, Pool2d, PoolKind, Sequential,
};

/// `F.local_response_norm(x, size, alpha, beta, k)` as PyTorch computes it: the squares averaged over a window of
/// `size` channels (zero-padded, so alpha is in effect divided by `size`), then `x / (k + alpha·avg)^beta`.
#[derive(Debug)]
pub struct LocalResponseNorm {
    name: String,
    pub size: i64,
    pub alpha: f64,
    pub beta: f64,
    pub k: f64,
}

impl LocalResponseNorm {
    pub fn new(p: &Path, size: i64, alpha: f64, beta: f64, k: f64) -> Self {
        LocalResponseNorm { name: p.name().to_string(), size, alpha, beta, k }
    }
}

impl Module for LocalResponseNorm {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Tensor {
        let pad = [0, 0, 0, 0, self.size / 2, (self.size - 1) / 2];
        let avg = xs
            .square()
            .unsqueeze(1)
            .constant_pad_nd(pad)
            .avg_pool3d([self.size, 1, 1], [1, 1, 1], [0, 0, 0], false, true, None)
            .squeeze_dim(1);
        let ys = xs / (avg * self.alpha + self.k).pow_tensor_scalar(self.beta);
        trace::record(&self.name, "LocalResponseNorm", &ys, 0);
        ys
    }
}

/// pytorchcv's `AlexConv`: `conv` + ReLU, then `F.local_response_norm(size=5, k=2)` where `use_lrn`.
#[derive(Debug)]
struct AlexConv {
    conv: Conv2d,
    lrn: Option<LocalResponseNorm>,
}

impl Module for AlexConv {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let ys = self.conv.forward_t(xs, train).relu();
        match &self.lrn {
            Some(lrn) => lrn.forward_t(&ys, train),
            None => ys,
        }
    }
}

/// One stage: (out channels, kernel, stride, padding) per unit.
type Stage = &'static [(i64, i64, i64, i64)];

#[derive(Debug, Clone, Copy)]
pub struct ZfNetConfig {
    pub stages: [Stage; 3],
}

impl ZfNetConfig {
    pub fn alexnet_lrn() -> Self {
        ZfNetConfig {
            stages: [&[(96, 11, 4, 0)], &[(256, 5, 1, 2)], &[(384, 3, 1, 1), (384, 3, 1, 1), (256, 3, 1, 1)]],
        }
    }
    pub fn zfnet() -> Self {
        ZfNetConfig { stages: [&[(96, 7, 2, 1)], &[(256, 5, 2, 0)], &[(384, 3, 1, 1), (384, 3, 1, 1), (256, 3, 1, 1)]] }
    }
    pub fn zfnetb() -> Self {
        ZfNetConfig {
            stages: [&[(96, 7, 2, 1)], &[(256, 5, 2, 0)], &[(512, 3, 1, 1), (1024, 3, 1, 1), (512, 3, 1, 1)]],
        }
    }
    /// The side of the feature map for an input side `h` (`None` once it vanishes).
    fn feature_side(&self, mut h: i64) -> Option<i64> {
        for stage in self.stages {
            for &(_, kernel, stride, padding) in stage {
                if h + 2 * padding < kernel {
                    return None;
                }
                h = (h + 2 * padding - kernel) / stride + 1;
            }
            if h < 3 {
                return None;
            }
            // ceil_mode max pool 3/2, no padding: the last window must start inside the input.
            let mut out = (h - 3 + 1) / 2 + 1;
            if (out - 1) * 2 >= h {
                out -= 1;
            }
            h = out;
        }
        Some(h)
    }
}

#[derive(Debug)]
pub struct ZfNet {
    features: Sequential,
    fc1: Linear,
    fc2: Linear,
    fc3: ClassifierHead,
    dropout: Dropout,
}

impl ZfNet {
    pub fn new(p: &Path, config: &ZfNetConfig, in_channels: i64, num_outputs: i64) -> Self {
        let fp = p.sub("features");
        let mut features = Sequential::new();
        let mut c_in = in_channels;
        for (i, stage) in config.stages.iter().enumerate() {
            let sp = fp.sub(format!("stage{}", i + 1));
            for (j, &(c_out, kernel, stride, padding)) in stage.iter().enumerate() {
                let up = sp.sub(format!("unit{}", j + 1));
                let conv =
                    cv_conv(&up.sub("conv"), c_in, c_out, kernel, ConvConfig { stride, padding, ..Default::default() });
                let lrn = (i < 2).then(|| LocalResponseNorm::new(&up.sub("lrn"), 5, 1e-4, 0.75, 2.0));
                features.push(AlexConv { conv, lrn });
                c_in = c_out;
            }
            features.push(Pool2d::new(&sp.sub(format!("pool{}", i + 1)), PoolKind::Max, 3, 2, 0).with_ceil_mode());
        }
        let op = p.sub("output");
        let fc1 = Linear::new(&op.sub("fc1").sub("fc"), c_in * 6 * 6, 4096);
        let fc2 = Linear::new(&op.sub("fc2").sub("fc"), 4096, 4096);
        let fc3 = ClassifierHead::linear(&op.sub("fc3"), 4096, num_outputs);
        let dropout = Dropout::new(&op.sub("dropout"), 0.5);
        ZfNet { features, fc1, fc2, fc3, dropout }
    }
}

forward_head_of_features!(ZfNet);

impl Model for ZfNet {
    fn forward_features(&self, xs: &Tensor, train: bool) -> Tensor {
        self.features.forward_t(xs, train)
    }
    fn forward_head(&self, features: &Tensor, train: bool) -> Tensor {
        let xs = features.flatten(1, -1);
        let xs = self.dropout.forward_t(&self.fc1.forward_t(&xs, train).relu(), train);
        let xs = self.dropout.forward_t(&self.fc2.forward_t(&xs, train).relu(), train);
        self.fc3.forward_t(&xs, train)
    }
    classifier_head_methods!(fc3);
}

fn build(name: &str, config: ZfNetConfig, p: &Path, c: &ModelConfig) -> Result<Box<dyn Model>> {
    let in_channels = match c.input_shape.as_slice() {
        [ch, h, w] if *ch > 0 && config.feature_side(*h) == Some(6) && config.feature_side(*w) == Some(6) => *ch,
        shape => {
            let ok: Vec<i64> = (1..512).filter(|&h| config.feature_side(h) == Some(6)).collect();
            return Err(Error::config(format!(
                "{name} takes images [C, H, W] of {}–{} per side (its map must come out at 6×6), got {shape:?}",
                ok[0],
                ok[ok.len() - 1]
            )));
        }
    };
    Ok(Box::new(ZfNet::new(p, &config, in_channels, c.num_outputs)))
}

pub fn entries() -> Vec<ModelEntry> {
    vec![
        ModelEntry {
            name: "zfnet",
            family: "zfnet",
            description: "pytorchcv ZFNet (Zeiler & Fergus 2013, LRN), inputs of 207–238 per side",
            // The smallest valid input, for the registry tests (trained at 224×224).
            default_input: &[3, 207, 207],
            default_classes: 1000,
            first_layer: "features.stage1.unit1.conv",
            classifier: "output.fc3",
            options: &[],
            build: |p, c| build("zfnet", ZfNetConfig::zfnet(), p, c),
        },
        ModelEntry {
            name: "zfnetb",
            family: "zfnet",
            description: "pytorchcv ZFNet-b (wider stage 3: 512/1024/512), inputs of 207–238 per side",
            default_input: &[3, 207, 207],
            default_classes: 1000,
            first_layer: "features.stage1.unit1.conv",
            classifier: "output.fc3",
            options: &[],
            build: |p, c| build("zfnetb", ZfNetConfig::zfnetb(), p, c),
        },
        ModelEntry {
            name: "alexnet_lrn",
            family: "zfnet",
            description: "pytorchcv alexnet: the 2012 paper's AlexNet with LRN, inputs of 199–230 per side",
            default_input: &[3, 199, 199],
            default_classes: 1000,
            first_layer: "features.stage1.unit1.conv",
            classifier: "output.fc3",
            options: &[],
            build: |p, c| build("alexnet_lrn", ZfNetConfig::alexnet_lrn(), p, c),
        },
    ]
}
