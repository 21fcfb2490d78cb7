//! Inception v3 (Szegedy et al. 2016, "Rethinking the Inception Architecture") as torchvision builds it:
//! `inception_v3`.
//!
//! Every conv is a `BasicConv2d` (`conv` without bias, `bn` with eps 1e-3, ReLU). Stem `Conv2d_1a_3x3` …
//! `Conv2d_4a_3x3` with two 3×3/2 max pools (`maxpool1`, `maxpool2`), then the blocks `Mixed_5b/5c/5d`
//! (InceptionA), `Mixed_6a` (B, grid reduction), `Mixed_6b…6e` (C, factorised 1×7/7×1 convs), `Mixed_7a` (D, grid
//! reduction), `Mixed_7b/7c` (E, split 1×3/3×1 branches); the branches' pools are functional (3×3 average pools
//! with `count_include_pad=True`, 3×3/2 max pools) and so have no names. `avgpool` to 1×1, `dropout` 0.5, `fc`.
//! The auxiliary classifier `AuxLogits` (built unless `aux_logits=false`, registered between `Mixed_6e` and
//! `Mixed_7a` as in torchvision) reads `Mixed_6e`'s map: 5×5/3 average pool, `conv0` 1×1 to 128, `conv1` 5×5 to
//! 768, global average pool, `fc`. It runs only through [`Model::aux_outputs_t`] (training, where the trainer adds
//! its loss weighted by `FitConfig::aux_loss_weight`); `forward_t` returns the main logits in both modes.
//!
//! Input size: torchvision's smallest is 75×75, which leaves Mixed_6e at 3×3; the aux head needs it at least 17×17,
//! so with the aux head (the default) the model takes at least 299×299 (the size it was made for), and 75×75
//! with `aux_logits=false`. `transform_input=true` (torchvision's default only with its pretrained weights)
//! re-maps ImageNet-normalised inputs to the (x − 0.5)/0.5 scaling of Google's ported weights.
//!
//! Initialisation as torchvision: convs and linears N(0, 0.1²) (AuxLogits.fc 0.001²; torchvision truncates at
//! ±2, i.e. beyond 20σ, so a plain normal draw), BatchNorm 1/0, linear biases PyTorch's default. 27,161,264
//! parameters at 1,000 classes, 23,834,568 without the aux head. `forward_features` returns Mixed_7c's map;
//! `forward_head` pools, applies dropout, flattens and classifies.
use tch::{Device, Kind, Tensor};

use super::{forward_head_of_features, image_channels, Model, ModelConfig, ModelEntry};
use crate::error::{Error, Result};
use crate::nn::init::normal_weight;
use crate::nn::{trace, AdaptiveAvgPool2d, BatchNorm, Dropout, Linear, Module, Path, Pool2d, PoolKind};

/// torchvision's `BasicConv2d` (GoogLeNet, Inception v3): `conv` without bias, `bn` with eps 1e-3, ReLU. Kernels
/// and paddings may be rectangular (Inception's 1×7 and 7×1).
#[derive(Debug)]
pub(crate) struct BasicConv2d {
    name: String,
    weight: Tensor,
    stride: i64,
    padding: [i64; 2],
    bn: BatchNorm,
}

impl BasicConv2d {
    /// Weights N(0, std²).
    pub(crate) fn new(
        p: &Path,
        c_in: i64,
        c_out: i64,
        kernel: [i64; 2],
        stride: i64,
        padding: [i64; 2],
        std: f64,
    ) -> Self {
        let cp = p.sub("conv");
        let init = Tensor::randn([c_out, c_in, kernel[0], kernel[1]], (Kind::Float, Device::Cpu)) * std;
        let weight = cp.param("weight", init);
        let mut bn = BatchNorm::new2d(&p.sub("bn"), c_out);
        bn.eps = 1e-3;
        BasicConv2d { name: cp.name().to_string(), weight, stride, padding, bn }
    }
    /// A square `kernel` with `padding` on every side.
    pub(crate) fn square(p: &Path, c_in: i64, c_out: i64, kernel: i64, stride: i64, padding: i64, std: f64) -> Self {
        Self::new(p, c_in, c_out, [kernel, kernel], stride, [padding, padding], std)
    }
}

