//! The trainer features of Lightning's `Trainer` and `torch.nn.utils` / `torch.optim.swa_utils` that `fit` applies
//! around each optimizer step: gradient clipping (`clip_grad_norm_`, `clip_grad_value_`, through the same ATen
//! calls in `csrc/clip.cpp`), gradient accumulation, an exponential moving average of the weights
//! (`AveragedModel` with `get_ema_multi_avg_fn`), and the debugging limits (`max_time`, `limit_*_batches`,
//! `fast_dev_run`, `overfit_batches`). SWA's running mean (`train::swa`) is the same [`AveragedModel`] with
//! another rule.
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::error::{Error, Result};
use crate::nn::store::VarKind;
use crate::nn::VarStore;

mod ffi {
    use std::ffi::c_void;
    extern "C" {
        pub fn tz_clip_grad_norm(
            params: *const *mut c_void,
            n: i64,
            max_norm: f64,
            norm_type: f64,
            total: *mut *mut c_void,
        ) -> *mut std::ffi::c_char;
        pub fn tz_clip_grad_value(params: *const *mut c_void, n: i64, clip_value: f64) -> *mut std::ffi::c_char;
        pub fn tz_set_determinism(deterministic: i32, benchmark: i32) -> *mut std::ffi::c_char;
        pub fn tz_deterministic_algorithms() -> i32;
        pub fn tz_torch_version() -> *const std::ffi::c_char;
    }
}

fn raw(t: &Tensor) -> *mut std::ffi::c_void {
    t.as_ptr() as *mut std::ffi::c_void
}

/// Gradient clipping before each optimizer step: by the global norm (`clip_grad_norm_(max_norm, norm_type)`) or by
/// value (`clip_grad_value_`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GradClip {
    Norm { max_norm: f64, norm_type: f64 },
    Value(f64),
}

impl GradClip {
    /// `--clip-grad-norm MAX[,norm_type=2|inf]` (also `max_norm=MAX,…`).
    pub fn parse_norm(spec: &str) -> Result<GradClip> {
        let bad = |msg: String| Error::config(format!("⟨clip_grad_norm⟩ '{spec}': {msg}"));
        let (mut max_norm, mut norm_type) = (None, 2.0);
        for (k, v) in crate::util::parse_pairs(spec, Some("max_norm"), |kv| bad(format!("'{kv}'")))? {
            let v = v.as_str();
            match k.as_str() {
                "max_norm" => {
                    max_norm = Some(v.parse::<f64>().map_err(|_| bad(format!("'{v}' is not a number")))?);
                }
                "norm_type" => {
                    norm_type = match v.to_lowercase().as_str() {
                        "inf" => f64::INFINITY,
                        n => n.parse::<f64>().map_err(|_| bad(format!("norm_type '{v}' is not a number or inf")))?,
                    };
                }
                other => return Err(bad(format!("unknown option '{other}'; use MAX[,norm_type=2|inf]"))),
            }
        }
        let max_norm = max_norm.ok_or_else(|| bad("no maximum norm; give e.g. ⟨clip_grad_norm⟩ 1.0".into()))?;
        if !(max_norm > 0.0 && max_norm.is_finite()) {
            return Err(bad(format!("the maximum norm {max_norm} must be a finite number > 0")));
        }
        if norm_type.is_nan() || norm_type <= 0.0 {
            return Err(bad(format!("norm_type {norm_type} must be > 0 (2 for the L2 norm, inf for the largest)")));
        }
        Ok(GradClip::Norm { max_norm, norm_type })
    }

    /// `--clip-grad-value V`: every gradient element clamped to [−V, V].
    pub fn value(v: f64) -> Result<GradClip> {
        if !(v > 0.0 && v.is_finite()) {
            return Err(Error::config(format!("⟨clip_grad_value⟩ {v} must be a finite number > 0")));
        }
        Ok(GradClip::Value(v))
    }

