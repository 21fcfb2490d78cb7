//! BN-Inception (Ioffe & Szegedy 2015, "Batch Normalization", the Inception v2 of the paper) and Inception-ResNet
//! v1 (Szegedy et al. 2017) as pytorchcv builds them (`pytorchcv/models/bninception.py`, `inceptionresnetv1.py`),
//! on the conv-block kit of src/models/inception4.rs.
//!
//! Every conv is a pytorchcv `ConvBlock`: `conv` → `bn` → ReLU (`activ`, no state). Branches sit under
//! `branches.branch1…` and are concatenated in that order.
//! - `bninception`: convs with biases, BatchNorm eps 1e-5. `features.init_block`: `conv1` (7×7/2, pad 3, to 64),
//!   max `pool1`, `conv2` (`conv1` 1×1 + `conv2` 3×3 to 192), max `pool2`. Stages `stage1` (units 3a, 3b),
//!   `stage2` (3c, 4a–4d), `stage3` (4e, 5a, 5b). A unit is an InceptionBlock — `branch1` 1×1 block, `branch2`
//!   (`conv1` 1×1, `conv2` 3×3), `branch3` (`conv1` 1×1, `conv2`, `conv3` 3×3), `branch4` (`pool` 3×3/1 pad 1, then
//!   `conv` 1×1): an average pool counting the padding, a max pool in the very last unit (5b) — or, first in
//!   stages 2 and 3, a ReductionBlock (`branch1` and `branch2` as above with the last 3×3 at stride 2, `branch3` a
//!   3×3/2 max pool). Every max pool has `ceil_mode=True`; the 3×3/2 ones (stem and reductions) have no padding.
//!   Then `final_pool` and the classifier `output` (1024 → classes).
//! - `inceptionresnetv1`: convs without biases, BatchNorm eps 1e-3. `features.init_block` `conv1…conv6` (3×3/2,
//!   3×3, 3×3 pad 1, max `pool` 3×3/2, 1×1 to 80, 3×3 to 192, 3×3/2 to 256); `stage1` units 1–5 (InceptionA, 256
//!   channels, scale 0.17), `stage2` unit 1 ReductionA (to 896) and units 2–11 (InceptionB, 1×7/7×1, scale 0.10),
//!   `stage3` unit 1 ReductionB (to 1792) and units 2–7 (InceptionC, 1×3/3×1, scale 0.2; the last with scale 1 and
//!   no ReLU). A residual unit's branches are `branch1.conv` (1×1 block) and `branchN.conv_list.convK`; their
//!   concatenation goes through a 1×1 `conv` with bias, scaled, added to the input. Reduction branches are
//!   `conv_list`s and a max pool (3×3/2, floor mode). Then `final_pool` and the head `output`: `dropout` (0.6) →
//!   `fc1` (1792 → 512, no bias) → BatchNorm1d `bn` (eps 1e-3) → the classifier `fc2`; `reset_classifier`
//!   replaces `fc2` and keeps the 512-wide embedding.
//!
//! pytorchcv's `final_pool` is `AvgPool2d(7)` (bninception, 224×224 inputs) and `AvgPool2d(8)`
//! (inceptionresnetv1, 299×299): the global average at those sizes, which we use at every size.
//! Input sizes: inceptionresnetv1 takes at least 75×75. bninception's reductions meet a 3×3/2 conv (padding 1)
//! and a ceil-mode 3×3/2 max pool (no padding), which agree only on some sizes: a side is valid where its remainder
//! mod 32 is 31 or 0–6 (31…38, 63…70, …, 223…230), 31 the smallest.
//! Initialisation: bninception as pytorchcv (convs kaiming-uniform, gain √2, biases 0; BatchNorm 1/0; Linear
//! PyTorch's default). pytorchcv's `InceptionResNetV1._init_params` iterates `named_modules()` pairs and never
//! matches a conv, so that model keeps PyTorch's defaults (U(±1/√fan_in)), as we do.
use super::image_channels;
use super::inception4::{
    chain, k1, rect, sq, Branch, Concat, ConvBnAct, ConvStyle, Cv, Embedding, InceptionNet, Init, Residual, MIN_SIDE,
    MIN_WHY,
};
use super::{Model, ModelConfig, ModelEntry};
use crate::error::{Error, Result};
use crate::nn::{BatchNorm, Dropout, Linear, Module, Path, Pool2d, PoolKind};

/// pytorchcv's BN-Inception blocks: biased convs, eps 1e-5, kaiming-uniform.
const BN_INCEPTION: ConvStyle = ConvStyle { eps: 1e-5, bias: true, init: Init::KaimingUniform };

