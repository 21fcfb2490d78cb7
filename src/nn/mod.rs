//! Our layer kit over tch: an ordered parameter store and layers named and initialised as PyTorch's.
pub mod activation;
pub mod conv_block;
pub mod embedding;
pub mod head;
pub mod init;
pub mod layers;
pub mod lstm;
pub mod prelu;
pub mod store;
pub mod trace;
pub mod weights;

pub use activation::Activation;
pub use head::ClassifierHead;
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

mod ffi {
    extern "C" {
        pub fn tz_set_grad(param: *mut std::ffi::c_void, grad: *mut std::ffi::c_void) -> *mut std::ffi::c_char;
    }
}

/// Sets `param.grad` to `grad`, or to None (`zero_grad(set_to_none=True)`): tch reaches neither.
pub fn set_grad(param: &tch::Tensor, grad: Option<&tch::Tensor>) -> crate::error::Result<()> {
    let g = grad.map_or(std::ptr::null_mut(), |g| g.as_ptr() as *mut std::ffi::c_void);
    // SAFETY: both pointers are live `torch::Tensor*` owned by tch for the duration of the call; the C++ side
    // copies the grad handle (a refcount), it keeps neither pointer.
    let message = unsafe { ffi::tz_set_grad(param.as_ptr() as *mut std::ffi::c_void, g) };
    crate::error::from_c(message, "set grad")
}
