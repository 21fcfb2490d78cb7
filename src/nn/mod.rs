//! Our layer kit over tch: an ordered parameter store and layers named and initialised as PyTorch's.
pub mod activation;
pub mod embedding;
pub mod layers;
pub mod lstm;
pub mod prelu;
pub mod store;
pub mod trace;
pub mod weights;

pub use activation::Activation;
pub use layers::{
    Act, AdaptiveAvgPool2d, BatchNorm, Conv2d, ConvConfig, Dropout, Flatten, Linear, Pool2d, PoolKind, Sequential,
};
pub use prelu::PReLU;
pub use store::{Path, VarKind, VarStore};

use tch::Tensor;

/// A layer or model: `train` selects training behaviour (dropout, batch statistics).
pub trait Module: std::fmt::Debug {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor;
}
