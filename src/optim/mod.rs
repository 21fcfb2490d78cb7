//! Our optimizers, on tch tensors, following `torch.optim`'s single-tensor algorithms step for step and keeping
//! their state under the same names (`step`, `exp_avg`, `exp_avg_sq`, `max_exp_avg_sq`, `momentum_buffer`,
//! `square_avg`, `grad_avg`), per parameter index in `model.parameters()` order.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::error::{did_you_mean, Error, Result};

pub mod schedule;

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

/// Hyper-parameters with `torch.optim`'s names and defaults (per optimizer, see [`OptimizerConfig::new`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OptimizerConfig {
    pub kind: OptimizerKind,
    pub lr: f64,
    /// SGD and RMSprop.
    pub momentum: f64,
    pub dampening: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
    /// Adam and AdamW.
    pub betas: (f64, f64),
    pub eps: f64,
    pub amsgrad: bool,
    /// RMSprop's smoothing constant.
    pub alpha: f64,
    pub centered: bool,
}

impl OptimizerConfig {
    /// The defaults of `torch.optim` for `kind` (AdamW's weight decay 1e-2, RMSprop's eps 1e-8 and lr 1e-2, …).
    pub fn new(kind: OptimizerKind) -> Self {
        let base = OptimizerConfig {
            kind,
            lr: 1e-3,
            momentum: 0.0,
            dampening: 0.0,
            nesterov: false,
            weight_decay: 0.0,
            betas: (0.9, 0.999),
            eps: 1e-8,
            amsgrad: false,
            alpha: 0.99,
            centered: false,
        };
        match kind {
            OptimizerKind::Sgd => OptimizerConfig { lr: 1e-3, ..base },
            OptimizerKind::Adam => base,
            OptimizerKind::Adamw => OptimizerConfig { weight_decay: 1e-2, ..base },
            OptimizerKind::Rmsprop => OptimizerConfig { lr: 1e-2, ..base },
        }
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(Error::config(what));
        if !(self.lr >= 0.0 && self.lr.is_finite()) {
            return bad(format!("learning rate {} must be a finite number ≥ 0", self.lr));
        }
        if self.momentum < 0.0 || self.weight_decay < 0.0 || self.eps < 0.0 {
            return bad("momentum, weight decay and eps must be ≥ 0".into());
        }
        if self.nesterov && (self.momentum <= 0.0 || self.dampening != 0.0) {
            return bad("nesterov needs momentum > 0 and dampening 0 (as torch.optim.SGD)".into());
        }
        if !(0.0..1.0).contains(&self.betas.0) || !(0.0..1.0).contains(&self.betas.1) {
            return bad(format!("betas {:?} must lie in [0, 1)", self.betas));
        }
        Ok(())
    }
}

/// One optimizer over one parameter group.
#[derive(Debug)]
pub struct Optimizer {
    pub config: OptimizerConfig,
    params: Vec<Tensor>,
    /// Per parameter index: step count (torch keeps a float32 scalar tensor) and named state tensors.
    steps: Vec<f64>,
    state: Vec<BTreeMap<String, Tensor>>,
}

fn mul(t: &Tensor, v: f64) -> Tensor {
    t * v
}

/// `b·alpha + a` in float64, `alpha` cast to `a`'s type first: one float64 temporary, scaled and added in place
/// (4 kernels where the out-of-place form took 5 and as many temporaries).
fn scaled_sum_f64(a: &Tensor, b: &Tensor, alpha: f64) -> Tensor {
    let mut sum = b.to_kind(tch::Kind::Double);
    let _ = sum.g_mul_scalar_(alpha as f32 as f64);
    let _ = sum.g_add_(a);
    sum
}