    /// Clips the gradients of `params` in place; for clipping by norm, returns the total norm before clipping (a
    /// 0-dim tensor on the parameters' device, as `clip_grad_norm_` returns). An exception in libtorch is an error.
    pub fn apply(&self, params: &[Tensor]) -> Result<Option<Tensor>> {
        let ptrs: Vec<*mut std::ffi::c_void> = params.iter().map(raw).collect();
        match *self {
            GradClip::Norm { max_norm, norm_type } => {
                let mut total: *mut std::ffi::c_void = std::ptr::null_mut();
                // SAFETY: live parameters for the call; on success the shim writes a new heap tensor to `total`,
                // owned by the result.
                let message = unsafe {
                    ffi::tz_clip_grad_norm(ptrs.as_ptr(), ptrs.len() as i64, max_norm, norm_type, &mut total)
                };
                crate::error::from_c(message, "clipping the gradients' norm")?;
                Ok(Some(unsafe { Tensor::from_ptr(total as *mut _) }))
            }
            GradClip::Value(v) => {
                // SAFETY: live parameters for the call; their gradients are clamped in place.
                let message = unsafe { ffi::tz_clip_grad_value(ptrs.as_ptr(), ptrs.len() as i64, v) };
                crate::error::from_c(message, "clipping the gradients' values")?;
                Ok(None)
            }
        }
    }
}

/// `--ema decay=0.999[,warmup=true][,use_buffers=true]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EmaConfig {
    pub decay: f64,
    /// The decay of update `n` (counted from 1 after the first copy) is `min(decay, (1 + n) / (10 + n))`, as
    /// TensorFlow's `ExponentialMovingAverage(num_updates=…)`, so early weights fade fast.
    pub warmup: bool,
    /// Average the buffers too (`AveragedModel(use_buffers=True)`); by default they are copied from the model.
    pub use_buffers: bool,
}

impl EmaConfig {
    pub fn parse(spec: &str) -> Result<EmaConfig> {
        let bad = |msg: String| Error::config(format!("⟨ema⟩ '{spec}': {msg}"));
        let mut c = EmaConfig { decay: 0.999, warmup: false, use_buffers: false };
        let flag = |v: &str| match v {
            "true" | "1" | "yes" => Ok(true),
            "false" | "0" | "no" => Ok(false),
            _ => Err(bad(format!("'{v}' is not true or false"))),
        };
        for (k, v) in crate::util::parse_pairs(spec, Some("decay"), |kv| bad(format!("'{kv}'")))? {
            let v = v.as_str();
            match k.as_str() {
                "decay" => c.decay = v.parse().map_err(|_| bad(format!("decay '{v}' is not a number")))?,
                "warmup" => c.warmup = flag(v)?,
                "use_buffers" => c.use_buffers = flag(v)?,
                other => return Err(bad(format!("unknown option '{other}'; use decay=…,warmup=…,use_buffers=…"))),
            }
        }
        if !(c.decay > 0.0 && c.decay < 1.0) {
            return Err(bad(format!("decay {} must lie in (0, 1), e.g. 0.999", c.decay)));
        }
        Ok(c)
    }

    /// The decay of the update made when `n_averaged` updates were made before it (n_averaged ≥ 1).
    pub fn decay_at(&self, n_averaged: u64) -> f64 {
        if self.warmup {
            let n = n_averaged as f64;
            self.decay.min((1.0 + n) / (10.0 + n))
        } else {
            self.decay
        }
    }
}

/// How an [`AveragedModel`] averages: an exponential moving average (`--ema`), or the equal-weight running mean
/// of stochastic weight averaging (`--swa`, `AveragedModel`'s default `avg_fn`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AveragingRule {
    Ema(EmaConfig),
    Swa,
}

impl AveragingRule {
    pub fn name(&self) -> &'static str {
        match self {
            AveragingRule::Ema(_) => "EMA",
            AveragingRule::Swa => "SWA",
        }
    }
}

impl From<EmaConfig> for AveragingRule {
    fn from(c: EmaConfig) -> Self {
        AveragingRule::Ema(c)
    }
}

/// The averaged weights of a model, as `torch.optim.swa_utils.AveragedModel`: a copy of the state dict made at
/// construction; the first update copies the parameters, every later one averages them by the rule, and buffers
/// are copied at each update (unless an EMA's `use_buffers` averages them too).
/// - EMA (`multi_avg_fn=get_ema_multi_avg_fn(decay)`): `ema.lerp_(param, 1 − decay)` (float tensors) or
///   `ema.copy_(ema·decay + param·(1 − decay))` (others).
/// - SWA (no `avg_fn`): `avg + (param − avg) / (n_averaged + 1)` with `n_averaged` a 0-dim int64 tensor
///   (`get_swa_avg_fn`, torch's path on the CPU); on CUDA `avg.lerp_(param, 1 / (n_averaged + 1))` with the weight
///   rounded to float32, as torch's `get_swa_multi_avg_fn` (`_foreach_lerp_`) there.
#[derive(Debug)]
pub struct AveragedModel {
    pub rule: AveragingRule,
    /// (name, averaged tensor, parameter or buffer) in `state_dict()` order.
    averaged: Vec<(String, Tensor, VarKind)>,
    /// `AveragedModel.n_averaged`.
    pub n_averaged: u64,
}

