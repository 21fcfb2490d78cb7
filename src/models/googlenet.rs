//! GoogLeNet (Inception v1; Szegedy et al. 2015, "Going Deeper with Convolutions") as torchvision builds it:
//! `googlenet`.
//!
//! Every conv is a `BasicConv2d` (`conv` without bias, `bn` with eps 1e-3, ReLU; shared with
//! [`super::inception`]). Stem `conv1` 7×7/2, `maxpool1`, `conv2` 1×1, `conv3` 3×3, `maxpool2`; Inception blocks
//! `inception3a/3b`, `maxpool3`, `4a…4e`, `maxpool4` (2×2), `5a/5b`; `avgpool` to 1×1, `dropout` 0.2, `fc`. All
//! max pools use `ceil_mode=True`. A block's branches: `branch1` 1×1; `branch2` 1×1 then 3×3; `branch3` 1×1 then
//! 3×3 (torchvision's, where the paper has 5×5: its weights were trained so); `branch4` a 3×3/1 max pool
//! (`branch4.0`) then 1×1 (`branch4.1`).
//!
//! The auxiliary classifiers `aux1` (on inception4a's map) and `aux2` (on 4d's), built unless
//! `aux_logits=false` and registered after `inception5b` as in torchvision: adaptive average pool to 4×4, `conv`
//! 1×1 to 128, `fc1` 2048→1024 + ReLU, `dropout` 0.7, `fc2`. As in torchvision they count only in training: they
//! run through [`Model::aux_outputs_t`] (main logits, then aux1's and aux2's), and the trainer adds each aux loss
//! weighted by `FitConfig::aux_loss_weight` (0.3, the paper's discount); `forward_t` returns the main logits in
//! both modes. `transform_input=true` (torchvision's default only with its pretrained weights) re-maps
//! ImageNet-normalised inputs to the (x − 0.5)/0.5 scaling of Google's ported weights.
//!
//! Initialisation as torchvision: conv and linear weights N(0, 0.01²) (torchvision truncates at ±2 = 200σ, never
//! reached), linear biases PyTorch's default, BatchNorm 1/0. 13,004,888 parameters at 1,000 classes, 6,624,904
//! without the aux heads. Inputs of at least 15×15 (trained at 224×224). `forward_features` returns inception5b's
//! map; `forward_head` pools, flattens, applies dropout and classifies.
use tch::Tensor;

use super::image_channels;
use super::inception::{transform_input, BasicConv2d};
use super::{forward_head_of_features, Model, ModelConfig, ModelEntry};
use crate::error::{Error, Result};
use crate::nn::init::normal_weight;
use crate::nn::{AdaptiveAvgPool2d, Dropout, Linear, Module, Path, Pool2d, PoolKind, Sequential};

const STD: f64 = 0.01;

/// An Inception block: four branches concatenated along the channels.
#[derive(Debug)]
struct Inception {
    branches: [Sequential; 4],
}

impl Inception {
    /// torchvision's `Inception(in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj)`.
    fn new(p: &Path, c_in: i64, widths: [i64; 6]) -> Self {
        let [c1, c3_red, c3, c5_red, c5, pool_proj] = widths;
        let conv = |b: &Path, c_in, c_out, k, pad| BasicConv2d::square(b, c_in, c_out, k, 1, pad, STD);
        let mut branch1 = Sequential::new();
        branch1.push(conv(&p.sub("branch1"), c_in, c1, 1, 0));
        let reduce_then_3x3 = |name: &str, red, c_out| {
            let b = p.sub(name);
            let mut seq = Sequential::new();
            seq.push(conv(&b.sub(0), c_in, red, 1, 0));
            seq.push(conv(&b.sub(1), red, c_out, 3, 1));
            seq
        };
        let branch2 = reduce_then_3x3("branch2", c3_red, c3);
        let branch3 = reduce_then_3x3("branch3", c5_red, c5);
        let b4 = p.sub("branch4");
        let mut branch4 = Sequential::new();
        branch4.push(Pool2d::new(&b4.sub(0), PoolKind::Max, 3, 1, 1).with_ceil_mode());
        branch4.push(conv(&b4.sub(1), c_in, pool_proj, 1, 0));
        Inception { branches: [branch1, branch2, branch3, branch4] }
    }
}

