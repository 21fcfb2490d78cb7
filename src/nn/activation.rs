//! Activation functions, by name.
//!
//! Every variant but [`Activation::Prelu`] is parameterless and applies through [`Activation::apply`] (or the [`Act`]
//! layer). PReLU learns its slope, so it is a layer, [`PReLU`]; [`Activation::layer`] builds whichever one a name
//! calls for.
//!
//! Derivatives are autograd's, as in PyTorch. Where a function has a kink the choice is PyTorch's:
//! - ReLU: 1 for x > 0, **0 at x = 0** and below (`threshold_backward`); the notes say either 0 or 1 is usual.
//! - LeakyReLU: slope 0.01 at x ≤ 0; PReLU: slope `a` at x ≤ 0, and ∂/∂a = x there.
//! - hard-sigmoid: 1/6 strictly inside (−3, 3), 0 elsewhere; ReLU6: 1 inside [0, 6] (it is a clamp).
//! - step: 1 for x > 0, else 0 (so step(0) = 0); its derivative is 0 everywhere (0 almost everywhere in the
//!   mathematical sense, and autograd returns 0 at x = 0 too), which is why it cannot be trained by backpropagation.
//! - softmax: over dimension 1 (the class dimension of `[N, C]`), dimension 0 for a vector.
//!
//! [`Act`]: crate::nn::Act
//! [`PReLU`]: crate::nn::PReLU
use std::str::FromStr;

use tch::Tensor;

use super::{Act, Module, PReLU, Path};
use crate::error::{did_you_mean, Error};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    Relu,
    Relu6,
    LeakyRelu,
    Elu,
    Selu,
    Gelu,
    Silu,
    Mish,
    Tanh,
    Sigmoid,
    HardSigmoid,
    Softplus,
    Softsign,
    Identity,
    /// PReLU, max(0, x) + a·min(0, x). As a layer ([`Activation::layer`]) `a` is learned (PyTorch's `weight`,
    /// initialised to 0.25); applied bare it uses the initial slope 0.25.
    Prelu,
    /// The threshold step function of Rosenblatt's perceptron: 1 for x > 0, else 0; zero gradient.
    Step,
    /// Softmax over the class dimension (1 for `[N, C]`).
    Softmax,
}

impl Activation {
    pub const NAMES: &'static [&'static str] = &[
        "relu",
        "relu6",
        "leaky_relu",
        "elu",
        "selu",
        "gelu",
        "silu",
        "mish",
        "tanh",
        "sigmoid",
        "hard_sigmoid",
        "softplus",
        "softsign",
        "identity",
        "prelu",
        "step",
        "softmax",
    ];

    /// Every activation, in the order of [`Activation::NAMES`].
    pub const ALL: &'static [Activation] = &[
        Activation::Relu,
        Activation::Relu6,
        Activation::LeakyRelu,
        Activation::Elu,
        Activation::Selu,
        Activation::Gelu,
        Activation::Silu,
        Activation::Mish,
        Activation::Tanh,
        Activation::Sigmoid,
        Activation::HardSigmoid,
        Activation::Softplus,
        Activation::Softsign,
        Activation::Identity,
        Activation::Prelu,
        Activation::Step,
        Activation::Softmax,
    ];

    /// PyTorch's initial PReLU slope (`nn.PReLU(init=0.25)`), also the slope of a bare `Prelu.apply`.
    pub const PRELU_INIT: f64 = 0.25;
    /// LeakyReLU's negative slope (PyTorch's default).
    pub const LEAKY_SLOPE: f64 = 0.01;

    pub fn apply(&self, xs: &Tensor) -> Tensor {
        match self {
            Activation::Relu => xs.relu(),
            Activation::Relu6 => xs.clamp(0.0, 6.0),
            Activation::LeakyRelu => xs.leaky_relu(),
            Activation::Elu => xs.elu(),
            Activation::Selu => xs.selu(),
            Activation::Gelu => xs.gelu("none"),
            Activation::Silu => xs.silu(),
            Activation::Mish => xs.mish(),
            Activation::Tanh => xs.tanh(),
            Activation::Sigmoid => xs.sigmoid(),
            Activation::HardSigmoid => xs.hardsigmoid(),
            Activation::Softplus => xs.softplus(),
            Activation::Softsign => xs / (xs.abs() + 1.0),
            Activation::Identity => xs.shallow_clone(),
            Activation::Prelu => {
                let a = Tensor::from_slice(&[Self::PRELU_INIT]).to_kind(xs.kind()).to_device(xs.device());
                xs.prelu(&a)
            }
            // sign() has a zero derivative, so the graph stays connected and the gradient is exactly 0.
            Activation::Step => xs.sign().relu(),
            Activation::Softmax => xs.softmax(if xs.dim() >= 2 { 1 } else { 0 }, xs.kind()),
        }
    }
    pub fn name(&self) -> &'static str {
        Self::NAMES[*self as usize]
    }
    /// PyTorch's class name, for summaries (`Step` has no PyTorch class).
    pub fn torch_name(&self) -> &'static str {
        match self {
            Activation::Relu => "ReLU",
            Activation::Relu6 => "ReLU6",
            Activation::LeakyRelu => "LeakyReLU",
            Activation::Elu => "ELU",
            Activation::Selu => "SELU",
            Activation::Gelu => "GELU",
            Activation::Silu => "SiLU",
            Activation::Mish => "Mish",
            Activation::Tanh => "Tanh",
            Activation::Sigmoid => "Sigmoid",
            Activation::HardSigmoid => "Hardsigmoid",
            Activation::Softplus => "Softplus",
            Activation::Softsign => "Softsign",
            Activation::Identity => "Identity",
            Activation::Prelu => "PReLU",
            Activation::Step => "Step",
            Activation::Softmax => "Softmax",
        }
    }
    /// Whether the activation has a learnable parameter (and so must be built as a layer).
    pub fn has_parameters(&self) -> bool {
        matches!(self, Activation::Prelu)
    }
    /// The activation as a layer at `p`: a [`PReLU`] with one shared slope (PyTorch's `nn.PReLU()`) for `Prelu`,
    /// an [`Act`] otherwise.
    pub fn layer(self, p: &Path) -> Box<dyn Module> {
        match self {
            Activation::Prelu => Box::new(PReLU::new(p, 1)),
            act => Box::new(Act::new(p, act)),
        }
    }
}

impl std::fmt::Display for Activation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Activation {
    type Err = Error;
    /// Case-insensitive, `-` or `_` alike, with the aliases swish (SiLU), leakyrelu, hardsigmoid, threshold and
    /// heaviside (step), linear and none (identity).
    fn from_str(s: &str) -> Result<Self, Error> {
        let key = s.trim().to_lowercase().replace('-', "_");
        let key = match key.as_str() {
            "swish" => "silu",
            "leakyrelu" => "leaky_relu",
            "hardsigmoid" => "hard_sigmoid",
            "threshold" | "heaviside" => "step",
            "linear" | "none" => "identity",
            k => k,
        };
        Self::ALL.iter().copied().find(|a| a.name() == key).ok_or_else(|| {
            Error::config(format!(
                "unknown activation '{s}'{}; choose one of {}",
                did_you_mean(s, Self::NAMES.iter().copied()),
                Self::NAMES.join(", ")
            ))
        })
    }
}