/// `a.add(b, alpha=alpha)` with ATen's rounding: its kernels compute `fma(b, alpha, a)` (one rounding, `alpha`
/// cast to the tensor's type first). Computing in float64 and rounding once reproduces it for float32 tensors;
/// with `alpha` 1 the fma is a plain addition, one kernel.
fn add_scaled(a: &Tensor, b: &Tensor, alpha: f64) -> Tensor {
    match a.kind() {
        _ if alpha == 1.0 => a + b,
        tch::Kind::Double => a + b * alpha,
        kind => scaled_sum_f64(a, b, alpha).to_kind(kind),
    }
}

/// `a.add_(b, alpha=alpha)` in place.
fn add_scaled_(a: &mut Tensor, b: &Tensor, alpha: f64) {
    if alpha == 1.0 {
        let _ = a.g_add_(b);
    } else if a.kind() == tch::Kind::Double {
        let _ = a.g_add_(&(b * alpha));
    } else {
        let sum = scaled_sum_f64(a, b, alpha);
        a.copy_(&sum);
    }
}

impl Optimizer {
    pub fn new(config: OptimizerConfig, params: Vec<Tensor>) -> Result<Self> {
        config.validate()?;
        let n = params.len();
        Ok(Optimizer { config, params, steps: vec![0.0; n], state: (0..n).map(|_| BTreeMap::new()).collect() })
    }
    pub fn lr(&self) -> f64 {
        self.config.lr
    }
    pub fn set_lr(&mut self, lr: f64) {
        self.config.lr = lr;
    }
    pub fn params(&self) -> &[Tensor] {
        &self.params
    }

    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            p.zero_grad();
        }
    }

    /// The state of parameter `i` in `torch.optim`'s layout (Adam and RMSprop keep `step` as a float32 scalar,
    /// SGD only its momentum buffer); empty before its first step.
    pub fn param_state(&self, i: usize) -> Vec<(String, Tensor)> {
        if self.state[i].is_empty() {
            return vec![];
        }
        let mut out = vec![];
        if self.config.kind != OptimizerKind::Sgd {
            out.push(("step".to_string(), Tensor::from(self.steps[i] as f32)));
        }
        out.extend(self.state[i].iter().map(|(k, v)| (k.clone(), v.shallow_clone())));
        out
    }
    /// Restores parameter `i`'s state (from a checkpoint): `step` and the named buffers.
    pub fn set_param_state(&mut self, i: usize, entries: Vec<(String, Tensor)>) -> Result<()> {
        let p = self.params.get(i).ok_or_else(|| Error::invalid(format!("optimizer has no parameter {i}")))?;
        let mut map = BTreeMap::new();
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
                map.insert(k, v.to_device(p.device()).to_kind(p.kind()));
            }
        }
        self.state[i] = map;
        Ok(())
    }

    /// One update of every parameter that has a gradient.
    pub fn step(&mut self) {
        let c = self.config.clone();
        tch::no_grad(|| {
            for i in 0..self.params.len() {
                let grad = self.params[i].grad();
                if !grad.defined() {
                    continue;
                }
                let mut param = self.params[i].shallow_clone();
                self.steps[i] += 1.0;
                let step = self.steps[i];
                let state = &mut self.state[i];
                match c.kind {
                    OptimizerKind::Sgd => sgd(&c, &mut param, grad, state),
                    OptimizerKind::Adam | OptimizerKind::Adamw => {
                        adam(&c, c.kind == OptimizerKind::Adamw, &mut param, grad, state, step)
                    }
                    OptimizerKind::Rmsprop => rmsprop(&c, &mut param, grad, state),
                }
            }
        });
    }
}

fn sgd(c: &OptimizerConfig, param: &mut Tensor, grad: Tensor, state: &mut BTreeMap<String, Tensor>) {
    let mut grad = if c.weight_decay != 0.0 { add_scaled(&grad, param, c.weight_decay) } else { grad };
    if c.momentum != 0.0 {
        let buf = match state.get_mut("momentum_buffer") {
            None => {
                let b = grad.copy().detach();
                state.insert("momentum_buffer".into(), b.shallow_clone());
                b
            }
            Some(b) => {
                let _ = b.g_mul_scalar_(c.momentum);
                add_scaled_(b, &grad, 1.0 - c.dampening);
                b.shallow_clone()
            }
        };
        grad = if c.nesterov { add_scaled(&grad, &buf, c.momentum) } else { buf };
    }
    add_scaled_(param, &grad, -c.lr);
}

