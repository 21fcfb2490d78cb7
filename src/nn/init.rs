//! Weight initialisers that PyTorch's model files apply after building a layer (`torch.nn.init` as torchvision
//! and timm call it). Each draws from libtorch's global generator in the order it is called, as PyTorch does.
use super::{Conv2d, Linear};

/// torchvision's `kaiming_normal_(weight, mode="fan_out", nonlinearity="relu")` (fan_out = c_out·k·k, not divided
/// by the groups, as PyTorch computes it), and a zero bias.
pub fn kaiming_normal_fan_out(conv: &Conv2d) {
    let size = conv.weight.size();
    let fan_out: i64 = size[0] * size[2..].iter().product::<i64>();
    tch::no_grad(|| {
        let _ = conv.weight.shallow_clone().normal_(0.0, (2.0 / fan_out as f64).sqrt());
        if let Some(b) = &conv.bias {
            let _ = b.shallow_clone().zero_();
        }
    });
}

/// torchvision's `normal_(weight, 0, std)` and zero bias for a Linear layer (VGG, MobileNet).
pub fn normal_linear(linear: &Linear, std: f64) {
    normal_weight(linear, std);
    if let Some(b) = &linear.bias {
        tch::no_grad(|| {
            let _ = b.shallow_clone().zero_();
        });
    }
}

/// A Linear layer's weight set to N(0, std²), keeping PyTorch's default bias (torchvision's GoogLeNet and
/// Inception).
pub fn normal_weight(linear: &Linear, std: f64) {
    tch::no_grad(|| {
        let _ = linear.weight.shallow_clone().normal_(0.0, std);
    });
}

/// pytorchcv's `kaiming_uniform_(weight)` (a = 0: bound √(6 / fan_in)) and `constant_(bias, 0)`.
pub fn kaiming_uniform(conv: &Conv2d) {
    let size = conv.weight.size();
    let fan_in: i64 = size[1] * size[2..].iter().product::<i64>();
    let bound = (6.0 / fan_in as f64).sqrt();
    tch::no_grad(|| {
        let _ = conv.weight.shallow_clone().uniform_(-bound, bound);
        if let Some(b) = &conv.bias {
            let _ = b.shallow_clone().zero_();
        }
    });
}