/// pytorchcv's Inception-ResNet v1 blocks: no conv bias, eps 1e-3, PyTorch's default initialisation.
const IRV1: ConvStyle = ConvStyle { eps: 1e-3, bias: false, init: Init::Torch };

/// Conv blocks `conv1`, `conv2`, … under `p`.
fn numbered(p: &Path, cvs: &[Cv], style: ConvStyle) -> Vec<ConvBnAct> {
    chain(p, cvs, style, |i| format!("conv{}", i + 1))
}

/// A ceil-mode 3×3 max pool with `stride` (padding 1 where the stride is 1).
fn ceil_max_pool(p: &Path, stride: i64) -> Pool2d {
    Pool2d::new(p, PoolKind::Max, 3, stride, if stride == 1 { 1 } else { 0 }).with_ceil_mode()
}

/// BN-Inception's InceptionBlock (`reduce` false) or ReductionBlock (`reduce` true): `mid` are the 1×1 widths of
/// branches 2 and 3, `out` the four branches' outputs (branches 1 and 4 absent in a reduction). Returns the block
/// and its output channels.
fn bn_unit(p: &Path, c_in: i64, mid: [i64; 2], out: [i64; 4], reduce: bool, avg_pool: bool) -> (Concat, i64) {
    let b = p.sub("branches");
    let s = if reduce { 2 } else { 1 };
    let (b2, b3) = if reduce { ("branch1", "branch2") } else { ("branch2", "branch3") };
    let mut branches = vec![];
    if !reduce {
        branches.push(Branch::convs(vec![ConvBnAct::new(&b.sub("branch1"), k1(c_in, out[0]), BN_INCEPTION)]));
    }
    branches.push(Branch::convs(numbered(&b.sub(b2), &[k1(c_in, mid[0]), sq(mid[0], out[1], 3, s, 1)], BN_INCEPTION)));
    branches.push(Branch::convs(numbered(
        &b.sub(b3),
        &[k1(c_in, mid[1]), sq(mid[1], out[2], 3, 1, 1), sq(out[2], out[2], 3, s, 1)],
        BN_INCEPTION,
    )));
    if reduce {
        branches.push(Branch::pooled(ceil_max_pool(&b.sub("branch3"), 2), vec![]));
        (Concat(branches), out[1] + out[2] + c_in)
    } else {
        let bp = b.sub("branch4");
        let pool = bp.sub("pool");
        let conv = vec![ConvBnAct::new(&bp.sub("conv"), k1(c_in, out[3]), BN_INCEPTION)];
        branches.push(if avg_pool {
            Branch::pooled(Pool2d::new(&pool, PoolKind::Avg, 3, 1, 1).with_ceil_mode(), conv)
        } else {
            Branch::pooled(ceil_max_pool(&pool, 1), conv)
        });
        (Concat(branches), out.iter().sum())
    }
}

/// pytorchcv's `bninception`.
pub fn bninception(p: &Path, in_channels: i64, num_outputs: i64) -> InceptionNet {
    let f = p.sub("features");
    let init = f.sub("init_block");
    let mut features: Vec<Box<dyn Module>> = vec![
        Box::new(ConvBnAct::new(&init.sub("conv1"), sq(in_channels, 64, 7, 2, 3), BN_INCEPTION)),
        Box::new(ceil_max_pool(&init.sub("pool1"), 2)),
        Box::new(Branch::convs(numbered(&init.sub("conv2"), &[k1(64, 64), sq(64, 192, 3, 1, 1)], BN_INCEPTION))),
        Box::new(ceil_max_pool(&init.sub("pool2"), 2)),
    ];
    // Per stage, per unit: the 1×1 widths of branches 2-3 and the outputs of branches 1-4 (pytorchcv's lists).
    let stages: [&[([i64; 2], [i64; 4])]; 3] = [
        &[([64, 64], [64, 64, 96, 32]), ([64, 64], [64, 96, 96, 64])],
        &[
            ([128, 64], [0, 160, 96, 0]),
            ([64, 96], [224, 96, 128, 128]),
            ([96, 96], [192, 128, 128, 128]),
            ([128, 128], [160, 160, 160, 128]),
            ([128, 160], [96, 192, 192, 128]),
        ],
        &[([128, 192], [0, 192, 256, 0]), ([192, 160], [352, 320, 224, 128]), ([192, 192], [352, 320, 224, 128])],
    ];
    let mut c_in = 192;
    for (i, units) in stages.iter().enumerate() {
        let sp = f.sub(format!("stage{}", i + 1));
        for (j, &(mid, out)) in units.iter().enumerate() {
            let reduce = i > 0 && j == 0;
            let avg_pool = !(i == stages.len() - 1 && j == units.len() - 1);
            let (unit, c_out) = bn_unit(&sp.sub(format!("unit{}", j + 1)), c_in, mid, out, reduce, avg_pool);
            features.push(Box::new(unit));
            c_in = c_out;
        }
    }
    InceptionNet::new(features, &f.sub("final_pool"), None, &p.sub("output"), c_in, num_outputs)
}

