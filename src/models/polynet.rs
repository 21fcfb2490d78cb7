//! PolyNet (Zhang et al. 2017, "PolyNet: A Pursuit of Structural Diversity in Very Deep Networks") as pytorchcv
//! builds it (`pytorchcv/models/polynet.py`): `polynet`, 95,366,600 parameters at 1,000 classes, made for 331×331.
//!
//! Every conv is a pytorchcv `ConvBlock` (`conv` without bias, `bn`, ReLU unless stated), kernels may be
//! rectangular (1×7, 7×1, 1×3, 3×1). A `Concurrent` container (`branches.branch{k}`) concatenates its branches'
//! outputs along the channels; a branch is a max pool (3×3/2, no padding, no parameters), one block (`conv`) or a
//! sequence `conv_list.conv{i}`.
//! - `features.init_block`: `conv1` 3×3/2, `conv2` 3×3, `conv3` 3×3 padded (32, 32, 64), then the Inception-v4 stem
//!   mixes `block1` (max pool ‖ 3×3/2 conv to 96), `block2` (1×1 → 3×3 to 96 ‖ 1×1 → 7×1 → 1×7 → 3×3 to 96) and
//!   `block3` (max pool ‖ 3×3/2 conv to 192): 384 channels.
//! - `features.stage1`: 10 units of a 2-way Inception-A module `twoway` (`res_blocks.0/1`, each three branches
//!   concatenated to 128 and a 1×1 `conv` block without ReLU back to 384): ReLU(x + s·F₀(x) + s·F₁(x)).
//! - `features.stage2`: `unit1` Reduction-A (to 1152), then 10 units of a poly-3 module `poly` followed by a 2-way
//!   Inception-B `twoway`. The poly module shares its convs between its three steps but not its BatchNorms
//!   (`PolyConv`: one `conv`, `bns.0/1/2`): with x₀ = x, step i computes rᵢ = `res_blocks.i`(`pre_block`(xᵢ, i))
//!   (the 1×1 `res_blocks` without ReLU), adds s·rᵢ to the output and passes xᵢ₊₁ = ReLU(rᵢ) on; the unit returns
//!   ReLU(x + s·r₀ + s·r₁ + s·r₂).
//! - `features.stage3`: `unit1` Reduction-B (to 2048), then 5 poly-3 + 2-way Inception-C units.
//! - `features.final_pool`, `output.dropout` (0.2), `output.fc`.
//!
//! The residual scales are code constants, pytorchcv's (decreasing linearly from 1.0 to 0.7 over the units).
//! pytorchcv's `final_pool` is `AvgPool2d(9)`, which with its flatten only fits inputs of 331 to 362 pixels, where
//! the last map is 9×9 and the pool is the global average; we use the global average, which equals it there and
//! lets smaller inputs through. The stem and the reductions halve a side five times with unpadded 3×3 convs and
//! pools, so 75×75 (the last map 1×1) is the smallest input. Initialisation as pytorchcv: convs kaiming-uniform (gain √2),
//! BatchNorm 1/0, `output.fc` PyTorch's default.
use tch::{Device, Kind, Tensor};

use super::{classifier_head_methods, forward_head_of_features, Model, ModelConfig, ModelEntry};
use crate::error::{Error, Result};
use crate::nn::{trace, AdaptiveAvgPool2d, BatchNorm, ClassifierHead, Dropout, Module, Path};

/// A bias-free conv of a rectangular kernel, kaiming-uniform (a = 0) as pytorchcv initialises PolyNet's convs.
#[derive(Debug)]
struct RectConv {
    name: String,
    weight: Tensor,
    stride: i64,
    padding: [i64; 2],
}

impl RectConv {
    fn new(p: &Path, c_in: i64, c_out: i64, kernel: [i64; 2], stride: i64, padding: [i64; 2]) -> Self {
        let bound = (6.0 / (c_in * kernel[0] * kernel[1]) as f64).sqrt();
        let init =
            Tensor::empty([c_out, c_in, kernel[0], kernel[1]], (Kind::Float, Device::Cpu)).uniform_(-bound, bound);
        RectConv { name: p.name().to_string(), weight: p.param("weight", init), stride, padding }
    }
}

impl Module for RectConv {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Tensor {
        let ys = xs.conv2d(&self.weight, None::<&Tensor>, [self.stride], self.padding, [1], 1);
        trace::record(&self.name, "Conv2d", &ys, self.weight.numel() as i64);
        ys
    }
}