fn adam(
    c: &OptimizerConfig,
    decoupled: bool,
    param: &mut Tensor,
    grad: Tensor,
    state: &mut BTreeMap<String, Tensor>,
    step: f64,
) {
    let (beta1, beta2) = c.betas;
    let mut grad = grad;
    if c.weight_decay != 0.0 {
        if decoupled {
            let _ = param.g_mul_scalar_(1.0 - c.lr * c.weight_decay);
        } else {
            grad = add_scaled(&grad, param, c.weight_decay);
        }
    }
    if state.is_empty() {
        state.insert("exp_avg".into(), param.zeros_like());
        state.insert("exp_avg_sq".into(), param.zeros_like());
        if c.amsgrad {
            state.insert("max_exp_avg_sq".into(), param.zeros_like());
        }
    }
    let mut exp_avg = state["exp_avg"].shallow_clone();
    let mut exp_avg_sq = state["exp_avg_sq"].shallow_clone();
    let _ = exp_avg.lerp_(&grad, 1.0 - beta1);
    // addcmul_(grad, grad, value=v): (v·grad)·grad, in that order as ATen's kernel.
    let _ = exp_avg_sq.g_mul_scalar_(beta2).addcmul_(&mul(&grad, 1.0 - beta2), &grad);
    let bias_correction1 = 1.0 - beta1.powf(step);
    let bias_correction2 = 1.0 - beta2.powf(step);
    let step_size = c.lr / bias_correction1;
    let bias_correction2_sqrt = bias_correction2.sqrt();
    let second = if c.amsgrad {
        let mut max_sq = state["max_exp_avg_sq"].shallow_clone();
        let m = max_sq.maximum(&exp_avg_sq);
        max_sq.copy_(&m);
        max_sq
    } else {
        exp_avg_sq
    };
    let denom = (second.sqrt() / bias_correction2_sqrt).g_add_scalar_(c.eps);
    let _ = param.addcdiv_(&mul(&exp_avg, -step_size), &denom);
}

fn rmsprop(c: &OptimizerConfig, param: &mut Tensor, grad: Tensor, state: &mut BTreeMap<String, Tensor>) {
    let grad = if c.weight_decay != 0.0 { add_scaled(&grad, param, c.weight_decay) } else { grad };
    if state.is_empty() {
        state.insert("square_avg".into(), param.zeros_like());
        if c.momentum > 0.0 {
            state.insert("momentum_buffer".into(), param.zeros_like());
        }
        if c.centered {
            state.insert("grad_avg".into(), param.zeros_like());
        }
    }
    let mut square_avg = state["square_avg"].shallow_clone();
    let _ = square_avg.g_mul_scalar_(c.alpha).addcmul_(&mul(&grad, 1.0 - c.alpha), &grad);
    let avg = if c.centered {
        let mut grad_avg = state["grad_avg"].shallow_clone();
        let _ = grad_avg.lerp_(&grad, 1.0 - c.alpha);
        square_avg.addcmul(&mul(&grad_avg, -1.0), &grad_avg).sqrt_()
    } else {
        square_avg.sqrt()
    };
    let avg = avg + c.eps;
    if c.momentum > 0.0 {
        let mut buf = state["momentum_buffer"].shallow_clone();
        let _ = buf.g_mul_scalar_(c.momentum).addcdiv_(&grad, &avg);
        add_scaled_(param, &buf, -c.lr);
    } else {
        let _ = param.addcdiv_(&mul(&grad, -c.lr), &avg);
    }
}
