//! Our optimizers, on tch tensors, following `torch.optim`'s single-tensor algorithms step for step and keeping
//! their state under the same names (`step`, `exp_avg`, `exp_avg_sq`, `max_exp_avg_sq`, `momentum_buffer`,
//! `square_avg`, `grad_avg`), per parameter index in `model.parameters()` order.
use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::error::{did_you_mean, Error, Result};

pub mod groups;
pub mod hyper;
pub mod schedule;

pub use groups::{GroupSpec, ParamGroup};
pub use hyper::{Hyper, HyperArgs, HyperConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    Sgd,
    Adam,
    Adamw,
    Rmsprop,
}

/// Parses `sgd`, `adam`, `adamw` or `rmsprop`.
pub fn parse_kind(s: &str) -> Result<OptimizerKind> {
    {
        match s.to_lowercase().as_str() {
            "sgd" => Ok(OptimizerKind::Sgd),
            "adam" => Ok(OptimizerKind::Adam),
            "adamw" => Ok(OptimizerKind::Adamw),
            "rmsprop" => Ok(OptimizerKind::Rmsprop),
            _ => {
                let names = ["sgd", "adam", "adamw", "rmsprop"];
                Err(Error::config(format!(
                    "unknown optimizer '{s}'{}; choose one of {}",
                    did_you_mean(s, names),
                    names.join(", ")
                )))
            }
        }
    }
}

/// Which of `torch.optim`'s implementations a step runs: the single-tensor loop (`foreach=False`, the CPU's
/// default), the `_foreach_*` ops (`foreach=True`, CUDA's default; SGD, Adam, AdamW), or the fused kernels
/// (`fused=True`: `_fused_sgd_`, `_fused_adam_`, `_fused_adamw_`; no RMSprop).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerImpl {
    #[default]
    Single,
    Foreach,
    Fused,
}

impl OptimizerImpl {
    pub fn parse(s: &str) -> Result<OptimizerImpl> {
        match s.trim().to_lowercase().as_str() {
            "single" | "single_tensor" => Ok(OptimizerImpl::Single),
            "foreach" => Ok(OptimizerImpl::Foreach),
            "fused" => Ok(OptimizerImpl::Fused),
            other => Err(Error::config(format!("⟨optimizer_impl⟩ '{other}': use single, foreach or fused"))),
        }
    }

    /// PyTorch's default (`_default_to_fused_or_foreach`): the single-tensor loop on the CPU, foreach on CUDA
    /// (RMSprop keeps the single-tensor loop here: tchzoo has no foreach RMSprop).
    pub fn default_for(device: tch::Device, kind: OptimizerKind) -> OptimizerImpl {
        match device {
            tch::Device::Cuda(_) if kind != OptimizerKind::Rmsprop => OptimizerImpl::Foreach,
            _ => OptimizerImpl::Single,
        }
    }
}

/// An optimizer: which one, its hyper-parameters ([`Hyper`]) and which implementation steps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OptimizerConfig {
    pub kind: OptimizerKind,
    #[serde(flatten)]
    pub hyper: Hyper,
    #[serde(default)]
    pub implementation: OptimizerImpl,
}

impl OptimizerConfig {
    /// The defaults of `torch.optim` for `kind` (AdamW's weight decay 1e-2, RMSprop's eps 1e-8 and lr 1e-2, …).
    pub fn new(kind: OptimizerKind) -> Self {
        OptimizerConfig { kind, hyper: Hyper::torch_defaults(kind), implementation: OptimizerImpl::Single }
    }

    pub fn validate(&self) -> Result<()> {
        self.hyper.validate()?;
        let bad = |what: &str| Err(Error::config(what));
        match (self.implementation, self.kind) {
            (OptimizerImpl::Foreach, OptimizerKind::Rmsprop) => {
                bad("tchzoo has no foreach RMSprop yet; use ⟨optimizer_impl⟩ single")
            }
            (OptimizerImpl::Fused, OptimizerKind::Rmsprop) => {
                bad("torch.optim.RMSprop has no fused implementation; use ⟨optimizer_impl⟩ single")
            }
            _ => Ok(()),
        }
    }
}

/// The named state tensors of one parameter, `torch.optim`'s names; an undefined tensor is a slot not (yet) used.
#[derive(Debug)]
struct Slots {
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    max_exp_avg_sq: Tensor,
    momentum_buffer: Tensor,
    square_avg: Tensor,
    grad_avg: Tensor,
}