/// A conv's shape: output channels, kernel, stride, padding.
#[derive(Debug, Clone, Copy)]
struct Spec {
    c_out: i64,
    kernel: [i64; 2],
    stride: i64,
    padding: [i64; 2],
}

/// A square k×k conv of `stride` and `padding`.
const fn sq(c_out: i64, k: i64, stride: i64, padding: i64) -> Spec {
    Spec { c_out, kernel: [k, k], stride, padding: [padding, padding] }
}

/// A k₀×k₁ conv of stride 1 padded to keep the size.
const fn rect(c_out: i64, k0: i64, k1: i64) -> Spec {
    Spec { c_out, kernel: [k0, k1], stride: 1, padding: [k0 / 2, k1 / 2] }
}

/// pytorchcv's `ConvBlock`: `conv` + `bn` (+ ReLU).
#[derive(Debug)]
struct ConvBlock {
    conv: RectConv,
    bn: BatchNorm,
    relu: bool,
}

impl ConvBlock {
    fn new(p: &Path, c_in: i64, s: Spec, relu: bool) -> Self {
        let conv = RectConv::new(&p.sub("conv"), c_in, s.c_out, s.kernel, s.stride, s.padding);
        ConvBlock { conv, bn: BatchNorm::new2d(&p.sub("bn"), s.c_out), relu }
    }
}

impl Module for ConvBlock {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let ys = self.bn.forward_t(&self.conv.forward_t(xs, train), train);
        if self.relu {
            ys.relu()
        } else {
            ys
        }
    }
}

/// A branch of a `Concurrent`: a 3×3/2 max pool, or convs in sequence.
#[derive(Debug)]
enum Branch {
    MaxPool,
    Convs(Vec<ConvBlock>),
}

impl Branch {
    /// pytorchcv's `ConvSeqBranch`: blocks `conv_list.conv{i}`.
    fn seq(p: &Path, mut c_in: i64, specs: &[Spec]) -> Self {
        let blocks = specs
            .iter()
            .enumerate()
            .map(|(i, &s)| {
                let block = ConvBlock::new(&p.sub("conv_list").sub(format!("conv{}", i + 1)), c_in, s, true);
                c_in = s.c_out;
                block
            })
            .collect();
        Branch::Convs(blocks)
    }
    /// pytorchcv's `Conv1x1Branch`/`Conv3x3Branch`: one block `conv`.
    fn single(p: &Path, c_in: i64, s: Spec) -> Self {
        Branch::Convs(vec![ConvBlock::new(&p.sub("conv"), c_in, s, true)])
    }
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        match self {
            Branch::MaxPool => xs.max_pool2d([3, 3], [2, 2], [0, 0], [1, 1], false),
            Branch::Convs(blocks) => blocks.iter().fold(xs.shallow_clone(), |ys, b| b.forward_t(&ys, train)),
        }
    }
}

/// pytorchcv's `Concurrent` of `branches.branch{k}`: the branches' outputs concatenated along the channels.
#[derive(Debug)]
struct Branches(Vec<Branch>);

impl Branches {
    fn new(p: &Path, make: impl FnOnce(&dyn Fn(usize) -> Path) -> Vec<Branch>) -> Self {
        let bp = p.sub("branches");
        Branches(make(&|k| bp.sub(format!("branch{k}"))))
    }
}

impl Module for Branches {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        Tensor::cat(&self.0.iter().map(|b| b.forward_t(xs, train)).collect::<Vec<_>>(), 1)
    }
}

/// `features.init_block`.
fn init_block(p: &Path, in_channels: i64) -> Vec<Box<dyn Module>> {
    vec![
        Box::new(ConvBlock::new(&p.sub("conv1"), in_channels, sq(32, 3, 2, 0), true)),
        Box::new(ConvBlock::new(&p.sub("conv2"), 32, sq(32, 3, 1, 0), true)),
        Box::new(ConvBlock::new(&p.sub("conv3"), 32, sq(64, 3, 1, 1), true)),
        Box::new(Branches::new(&p.sub("block1"), |b| {
            vec![Branch::MaxPool, Branch::single(&b(2), 64, sq(96, 3, 2, 0))]
        })),
        Box::new(Branches::new(&p.sub("block2"), |b| {
            vec![
                Branch::seq(&b(1), 160, &[sq(64, 1, 1, 0), sq(96, 3, 1, 0)]),
                Branch::seq(&b(2), 160, &[sq(64, 1, 1, 0), rect(64, 7, 1), rect(64, 1, 7), sq(96, 3, 1, 0)]),
            ]
        })),
        Box::new(Branches::new(&p.sub("block3"), |b| {
            vec![Branch::MaxPool, Branch::single(&b(2), 192, sq(192, 3, 2, 0))]
        })),
    ]
}

