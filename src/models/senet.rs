//! Squeeze-and-Excitation ResNets (Hu et al. 2018) as timm builds them (`timm/models/resnet.py`, `attn_layer='se'`).
//!
//! As timm does, an SE-ResNet is a [`ResNet`](super::resnet::ResNet) with options of its [`ResNetConfig`]
//! (`attention`, `stem`, `reduce_first`, `down_kernel`, `pool_name`); this file holds the SE module and the recipes.
//!
//! `seresnet18/34/50/101/152` and `seresnext50_32x4d`: a torchvision-shaped ResNet (the recipes of
//! [`ResNetConfig`]: 7×7/2 stem + 3×3/2 max pool, V1.5 bottlenecks, 1×1 conv + BatchNorm `downsample`) where every
//! block rescales its residual branch, after the last BatchNorm and before the addition, by an SE module `se`:
//! global average pool → 1×1 conv `fc1` (with bias) → ReLU → 1×1 conv `fc2` (with bias) → sigmoid gate. The
//! reduced width is timm's `make_divisible(c / 16, 8)` (at least 8). Names and registration order are timm's
//! (`layer1.0.se.fc1.weight` before `layer1.0.downsample.0.weight`), so timm state dicts load strictly; the pool
//! before `fc` is `global_pool`. Initialisation: convs kaiming-normal (fan_out, ReLU) with zero biases, BatchNorm
//! 1/0, `fc` PyTorch's default; timm's zero-init of the last BatchNorm of each block is not applied (a zero gamma
//! would leave the block's convs without a gradient in the first step).
//!
//! `senet154` is timm's (`timm/models/resnet.py`): ResNeXt-152 64×4d bottlenecks (3-8-36-3) with SE, a deep stem
//! `conv1.0/1/3/4/6` (3×3/2 to 64, 3×3 64, 3×3 to 128; BatchNorm `bn1` after it), the first 1×1 conv of each block
//! halved (`block_reduce_first=2`) and 3×3 `downsample` convs where the block strides. timm's legacy layout
//! (`legacy_senet154`, `legacy_seresnet*`: `layer0.conv1`, `se_module.fc1`, ceil-mode stem pool) is not registered.
use tch::Tensor;

use super::resnet::{imagenet, Attention, ResNetConfig, Stem};
use super::ModelEntry;
use crate::nn::init::kaiming_normal_fan_out;
use crate::nn::{Conv2d, ConvConfig, Module, Path};

impl ResNetConfig {
    /// timm's SE variant of a ResNet recipe: an `se` module in every block, the pool named `global_pool`.
    pub fn with_se(self) -> Self {
        ResNetConfig { attention: Attention::Se, pool_name: "global_pool", ..self }
    }
    /// timm's `senet154`: SE-ResNeXt-152 64×4d with the deep stem, `block_reduce_first=2`, 3×3 downsample convs.
    pub fn senet154() -> Self {
        let c = ResNetConfig::resnet152().grouped(64, 4).with_se();
        ResNetConfig { stem: Stem::Deep, reduce_first: 2, down_kernel: 3, ..c }
    }
}

/// timm's `make_divisible(v, 8, round_limit=0)` of `channels / 16`: SEModule's reduced width.
pub(crate) fn se_channels(channels: i64) -> i64 {
    let v = channels as f64 / 16.0;
    (((v + 4.0) as i64) / 8 * 8).max(8)
}

/// timm's `SEModule`: `fc1` (1×1 conv, bias) → ReLU → `fc2` (1×1 conv, bias) → sigmoid, on the global average.
#[derive(Debug)]
pub(crate) struct SeModule {
    fc1: Conv2d,
    fc2: Conv2d,
}

impl SeModule {
    pub(crate) fn new(p: &Path, channels: i64, reduced: i64) -> Self {
        let fc = |name: &str, c_in, c_out| {
            let conv = Conv2d::new(&p.sub(name), c_in, c_out, 1, ConvConfig::default());
            kaiming_normal_fan_out(&conv);
            conv
        };
        SeModule { fc1: fc("fc1", channels, reduced), fc2: fc("fc2", reduced, channels) }
    }
}

impl Module for SeModule {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let s = xs.mean_dim([2i64, 3].as_slice(), true, None);
        let s = self.fc2.forward_t(&self.fc1.forward_t(&s, train).relu(), train).sigmoid();
        xs * s
    }
}

pub fn entries() -> Vec<ModelEntry> {
    vec![
        imagenet!(
            "senet",
            "seresnet18",
            ResNetConfig::resnet18().with_se(),
            "timm SE-ResNet-18 (basic blocks 2-2-2-2 with SE)"
        ),
        imagenet!(
            "senet",
            "seresnet34",
            ResNetConfig::resnet34().with_se(),
            "timm SE-ResNet-34 (basic blocks 3-4-6-3 with SE)"
        ),
        imagenet!(
            "senet",
            "seresnet50",
            ResNetConfig::resnet50().with_se(),
            "timm SE-ResNet-50 (bottlenecks 3-4-6-3 with SE)"
        ),
        imagenet!(
            "senet",
            "seresnet101",
            ResNetConfig::resnet101().with_se(),
            "timm SE-ResNet-101 (bottlenecks 3-4-23-3 with SE)"
        ),
        imagenet!(
            "senet",
            "seresnet152",
            ResNetConfig::resnet152().with_se(),
            "timm SE-ResNet-152 (bottlenecks 3-8-36-3 with SE)"
        ),
        imagenet!("senet", "seresnext50_32x4d", ResNetConfig::resnext50_32x4d().with_se(), "timm SE-ResNeXt-50 32x4d"),
        imagenet!("senet", "senet154", ResNetConfig::senet154(), "timm SENet-154 (SE-ResNeXt-152 64x4d, deep stem)"),
    ]
}