/// The EMA of `--ema` (an [`AveragedModel`] whose rule is [`AveragingRule::Ema`]).
pub type Ema = AveragedModel;

impl AveragedModel {
    pub fn new(rule: impl Into<AveragingRule>, store: &VarStore) -> AveragedModel {
        let kinds = store.entries_meta();
        let averaged = tch::no_grad(|| {
            store
                .state_dict()
                .into_iter()
                .zip(kinds)
                .map(|((name, t), (_, _, _, kind))| (name, t.detach().copy(), kind))
                .collect()
        });
        AveragedModel { rule: rule.into(), averaged, n_averaged: 0 }
    }

    /// `AveragedModel.update_parameters(model)`.
    pub fn update(&mut self, store: &VarStore) {
        let current = store.state_dict();
        let use_buffers = matches!(self.rule, AveragingRule::Ema(c) if c.use_buffers);
        let averages = |kind: VarKind| kind == VarKind::Parameter || use_buffers;
        let n_averaged = self.n_averaged;
        let rule = self.rule;
        tch::no_grad(|| {
            for ((_, avg, kind), (_, p)) in self.averaged.iter_mut().zip(&current) {
                let p = p.detach();
                if !averages(*kind) || n_averaged == 0 {
                    avg.copy_(&p);
                    continue;
                }
                match rule {
                    AveragingRule::Ema(c) => {
                        let decay = c.decay_at(n_averaged);
                        if avg.is_floating_point() {
                            let _ = avg.lerp_(&p, 1.0 - decay);
                        } else {
                            let mixed = &*avg * decay + p * (1.0 - decay);
                            avg.copy_(&mixed);
                        }
                    }
                    AveragingRule::Swa if avg.device().is_cuda() && avg.is_floating_point() => {
                        let weight = (1.0f32 / (n_averaged + 1) as f32) as f64;
                        let _ = avg.lerp_(&p, weight);
                    }
                    AveragingRule::Swa => {
                        let n = Tensor::from(n_averaged as i64).to_device(avg.device());
                        let mean = &*avg + (p - &*avg) / (n + 1);
                        avg.copy_(&mean);
                    }
                }
            }
        });
        self.n_averaged += 1;
    }

    /// The averaged state dict (parameters and buffers, the model's names), e.g. for `model_ema.pt`.
    pub fn state_dict(&self) -> Vec<(String, Tensor)> {
        self.averaged.iter().map(|(n, t, _)| (n.clone(), t.shallow_clone())).collect()
    }

    /// Restores the averages (from a resume state).
    pub fn load(&mut self, tensors: &[(String, Tensor)], n_averaged: u64) -> Result<()> {
        for (name, t, _) in self.averaged.iter_mut() {
            let saved = tensors
                .iter()
                .find(|(k, _)| k == name)
                .ok_or_else(|| Error::config(format!("the saved {} weights have no '{name}'", self.rule.name())))?;
            tch::no_grad(|| t.copy_(&saved.1.to_device(t.device()).to_kind(t.kind())));
        }
        self.n_averaged = n_averaged;
        Ok(())
    }

    /// Runs `f` with the averaged weights in the model (Keras' `SwapEMAWeights`), then puts the trained ones back.
    pub fn with_weights<T>(&self, store: &VarStore, f: impl FnOnce() -> T) -> T {
        let live = store.state_dict();
        let saved: Vec<Tensor> = tch::no_grad(|| live.iter().map(|(_, t)| t.detach().copy()).collect());
        tch::no_grad(|| {
            for ((_, t), (_, ema, _)) in live.iter().zip(&self.averaged) {
                t.detach().copy_(ema);
            }
        });
        let out = f();
        tch::no_grad(|| {
            for ((_, t), s) in live.iter().zip(&saved) {
                t.detach().copy_(s);
            }
        });
        out
    }
}

/// Lightning's `limit_*_batches` / `overfit_batches`: an integer is a number of batches, a float a fraction of them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Limit {
    Batches(usize),
    Fraction(f64),
}

