//! Mixed precision as `torch.autocast` and `torch.amp.GradScaler`, and channels-last memory format, through
//! `csrc/amp.cpp` (tch's own `autocast` is CUDA-only and float16-only).
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};

mod ffi {
    use std::ffi::{c_char, c_int, c_void};
    // Each returns null, or the message of the C++ exception it caught (for `crate::error::from_c`).
    extern "C" {
        pub fn tz_autocast_enter(cuda: c_int, half: c_int, prev: *mut c_int) -> *mut c_char;
        pub fn tz_autocast_exit(cuda: c_int, prev: c_int) -> *mut c_char;
        pub fn tz_amp_unscale(
            grads: *const *mut c_void,
            n: c_int,
            found_inf: *mut c_void,
            inv_scale: *mut c_void,
        ) -> *mut c_char;
        pub fn tz_channels_last(t: *mut c_void, out: *mut *mut c_void) -> *mut c_char;
        pub fn tz_set_data(param: *mut c_void, data: *mut c_void) -> *mut c_char;
    }
}

fn ptr(t: &Tensor) -> *mut std::ffi::c_void {
    t.as_ptr() as *mut std::ffi::c_void
}

/// The precision of the forward pass: `fp32`, or autocast to `bf16` or `fp16` (fp16 with a gradient scaler).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    Fp32,
    Bf16,
    Fp16,
}

impl Precision {
    pub fn parse(name: &str) -> Result<Precision> {
        match name.trim().to_lowercase().as_str() {
            "fp32" | "32" | "float32" => Ok(Precision::Fp32),
            "bf16" | "bf16-mixed" | "bfloat16" => Ok(Precision::Bf16),
            "fp16" | "16" | "16-mixed" | "float16" | "half" => Ok(Precision::Fp16),
            other => Err(Error::config(format!("⟨precision⟩ '{other}' is not a precision; use fp32, bf16 or fp16"))),
        }
    }
}

/// An autocast region of this thread: entered by `enter`, left when dropped, also when the code inside returns
/// early or panics (as the `with torch.autocast(...)` block's `__exit__`).
pub struct AutocastGuard {
    cuda: i32,
    prev: i32,
}

impl AutocastGuard {
    /// Enters autocast for `device`'s type with bfloat16 (`half` false) or float16.
    pub fn enter(device: Device, half: bool) -> Result<AutocastGuard> {
        let cuda = i32::from(device.is_cuda());
        let mut prev = 0;
        // SAFETY: a plain call into ATen's thread-local autocast state; `prev` is written before it returns.
        let message = unsafe { ffi::tz_autocast_enter(cuda, i32::from(half), &mut prev) };
        crate::error::from_c(message, "autocast")?;
        Ok(AutocastGuard { cuda, prev })
    }
}

impl Drop for AutocastGuard {
    fn drop(&mut self) {
        // SAFETY: restores the state `enter` saw. Restoring two thread-local flags cannot fail in practice; if
        // ATen threw, the message is freed and dropped (a destructor cannot return it).
        let message = unsafe { ffi::tz_autocast_exit(self.cuda, self.prev) };
        let _ = crate::error::from_c(message, "autocast exit");
    }
}

/// Runs `f` under autocast for `device`'s type (as `with torch.autocast(device_type, dtype)`); plain for fp32.
/// Autocast is switched off again however `f` ends (see `AutocastGuard`).
pub fn autocast<T>(precision: Precision, device: Device, f: impl FnOnce() -> T) -> Result<T> {
    let half = match precision {
        Precision::Fp32 => return Ok(f()),
        Precision::Bf16 => false,
        Precision::Fp16 => true,
    };
    let _guard = AutocastGuard::enter(device, half)?;
    Ok(f())
}

/// Whether autocast is on for `device`'s type on this thread (`torch.is_autocast_enabled(device_type)`).
pub fn autocast_enabled(device: Device) -> bool {
    // The previous state that entering reports, with entering and leaving at once (no op runs between).
    let Ok(guard) = AutocastGuard::enter(device, false) else { return false };
    guard.prev >= 1000
}

/// A channels-last copy of a 4-D tensor (others unchanged).
pub fn channels_last(t: &Tensor) -> Result<Tensor> {
    let mut out: *mut std::ffi::c_void = std::ptr::null_mut();
    // SAFETY: on success the shim writes a new heap tensor to `out`, owned by the returned Tensor.
    let message = unsafe { ffi::tz_channels_last(ptr(t), &mut out) };
    crate::error::from_c(message, "channels-last copy")?;
    Ok(unsafe { Tensor::from_ptr(out as *mut _) })
}

