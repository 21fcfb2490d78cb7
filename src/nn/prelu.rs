//! PReLU (He et al. 2015): max(0, x) + a·min(0, x) with a learned slope `a`, PyTorch's `nn.PReLU`.
use tch::{Kind, Tensor};

use super::{trace, Activation, Module, Path};

/// `nn.PReLU(num_parameters)`: one slope shared by every channel (`num_parameters = 1`, PyTorch's default) or one
/// per channel (dimension 1 of the input). The state dict holds `weight` of shape `[num_parameters]`, initialised to
/// 0.25.
#[derive(Debug)]
pub struct PReLU {
    name: String,
    pub weight: Tensor,
}

impl PReLU {
    pub fn new(p: &Path, num_parameters: i64) -> Self {
        Self::with_init(p, num_parameters, Activation::PRELU_INIT)
    }
    pub fn with_init(p: &Path, num_parameters: i64, init: f64) -> Self {
        let weight = p.param("weight", Tensor::full([num_parameters.max(1)], init, (Kind::Float, tch::Device::Cpu)));
        PReLU { name: p.name().to_string(), weight }
    }
    pub fn num_parameters(&self) -> i64 {
        self.weight.numel() as i64
    }
}

impl Module for PReLU {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Tensor {
        let ys = xs.prelu(&self.weight);
        trace::record(&self.name, "PReLU", &ys, self.num_parameters());
        ys
    }
}