impl Slots {
    const NAMES: [&'static str; 6] =
        ["exp_avg", "exp_avg_sq", "grad_avg", "max_exp_avg_sq", "momentum_buffer", "square_avg"];

    fn new() -> Self {
        Slots {
            exp_avg: Tensor::new(),
            exp_avg_sq: Tensor::new(),
            max_exp_avg_sq: Tensor::new(),
            momentum_buffer: Tensor::new(),
            square_avg: Tensor::new(),
            grad_avg: Tensor::new(),
        }
    }
    fn get_mut(&mut self, name: &str) -> Option<&mut Tensor> {
        Some(match name {
            "exp_avg" => &mut self.exp_avg,
            "exp_avg_sq" => &mut self.exp_avg_sq,
            "max_exp_avg_sq" => &mut self.max_exp_avg_sq,
            "momentum_buffer" => &mut self.momentum_buffer,
            "square_avg" => &mut self.square_avg,
            "grad_avg" => &mut self.grad_avg,
            _ => return None,
        })
    }
    fn get(&self, name: &str) -> Option<&Tensor> {
        Some(match name {
            "exp_avg" => &self.exp_avg,
            "exp_avg_sq" => &self.exp_avg_sq,
            "max_exp_avg_sq" => &self.max_exp_avg_sq,
            "momentum_buffer" => &self.momentum_buffer,
            "square_avg" => &self.square_avg,
            "grad_avg" => &self.grad_avg,
            _ => return None,
        })
    }
}

/// One optimizer over one parameter group. `step` runs in C++ (`csrc/optim.cpp`): the ATen calls of
/// `torch.optim`'s single-tensor algorithms, the path it takes on the CPU by default, with the same Scalars, so
/// the updates are bit-exact with Python's.
#[derive(Debug)]
pub struct Optimizer {
    pub config: OptimizerConfig,
    params: Vec<Tensor>,
    /// Per parameter index: step count (torch keeps a float32 scalar tensor; the value, counted in float32) and
    /// named state tensors.
    steps: Vec<f64>,
    state: Vec<Slots>,
    /// `torch.optim`'s param groups; one group (all parameters) takes `config.hyper`'s lr and weight decay.
    groups: Vec<ParamGroup>,
}

type Raw = *mut std::ffi::c_void;

mod ffi {
    use super::Raw;
    use std::ffi::c_char;
    extern "C" {
        pub fn tz_sgd_step(
            params: *const Raw,
            momentum_buffers: *const Raw,
            n: i64,
            lr: f64,
            momentum: f64,
            dampening: f64,
            weight_decay: f64,
            nesterov: i32,
        ) -> *mut c_char;
        pub fn tz_adam_step(
            params: *const Raw,
            exp_avgs: *const Raw,
            exp_avg_sqs: *const Raw,
            max_exp_avg_sqs: *const Raw,
            steps: *mut f64,
            n: i64,
            lr: f64,
            beta1: f64,
            beta2: f64,
            eps: f64,
            weight_decay: f64,
            amsgrad: i32,
            decoupled: i32,
        ) -> *mut c_char;
        pub fn tz_rmsprop_step(
            params: *const Raw,
            square_avgs: *const Raw,
            momentum_buffers: *const Raw,
            grad_avgs: *const Raw,
            steps: *mut f64,
            n: i64,
            lr: f64,
            alpha: f64,
            eps: f64,
            weight_decay: f64,
            momentum: f64,
            centered: i32,
        ) -> *mut c_char;
        pub fn tz_fused_adam_step(
            params: *const Raw,
            exp_avgs: *const Raw,
            exp_avg_sqs: *const Raw,
            max_exp_avg_sqs: *const Raw,
            steps: *mut f64,
            n: i64,
            lr: f64,
            beta1: f64,
            beta2: f64,
            eps: f64,
            weight_decay: f64,
            amsgrad: i32,
            decoupled: i32,
        ) -> *mut c_char;
        pub fn tz_fused_sgd_step(
            params: *const Raw,
            momentum_buffers: *const Raw,
            n: i64,
            lr: f64,
            momentum: f64,
            dampening: f64,
            weight_decay: f64,
            nesterov: i32,
        ) -> *mut c_char;
        pub fn tz_foreach_sgd_step(
            params: *const Raw,
            momentum_buffers: *const Raw,
            n: i64,
            lr: f64,
            momentum: f64,
            dampening: f64,
            weight_decay: f64,
            nesterov: i32,
        ) -> *mut c_char;
        pub fn tz_foreach_adam_step(
            params: *const Raw,
            exp_avgs: *const Raw,
            exp_avg_sqs: *const Raw,
            max_exp_avg_sqs: *const Raw,
            steps: *mut f64,
            n: i64,
            lr: f64,
            beta1: f64,
            beta2: f64,
            eps: f64,
            weight_decay: f64,
            amsgrad: i32,
            decoupled: i32,
        ) -> *mut c_char;
        pub fn tz_grads_to_none(params: *const Raw, n: i64) -> *mut c_char;
        pub fn tz_keep_freed_memory();
    }
}

fn raw(t: &Tensor) -> Raw {
    t.as_ptr() as Raw
}

/// Sets glibc's malloc to keep freed blocks under 32 MB in the heap (mmap threshold) and to trim it past 128 MB
/// only: a training step frees and allocates the same buffers every time (gradients set to None, batches,
/// activations), which glibc's defaults (128 KB each) return to the kernel and fault in again on every step
/// (LeNet-5 on digits: 440,000 page faults, 58,000 with this). A process-wide setting, so the binaries make it
/// (`tchzoo`, `tchzoo-bench`), not the library; a program that trains through the library may call it first.
pub fn keep_freed_memory() {
    static MALLOC: std::sync::Once = std::sync::Once::new();
    // SAFETY: two mallopt calls with constant arguments.
    MALLOC.call_once(|| unsafe { ffi::tz_keep_freed_memory() });
}

impl Optimizer {
    pub fn new(config: OptimizerConfig, params: Vec<Tensor>) -> Result<Self> {
        let n = params.len();
        let group = ParamGroup {
            params: (0..n).collect(),
            lr: config.hyper.lr,
            weight_decay: config.hyper.weight_decay,
            lr_mult: 1.0,
        };
        Self::with_groups(config, params, vec![group])
    }
    /// An optimizer over `groups` of `params` (see [`groups::build`]); every parameter index in exactly one group.
    pub fn with_groups(config: OptimizerConfig, params: Vec<Tensor>, groups: Vec<ParamGroup>) -> Result<Self> {
        config.validate()?;
        let n = params.len();
        let mut seen = vec![false; n];
        for g in &groups {
            for &i in &g.params {
                if i >= n || std::mem::replace(&mut seen[i], true) {
                    return Err(Error::invalid(format!("parameter groups: index {i} is out of range or repeated")));
                }
            }
            for v in [g.lr, g.weight_decay] {
                if !(v.is_finite() && v >= 0.0 && v.abs() <= f32::MAX as f64) {
                    return Err(Error::config(format!("parameter group lr/weight decay {v} must be finite and ≥ 0")));
                }
            }
        }
        if seen.iter().any(|s| !s) || groups.is_empty() {
            return Err(Error::invalid("parameter groups leave some parameter out"));
        }
        Ok(Optimizer { config, params, steps: vec![0.0; n], state: (0..n).map(|_| Slots::new()).collect(), groups })
    }
    /// The base learning rate (`--lr`; the groups without a multiplier).
    pub fn lr(&self) -> f64 {
        self.config.hyper.lr
    }
    /// Sets the base learning rate, and each group's to it times the group's multiplier.
    pub fn set_lr(&mut self, lr: f64) {
        self.config.hyper.lr = lr;
        for g in &mut self.groups {
            g.lr = lr * g.lr_mult;
        }
    }
    /// Sets the base learning rate only (the groups keep theirs, as restored from a checkpoint).
    pub fn set_base_lr(&mut self, lr: f64) {
        self.config.hyper.lr = lr;
    }
    /// The param groups, with their current hyper-parameters.
    pub fn groups(&self) -> Vec<ParamGroup> {
        let mut g = self.groups.clone();
        if let [one] = g.as_mut_slice() {
            one.lr = self.config.hyper.lr;
            one.weight_decay = self.config.hyper.weight_decay;
        }
        g
    }
    /// Each group's learning rate.
    pub fn group_lrs(&self) -> Vec<f64> {
        self.groups().iter().map(|g| g.lr).collect()
    }
    /// Sets each group's learning rate (as torch's schedulers do); a single group's is the base lr.
    pub fn set_group_lrs(&mut self, lrs: &[f64]) {
        for (g, &lr) in self.groups.iter_mut().zip(lrs) {
            g.lr = lr;
        }
        if let ([_], [lr]) = (self.groups.as_slice(), lrs) {
            self.config.hyper.lr = *lr;
        }
    }
    /// Sets each group's weight decay (from a checkpoint).
    pub fn set_group_weight_decays(&mut self, wds: &[f64]) {
        for (g, &wd) in self.groups.iter_mut().zip(wds) {
            g.weight_decay = wd;
        }
        if let ([_], [wd]) = (self.groups.as_slice(), wds) {
            self.config.hyper.weight_decay = *wd;
        }
    }
    pub fn params(&self) -> &[Tensor] {
        &self.params
    }

