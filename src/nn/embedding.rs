//! `Embedding` with Keras' meaning and PyTorch's names: a table `weight` [input_dim, output_dim] (the name
//! `torch.nn.Embedding` gives it), looked up by integer index.
//!
//! Keras' arguments: `input_dim` (the number of indices, i.e. the largest index + 1), `output_dim`,
//! `embeddings_initializer` ([`EmbeddingInit`]: Keras' `uniform` ±0.05 by default, Keras' `normal`, or PyTorch's
//! N(0, 1)), and `mask_zero`: index 0 is padding, and [`Embedding::compute_mask`] gives the mask a recurrent layer
//! takes so that padded steps change nothing (as in Keras, the row of index 0 is still an ordinary row).
//!
//! Indices are checked before the lookup: one outside `0..input_dim` is an error naming the index and its position
//! in the batch, never an out-of-bounds read (which on CUDA would be a device-side assert).
use std::str::FromStr;

use tch::{Kind, Tensor};

use super::{trace, Module, Path};
use crate::error::{did_you_mean, Error, Result};

/// How the table starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EmbeddingInit {
    /// Keras' default `uniform`: U(-0.05, 0.05).
    #[default]
    Uniform,
    /// Keras' `normal`: N(0, 0.05²).
    Normal,
    /// PyTorch's `nn.Embedding` default: N(0, 1).
    Torch,
}

impl EmbeddingInit {
    pub const NAMES: &'static [&'static str] = &["uniform", "normal", "torch"];

    /// A freshly drawn table of `shape`.
    pub fn tensor(&self, shape: &[i64]) -> Tensor {
        let mut t = Tensor::empty(shape, (Kind::Float, tch::Device::Cpu));
        match self {
            EmbeddingInit::Uniform => t.uniform_(-0.05, 0.05),
            EmbeddingInit::Normal => t.normal_(0.0, 0.05),
            EmbeddingInit::Torch => t.normal_(0.0, 1.0),
        }
    }
}

impl FromStr for EmbeddingInit {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "uniform" | "random_uniform" => Ok(EmbeddingInit::Uniform),
            "normal" | "random_normal" => Ok(EmbeddingInit::Normal),
            "torch" | "pytorch" => Ok(EmbeddingInit::Torch),
            other => Err(Error::config(format!(
                "unknown embeddings initializer '{other}'{}; choose {}",
                did_you_mean(other, Self::NAMES.iter().copied()),
                Self::NAMES.join(", ")
            ))),
        }
    }
}

#[derive(Debug)]
pub struct Embedding {
    name: String,
    pub weight: Tensor,
    pub input_dim: i64,
    pub output_dim: i64,
    pub mask_zero: bool,
}

impl Embedding {
    /// Registers `weight` [input_dim, output_dim] at `p`.
    pub fn new(p: &Path, input_dim: i64, output_dim: i64, init: EmbeddingInit, mask_zero: bool) -> Self {
        let weight = p.param("weight", init.tensor(&[input_dim, output_dim]));
        Embedding { name: p.name().to_string(), weight, input_dim, output_dim, mask_zero }
    }

    fn label(&self) -> String {
        if self.name.is_empty() {
            "embedding".to_string()
        } else {
            format!("embedding '{}'", self.name)
        }
    }

    /// `xs` as int64 indices, checked: integer values (an integral float tensor is accepted, as Keras casts) in
    /// `0..input_dim`. The error names the first offending value and its position, e.g. `[3, 1]`.
    pub fn indices(&self, xs: &Tensor) -> Result<Tensor> {
        check_indices(xs, self.input_dim, &self.label())
    }

    /// The lookup, after [`Embedding::indices`]: [..., output_dim] for indices of shape [...].
    pub fn f_forward(&self, xs: &Tensor) -> Result<Tensor> {
        let idx = self.indices(xs)?;
        let ys = Tensor::f_embedding(&self.weight, &idx, -1, false, false)?;
        trace::record(&self.name, "Embedding", &ys, self.weight.numel() as i64);
        Ok(ys)
    }

    /// Keras' `compute_mask`: `xs != 0` (bool, the shape of `xs`) when `mask_zero`, else `None`.
    pub fn compute_mask(&self, xs: &Tensor) -> Option<Tensor> {
        self.mask_zero.then(|| xs.ne(0))
    }
}

impl Module for Embedding {
    /// The lookup without the index check, which reads a flag back from the device: the trainer checks each whole
    /// dataset once (`Model::check_input`) instead of every batch. Use [`Embedding::f_forward`] on unchecked input.
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Tensor {
        let ys = Tensor::embedding(&self.weight, &xs.to_kind(Kind::Int64), -1, false, false);
        trace::record(&self.name, "Embedding", &ys, self.weight.numel() as i64);
        ys
    }
}

/// Checks that `xs` holds indices in `0..bound` and returns them as int64; `what` names the table in the error.
pub fn check_indices(xs: &Tensor, bound: i64, what: &str) -> Result<Tensor> {
    let position = |mask: &Tensor| -> Vec<i64> {
        let first = mask.nonzero();
        if first.size()[0] == 0 {
            return vec![];
        }
        Vec::<i64>::try_from(first.get(0).to_device(tch::Device::Cpu)).unwrap_or_default()
    };
    let value_at = |pos: &[i64]| -> f64 {
        let mut v = xs.shallow_clone();
        for &i in pos {
            v = v.get(i);
        }
        v.to_kind(Kind::Double).double_value(&[])
    };
    if xs.numel() == 0 {
        return Ok(xs.to_kind(Kind::Int64));
    }
    let idx = match xs.kind() {
        Kind::Int64 => xs.shallow_clone(),
        Kind::Int | Kind::Int16 | Kind::Int8 | Kind::Uint8 => xs.to_kind(Kind::Int64),
        Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16 => {
            let bad = xs.isfinite().logical_not().logical_or(&xs.ne_tensor(&xs.round()));
            if bool::try_from(bad.any()).unwrap_or(true) {
                let pos = position(&bad);
                return Err(Error::invalid(format!(
                    "{what}: value {} at position {pos:?} is not an integer index; indices must be whole numbers",
                    value_at(&pos)
                )));
            }
            xs.to_kind(Kind::Int64)
        }
        other => return Err(Error::invalid(format!("{what}: indices of type {other:?}; give int64 indices"))),
    };
    let bad = idx.lt(0).logical_or(&idx.ge(bound));
    if bool::try_from(bad.any()).unwrap_or(true) {
        let pos = position(&bad);
        let hi = idx.max().int64_value(&[]);
        let hint = if hi >= bound { format!("; the data needs input_dim ≥ {}", hi + 1) } else { String::new() };
        return Err(Error::invalid(format!(
            "{what}: index {} at position {pos:?} is outside 0..{bound} (input_dim {bound}){hint}",
            value_at(&pos) as i64
        )));
    }
    Ok(idx)
}