impl Module for BasicConv2d {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let ys = xs.conv2d(&self.weight, None::<&Tensor>, [self.stride], self.padding, [1], 1);
        trace::record(&self.name, "Conv2d", &ys, self.weight.numel() as i64);
        self.bn.forward_t(&ys, train).relu()
    }
}

/// torchvision's `transform_input`: ImageNet-normalised channels re-mapped to the (x − 0.5)/0.5 scaling that
/// Google's ported GoogLeNet and Inception v3 weights expect.
pub(crate) fn transform_input(xs: &Tensor) -> Tensor {
    let channels: Vec<Tensor> = [(0.229, 0.485), (0.224, 0.456), (0.225, 0.406)]
        .iter()
        .enumerate()
        .map(|(i, (std, mean))| xs.narrow(1, i as i64, 1) * (std / 0.5) + (mean - 0.5) / 0.5)
        .collect();
    Tensor::cat(&channels, 1)
}

const STD: f64 = 0.1;

/// What a branch does to the block's input before its convs.
#[derive(Debug, Clone, Copy)]
enum Pre {
    None,
    /// 3×3 average pool, stride 1, padding 1, padding counted (F.avg_pool2d's default).
    AvgPool,
    /// 3×3 max pool, stride 2.
    MaxPool,
}

/// One branch of an Inception block: an optional pool, a chain of convs, and for InceptionE a split into a
/// 1×3 and a 3×1 conv whose outputs are concatenated.
#[derive(Debug)]
struct Branch {
    pre: Pre,
    convs: Vec<BasicConv2d>,
    split: Option<(BasicConv2d, BasicConv2d)>,
}

impl Branch {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut ys = match self.pre {
            Pre::None => xs.shallow_clone(),
            Pre::AvgPool => xs.avg_pool2d([3, 3], [1, 1], [1, 1], false, true, None),
            Pre::MaxPool => xs.max_pool2d([3, 3], [2, 2], [0, 0], [1, 1], false),
        };
        for conv in &self.convs {
            ys = conv.forward_t(&ys, train);
        }
        match &self.split {
            None => ys,
            Some((a, b)) => Tensor::cat(&[a.forward_t(&ys, train), b.forward_t(&ys, train)], 1),
        }
    }
}

/// An Inception block: branches concatenated along the channels, each built (and so registered) in torchvision's
/// order.
#[derive(Debug)]
struct Block {
    branches: Vec<Branch>,
}

impl Module for Block {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        Tensor::cat(&self.branches.iter().map(|b| b.forward_t(xs, train)).collect::<Vec<_>>(), 1)
    }
}

/// A conv of a block: name, c_in, c_out, kernel, stride, padding.
type Spec<'a> = (&'a str, i64, i64, [i64; 2], i64, [i64; 2]);

const K1: [i64; 2] = [1, 1];
const K3: [i64; 2] = [3, 3];
const P0: [i64; 2] = [0, 0];
const P1: [i64; 2] = [1, 1];

fn convs(p: &Path, specs: &[Spec]) -> Vec<BasicConv2d> {
    specs.iter().map(|&(name, ci, co, k, s, pad)| BasicConv2d::new(&p.sub(name), ci, co, k, s, pad, STD)).collect()
}

fn branch(p: &Path, pre: Pre, specs: &[Spec]) -> Branch {
    Branch { pre, convs: convs(p, specs), split: None }
}