/// The three Inception types of the normal units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UnitKind {
    A,
    B,
    C,
}

impl UnitKind {
    fn channels(self) -> i64 {
        match self {
            UnitKind::A => 384,
            UnitKind::B => 1152,
            UnitKind::C => 2048,
        }
    }
}

/// A 2-way block's residual function (`TwoWayA/B/CBlock`): branches, then a 1×1 `conv` block without ReLU.
#[derive(Debug)]
struct TwoWayBlock {
    branches: Branches,
    conv: ConvBlock,
}

impl TwoWayBlock {
    fn new(p: &Path, kind: UnitKind) -> Self {
        let c = kind.channels();
        let (branches, concat) = match kind {
            UnitKind::A => (
                Branches::new(p, |b| {
                    vec![
                        Branch::seq(&b(1), c, &[sq(32, 1, 1, 0), sq(48, 3, 1, 1), sq(64, 3, 1, 1)]),
                        Branch::seq(&b(2), c, &[sq(32, 1, 1, 0), sq(32, 3, 1, 1)]),
                        Branch::single(&b(3), c, sq(32, 1, 1, 0)),
                    ]
                }),
                128,
            ),
            UnitKind::B => (
                Branches::new(p, |b| {
                    vec![
                        Branch::seq(&b(1), c, &[sq(128, 1, 1, 0), rect(160, 1, 7), rect(192, 7, 1)]),
                        Branch::single(&b(2), c, sq(192, 1, 1, 0)),
                    ]
                }),
                384,
            ),
            UnitKind::C => (
                Branches::new(p, |b| {
                    vec![
                        Branch::seq(&b(1), c, &[sq(192, 1, 1, 0), rect(224, 1, 3), rect(256, 3, 1)]),
                        Branch::single(&b(2), c, sq(192, 1, 1, 0)),
                    ]
                }),
                448,
            ),
        };
        TwoWayBlock { branches, conv: ConvBlock::new(&p.sub("conv"), concat, sq(c, 1, 1, 0), false) }
    }
}

impl Module for TwoWayBlock {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.conv.forward_t(&self.branches.forward_t(xs, train), train)
    }
}

/// pytorchcv's `PolyConv`: one `conv` shared by the poly module's steps, a BatchNorm `bns.{i}` per step, ReLU.
#[derive(Debug)]
struct PolyConv {
    conv: RectConv,
    bns: Vec<BatchNorm>,
}

impl PolyConv {
    fn new(p: &Path, c_in: i64, s: Spec, steps: usize) -> Self {
        let conv = RectConv::new(&p.sub("conv"), c_in, s.c_out, s.kernel, s.stride, s.padding);
        let bns = (0..steps).map(|i| BatchNorm::new2d(&p.sub("bns").sub(i), s.c_out)).collect();
        PolyConv { conv, bns }
    }
    fn forward_step(&self, xs: &Tensor, step: usize, train: bool) -> Tensor {
        self.bns[step].forward_t(&self.conv.forward_t(xs, train), train).relu()
    }
}

/// The poly-3 module (`PolyResidual`): `pre_block` (`PolyPreBBlock`/`PolyPreCBlock`: a sequence of PolyConvs
/// `branches.branch1.conv_list.conv{i}` ‖ one PolyConv `branches.branch2`) and three 1×1 `res_blocks`.
#[derive(Debug)]
struct PolyResidual {
    branch1: Vec<PolyConv>,
    branch2: PolyConv,
    res_blocks: Vec<ConvBlock>,
    scale: f64,
}

const POLY_STEPS: usize = 3;

