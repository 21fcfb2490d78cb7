//! Xception (Chollet 2017, "Xception: Deep Learning with Depthwise Separable Convolutions") as timm builds it:
//! the paper's network (`timm/models/xception.py`, `legacy_xception`) and the aligned Xceptions of DeepLab
//! (`timm/models/xception_aligned.py`, `xception41/65/71`).
//!
//! `legacy_xception`: `conv1` (3×3/2, no padding) `bn1`, `conv2` (3×3, no padding) `bn2`, each followed by ReLU;
//! twelve `block{1…12}`, then `conv3` (1024 → 1536) `bn3` and `conv4` (1536 → 2048) `bn4`, each separable and
//! followed by ReLU; the global average `global_pool` and the classifier `fc`. A separable conv is a 3×3 depthwise
//! `conv1` (padding 1) and a 1×1 `pointwise`, both without bias. A block is registered `skip` (1×1 conv with the
//! block's stride) and `skipbn` first, where the shape changes, then `rep`, a `Sequential` that counts its ReLUs:
//! `[ReLU] separable BatchNorm` per repetition (block 1 starts without the ReLU), then a 3×3/2 max pool (padding 1)
//! where the block strides; the block returns `rep(x) + skip(x)`. Blocks 1–3 grow to 128/256/728 channels with
//! stride 2 and two repetitions, blocks 4–11 keep 728 with three, block 12 goes to 1024 with stride 2 in its
//! second repetition (`grow_first=False`). Its convs are initialised kaiming-normal (fan_out, ReLU), BatchNorm 1/0,
//! `fc` PyTorch's default. Inputs of at least 7×7 (the two unpadded stem convs).
//!
//! `xception41/65/71` share one code path over a list of block specs: `stem.0` and `stem.1` (`conv` 3×3 + `bn` +
//! ReLU; 32 channels with stride 2, then 64), `blocks.{i}`, the head `head.global_pool` (average) and `head.fc`.
//! A block (`XceptionModule`) registers `shortcut.conv` (1×1, stride) + `shortcut.bn` (no ReLU) first where the
//! shape changes, then `stack.conv{1,2,3}`, separable convs `conv_dw` (3×3 depthwise, padding 1) `bn_dw` `conv_pw`
//! (1×1) `bn_pw`, no biases; the stride sits on the third depthwise conv. The blocks of the entry and middle flows
//! put a ReLU before each separable conv (`start_with_relu`) and add the shortcut; the last block (1024 → 1536,
//! 1536, 2048) has no shortcut and puts a ReLU after each BatchNorm instead. Entry flows: 41 and 65 have three
//! strided blocks (128, 256, 728), 71 five (128, 256 strided, 256, 728, 728 strided); middle flows of 8 (41) or 16
//! (65, 71) blocks of 728; exit flow a strided block of 728, 1024, 1024 then the last block. Every BatchNorm has
//! eps 1e-3. timm does not re-initialise these models: convs and `fc` keep PyTorch's default initialisation.
//! Any input size works (every conv is padded).
use tch::Tensor;

use super::{classifier_head_methods, forward_head_of_features, image_channels, Model, ModelConfig, ModelEntry};
use crate::error::Result;
use crate::nn::init::kaiming_normal_fan_out;
use crate::nn::{BatchNorm, ClassifierHead, Conv2d, ConvConfig, Module, Path, Pool2d, PoolKind};

/// A bias-free conv: `kernel`×`kernel`, padding `padding`, `groups`.
fn plain_conv(p: &Path, c_in: i64, c_out: i64, kernel: i64, stride: i64, padding: i64, groups: i64) -> Conv2d {
    Conv2d::new(p, c_in, c_out, kernel, ConvConfig { stride, padding, groups, bias: false, ..Default::default() })
}

/// timm's legacy `SeparableConv2d`: 3×3 depthwise `conv1` then 1×1 `pointwise`.
#[derive(Debug)]
struct LegacySeparable {
    conv1: Conv2d,
    pointwise: Conv2d,
}

impl LegacySeparable {
    fn new(p: &Path, c_in: i64, c_out: i64) -> Self {
        let conv1 = plain_conv(&p.sub("conv1"), c_in, c_in, 3, 1, 1, c_in);
        let pointwise = plain_conv(&p.sub("pointwise"), c_in, c_out, 1, 1, 0, 1);
        kaiming_normal_fan_out(&conv1);
        kaiming_normal_fan_out(&pointwise);
        LegacySeparable { conv1, pointwise }
    }
}

impl Module for LegacySeparable {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.pointwise.forward_t(&self.conv1.forward_t(xs, train), train)
    }
}

/// One legacy block: (c_in, c_out, repetitions, stride, start_with_relu, grow_first).
type LegacySpec = (i64, i64, usize, i64, bool, bool);