/// PyTorch's pooling output size of a 3×3 window (`None` where it would be empty).
fn pool_out(size: i64, stride: i64, padding: i64, ceil: bool) -> Option<i64> {
    let span = size + 2 * padding - 3 + if ceil { stride - 1 } else { 0 };
    let mut out = span.div_euclid(stride) + 1;
    if ceil && (out - 1) * stride >= size + padding {
        out -= 1;
    }
    (out > 0).then_some(out)
}

/// Whether bninception takes a side of `size` pixels: every map is non-empty and both reductions' conv and pool
/// branches give the same size.
fn bninception_fits(size: i64) -> bool {
    let conv_s2 = |s: i64, k: i64, pad: i64| (s + 2 * pad >= k).then(|| (s + 2 * pad - k) / 2 + 1);
    let Some(s) = conv_s2(size, 7, 3).and_then(|s| pool_out(s, 2, 0, true)) else { return false };
    let Some(mut s) = pool_out(s, 2, 0, true) else { return false };
    for _ in 0..2 {
        match (conv_s2(s, 3, 1), pool_out(s, 2, 0, true)) {
            (Some(a), Some(b)) if a == b => s = a,
            _ => return false,
        }
    }
    true
}

// Inception-ResNet v1's units.

/// `branches.branch1.conv`: a 1×1 block.
fn conv1x1_branch(b: &Path, c_in: i64, c_out: i64) -> Branch {
    Branch::convs(vec![ConvBnAct::new(&b.sub("branch1").sub("conv"), k1(c_in, c_out), IRV1)])
}

/// `branches.<name>.conv_list.conv1…`.
fn seq_branch(b: &Path, name: &str, cvs: &[Cv]) -> Branch {
    Branch::convs(numbered(&b.sub(name).sub("conv_list"), cvs, IRV1))
}

fn max_pool_branch(b: &Path, name: &str) -> Branch {
    Branch::pooled(Pool2d::new(&b.sub(name).sub("pool"), PoolKind::Max, 3, 2, 0), vec![])
}

/// InceptionA/B/C units: `c` channels, the branches of the unit, their concatenated width, scale and ReLU.
fn residual_unit(p: &Path, c: i64, kind: char, scale: f64, relu: bool) -> Residual {
    let b = p.sub("branches");
    let (branches, c_cat) = match kind {
        'A' => (
            vec![
                conv1x1_branch(&b, c, 32),
                seq_branch(&b, "branch2", &[k1(c, 32), sq(32, 32, 3, 1, 1)]),
                seq_branch(&b, "branch3", &[k1(c, 32), sq(32, 32, 3, 1, 1), sq(32, 32, 3, 1, 1)]),
            ],
            96,
        ),
        'B' => (
            vec![
                conv1x1_branch(&b, c, 128),
                seq_branch(&b, "branch2", &[k1(c, 128), rect(128, 128, [1, 7]), rect(128, 128, [7, 1])]),
            ],
            256,
        ),
        _ => (
            vec![
                conv1x1_branch(&b, c, 192),
                seq_branch(&b, "branch2", &[k1(c, 192), rect(192, 192, [1, 3]), rect(192, 192, [3, 1])]),
            ],
            384,
        ),
    };
    Residual::new(branches, &p.sub("conv"), c_cat, c, scale, relu)
}

fn reduction_a(p: &Path) -> Concat {
    let b = p.sub("branches");
    Concat(vec![
        seq_branch(&b, "branch1", &[sq(256, 384, 3, 2, 0)]),
        seq_branch(&b, "branch2", &[k1(256, 192), sq(192, 192, 3, 1, 1), sq(192, 256, 3, 2, 0)]),
        max_pool_branch(&b, "branch3"),
    ])
}

