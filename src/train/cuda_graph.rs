//! Whole-step CUDA graphs (`--cuda-graph`), as PyTorch's whole-network capture in `torch.cuda.graphs`: a few eager
//! warm-up steps on a side stream, then forward, loss, backward and the optimizer step captured once into a CUDA
//! graph over static input and target buffers, and replayed for every full batch. libtorch's own
//! `at::cuda::CUDAGraph` does the capture (csrc/cuda_graph.cpp, built when the CUDA runtime's headers are there:
//! cfg `tchzoo_cuda`).
//!
//! What is captured is fixed at capture: shapes, and every number the optimizer passes as a host scalar (the
//! learning rate). A changed learning rate (a schedule, ReduceLROnPlateau) is a new capture, once per change; the
//! last, partial batch of an epoch runs eagerly. What cannot be captured is refused before training by
//! [`check_supported`].
use tch::{Device, Tensor};

use crate::error::{Error, Result};

/// Eager steps on a side stream before the capture (the example in PyTorch's CUDA-graph docs takes 3): the
/// optimizer's lazily created state and cuDNN's algorithm choice happen outside the graph.
pub const WARMUP_STEPS: usize = 3;

/// What `--cuda-graph` cannot capture, checked when the run is set up: one line naming the setting and the fix.
pub fn check_supported(
    device: Device,
    optimizer: crate::optim::OptimizerKind,
    precision: crate::train::amp::Precision,
    distributed: bool,
) -> Result<()> {
    let refuse = |what: &str| Err(Error::config(format!("⟨cuda_graph⟩ {what}")));
    if !device.is_cuda() {
        return refuse(
            "captures CUDA kernels, but this run is on the CPU; use ⟨device⟩ cuda on a machine with an NVIDIA GPU, \
             or leave out ⟨cuda_graph⟩",
        );
    }
    if !cfg!(tchzoo_cuda) {
        return refuse(
            "needs tchzoo built with the CUDA runtime's headers (scripts/setup fetches them); rebuild after \
             scripts/setup, or leave out ⟨cuda_graph⟩",
        );
    }
    if optimizer != crate::optim::OptimizerKind::Sgd {
        return refuse(&format!(
            "supports ⟨optimizer⟩ sgd only: {optimizer:?}'s step count and bias corrections are host numbers in the \
             single-tensor step, fixed at capture (torch.optim's capturable=True form is not implemented); use \
             ⟨optimizer⟩ sgd or leave out ⟨cuda_graph⟩"
        ));
    }
    if precision == crate::train::amp::Precision::Fp16 {
        return refuse(
            "cannot capture float16's GradScaler, which skips a step when a gradient overflows (a decision taken on \
             the host); use ⟨precision⟩ bf16 or fp32",
        );
    }
    if distributed {
        return refuse("is not supported with ⟨distributed⟩ (collectives are not captured); leave out one of them");
    }
    Ok(())
}

#[cfg(tchzoo_cuda)]
mod ffi {
    use std::ffi::{c_char, c_int, c_void};
    extern "C" {
        pub fn tz_cuda_graph_new(out: *mut *mut c_void) -> *mut c_char;
        pub fn tz_cuda_graph_free(g: *mut c_void);
        pub fn tz_cuda_side_stream_enter(device: c_int, out: *mut *mut c_void) -> *mut c_char;
        pub fn tz_cuda_side_stream_leave(s: *mut c_void) -> *mut c_char;
        pub fn tz_cuda_graph_capture_begin(g: *mut c_void, device: c_int) -> *mut c_char;
        pub fn tz_cuda_graph_capture_end(g: *mut c_void) -> *mut c_char;
        pub fn tz_cuda_graph_replay(g: *mut c_void) -> *mut c_char;
        pub fn tz_cuda_memory_stats(device: c_int, reset: c_int, out: *mut i64) -> *mut c_char;
        pub fn tz_free_message(message: *mut c_char);
    }
}

/// A C++ exception's message as a Torch error; null = success.
#[cfg(tchzoo_cuda)]
fn checked(message: *mut std::ffi::c_char) -> Result<()> {
    if message.is_null() {
        return Ok(());
    }
    // SAFETY: a strdup'ed C string from the shim, freed by the shim's free.
    let text = unsafe { std::ffi::CStr::from_ptr(message) }.to_string_lossy().into_owned();
    unsafe { ffi::tz_free_message(message) };
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string();
    Err(Error::Torch(first))
}

#[cfg(not(tchzoo_cuda))]
fn unavailable<T>() -> Result<T> {
    Err(Error::Device("this build of tchzoo has no CUDA graph support (no CUDA runtime headers at build time)".into()))
}

fn cuda_index(device: Device) -> Result<i32> {
    match device {
        Device::Cuda(i) => Ok(i as i32),
        other => Err(Error::Device(format!("CUDA graphs need a CUDA device, not {other:?}"))),
    }
}