const LEGACY_BLOCKS: [LegacySpec; 12] = [
    (64, 128, 2, 2, false, true),
    (128, 256, 2, 2, true, true),
    (256, 728, 2, 2, true, true),
    (728, 728, 3, 1, true, true),
    (728, 728, 3, 1, true, true),
    (728, 728, 3, 1, true, true),
    (728, 728, 3, 1, true, true),
    (728, 728, 3, 1, true, true),
    (728, 728, 3, 1, true, true),
    (728, 728, 3, 1, true, true),
    (728, 728, 3, 1, true, true),
    (728, 1024, 2, 2, true, false),
];

/// timm's legacy `Block`: `skip`/`skipbn` where the shape changes, `rep` = ([ReLU] separable BatchNorm)… [max pool].
#[derive(Debug)]
struct LegacyBlock {
    skip: Option<(Conv2d, BatchNorm)>,
    /// Per repetition: whether a ReLU comes first, the separable conv, its BatchNorm.
    rep: Vec<(bool, LegacySeparable, BatchNorm)>,
    pool: Option<Pool2d>,
}

impl LegacyBlock {
    fn new(p: &Path, spec: LegacySpec) -> Self {
        let (c_in, c_out, reps, stride, start_with_relu, grow_first) = spec;
        let skip = (c_out != c_in || stride != 1).then(|| {
            let conv = plain_conv(&p.sub("skip"), c_in, c_out, 1, stride, 0, 1);
            kaiming_normal_fan_out(&conv);
            (conv, BatchNorm::new2d(&p.sub("skipbn"), c_out))
        });
        let rp = p.sub("rep");
        let mut index = 0;
        let mut rep = vec![];
        for i in 0..reps {
            let (ci, co) = if grow_first {
                (if i == 0 { c_in } else { c_out }, c_out)
            } else {
                (c_in, if i + 1 < reps { c_in } else { c_out })
            };
            let relu = start_with_relu || i > 0;
            if relu {
                index += 1;
            }
            let sep = LegacySeparable::new(&rp.sub(index), ci, co);
            let bn = BatchNorm::new2d(&rp.sub(index + 1), co);
            index += 2;
            rep.push((relu, sep, bn));
        }
        let pool = (stride != 1).then(|| Pool2d::new(&rp.sub(index), PoolKind::Max, 3, stride, 1));
        LegacyBlock { skip, rep, pool }
    }
}

impl Module for LegacyBlock {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut ys = xs.shallow_clone();
        for (relu, sep, bn) in &self.rep {
            if *relu {
                ys = ys.relu();
            }
            ys = bn.forward_t(&sep.forward_t(&ys, train), train);
        }
        if let Some(pool) = &self.pool {
            ys = pool.forward_t(&ys, train);
        }
        match &self.skip {
            Some((conv, bn)) => ys + bn.forward_t(&conv.forward_t(xs, train), train),
            None => ys + xs,
        }
    }
}

/// timm's `legacy_xception`: the paper's Xception.
#[derive(Debug)]
pub struct LegacyXception {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
    blocks: Vec<LegacyBlock>,
    conv3: LegacySeparable,
    bn3: BatchNorm,
    conv4: LegacySeparable,
    bn4: BatchNorm,
    fc: ClassifierHead,
}

impl LegacyXception {
    pub fn new(p: &Path, in_channels: i64, num_outputs: i64) -> Self {
        let conv1 = plain_conv(&p.sub("conv1"), in_channels, 32, 3, 2, 0, 1);
        kaiming_normal_fan_out(&conv1);
        let bn1 = BatchNorm::new2d(&p.sub("bn1"), 32);
        let conv2 = plain_conv(&p.sub("conv2"), 32, 64, 3, 1, 0, 1);
        kaiming_normal_fan_out(&conv2);
        let bn2 = BatchNorm::new2d(&p.sub("bn2"), 64);
        let blocks = LEGACY_BLOCKS
            .iter()
            .enumerate()
            .map(|(i, &spec)| LegacyBlock::new(&p.sub(format!("block{}", i + 1)), spec));
        let blocks = blocks.collect();
        let conv3 = LegacySeparable::new(&p.sub("conv3"), 1024, 1536);
        let bn3 = BatchNorm::new2d(&p.sub("bn3"), 1536);
        let conv4 = LegacySeparable::new(&p.sub("conv4"), 1536, 2048);
        let bn4 = BatchNorm::new2d(&p.sub("bn4"), 2048);
        let fc = ClassifierHead::pooled(&p.sub("global_pool"), &p.sub("fc"), 2048, num_outputs);
        LegacyXception { conv1, bn1, conv2, bn2, blocks, conv3, bn3, conv4, bn4, fc }
    }
}

forward_head_of_features!(LegacyXception);