impl PolyResidual {
    fn new(p: &Path, kind: UnitKind, scale: f64) -> Self {
        let c = kind.channels();
        let (seq, single, concat) = match kind {
            UnitKind::B => ([sq(128, 1, 1, 0), rect(160, 1, 7), rect(192, 7, 1)], sq(192, 1, 1, 0), 384),
            UnitKind::C => ([sq(192, 1, 1, 0), rect(224, 1, 3), rect(256, 3, 1)], sq(192, 1, 1, 0), 448),
            UnitKind::A => unreachable!("stage 1 has no poly modules"),
        };
        let bp = p.sub("pre_block").sub("branches");
        let mut c_in = c;
        let branch1 = seq
            .iter()
            .enumerate()
            .map(|(i, &s)| {
                let conv_p = bp.sub("branch1").sub("conv_list").sub(format!("conv{}", i + 1));
                let conv = PolyConv::new(&conv_p, c_in, s, POLY_STEPS);
                c_in = s.c_out;
                conv
            })
            .collect();
        let branch2 = PolyConv::new(&bp.sub("branch2"), c, single, POLY_STEPS);
        let res_blocks = (0..POLY_STEPS)
            .map(|i| ConvBlock::new(&p.sub("res_blocks").sub(i), concat, sq(c, 1, 1, 0), false))
            .collect();
        PolyResidual { branch1, branch2, res_blocks, scale }
    }
}

impl Module for PolyResidual {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut x = xs.shallow_clone();
        let mut scaled = vec![];
        for (step, res_block) in self.res_blocks.iter().enumerate() {
            let b1 = self.branch1.iter().fold(x.shallow_clone(), |ys, conv| conv.forward_step(&ys, step, train));
            let b2 = self.branch2.forward_step(&x, step, train);
            let r = res_block.forward_t(&Tensor::cat(&[b1, b2], 1), train);
            scaled.push(&r * self.scale);
            x = r.relu();
        }
        // x + s·r₀ + s·r₁ + s·r₂, added in the reference's order.
        scaled.iter().fold(xs.shallow_clone(), |out, r| out + r).relu()
    }
}

/// A normal unit: an optional poly-3 module `poly`, then the 2-way module `twoway` (`MultiResidual`,
/// `res_blocks.0/1`): ReLU(x + s·F₀(x) + s·F₁(x)).
#[derive(Debug)]
struct PolyUnit {
    poly: Option<PolyResidual>,
    twoway: [TwoWayBlock; 2],
    scale: f64,
}

impl PolyUnit {
    fn new(p: &Path, kind: UnitKind, two_way_scale: f64, poly_scale: f64) -> Self {
        let poly = (kind != UnitKind::A).then(|| PolyResidual::new(&p.sub("poly"), kind, poly_scale));
        let tp = p.sub("twoway").sub("res_blocks");
        let twoway = [TwoWayBlock::new(&tp.sub(0), kind), TwoWayBlock::new(&tp.sub(1), kind)];
        PolyUnit { poly, twoway, scale: two_way_scale }
    }
}

impl Module for PolyUnit {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let xs = match &self.poly {
            Some(poly) => poly.forward_t(xs, train),
            None => xs.shallow_clone(),
        };
        self.twoway.iter().fold(xs.shallow_clone(), |out, block| out + block.forward_t(&xs, train) * self.scale).relu()
    }
}

/// `ReductionAUnit` (384 → 1152) and `ReductionBUnit` (1152 → 2048).
fn reduction(p: &Path, b_type: bool) -> Branches {
    if !b_type {
        Branches::new(p, |b| {
            vec![
                Branch::seq(&b(1), 384, &[sq(256, 1, 1, 0), sq(256, 3, 1, 1), sq(384, 3, 2, 0)]),
                Branch::seq(&b(2), 384, &[sq(384, 3, 2, 0)]),
                Branch::MaxPool,
            ]
        })
    } else {
        Branches::new(p, |b| {
            vec![
                Branch::seq(&b(1), 1152, &[sq(256, 1, 1, 0), sq(256, 3, 1, 1), sq(256, 3, 2, 0)]),
                Branch::seq(&b(2), 1152, &[sq(256, 1, 1, 0), sq(256, 3, 2, 0)]),
                Branch::seq(&b(3), 1152, &[sq(256, 1, 1, 0), sq(384, 3, 2, 0)]),
                Branch::MaxPool,
            ]
        })
    }
}

/// pytorchcv's `two_way_scales` of the normal units (stage 1: units 1–10; stages 2 and 3: units 2–11 and 2–6).
const TWO_WAY_SCALES: [&[f64]; 3] = [
    &[1.000000, 0.992308, 0.984615, 0.976923, 0.969231, 0.961538, 0.953846, 0.946154, 0.938462, 0.930769],
    &[0.915385, 0.900000, 0.884615, 0.869231, 0.853846, 0.838462, 0.823077, 0.807692, 0.792308, 0.776923],
    &[0.761538, 0.746154, 0.730769, 0.715385, 0.700000],
];