    /// `zero_grad(set_to_none=True)`, PyTorch's default: the gradients become None (no zeroing kernels; the next
    /// `backward` assigns fresh ones) and a parameter the next `backward` does not reach is not updated.
    pub fn zero_grad(&mut self) -> Result<()> {
        let ptrs: Vec<Raw> = self.params.iter().map(raw).collect();
        // SAFETY: live `torch::Tensor*` owned by `self.params` for the duration of the call.
        let message = unsafe { ffi::tz_grads_to_none(ptrs.as_ptr(), ptrs.len() as i64) };
        crate::error::from_c(message, "zero_grad")
    }

    /// The state of parameter `i` in `torch.optim`'s layout (Adam and RMSprop keep `step` as a float32 scalar,
    /// SGD only its momentum buffer); empty before its first step.
    pub fn param_state(&self, i: usize) -> Vec<(String, Tensor)> {
        let slots = &self.state[i];
        let named: Vec<(String, Tensor)> = Slots::NAMES
            .iter()
            .filter_map(|&k| slots.get(k).filter(|t| t.defined()).map(|t| (k.to_string(), t.shallow_clone())))
            .collect();
        if named.is_empty() {
            return vec![];
        }
        let mut out = vec![];
        if self.config.kind != OptimizerKind::Sgd {
            out.push(("step".to_string(), Tensor::from(self.steps[i] as f32)));
        }
        out.extend(named);
        out
    }
    /// Restores parameter `i`'s state (from a checkpoint): `step` and the named buffers (names this optimizer
    /// does not keep are ignored).
    pub fn set_param_state(&mut self, i: usize, entries: Vec<(String, Tensor)>) -> Result<()> {
        let p = self.params.get(i).ok_or_else(|| Error::invalid(format!("optimizer has no parameter {i}")))?;
        let mut slots = Slots::new();
        for (k, v) in entries {
            if k == "step" {
                self.steps[i] = v.double_value(&[]);
            } else {
                if v.size() != p.size() {
                    return Err(Error::invalid(format!(
                        "optimizer state {k} of parameter {i}: shape {:?}, parameter has {:?}",
                        v.size(),
                        p.size()
                    )));
                }
                if let Some(slot) = slots.get_mut(&k) {
                    *slot = v.to_device(p.device()).to_kind(p.kind());
                }
            }
        }
        self.state[i] = slots;
        Ok(())
    }