/// A branch ending in InceptionE's split: `specs`, then `a` (1×3) and `b` (3×1) from `c` channels.
fn split_branch(p: &Path, specs: &[Spec], a: &str, b: &str, c: i64) -> Branch {
    let convs = convs(p, specs);
    let a = BasicConv2d::new(&p.sub(a), c, 384, [1, 3], 1, [0, 1], STD);
    let b = BasicConv2d::new(&p.sub(b), c, 384, [3, 1], 1, [1, 0], STD);
    Branch { pre: Pre::None, convs, split: Some((a, b)) }
}

fn inception_a(p: &Path, c_in: i64, pool_features: i64) -> Block {
    Block {
        branches: vec![
            branch(p, Pre::None, &[("branch1x1", c_in, 64, K1, 1, P0)]),
            branch(p, Pre::None, &[("branch5x5_1", c_in, 48, K1, 1, P0), ("branch5x5_2", 48, 64, [5, 5], 1, [2, 2])]),
            branch(
                p,
                Pre::None,
                &[
                    ("branch3x3dbl_1", c_in, 64, K1, 1, P0),
                    ("branch3x3dbl_2", 64, 96, K3, 1, P1),
                    ("branch3x3dbl_3", 96, 96, K3, 1, P1),
                ],
            ),
            branch(p, Pre::AvgPool, &[("branch_pool", c_in, pool_features, K1, 1, P0)]),
        ],
    }
}

fn inception_b(p: &Path, c_in: i64) -> Block {
    Block {
        branches: vec![
            branch(p, Pre::None, &[("branch3x3", c_in, 384, K3, 2, P0)]),
            branch(
                p,
                Pre::None,
                &[
                    ("branch3x3dbl_1", c_in, 64, K1, 1, P0),
                    ("branch3x3dbl_2", 64, 96, K3, 1, P1),
                    ("branch3x3dbl_3", 96, 96, K3, 2, P0),
                ],
            ),
            branch(p, Pre::MaxPool, &[]),
        ],
    }
}

fn inception_c(p: &Path, c_in: i64, c7: i64) -> Block {
    let (k17, k71, p17, p71) = ([1, 7], [7, 1], [0, 3], [3, 0]);
    Block {
        branches: vec![
            branch(p, Pre::None, &[("branch1x1", c_in, 192, K1, 1, P0)]),
            branch(
                p,
                Pre::None,
                &[
                    ("branch7x7_1", c_in, c7, K1, 1, P0),
                    ("branch7x7_2", c7, c7, k17, 1, p17),
                    ("branch7x7_3", c7, 192, k71, 1, p71),
                ],
            ),
            branch(
                p,
                Pre::None,
                &[
                    ("branch7x7dbl_1", c_in, c7, K1, 1, P0),
                    ("branch7x7dbl_2", c7, c7, k71, 1, p71),
                    ("branch7x7dbl_3", c7, c7, k17, 1, p17),
                    ("branch7x7dbl_4", c7, c7, k71, 1, p71),
                    ("branch7x7dbl_5", c7, 192, k17, 1, p17),
                ],
            ),
            branch(p, Pre::AvgPool, &[("branch_pool", c_in, 192, K1, 1, P0)]),
        ],
    }
}

fn inception_d(p: &Path, c_in: i64) -> Block {
    Block {
        branches: vec![
            branch(p, Pre::None, &[("branch3x3_1", c_in, 192, K1, 1, P0), ("branch3x3_2", 192, 320, K3, 2, P0)]),
            branch(
                p,
                Pre::None,
                &[
                    ("branch7x7x3_1", c_in, 192, K1, 1, P0),
                    ("branch7x7x3_2", 192, 192, [1, 7], 1, [0, 3]),
                    ("branch7x7x3_3", 192, 192, [7, 1], 1, [3, 0]),
                    ("branch7x7x3_4", 192, 192, K3, 2, P0),
                ],
            ),
            branch(p, Pre::MaxPool, &[]),
        ],
    }
}