/// pytorchcv's `poly_scales` of the poly-3 modules (stages 2 and 3).
const POLY_SCALES: [&[f64]; 2] = [
    &[0.923077, 0.907692, 0.892308, 0.876923, 0.861538, 0.846154, 0.830769, 0.815385, 0.800000, 0.784615],
    &[0.769231, 0.753846, 0.738462, 0.723077, 0.707692],
];

/// pytorchcv's `PolyNet`.
#[derive(Debug)]
pub struct PolyNet {
    /// The init block's parts, then the stages' units, in order.
    layers: Vec<Box<dyn Module>>,
    final_pool: AdaptiveAvgPool2d,
    dropout: Dropout,
    fc: ClassifierHead,
}

impl PolyNet {
    pub fn new(p: &Path, in_channels: i64, num_outputs: i64) -> Self {
        let f = p.sub("features");
        let mut layers = init_block(&f.sub("init_block"), in_channels);
        for (i, kind) in [UnitKind::A, UnitKind::B, UnitKind::C].into_iter().enumerate() {
            let sp = f.sub(format!("stage{}", i + 1));
            let mut unit = 1;
            if i > 0 {
                layers.push(Box::new(reduction(&sp.sub("unit1"), i == 2)));
                unit += 1;
            }
            for (j, &two_way) in TWO_WAY_SCALES[i].iter().enumerate() {
                let poly = if i > 0 { POLY_SCALES[i - 1][j] } else { 0.0 };
                layers.push(Box::new(PolyUnit::new(&sp.sub(format!("unit{}", unit + j)), kind, two_way, poly)));
            }
        }
        let final_pool = AdaptiveAvgPool2d::new(&f.sub("final_pool"), [1, 1]);
        let op = p.sub("output");
        let dropout = Dropout::new(&op.sub("dropout"), 0.2);
        let fc = ClassifierHead::linear(&op.sub("fc"), 2048, num_outputs);
        PolyNet { layers, final_pool, dropout, fc }
    }
}

forward_head_of_features!(PolyNet);

impl Model for PolyNet {
    fn forward_features(&self, xs: &Tensor, train: bool) -> Tensor {
        self.layers.iter().fold(xs.shallow_clone(), |ys, layer| layer.forward_t(&ys, train))
    }
    fn forward_head(&self, features: &Tensor, train: bool) -> Tensor {
        let ys = self.final_pool.forward_t(features, train).flatten(1, -1);
        self.fc.forward_t(&self.dropout.forward_t(&ys, train), train)
    }
    classifier_head_methods!(fc);
}

/// The side of the last map for an input side `s` (0 where a conv or pool no longer fits).
fn final_side(s: i64) -> i64 {
    let down = |s: i64| if s >= 3 { (s - 3) / 2 + 1 } else { 0 };
    let valid = |s: i64| if s >= 3 { s - 2 } else { 0 };
    // conv1 3×3/2, conv2 3×3, block1 3×3/2, block2 3×3, block3 3×3/2, Reduction-A, Reduction-B.
    down(down(down(valid(down(valid(down(s)))))))
}

/// The smallest input side PolyNet takes.
pub const MIN_SIDE: i64 = 75;

fn build(p: &Path, c: &ModelConfig) -> Result<Box<dyn Model>> {
    match c.input_shape.as_slice() {
        [ch, h, w] if *ch > 0 && final_side(*h) >= 1 && final_side(*w) >= 1 => {
            Ok(Box::new(PolyNet::new(p, *ch, c.num_outputs)))
        }
        shape => Err(Error::config(format!(
            "polynet takes images [C, H, W] of at least {MIN_SIDE}×{MIN_SIDE} (its stem and reductions shrink \
             them 32-fold; made for 331×331), got {shape:?}"
        ))),
    }
}

pub fn entries() -> Vec<ModelEntry> {
    vec![ModelEntry {
        name: "polynet",
        family: "polynet",
        description: "pytorchcv PolyNet (2-way Inception-A, poly-3 + 2-way Inception-B/C units; made for 331×331)",
        // The smallest size the stem and reductions allow.
        default_input: &[3, MIN_SIDE, MIN_SIDE],
        default_classes: 1000,
        first_layer: "features.init_block.conv1.conv",
        classifier: "output.fc",
        options: &[],
        build,
    }]
}