impl Module for Inception {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        Tensor::cat(&self.branches.iter().map(|b| b.forward_t(xs, train)).collect::<Vec<_>>(), 1)
    }
}

/// `InceptionAux`.
#[derive(Debug)]
struct AuxHead {
    conv: BasicConv2d,
    fc1: Linear,
    fc2: Linear,
    dropout: Dropout,
}

impl AuxHead {
    fn new(p: &Path, c_in: i64, num_outputs: i64) -> Self {
        let conv = BasicConv2d::square(&p.sub("conv"), c_in, 128, 1, 1, 0, STD);
        let fc1 = Linear::new(&p.sub("fc1"), 2048, 1024);
        normal_weight(&fc1, STD);
        AuxHead { conv, fc1, fc2: Self::fc2(p, num_outputs), dropout: Dropout::new(&p.sub("dropout"), 0.7) }
    }
    fn fc2(p: &Path, num_outputs: i64) -> Linear {
        let fc2 = Linear::new(&p.sub("fc2"), 1024, num_outputs);
        normal_weight(&fc2, STD);
        fc2
    }
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let ys = self.conv.forward_t(&xs.adaptive_avg_pool2d([4, 4]), train).flatten(1, -1);
        let ys = self.dropout.forward_t(&self.fc1.forward_t(&ys, train).relu(), train);
        self.fc2.forward_t(&ys, train)
    }
}

#[derive(Debug)]
pub struct GoogLeNet {
    transform_input: bool,
    /// conv1 … inception4a: the input of aux1.
    lower: Sequential,
    /// inception4b … 4d: the input of aux2.
    middle: Sequential,
    /// inception4e … 5b.
    upper: Sequential,
    aux: Option<[AuxHead; 2]>,
    avgpool: AdaptiveAvgPool2d,
    dropout: Dropout,
    fc: Linear,
    path: Path,
    num_outputs: i64,
}

impl GoogLeNet {
    pub fn new(p: &Path, in_channels: i64, num_outputs: i64, aux_logits: bool, transform_input: bool) -> Self {
        let maxpool = |name: &str, k| Pool2d::new(&p.sub(name), PoolKind::Max, k, 2, 0).with_ceil_mode();
        let inception = |name: &str, c_in, widths| Inception::new(&p.sub(name), c_in, widths);
        let mut lower = Sequential::new();
        lower.push(BasicConv2d::square(&p.sub("conv1"), in_channels, 64, 7, 2, 3, STD));
        lower.push(maxpool("maxpool1", 3));
        lower.push(BasicConv2d::square(&p.sub("conv2"), 64, 64, 1, 1, 0, STD));
        lower.push(BasicConv2d::square(&p.sub("conv3"), 64, 192, 3, 1, 1, STD));
        lower.push(maxpool("maxpool2", 3));
        lower.push(inception("inception3a", 192, [64, 96, 128, 16, 32, 32]));
        lower.push(inception("inception3b", 256, [128, 128, 192, 32, 96, 64]));
        lower.push(maxpool("maxpool3", 3));
        lower.push(inception("inception4a", 480, [192, 96, 208, 16, 48, 64]));
        let mut middle = Sequential::new();
        middle.push(inception("inception4b", 512, [160, 112, 224, 24, 64, 64]));
        middle.push(inception("inception4c", 512, [128, 128, 256, 24, 64, 64]));
        middle.push(inception("inception4d", 512, [112, 144, 288, 32, 64, 64]));
        let mut upper = Sequential::new();
        upper.push(inception("inception4e", 528, [256, 160, 320, 32, 128, 128]));
        upper.push(maxpool("maxpool4", 2));
        upper.push(inception("inception5a", 832, [256, 160, 320, 32, 128, 128]));
        upper.push(inception("inception5b", 832, [384, 192, 384, 48, 128, 128]));
        let aux = aux_logits
            .then(|| [AuxHead::new(&p.sub("aux1"), 512, num_outputs), AuxHead::new(&p.sub("aux2"), 528, num_outputs)]);
        GoogLeNet {
            transform_input,
            lower,
            middle,
            upper,
            aux,
            avgpool: AdaptiveAvgPool2d::new(&p.sub("avgpool"), [1, 1]),
            dropout: Dropout::new(&p.sub("dropout"), 0.2),
            fc: Self::fc(p, num_outputs),
            path: p.clone(),
            num_outputs,
        }
    }
    fn fc(p: &Path, num_outputs: i64) -> Linear {
        let fc = Linear::new(&p.sub("fc"), 1024, num_outputs);
        normal_weight(&fc, STD);
        fc
    }
    /// inception5b's map, and aux1's and aux2's logits when asked for (and built), in torchvision's order of
    /// evaluation (which is also the order of their dropout draws).
    fn run(&self, xs: &Tensor, train: bool, with_aux: bool) -> (Tensor, Vec<Tensor>) {
        let xs = if self.transform_input { transform_input(xs) } else { xs.shallow_clone() };
        let heads = self.aux.as_ref().filter(|_| with_aux);
        let mut aux = vec![];
        let ys = self.lower.forward_t(&xs, train);
        if let Some([aux1, _]) = heads {
            aux.push(aux1.forward_t(&ys, train));
        }
        let ys = self.middle.forward_t(&ys, train);
        if let Some([_, aux2]) = heads {
            aux.push(aux2.forward_t(&ys, train));
        }
        (self.upper.forward_t(&ys, train), aux)
    }