/// Puts every 4-D parameter and buffer of `store` in channels-last memory format in place, as
/// `model.to(memory_format=torch.channels_last)`: same values and names, NHWC strides.
pub fn store_to_channels_last(store: &crate::nn::VarStore) -> Result<()> {
    for (_, t) in store.state_dict() {
        if t.dim() == 4 {
            let data = tch::no_grad(|| channels_last(&t.detach()))?;
            // SAFETY: same shape and dtype; set_data swaps the storage behind the live parameter.
            let message = unsafe { ffi::tz_set_data(ptr(&t), ptr(&data)) };
            crate::error::from_c(message, "channels-last parameter")?;
        }
    }
    Ok(())
}

/// `torch.amp.GradScaler`'s state, kept in the resume file.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScalerState {
    pub scale: f64,
    pub growth_tracker: i64,
}

/// Dynamic loss scaling for float16, as `torch.amp.GradScaler` with its defaults: the loss is multiplied by the
/// scale before backward; the gradients are unscaled and checked; a step with an inf or NaN gradient is skipped
/// and the scale halved; after 2,000 good steps in a row it doubles.
#[derive(Debug)]
pub struct GradScaler {
    scale: Tensor,
    growth_tracker: Tensor,
    pub growth_factor: f64,
    pub backoff_factor: f64,
    pub growth_interval: i64,
    /// Steps skipped for non-finite gradients (for the log).
    pub skipped: usize,
}

impl GradScaler {
    pub fn new(device: Device, init_scale: f64) -> Self {
        GradScaler {
            scale: Tensor::full([1], init_scale, (Kind::Float, device)),
            growth_tracker: Tensor::zeros([1], (Kind::Int, device)),
            growth_factor: 2.0,
            backoff_factor: 0.5,
            growth_interval: 2000,
            skipped: 0,
        }
    }

    /// The loss times the current scale (the tensor to call `backward` on).
    pub fn scale_loss(&self, loss: &Tensor) -> Tensor {
        loss * self.scale.to_kind(loss.kind())
    }

    /// GradScaler's `unscale_`, the check in `step` and `update`: unscales the gradients of `params` in place,
    /// updates the scale, and returns whether all gradients were finite (the step is to be taken; one host read a
    /// step, as GradScaler's `step`).
    pub fn unscale_and_update(&mut self, params: &[Tensor]) -> Result<bool> {
        let found_inf = self.unscale(params)?;
        Ok(self.finish_step(&found_inf))
    }

    /// GradScaler's `unscale_` alone: the gradients of `params` divided by the scale in place (before clipping
    /// them); returns `found_inf` for [`GradScaler::finish_step`].
    pub fn unscale(&self, params: &[Tensor]) -> Result<Tensor> {
        let grads: Vec<Tensor> = params.iter().map(|p| p.grad()).filter(|g| g.defined()).collect();
        let found_inf = Tensor::zeros([1], (Kind::Float, self.scale.device()));
        if !grads.is_empty() {
            let inv = tch::no_grad(|| self.scale.to_kind(Kind::Double).reciprocal().to_kind(Kind::Float));
            let ptrs: Vec<*mut std::ffi::c_void> = grads.iter().map(ptr).collect();
            // SAFETY: live tensors for the call; ATen updates the gradients and found_inf in place.
            let message = unsafe { ffi::tz_amp_unscale(ptrs.as_ptr(), ptrs.len() as i32, ptr(&found_inf), ptr(&inv)) };
            crate::error::from_c(message, "GradScaler unscale")?;
        }
        Ok(found_inf)
    }

    /// The check in GradScaler's `step` and its `update`: returns whether the step is to be taken.
    pub fn finish_step(&mut self, found_inf: &Tensor) -> bool {
        let finite = found_inf.double_value(&[0]) == 0.0;
        self.update(found_inf);
        if !finite {
            self.skipped += 1;
        }
        finite
    }

    fn update(&self, found_inf: &Tensor) {
        let mut scale = self.scale.shallow_clone();
        let _ = tch::no_grad(|| {
            scale.internal_amp_update_scale_(
                &self.growth_tracker,
                found_inf,
                self.growth_factor,
                self.backoff_factor,
                self.growth_interval,
            )
        });
    }

    pub fn state(&self) -> ScalerState {
        ScalerState { scale: self.scale.double_value(&[0]), growth_tracker: self.growth_tracker.int64_value(&[0]) }
    }

    pub fn load_state(&mut self, s: &ScalerState) {
        tch::no_grad(|| {
            let _ = self.scale.fill_(s.scale);
            let _ = self.growth_tracker.fill_(s.growth_tracker);
        });
    }
}