    /// One update of every parameter that has a gradient, one C++ call per param group (as torch.optim steps each
    /// group with its own hyper-parameters); ATen's message as an error when the C++ step threw (a state of the
    /// wrong shape or device, …).
    pub fn step(&mut self) -> Result<()> {
        let groups = self.groups();
        for g in &groups {
            self.step_group(&g.params, g.hyper(&self.config.hyper))?;
        }
        Ok(())
    }

    fn step_group(&mut self, idx: &[usize], h: Hyper) -> Result<()> {
        let (kind, implementation) = (self.config.kind, self.config.implementation);
        let n = idx.len() as i64;
        let params: Vec<Raw> = idx.iter().map(|&i| raw(&self.params[i])).collect();
        let slots = |f: fn(&Slots) -> &Tensor| -> Vec<Raw> { idx.iter().map(|&i| raw(f(&self.state[i]))).collect() };
        let mut group_steps: Vec<f64> = idx.iter().map(|&i| self.steps[i]).collect();
        let steps = group_steps.as_mut_ptr();
        // SAFETY: every pointer is a live `torch::Tensor*` owned by `self` (parameters and state slots) for the
        // duration of the call; the C++ side assigns undefined slots in place and keeps no pointer.
        // Single-tensor, foreach and fused SGD (and Adam/AdamW) take the same arguments: one call site each.
        type SgdStep =
            unsafe extern "C" fn(*const Raw, *const Raw, i64, f64, f64, f64, f64, i32) -> *mut std::ffi::c_char;
        type AdamStep = unsafe extern "C" fn(
            *const Raw,
            *const Raw,
            *const Raw,
            *const Raw,
            *mut f64,
            i64,
            f64,
            f64,
            f64,
            f64,
            f64,
            i32,
            i32,
        ) -> *mut std::ffi::c_char;
        let (sgd, adam): (SgdStep, AdamStep) = match implementation {
            OptimizerImpl::Single => (ffi::tz_sgd_step, ffi::tz_adam_step),
            OptimizerImpl::Foreach => (ffi::tz_foreach_sgd_step, ffi::tz_foreach_adam_step),
            OptimizerImpl::Fused => (ffi::tz_fused_sgd_step, ffi::tz_fused_adam_step),
        };
        let message = unsafe {
            match kind {
                OptimizerKind::Sgd => {
                    let bufs = slots(|s| &s.momentum_buffer);
                    sgd(
                        params.as_ptr(),
                        bufs.as_ptr(),
                        n,
                        h.lr,
                        h.momentum,
                        h.dampening,
                        h.weight_decay,
                        h.nesterov as i32,
                    )
                }
                OptimizerKind::Adam | OptimizerKind::Adamw => {
                    let (m, v, vmax) = (slots(|s| &s.exp_avg), slots(|s| &s.exp_avg_sq), slots(|s| &s.max_exp_avg_sq));
                    adam(
                        params.as_ptr(),
                        m.as_ptr(),
                        v.as_ptr(),
                        vmax.as_ptr(),
                        steps,
                        n,
                        h.lr,
                        h.betas.0,
                        h.betas.1,
                        h.eps,
                        h.weight_decay,
                        h.amsgrad as i32,
                        (kind == OptimizerKind::Adamw) as i32,
                    )
                }
                // RMSprop has the single-tensor loop only (`OptimizerConfig::validate` refuses the others).
                OptimizerKind::Rmsprop => {
                    let (sq, buf, avg) =
                        (slots(|s| &s.square_avg), slots(|s| &s.momentum_buffer), slots(|s| &s.grad_avg));
                    ffi::tz_rmsprop_step(
                        params.as_ptr(),
                        sq.as_ptr(),
                        buf.as_ptr(),
                        avg.as_ptr(),
                        steps,
                        n,
                        h.lr,
                        h.alpha,
                        h.eps,
                        h.weight_decay,
                        h.momentum,
                        h.centered as i32,
                    )
                }
            }
        };
        for (k, &i) in idx.iter().enumerate() {
            self.steps[i] = group_steps[k];
        }
        crate::error::from_c(message, "optimizer step")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_impl_per_device_is_pytorchs() {
        for kind in [OptimizerKind::Sgd, OptimizerKind::Adam, OptimizerKind::Adamw, OptimizerKind::Rmsprop] {
            assert_eq!(OptimizerImpl::default_for(tch::Device::Cpu, kind), OptimizerImpl::Single);
        }
        assert_eq!(OptimizerImpl::default_for(tch::Device::Cuda(0), OptimizerKind::Sgd), OptimizerImpl::Foreach);
        assert_eq!(OptimizerImpl::default_for(tch::Device::Cuda(1), OptimizerKind::Adamw), OptimizerImpl::Foreach);
        assert_eq!(OptimizerImpl::default_for(tch::Device::Cuda(0), OptimizerKind::Rmsprop), OptimizerImpl::Single);
        assert_eq!(OptimizerImpl::parse("foreach").unwrap(), OptimizerImpl::Foreach);
        let mut c = OptimizerConfig::new(OptimizerKind::Rmsprop);
        c.implementation = OptimizerImpl::Foreach;
        assert!(c.validate().is_err());
    }
}
