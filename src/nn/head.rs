//! The classifier head most families share (timm's `ClassifierHead`): an optional global average pool named as
//! the family names it (torchvision's `avgpool`, timm's `global_pool`), flatten, and a Linear classifier that
//! `reset` replaces under the same name and in the same place of the store (`reset_classifier`).
use tch::Tensor;

use super::{AdaptiveAvgPool2d, Linear, Module, Path};

#[derive(Debug)]
pub struct ClassifierHead {
    pool: Option<AdaptiveAvgPool2d>,
    fc: Linear,
    fc_path: Path,
    c_in: i64,
    num_outputs: i64,
}

impl ClassifierHead {
    /// Global average pool `pool` (a parameterless name), flatten, Linear `fc` from `c_in` to `num_outputs`.
    pub fn pooled(pool: &Path, fc: &Path, c_in: i64, num_outputs: i64) -> Self {
        let pool = Some(AdaptiveAvgPool2d::new(pool, [1, 1]));
        ClassifierHead { pool, ..Self::linear(fc, c_in, num_outputs) }
    }
    /// The Linear classifier alone, on features that are already flat.
    pub fn linear(fc: &Path, c_in: i64, num_outputs: i64) -> Self {
        ClassifierHead { pool: None, fc: Linear::new(fc, c_in, num_outputs), fc_path: fc.clone(), c_in, num_outputs }
    }
    /// A freshly initialised classifier of `num_outputs` outputs, under the same name.
    pub fn reset(&mut self, num_outputs: i64) {
        self.fc = self.fc_path.replace(|p| Linear::new(p, self.c_in, num_outputs));
        self.num_outputs = num_outputs;
    }
    pub fn num_outputs(&self) -> i64 {
        self.num_outputs
    }
    /// The classifier's input width.
    pub fn in_features(&self) -> i64 {
        self.c_in
    }
    pub fn fc(&self) -> &Linear {
        &self.fc
    }
}

impl Module for ClassifierHead {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        match &self.pool {
            Some(pool) => self.fc.forward_t(&pool.forward_t(xs, train).flatten(1, -1), train),
            None => self.fc.forward_t(xs, train),
        }
    }
}
