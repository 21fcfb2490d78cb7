//! Parameterless activations, by name.
use std::str::FromStr;

use tch::Tensor;

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
    ];

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
        }
    }
    pub fn name(&self) -> &'static str {
        Self::NAMES[*self as usize]
    }
    /// PyTorch's class name, for summaries.
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
        }
    }
}

impl FromStr for Activation {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let key = s.trim().to_lowercase().replace('-', "_");
        let key = match key.as_str() {
            "swish" => "silu",
            "leakyrelu" => "leaky_relu",
            "hardsigmoid" => "hard_sigmoid",
            "linear" | "none" => "identity",
            k => k,
        };
        let all = [
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
        ];
        all.into_iter().find(|a| a.name() == key).ok_or_else(|| {
            Error::config(format!(
                "unknown activation '{s}'{}; choose one of {}",
                did_you_mean(s, Self::NAMES.iter().copied()),
                Self::NAMES.join(", ")
            ))
        })
    }
}