    /// The training forward pass with the auxiliary heads: (main, aux1, aux2) logits, as torchvision's
    /// `GoogLeNetOutputs` in train mode. `None` without aux heads (`aux_logits=false`).
    pub fn forward_train_with_aux(&self, xs: &Tensor) -> Option<(Tensor, Tensor, Tensor)> {
        let (main, mut aux) = self.aux_outputs_t(xs)?;
        let aux2 = aux.pop()?;
        let aux1 = aux.pop()?;
        Some((main, aux1, aux2))
    }
}

forward_head_of_features!(GoogLeNet);

impl Model for GoogLeNet {
    fn forward_features(&self, xs: &Tensor, train: bool) -> Tensor {
        self.run(xs, train, false).0
    }
    fn forward_head(&self, features: &Tensor, train: bool) -> Tensor {
        let ys = self.avgpool.forward_t(features, train).flatten(1, -1);
        self.fc.forward_t(&self.dropout.forward_t(&ys, train), train)
    }
    fn reset_classifier(&mut self, num_outputs: i64) {
        if let Some(heads) = &mut self.aux {
            for (i, head) in heads.iter_mut().enumerate() {
                let hp = self.path.sub(format!("aux{}", i + 1));
                head.fc2 = hp.sub("fc2").replace(|_| AuxHead::fc2(&hp, num_outputs));
            }
        }
        self.fc = self.path.sub("fc").replace(|_| Self::fc(&self.path, num_outputs));
        self.num_outputs = num_outputs;
    }
    fn num_outputs(&self) -> i64 {
        self.num_outputs
    }
    fn aux_outputs_t(&self, xs: &Tensor) -> Option<(Tensor, Vec<Tensor>)> {
        self.aux.as_ref()?;
        let (features, aux) = self.run(xs, true, true);
        Some((self.forward_head(&features, true), aux))
    }
}

fn build(p: &Path, c: &ModelConfig) -> Result<Box<dyn Model>> {
    let aux_logits = c.opt("aux_logits", true)?;
    let transform = c.opt("transform_input", false)?;
    let in_channels = image_channels(c, "googlenet", 15, "")?;
    if transform && in_channels != 3 {
        return Err(Error::config(format!(
            "googlenet option transform_input=true re-maps 3 RGB channels, but the input has {in_channels}"
        )));
    }
    Ok(Box::new(GoogLeNet::new(p, in_channels, c.num_outputs, aux_logits, transform)))
}

pub fn entries() -> Vec<ModelEntry> {
    vec![ModelEntry {
        name: "googlenet",
        family: "googlenet",
        description:
            "torchvision GoogLeNet / Inception v1 (options: aux_logits=true|false, transform_input=false|true)",
        // The smallest valid input, for the registry tests (trained at 224×224).
        default_input: &[3, 15, 15],
        default_classes: 1000,
        first_layer: "conv1",
        classifier: "fc",
        options: &["aux_logits", "transform_input"],
        build,
    }]
}