impl Limit {
    /// `10` = 10 batches; `0.25` or `1.0` = a fraction (`1.0` = all, as Lightning's float).
    pub fn parse(text: &str, flag: &str) -> Result<Limit> {
        let t = text.trim();
        let limit = if t.contains(['.', 'e', 'E']) {
            Limit::Fraction(
                t.parse()
                    .map_err(|_| Error::config(format!("--{flag} '{t}' is not a number of batches or a fraction")))?,
            )
        } else {
            Limit::Batches(
                t.parse()
                    .map_err(|_| Error::config(format!("--{flag} '{t}' is not a number of batches or a fraction")))?,
            )
        };
        limit.check(flag)?;
        Ok(limit)
    }

    /// 0 batches or the fraction 0: none (for validation: no validation, as Lightning's `limit_val_batches=0`).
    pub fn is_zero(&self) -> bool {
        matches!(*self, Limit::Batches(0)) || matches!(*self, Limit::Fraction(f) if f == 0.0)
    }

    pub fn check(&self, flag: &str) -> Result<()> {
        if let Limit::Fraction(f) = *self {
            if !(0.0..=1.0).contains(&f) {
                return Err(Error::config(format!(
                    "--{flag} {f}: a fraction must lie in [0, 1] (or give a whole number of batches)"
                )));
            }
        }
        Ok(())
    }

    /// The number of batches out of `total` (Lightning's `_parse_num_batches`): min(n, total), or
    /// ⌊total × fraction⌋, which must not round a non-zero fraction down to 0.
    pub fn batches(&self, total: usize, flag: &str) -> Result<usize> {
        match *self {
            Limit::Batches(n) => Ok(n.min(total)),
            Limit::Fraction(f) => {
                let n = (total as f64 * f) as usize;
                if n == 0 && f > 0.0 {
                    return Err(Error::config(format!(
                        "--{flag} {f} of {total} batches is less than one batch; use at least {}",
                        1.0 / total.max(1) as f64
                    )));
                }
                Ok(n)
            }
        }
    }
}

/// `--max-time`: `HH:MM:SS` or `DD:HH:MM:SS` (Lightning's string form).
pub fn parse_max_time(text: &str) -> Result<Duration> {
    let bad = || Error::config(format!("⟨max_time⟩ '{text}' is not HH:MM:SS or DD:HH:MM:SS (e.g. 00:12:00)"));
    let parts: Vec<u64> = text
        .trim()
        .split(':')
        .map(|p| p.trim().parse::<u64>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| bad())?;
    let (d, h, m, s) = match parts[..] {
        [h, m, s] => (0, h, m, s),
        [d, h, m, s] => (d, h, m, s),
        _ => return Err(bad()),
    };
    if m >= 60 || s >= 60 {
        return Err(bad());
    }
    let total = ((d * 24 + h) * 60 + m) * 60 + s;
    if total == 0 {
        return Err(Error::config(format!("⟨max_time⟩ '{text}' is zero; give a time to train, e.g. 00:12:00")));
    }
    Ok(Duration::from_secs(total))
}

/// The figure of a gradient norm accumulated on the device over an epoch's steps (one host read an epoch).
#[derive(Debug, Default)]
pub(crate) struct NormSum {
    sum: Option<Tensor>,
    steps: usize,
}

impl NormSum {
    pub(crate) fn add(&mut self, norm: &Tensor) {
        let n = norm.detach().to_kind(Kind::Double);
        self.sum = Some(match self.sum.take() {
            Some(s) => s + n,
            None => n,
        });
        self.steps += 1;
    }
    /// The mean over the epoch's steps.
    pub(crate) fn mean(&self) -> Option<f64> {
        self.sum.as_ref().map(|s| s.double_value(&[]) / self.steps as f64)
    }
}

/// The checks of the config's trainer features, before any data is read (one line each).
pub fn validate(config: &crate::config::RunConfig) -> Result<()> {
    if config.accumulate_grad_batches == 0 {
        return Err(Error::config("⟨accumulate_grad_batches⟩ 0: give at least 1 (1 = a step every batch)"));
    }
    for (flag, limit) in [
        ("limit-train-batches", config.limit_train_batches),
        ("limit-val-batches", config.limit_val_batches),
        ("overfit-batches", config.overfit_batches),
    ] {
        if let Some(l) = limit {
            l.check(flag)?;
        }
    }
    if config.limit_train_batches.is_some_and(|l| l.is_zero()) {
        return Err(Error::config("⟨limit_train_batches⟩ 0 trains on nothing; give at least 1 batch"));
    }
    if config.overfit_batches.is_some_and(|l| l.is_zero()) {
        return Err(Error::config("⟨overfit_batches⟩ 0 is no batch; give e.g. 1 or 0.1, or leave it out"));
    }
    if config.fast_dev_run == Some(0) {
        return Err(Error::config("⟨fast_dev_run⟩ 0 runs nothing; give N ≥ 1 batches, or leave it out"));
    }
    if config.fast_dev_run.is_some() && config.overfit_batches.is_some() {
        return Err(Error::config("give ⟨fast_dev_run⟩ or ⟨overfit_batches⟩, not both"));
    }
    Ok(())
}

