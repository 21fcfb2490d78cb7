//! pytorchcv's shared conv block (`pytorchcv/models/common.py`, `ConvBlock`): `conv` + `bn` (+ ReLU), convs
//! initialised as pytorchcv does. Used by the pytorchcv families (CBAM/BAM-ResNets, Residual Attention Networks,
//! PyramidNets, WRN, ZFNet).
use tch::Tensor;

use super::init::kaiming_uniform;
use super::{BatchNorm, Conv2d, ConvConfig, Module, Path};

/// A pytorchcv conv initialised as pytorchcv does.
pub fn cv_conv(p: &Path, c_in: i64, c_out: i64, kernel: i64, config: ConvConfig) -> Conv2d {
    let conv = Conv2d::new(p, c_in, c_out, kernel, config);
    kaiming_uniform(&conv);
    conv
}

/// pytorchcv's `ConvBlock`: `conv` + `bn` + optional ReLU.
#[derive(Debug)]
pub struct ConvBlock {
    conv: Conv2d,
    bn: BatchNorm,
    relu: bool,
}

impl ConvBlock {
    pub fn new(p: &Path, c_in: i64, c_out: i64, kernel: i64, config: ConvConfig, relu: bool) -> Self {
        let conv = cv_conv(&p.sub("conv"), c_in, c_out, kernel, config);
        ConvBlock { conv, bn: BatchNorm::new2d(&p.sub("bn"), c_out), relu }
    }
    /// A bias-free k×k block with padding k/2.
    pub fn plain(p: &Path, c_in: i64, c_out: i64, kernel: i64, stride: i64, relu: bool) -> Self {
        let config = ConvConfig { stride, padding: kernel / 2, bias: false, ..Default::default() };
        Self::new(p, c_in, c_out, kernel, config, relu)
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