fn reduction_b(p: &Path) -> Concat {
    let b = p.sub("branches");
    Concat(vec![
        seq_branch(&b, "branch1", &[k1(896, 256), sq(256, 384, 3, 2, 0)]),
        seq_branch(&b, "branch2", &[k1(896, 256), sq(256, 256, 3, 2, 0)]),
        seq_branch(&b, "branch3", &[k1(896, 256), sq(256, 256, 3, 1, 1), sq(256, 256, 3, 2, 0)]),
        max_pool_branch(&b, "branch4"),
    ])
}

/// pytorchcv's `inceptionresnetv1`.
pub fn inceptionresnetv1(p: &Path, in_channels: i64, num_outputs: i64) -> InceptionNet {
    let f = p.sub("features");
    let init = f.sub("init_block");
    let block = |name: &str, cv| -> Box<dyn Module> { Box::new(ConvBnAct::new(&init.sub(name), cv, IRV1)) };
    let mut features: Vec<Box<dyn Module>> = vec![
        block("conv1", sq(in_channels, 32, 3, 2, 0)),
        block("conv2", sq(32, 32, 3, 1, 0)),
        block("conv3", sq(32, 64, 3, 1, 1)),
        Box::new(Pool2d::new(&init.sub("pool"), PoolKind::Max, 3, 2, 0)),
        block("conv4", k1(64, 80)),
        block("conv5", sq(80, 192, 3, 1, 0)),
        block("conv6", sq(192, 256, 3, 2, 0)),
    ];
    let unit = |stage: usize, j: usize| f.sub(format!("stage{stage}")).sub(format!("unit{j}"));
    for j in 1..=5 {
        features.push(Box::new(residual_unit(&unit(1, j), 256, 'A', 0.17, true)));
    }
    features.push(Box::new(reduction_a(&unit(2, 1))));
    for j in 2..=11 {
        features.push(Box::new(residual_unit(&unit(2, j), 896, 'B', 0.10, true)));
    }
    features.push(Box::new(reduction_b(&unit(3, 1))));
    for j in 2..=7 {
        let last = j == 7;
        features.push(Box::new(residual_unit(&unit(3, j), 1792, 'C', if last { 1.0 } else { 0.2 }, !last)));
    }
    let head = p.sub("output");
    let fc1 = Linear::with_bias(&head.sub("fc1"), 1792, 512, false);
    let mut bn = BatchNorm::new1d(&head.sub("bn"), 512);
    bn.eps = 1e-3;
    let embedding = Embedding { dropout: Dropout::new(&head.sub("dropout"), 0.6), fc1, bn };
    InceptionNet::new(features, &f.sub("final_pool"), Some(embedding), &head.sub("fc2"), 512, num_outputs)
}

fn build_bninception(p: &Path, c: &ModelConfig) -> Result<Box<dyn Model>> {
    let in_channels = match c.input_shape.as_slice() {
        [ch, h, w] if *ch > 0 && bninception_fits(*h) && bninception_fits(*w) => *ch,
        shape => {
            return Err(Error::config(format!(
                "bninception takes images [C, H, W] whose sides both branches of its reduction blocks bring to the \
                 same size: 31 to 38 plus a multiple of 32 (31, 32, 63, 64, …, 224), got {shape:?}"
            )))
        }
    };
    Ok(Box::new(bninception(p, in_channels, c.num_outputs)))
}

fn build_irv1(p: &Path, c: &ModelConfig) -> Result<Box<dyn Model>> {
    let in_channels = image_channels(c, "inceptionresnetv1", MIN_SIDE, MIN_WHY)?;
    Ok(Box::new(inceptionresnetv1(p, in_channels, c.num_outputs)))
}

pub fn entries() -> Vec<ModelEntry> {
    vec![
        ModelEntry {
            name: "bninception",
            family: "inception",
            description: "pytorchcv BN-Inception (Inception v2: 3x3 pairs for 5x5, BatchNorm everywhere)",
            // The smallest input (trained at 224×224).
            default_input: &[3, 31, 31],
            default_classes: 1000,
            first_layer: "features.init_block.conv1.conv",
            classifier: "output",
            options: &[],
            build: build_bninception,
        },
        ModelEntry {
            name: "inceptionresnetv1",
            family: "inception_resnet",
            description: "pytorchcv Inception-ResNet v1 (5 A, 10 B, 6 C residual units; 512-wide embedding head)",
            // The smallest input (trained at 299×299).
            default_input: &[3, 75, 75],
            default_classes: 1000,
            first_layer: "features.init_block.conv1.conv",
            classifier: "output.fc2",
            options: &[],
            build: build_irv1,
        },
    ]
}