impl Model for LegacyXception {
    fn forward_features(&self, xs: &Tensor, train: bool) -> Tensor {
        let ys = self.bn1.forward_t(&self.conv1.forward_t(xs, train), train).relu();
        let ys = self.bn2.forward_t(&self.conv2.forward_t(&ys, train), train).relu();
        let ys = self.blocks.iter().fold(ys, |ys, block| block.forward_t(&ys, train));
        let ys = self.bn3.forward_t(&self.conv3.forward_t(&ys, train), train).relu();
        self.bn4.forward_t(&self.conv4.forward_t(&ys, train), train).relu()
    }
    fn forward_head(&self, features: &Tensor, train: bool) -> Tensor {
        self.fc.forward_t(features, train)
    }
    classifier_head_methods!(fc);
}

/// A BatchNorm with timm's aligned-Xception eps (1e-3).
fn bn3(p: &Path, c: i64) -> BatchNorm {
    let mut bn = BatchNorm::new2d(p, c);
    bn.eps = 1e-3;
    bn
}

/// One aligned block (timm's `XceptionModule` arguments).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlignedBlockSpec {
    pub c_in: i64,
    /// The output channels of the three separable convs.
    pub c_out: [i64; 3],
    pub stride: i64,
    /// A ReLU before each separable conv (entry and middle flows); else after each of its BatchNorms.
    pub start_with_relu: bool,
    /// `no_skip`: the block has no residual addition.
    pub no_skip: bool,
}

impl AlignedBlockSpec {
    const fn new(c_in: i64, c_out: i64, stride: i64) -> Self {
        AlignedBlockSpec { c_in, c_out: [c_out; 3], stride, start_with_relu: true, no_skip: false }
    }
}

/// The block specs of timm's `xception41/65/71`.
pub fn aligned_blocks(depth: usize) -> Vec<AlignedBlockSpec> {
    let b = AlignedBlockSpec::new;
    let (entry, middle) = match depth {
        41 => (vec![b(64, 128, 2), b(128, 256, 2), b(256, 728, 2)], 8),
        65 => (vec![b(64, 128, 2), b(128, 256, 2), b(256, 728, 2)], 16),
        71 => (vec![b(64, 128, 2), b(128, 256, 1), b(256, 256, 2), b(256, 728, 1), b(728, 728, 2)], 16),
        _ => unreachable!("registered depths only"),
    };
    let mut blocks = entry;
    blocks.extend(std::iter::repeat_n(b(728, 728, 1), middle));
    blocks.push(AlignedBlockSpec { c_out: [728, 1024, 1024], ..b(728, 0, 2) });
    blocks.push(AlignedBlockSpec {
        c_in: 1024,
        c_out: [1536, 1536, 2048],
        stride: 1,
        start_with_relu: false,
        no_skip: true,
    });
    blocks
}

/// timm's aligned `SeparableConv2d`: `conv_dw` `bn_dw` [ReLU] `conv_pw` `bn_pw` [ReLU].
#[derive(Debug)]
struct AlignedSeparable {
    conv_dw: Conv2d,
    bn_dw: BatchNorm,
    conv_pw: Conv2d,
    bn_pw: BatchNorm,
    relu: bool,
}

impl AlignedSeparable {
    fn new(p: &Path, c_in: i64, c_out: i64, stride: i64, relu: bool) -> Self {
        AlignedSeparable {
            conv_dw: plain_conv(&p.sub("conv_dw"), c_in, c_in, 3, stride, 1, c_in),
            bn_dw: bn3(&p.sub("bn_dw"), c_in),
            conv_pw: plain_conv(&p.sub("conv_pw"), c_in, c_out, 1, 1, 0, 1),
            bn_pw: bn3(&p.sub("bn_pw"), c_out),
            relu,
        }
    }
}

impl Module for AlignedSeparable {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let act = |ys: Tensor| if self.relu { ys.relu() } else { ys };
        let ys = act(self.bn_dw.forward_t(&self.conv_dw.forward_t(xs, train), train));
        act(self.bn_pw.forward_t(&self.conv_pw.forward_t(&ys, train), train))
    }
}

/// timm's `XceptionModule`.
#[derive(Debug)]
struct AlignedBlock {
    shortcut: Option<(Conv2d, BatchNorm)>,
    stack: Vec<AlignedSeparable>,
    spec: AlignedBlockSpec,
}