/// The clipping the config asks for (at most one of the two).
pub fn grad_clip(config: &crate::config::RunConfig) -> Result<Option<GradClip>> {
    match (&config.clip_grad_norm, config.clip_grad_value) {
        (Some(_), Some(_)) => Err(Error::config("give ⟨clip_grad_norm⟩ or ⟨clip_grad_value⟩, not both")),
        (Some(n), None) => GradClip::parse_norm(n).map(Some),
        (None, Some(v)) => GradClip::value(v).map(Some),
        (None, None) => Ok(None),
    }
}

/// Clipping and the EMA on a trainer whose weights are loaded (the EMA starts as a copy of them).
pub fn configure_trainer(run: &crate::config::Run, trainer: &mut super::Trainer) {
    trainer.clip = run.clip;
    if let Some(e) = &run.ema {
        trainer.ema = Some(Ema::new(*e, &trainer.store));
    }
}

/// `fit`'s arguments for the config's accumulation, limits and time budget; `--overfit-batches` and
/// `--fast-dev-run` set both limits as Lightning does (and overfitting turns shuffling off).
pub fn configure_fit(run: &crate::config::Run, fit: super::FitConfig) -> super::FitConfig {
    let config = &run.config;
    let mut fit = super::FitConfig {
        accumulate_grad_batches: config.accumulate_grad_batches,
        limit_train_batches: config.limit_train_batches,
        limit_val_batches: config.limit_val_batches,
        max_time: run.max_time,
        ..fit
    };
    if let Some(l) = config.overfit_batches {
        fit.limit_train_batches = Some(l);
        fit.limit_val_batches = Some(l);
        fit.shuffle = false;
    }
    if let Some(n) = config.fast_dev_run {
        fit.limit_train_batches = Some(Limit::Batches(n));
        fit.limit_val_batches = Some(Limit::Batches(n));
        fit.epochs = 1;
    }
    fit
}

/// `--deterministic` (`torch.use_deterministic_algorithms(True)` and `torch.backends.cudnn.deterministic = True`) and
/// `--cudnn-benchmark` (`torch.backends.cudnn.benchmark = True`); both off is libtorch's default. For CUDA's cuBLAS,
/// deterministic mode needs `CUBLAS_WORKSPACE_CONFIG`, set here to `:4096:8` unless the user set it.
pub fn set_determinism(deterministic: bool, cudnn_benchmark: bool) -> Result<()> {
    if deterministic && std::env::var_os("CUBLAS_WORKSPACE_CONFIG").is_none() {
        std::env::set_var("CUBLAS_WORKSPACE_CONFIG", ":4096:8");
    }
    // SAFETY: setters of ATen's global context; the result is null or a message freed by `from_c`.
    let message = unsafe { ffi::tz_set_determinism(i32::from(deterministic), i32::from(cudnn_benchmark)) };
    crate::error::from_c(message, "setting the determinism switches")
}

/// Whether ATen's deterministic mode is on.
pub fn deterministic_algorithms() -> bool {
    // SAFETY: a getter of ATen's global context.
    unsafe { ffi::tz_deterministic_algorithms() != 0 }
}

/// The libtorch version tchzoo was built against (`TORCH_VERSION`).
pub fn libtorch_version() -> String {
    // SAFETY: a static NUL-terminated string literal.
    unsafe { std::ffi::CStr::from_ptr(ffi::tz_torch_version()) }.to_string_lossy().into_owned()
}

/// What a run ran with, for its `config.json`: the seed, the libtorch and tchzoo versions, the intra-op threads,
/// the device, and the determinism switches.
pub fn environment(config: &crate::config::RunConfig, device: tch::Device) -> serde_json::Value {
    let device = match device {
        tch::Device::Cpu => "cpu".to_string(),
        tch::Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}").to_lowercase(),
    };
    serde_json::json!({
        "seed": config.seed,
        "libtorch": libtorch_version(),
        "tchzoo": env!("CARGO_PKG_VERSION"),
        "threads": tch::get_num_threads(),
        "device": device,
        "deterministic": deterministic_algorithms(),
        "cudnn_benchmark": config.cudnn_benchmark,
    })
}