/// Runs `f` on a fresh side stream of `device` that first waits for the current stream, and makes the current
/// stream wait for it afterwards (`with torch.cuda.stream(s)` with the two `wait_stream` calls around it).
pub fn on_side_stream<T>(device: Device, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let index = cuda_index(device)?;
    #[cfg(tchzoo_cuda)]
    {
        let mut side = std::ptr::null_mut();
        // SAFETY: the shim allocates the stream record and frees it in leave.
        checked(unsafe { ffi::tz_cuda_side_stream_enter(index, &mut side) })?;
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let left = checked(unsafe { ffi::tz_cuda_side_stream_leave(side) });
        match out {
            Ok(out) => {
                let out = out?;
                left?;
                Ok(out)
            }
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
    #[cfg(not(tchzoo_cuda))]
    {
        let _ = (index, f);
        unavailable()
    }
}

/// A captured CUDA graph (libtorch's `at::cuda::CUDAGraph` with its private memory pool).
pub struct CudaGraph {
    #[cfg(tchzoo_cuda)]
    raw: *mut std::ffi::c_void,
}

impl CudaGraph {
    /// Captures the kernels that `f` launches on `device` (`with torch.cuda.graph(g): f()`). Nothing runs during
    /// capture: the outputs `f` returns are the graph's static outputs, filled by every [`CudaGraph::replay`].
    pub fn capture<T>(device: Device, f: impl FnOnce() -> Result<T>) -> Result<(CudaGraph, T)> {
        let index = cuda_index(device)?;
        #[cfg(tchzoo_cuda)]
        {
            let mut raw = std::ptr::null_mut();
            // SAFETY: the shim allocates the graph; CudaGraph frees it on drop.
            checked(unsafe { ffi::tz_cuda_graph_new(&mut raw) })?;
            let graph = CudaGraph { raw };
            checked(unsafe { ffi::tz_cuda_graph_capture_begin(graph.raw, index) })?;
            let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            // The capture is ended whatever `f` did, so the stream leaves capture mode.
            let ended = checked(unsafe { ffi::tz_cuda_graph_capture_end(graph.raw) });
            match out {
                Ok(out) => {
                    let out = out?;
                    ended?;
                    Ok((graph, out))
                }
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        #[cfg(not(tchzoo_cuda))]
        {
            let _ = (index, f);
            unavailable()
        }
    }

    /// Launches the captured kernels again, on the current stream.
    pub fn replay(&self) -> Result<()> {
        #[cfg(tchzoo_cuda)]
        {
            // SAFETY: a live graph whose capture ended.
            checked(unsafe { ffi::tz_cuda_graph_replay(self.raw) })
        }
        #[cfg(not(tchzoo_cuda))]
        unavailable()
    }
}

impl Drop for CudaGraph {
    fn drop(&mut self) {
        #[cfg(tchzoo_cuda)]
        // SAFETY: allocated by tz_cuda_graph_new, freed once.
        unsafe {
            ffi::tz_cuda_graph_free(self.raw)
        };
    }
}

/// The caching allocator's figures for one device, in bytes (`torch.cuda.max_memory_allocated`,
/// `memory_allocated`, `max_memory_reserved`, `memory_reserved`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct CudaMemory {
    pub peak_allocated: i64,
    pub allocated: i64,
    pub peak_reserved: i64,
    pub reserved: i64,
}

/// The caching allocator's statistics of `device`; `reset_peaks` first clears the peaks
/// (`torch.cuda.reset_peak_memory_stats`).
pub fn memory_stats(device: Device, reset_peaks: bool) -> Result<CudaMemory> {
    let index = cuda_index(device)?;
    #[cfg(tchzoo_cuda)]
    {
        let mut out = [0i64; 4];
        // SAFETY: the shim writes four numbers.
        checked(unsafe { ffi::tz_cuda_memory_stats(index, i32::from(reset_peaks), out.as_mut_ptr()) })?;
        Ok(CudaMemory { peak_allocated: out[0], allocated: out[1], peak_reserved: out[2], reserved: out[3] })
    }
    #[cfg(not(tchzoo_cuda))]
    {
        let _ = (index, reset_peaks);
        unavailable()
    }
}

/// The state of a graphed training step: eager warm-up, then one capture per learning rate, replayed for every
/// full batch. The trainer calls [`GraphedStep::run`] with its own step as the closure.
pub struct GraphedStep {
    device: Device,
    batch_shape: Vec<i64>,
    eager_steps: usize,
    graph: Option<Captured>,
}

struct Captured {
    graph: CudaGraph,
    lr: f64,
    xs: Tensor,
    ys: Tensor,
    loss: Tensor,
    logits: Tensor,
}

impl GraphedStep {
    /// A graphed step on `device`; the first batch's shape is the captured one.
    pub fn new(device: Device) -> Self {
        GraphedStep { device, batch_shape: vec![], eager_steps: 0, graph: None }
    }

    /// One training step on (`xs`, `ys`) at learning rate `lr`. `step` is the trainer's eager step (zero_grad with
    /// set_to_none, forward, loss, backward, optimizer step; returns the loss and logits): run eagerly on a side
    /// stream for the warm-up, then captured once (its zero_grad leaves the gradients to be allocated in the
    /// graph's pool) and replayed. Batches of another shape than the first (the last, partial batch) run eagerly.
    pub fn run<F>(&mut self, xs: &Tensor, ys: &Tensor, lr: f64, mut step: F) -> Result<(Tensor, Tensor)>
    where
        F: FnMut(&Tensor, &Tensor) -> Result<(Tensor, Tensor)>,
    {
        if self.batch_shape.is_empty() {
            self.batch_shape = xs.size();
        }
        if xs.size() != self.batch_shape {
            return step(xs, ys);
        }
        if self.eager_steps < WARMUP_STEPS {
            self.eager_steps += 1;
            return on_side_stream(self.device, || step(xs, ys));
        }
        if self.graph.as_ref().is_some_and(|g| g.lr != lr) {
            self.graph = None;
        }
        if self.graph.is_none() {
            let (static_xs, static_ys) = (xs.copy(), ys.copy());
            let (graph, (loss, logits)) = CudaGraph::capture(self.device, || step(&static_xs, &static_ys))?;
            self.graph = Some(Captured { graph, lr, xs: static_xs, ys: static_ys, loss, logits });
        }
        let c = self.graph.as_mut().expect("captured above");
        tch::no_grad(|| {
            c.xs.copy_(xs);
            c.ys.copy_(ys);
        });
        c.graph.replay()?;
        Ok((c.loss.shallow_clone(), c.logits.shallow_clone()))
    }
}