fn inception_e(p: &Path, c_in: i64) -> Block {
    Block {
        branches: vec![
            branch(p, Pre::None, &[("branch1x1", c_in, 320, K1, 1, P0)]),
            split_branch(p, &[("branch3x3_1", c_in, 384, K1, 1, P0)], "branch3x3_2a", "branch3x3_2b", 384),
            split_branch(
                p,
                &[("branch3x3dbl_1", c_in, 448, K1, 1, P0), ("branch3x3dbl_2", 448, 384, K3, 1, P1)],
                "branch3x3dbl_3a",
                "branch3x3dbl_3b",
                384,
            ),
            branch(p, Pre::AvgPool, &[("branch_pool", c_in, 192, K1, 1, P0)]),
        ],
    }
}

/// `InceptionAux` on Mixed_6e's 768-channel map.
#[derive(Debug)]
struct AuxHead {
    conv0: BasicConv2d,
    conv1: BasicConv2d,
    fc: Linear,
}

impl AuxHead {
    const FC_STD: f64 = 0.001;

    fn new(p: &Path, c_in: i64, num_outputs: i64) -> Self {
        let conv0 = BasicConv2d::square(&p.sub("conv0"), c_in, 128, 1, 1, 0, STD);
        // torchvision sets `stddev = 0.01` on the BasicConv2d, which its init never reads: the conv gets 0.1.
        let conv1 = BasicConv2d::square(&p.sub("conv1"), 128, 768, 5, 1, 0, STD);
        AuxHead { conv0, conv1, fc: Self::fc(p, num_outputs) }
    }
    fn fc(p: &Path, num_outputs: i64) -> Linear {
        let fc = Linear::new(&p.sub("fc"), 768, num_outputs);
        normal_weight(&fc, Self::FC_STD);
        fc
    }
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let ys = xs.avg_pool2d([5, 5], [3, 3], [0, 0], false, true, None);
        let ys = self.conv1.forward_t(&self.conv0.forward_t(&ys, train), train);
        self.fc.forward_t(&ys.adaptive_avg_pool2d([1, 1]).flatten(1, -1), train)
    }
}

#[derive(Debug)]
pub struct InceptionV3 {
    transform_input: bool,
    /// Conv2d_1a_3x3 … Mixed_6e: the input of the aux head.
    lower: Vec<Box<dyn Module>>,
    aux: Option<AuxHead>,
    /// Mixed_7a … Mixed_7c.
    upper: Vec<Block>,
    avgpool: AdaptiveAvgPool2d,
    dropout: Dropout,
    fc: Linear,
    path: Path,
    num_outputs: i64,
}