impl AlignedBlock {
    fn new(p: &Path, spec: AlignedBlockSpec) -> Self {
        let c_out = spec.c_out[2];
        let shortcut = (!spec.no_skip && (c_out != spec.c_in || spec.stride != 1)).then(|| {
            let sp = p.sub("shortcut");
            (plain_conv(&sp.sub("conv"), spec.c_in, c_out, 1, spec.stride, 0, 1), bn3(&sp.sub("bn"), c_out))
        });
        let mut c_in = spec.c_in;
        let mut stack = vec![];
        for (i, &co) in spec.c_out.iter().enumerate() {
            let stride = if i == 2 { spec.stride } else { 1 };
            let sp = p.sub("stack").sub(format!("conv{}", i + 1));
            stack.push(AlignedSeparable::new(&sp, c_in, co, stride, !spec.start_with_relu));
            c_in = co;
        }
        AlignedBlock { shortcut, stack, spec }
    }
}

impl Module for AlignedBlock {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let ys = self.stack.iter().fold(xs.shallow_clone(), |ys, sep| {
            let ys = if self.spec.start_with_relu { ys.relu() } else { ys };
            sep.forward_t(&ys, train)
        });
        if self.spec.no_skip {
            return ys;
        }
        match &self.shortcut {
            Some((conv, bn)) => ys + bn.forward_t(&conv.forward_t(xs, train), train),
            None => ys + xs,
        }
    }
}

/// timm's `XceptionAligned` (not pre-activated, output stride 32).
#[derive(Debug)]
pub struct XceptionAligned {
    stem: [(Conv2d, BatchNorm); 2],
    blocks: Vec<AlignedBlock>,
    fc: ClassifierHead,
}

impl XceptionAligned {
    pub fn new(p: &Path, specs: &[AlignedBlockSpec], in_channels: i64, num_outputs: i64) -> Self {
        let stem_block = |i: usize, c_in, c_out, stride| {
            let sp = p.sub("stem").sub(i);
            (plain_conv(&sp.sub("conv"), c_in, c_out, 3, stride, 1, 1), bn3(&sp.sub("bn"), c_out))
        };
        let stem = [stem_block(0, in_channels, 32, 2), stem_block(1, 32, 64, 1)];
        let blocks = specs.iter().enumerate().map(|(i, &s)| AlignedBlock::new(&p.sub("blocks").sub(i), s)).collect();
        let c_last = specs.last().map_or(64, |s| s.c_out[2]);
        let head = p.sub("head");
        let fc = ClassifierHead::pooled(&head.sub("global_pool"), &head.sub("fc"), c_last, num_outputs);
        XceptionAligned { stem, blocks, fc }
    }
}

forward_head_of_features!(XceptionAligned);

impl Model for XceptionAligned {
    fn forward_features(&self, xs: &Tensor, train: bool) -> Tensor {
        let ys = self
            .stem
            .iter()
            .fold(xs.shallow_clone(), |ys, (conv, bn)| bn.forward_t(&conv.forward_t(&ys, train), train).relu());
        self.blocks.iter().fold(ys, |ys, block| block.forward_t(&ys, train))
    }
    fn forward_head(&self, features: &Tensor, train: bool) -> Tensor {
        self.fc.forward_t(features, train)
    }
    classifier_head_methods!(fc);
}

fn build_legacy(p: &Path, c: &ModelConfig) -> Result<Box<dyn Model>> {
    let in_channels = image_channels(c, "legacy_xception", 7, "")?;
    Ok(Box::new(LegacyXception::new(p, in_channels, c.num_outputs)))
}

fn build_aligned(p: &Path, c: &ModelConfig, name: &str, depth: usize) -> Result<Box<dyn Model>> {
    let in_channels = image_channels(c, name, 1, "")?;
    Ok(Box::new(XceptionAligned::new(p, &aligned_blocks(depth), in_channels, c.num_outputs)))
}

macro_rules! aligned {
    ($name:literal, $depth:literal, $description:literal) => {
        ModelEntry {
            name: $name,
            family: "xception",
            description: $description,
            // Small, for the registry tests: any size works (trained at 299×299).
            default_input: &[3, 32, 32],
            default_classes: 1000,
            first_layer: "stem.0.conv",
            classifier: "head.fc",
            options: &[],
            build: |p, c| build_aligned(p, c, $name, $depth),
        }
    };
}

pub fn entries() -> Vec<ModelEntry> {
    vec![
        ModelEntry {
            name: "legacy_xception",
            family: "xception",
            description: "timm Xception, the paper's (entry, 8 middle and exit blocks of separable convs)",
            // Small, for the registry tests: any size from 7×7 works (trained at 299×299).
            default_input: &[3, 32, 32],
            default_classes: 1000,
            first_layer: "conv1",
            classifier: "fc",
            options: &[],
            build: build_legacy,
        },
        aligned!("xception41", 41, "timm aligned Xception-41 (DeepLab; 8 middle-flow blocks)"),
        aligned!("xception65", 65, "timm aligned Xception-65 (DeepLab; 16 middle-flow blocks)"),
        aligned!("xception71", 71, "timm aligned Xception-71 (DeepLab; 5 entry-flow, 16 middle-flow blocks)"),
    ]
}