impl InceptionV3 {
    pub fn new(p: &Path, in_channels: i64, num_outputs: i64, aux_logits: bool, transform_input: bool) -> Self {
        let conv = |name: &str, c_in, c_out, k, stride, pad| -> Box<dyn Module> {
            Box::new(BasicConv2d::square(&p.sub(name), c_in, c_out, k, stride, pad, STD))
        };
        let maxpool = |name: &str| -> Box<dyn Module> { Box::new(Pool2d::new(&p.sub(name), PoolKind::Max, 3, 2, 0)) };
        let lower: Vec<Box<dyn Module>> = vec![
            conv("Conv2d_1a_3x3", in_channels, 32, 3, 2, 0),
            conv("Conv2d_2a_3x3", 32, 32, 3, 1, 0),
            conv("Conv2d_2b_3x3", 32, 64, 3, 1, 1),
            maxpool("maxpool1"),
            conv("Conv2d_3b_1x1", 64, 80, 1, 1, 0),
            conv("Conv2d_4a_3x3", 80, 192, 3, 1, 0),
            maxpool("maxpool2"),
            Box::new(inception_a(&p.sub("Mixed_5b"), 192, 32)),
            Box::new(inception_a(&p.sub("Mixed_5c"), 256, 64)),
            Box::new(inception_a(&p.sub("Mixed_5d"), 288, 64)),
            Box::new(inception_b(&p.sub("Mixed_6a"), 288)),
            Box::new(inception_c(&p.sub("Mixed_6b"), 768, 128)),
            Box::new(inception_c(&p.sub("Mixed_6c"), 768, 160)),
            Box::new(inception_c(&p.sub("Mixed_6d"), 768, 160)),
            Box::new(inception_c(&p.sub("Mixed_6e"), 768, 192)),
        ];
        let aux = aux_logits.then(|| AuxHead::new(&p.sub("AuxLogits"), 768, num_outputs));
        let upper = vec![
            inception_d(&p.sub("Mixed_7a"), 768),
            inception_e(&p.sub("Mixed_7b"), 1280),
            inception_e(&p.sub("Mixed_7c"), 2048),
        ];
        InceptionV3 {
            transform_input,
            lower,
            aux,
            upper,
            avgpool: AdaptiveAvgPool2d::new(&p.sub("avgpool"), [1, 1]),
            dropout: Dropout::new(&p.sub("dropout"), 0.5),
            fc: Self::fc(p, num_outputs),
            path: p.clone(),
            num_outputs,
        }
    }
    fn fc(p: &Path, num_outputs: i64) -> Linear {
        let fc = Linear::new(&p.sub("fc"), 2048, num_outputs);
        normal_weight(&fc, STD);
        fc
    }
    /// Mixed_7c's map, and the aux logits when asked for (and built).
    fn run(&self, xs: &Tensor, train: bool, with_aux: bool) -> (Tensor, Option<Tensor>) {
        let mut ys = if self.transform_input { transform_input(xs) } else { xs.shallow_clone() };
        for layer in &self.lower {
            ys = layer.forward_t(&ys, train);
        }
        let aux = self.aux.as_ref().filter(|_| with_aux).map(|head| head.forward_t(&ys, train));
        for block in &self.upper {
            ys = block.forward_t(&ys, train);
        }
        (ys, aux)
    }
}

forward_head_of_features!(InceptionV3);

impl Model for InceptionV3 {
    fn forward_features(&self, xs: &Tensor, train: bool) -> Tensor {
        self.run(xs, train, false).0
    }
    fn forward_head(&self, features: &Tensor, train: bool) -> Tensor {
        let ys = self.dropout.forward_t(&self.avgpool.forward_t(features, train), train);
        self.fc.forward_t(&ys.flatten(1, -1), train)
    }
    fn reset_classifier(&mut self, num_outputs: i64) {
        if let Some(aux) = &mut self.aux {
            let aux_path = self.path.sub("AuxLogits");
            aux.fc = aux_path.sub("fc").replace(|_| AuxHead::fc(&aux_path, num_outputs));
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
        Some((self.forward_head(&features, true), aux.into_iter().collect()))
    }
}

fn build(p: &Path, c: &ModelConfig) -> Result<Box<dyn Model>> {
    let aux_logits = c.opt("aux_logits", true)?;
    let transform = c.opt("transform_input", false)?;
    let in_channels = if aux_logits {
        image_channels(
            c,
            "inception_v3",
            299,
            " (its aux head needs Mixed_6e's map at 17×17 in training; with aux_logits=false 75×75 will do)",
        )?
    } else {
        image_channels(c, "inception_v3:aux_logits=false", 75, "")?
    };
    if transform && in_channels != 3 {
        return Err(Error::config(format!(
            "inception_v3 option transform_input=true re-maps 3 RGB channels, but the input has {in_channels}"
        )));
    }
    Ok(Box::new(InceptionV3::new(p, in_channels, c.num_outputs, aux_logits, transform)))
}

pub fn entries() -> Vec<ModelEntry> {
    vec![ModelEntry {
        name: "inception_v3",
        family: "inception",
        description: "torchvision Inception v3 (options: aux_logits=true|false, transform_input=false|true)",
        // The smallest input the aux head can be trained at (75×75 with aux_logits=false).
        default_input: &[3, 299, 299],
        default_classes: 1000,
        first_layer: "Conv2d_1a_3x3",
        classifier: "fc",
        options: &["aux_logits", "transform_input"],
        build,
    }]
}
