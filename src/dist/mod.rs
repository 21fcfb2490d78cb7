//! Data-parallel training across processes on libtorch's own c10d (`csrc/dist.cpp`): a `TCPStore` rendezvous and
//! a `ProcessGroupGloo` (CPU tensors) or `ProcessGroupNCCL` (CUDA tensors), as `torch.distributed` uses them.
//!
//! A process learns its place from torchrun's variables (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR`,
//! `MASTER_PORT`) or, as a fallback, Slurm's (`SLURM_PROCID`, `SLURM_NTASKS`, `SLURM_LOCALID`, the first host of
//! `SLURM_JOB_NODELIST`). The trainer then does what `DistributedDataParallel` does: parameters and buffers
//! broadcast from rank 0 at the start, buffers again before every forward pass (`broadcast_buffers=True`), and
//! gradients averaged over the ranks after every backward pass, in buckets of about 25 MB.
mod env;
pub mod ffi;

use std::sync::Arc;

use tch::{Device, Kind, Tensor};

pub use env::{DistEnv, EnvSource};

use crate::error::{Error, Result};

/// The backend of a process group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Gloo,
    Nccl,
}

impl Backend {
    /// `auto` = NCCL for CUDA, Gloo for the CPU, as `torch.distributed` chooses.
    pub fn parse(name: &str, device: Device) -> Result<Backend> {
        match name.trim().to_lowercase().as_str() {
            "auto" | "" => Ok(if device.is_cuda() { Backend::Nccl } else { Backend::Gloo }),
            "gloo" => Ok(Backend::Gloo),
            "nccl" => Ok(Backend::Nccl),
            other => Err(Error::config(format!("⟨dist_backend⟩ '{other}' is not a backend; use auto, gloo or nccl"))),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Backend::Gloo => "gloo",
            Backend::Nccl => "nccl",
        }
    }
}

/// Reduction of an all-reduce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceOp {
    Sum = 0,
    Max = 1,
    Min = 2,
}

/// A joined process group.
pub struct ProcessGroup {
    handle: ffi::Handle,
    pub rank: usize,
    pub world: usize,
    pub local_rank: usize,
    pub backend: Backend,
}

impl std::fmt::Debug for ProcessGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ProcessGroup({} rank {} of {})", self.backend.name(), self.rank, self.world)
    }
}

/// Gradient buckets hold about this many bytes (DDP's `bucket_cap_mb` = 25).
const BUCKET_BYTES: i64 = 25 * 1024 * 1024;

impl ProcessGroup {
    /// Joins the group that `env` describes; every rank must call this with the same world size and master.
    pub fn join(env: &DistEnv, backend: Backend, timeout: std::time::Duration) -> Result<ProcessGroup> {
        let handle =
            ffi::Handle::init(backend.name(), &env.master_addr, env.master_port, env.rank, env.world_size, timeout)
                .map_err(|e| Error::Distributed(describe_join_error(env, &e, timeout)))?;
        Ok(ProcessGroup { handle, rank: env.rank, world: env.world_size, local_rank: env.local_rank, backend })
    }

    pub fn is_chief(&self) -> bool {
        self.rank == 0
    }

    fn wrap(&self, what: &str, r: std::result::Result<(), String>) -> Result<()> {
        r.map_err(|e| {
            Error::Distributed(format!(
                "rank {} of {}: {what} failed: {}; another rank probably stopped (see its output)",
                self.rank,
                self.world,
                clean(&e)
            ))
        })
    }

    /// All-reduces each tensor in place.
    pub fn all_reduce(&self, tensors: &[Tensor], op: ReduceOp) -> Result<()> {
        if self.world == 1 || tensors.is_empty() {
            return Ok(());
        }
        self.wrap("all-reduce", self.handle.all_reduce(tensors, op as i32))
    }

    /// Broadcasts each tensor in place from `root`.
    pub fn broadcast(&self, tensors: &[Tensor], root: usize) -> Result<()> {
        if self.world == 1 || tensors.is_empty() {
            return Ok(());
        }
        self.wrap("broadcast", self.handle.broadcast(tensors, root as i32))
    }

    pub fn barrier(&self) -> Result<()> {
        if self.world == 1 {
            return Ok(());
        }
        self.wrap("barrier", self.handle.barrier())
    }

    /// Rank 0's `value` on every rank (through the rendezvous store).
    pub fn share_string(&self, key: &str, value: &str) -> Result<String> {
        if self.world == 1 {
            return Ok(value.to_string());
        }
        if self.rank == 0 {
            self.wrap("store set", self.handle.store_set(key, value))?;
            Ok(value.to_string())
        } else {
            self.handle.store_get(key).map_err(|e| {
                Error::Distributed(format!("rank {}: reading '{key}' from the store failed: {}", self.rank, clean(&e)))
            })
        }
    }

    /// A sum over the ranks that autograd differentiates (the gradient is summed over the ranks too).
    pub fn all_reduce_autograd(&self, xs: &Tensor) -> Result<Tensor> {
        if self.world == 1 {
            return Ok(xs.shallow_clone());
        }
        self.handle.all_reduce_autograd(xs).map_err(|e| {
            Error::Distributed(format!(
                "rank {}: synchronised batch norm's all-reduce failed: {}",
                self.rank,
                clean(&e)
            ))
        })
    }

    /// Averages the gradients of `params` over the ranks, as DDP's reducer: flattened into buckets of about
    /// 25 MB (by dtype and device), each summed by one all-reduce, all in flight together, then divided by the
    /// world size and copied back. A parameter without a gradient on this rank counts as zero.
    pub fn average_gradients(&self, params: &[Tensor]) -> Result<()> {
        if self.world == 1 {
            return Ok(());
        }
        let trainable: Vec<&Tensor> = params.iter().filter(|p| p.requires_grad()).collect();
        let mut buckets: Vec<Vec<&Tensor>> = vec![];
        let mut bytes = 0i64;
        for p in trainable {
            let size = p.numel() as i64 * p.kind().elt_size_in_bytes() as i64;
            let fits = buckets.last().is_some_and(|b: &Vec<&Tensor>| {
                let first = b[0];
                first.kind() == p.kind() && first.device() == p.device() && bytes + size <= BUCKET_BYTES
            });
            if !fits {
                buckets.push(vec![]);
                bytes = 0;
            }
            bytes += size;
            buckets.last_mut().unwrap().push(p);
        }
        tch::no_grad(|| -> Result<()> {
            let flat: Vec<Tensor> = buckets
                .iter()
                .map(|b| {
                    let parts: Vec<Tensor> = b
                        .iter()
                        .map(|p| {
                            let g = p.grad();
                            if g.defined() {
                                g.reshape([-1])
                            } else {
                                Tensor::zeros([p.numel() as i64], (p.kind(), p.device()))
                            }
                        })
                        .collect();
                    Tensor::cat(&parts, 0)
                })
                .collect();
            self.all_reduce(&flat, ReduceOp::Sum)?;
            let scale = 1.0 / self.world as f64;
            for (b, f) in buckets.iter().zip(&flat) {
                let mut offset = 0i64;
                for p in b {
                    let n = p.numel() as i64;
                    let avg = f.narrow(0, offset, n).view(p.size().as_slice()) * scale;
                    let mut g = p.grad();
                    if g.defined() {
                        g.copy_(&avg);
                    } else {
                        // No gradient here (an unused branch on this rank): give it the average.
                        crate::nn::set_grad(p, Some(&avg))?;
                    }
                    offset += n;
                }
            }
            Ok(())
        })
    }

    /// Copies rank 0's tensors to every rank (the model at the start; buffers before each forward pass).
    pub fn broadcast_from_chief(&self, tensors: &[Tensor]) -> Result<()> {
        if self.world == 1 || tensors.is_empty() {
            return Ok(());
        }
        tch::no_grad(|| {
            // Broadcast works on contiguous tensors in place; the store's tensors are contiguous.
            let flat: Vec<Tensor> = tensors.iter().map(|t| t.detach()).collect();
            self.broadcast(&flat, 0)
        })
    }

    /// Sums a float64 vector over the ranks (epoch sums of loss and metrics).
    pub fn sum_f64(&self, xs: &Tensor) -> Result<Tensor> {
        let t = xs.to_kind(Kind::Double).contiguous();
        let t = if self.backend == Backend::Nccl { t } else { t.to_device(Device::Cpu) };
        self.all_reduce(std::slice::from_ref(&t), ReduceOp::Sum)?;
        Ok(t.to_device(xs.device()))
    }

    /// Rank 0's flag on every rank (early stopping's decision).
    pub fn chief_decides(&self, flag: bool, device: Device) -> Result<bool> {
        if self.world == 1 {
            return Ok(flag);
        }
        let dev = if self.backend == Backend::Nccl { device } else { Device::Cpu };
        let t = Tensor::from_slice(&[i64::from(flag)]).to_device(dev);
        self.broadcast(std::slice::from_ref(&t), 0)?;
        Ok(t.int64_value(&[0]) != 0)
    }
}

/// c10d's messages name C++ files and carry several lines; one line of what happened is enough here.
fn clean(e: &str) -> String {
    let mut line = e.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
    // Gloo prefixes its source location: "[…/pair.cc:537] Read error …".
    if line.starts_with('[') {
        if let Some(end) = line.find("] ") {
            line = &line[end + 2..];
        }
    }
    // …and appends advice for PyTorch's bug tracker.
    if let Some(cut) = line.find(". This is typically") {
        line = &line[..cut];
    }
    line.trim_end_matches('.').to_string()
}

fn describe_join_error(env: &DistEnv, e: &str, timeout: std::time::Duration) -> String {
    let msg = clean(e);
    let lower = msg.to_lowercase();
    let hint = if lower.contains("timed out") || lower.contains("timeout") {
        if env.rank == 0 {
            format!(
                "rank 0 waited {}s at {}:{} for all WORLD_SIZE={} ranks to join; check that as many processes were \
                 started and can reach it (⟨dist_timeout⟩ sets the wait)",
                timeout.as_secs(),
                env.master_addr,
                env.master_port,
                env.world_size
            )
        } else {
            format!(
                "rank {} could not join the group at {}:{} within {}s: is MASTER_ADDR right and rank 0 running, and \
                 WORLD_SIZE={} the same on every rank? (⟨dist_timeout⟩ sets the wait)",
                env.rank,
                env.master_addr,
                env.master_port,
                timeout.as_secs(),
                env.world_size
            )
        }
    } else if lower.contains("address already in use") {
        format!("MASTER_PORT {} is taken on {}; choose another port", env.master_port, env.master_addr)
    } else {
        format!(
            "joining the group at {}:{} as rank {} of {}",
            env.master_addr, env.master_port, env.rank, env.world_size
        )
    };
    format!("{hint} ({msg})")
}

/// A distributed run's group and settings, passed from the command line to the run and from the run to the
/// layers and callbacks that need them (there is no process-wide group).
#[derive(Debug, Clone)]
pub struct Distributed {
    pub group: Arc<ProcessGroup>,
    /// `--sync-bn`: batch norms use the global batch's statistics.
    pub sync_bn: bool,
    /// `--dist-check`: after every step the trainer checks that all ranks hold the same parameters.
    pub check_replicas: bool,
}

impl Distributed {
    /// A group used with DDP's defaults (no SyncBatchNorm, no replica check).
    pub fn plain(group: ProcessGroup) -> Distributed {
        Distributed { group: Arc::new(group), sync_bn: false, check_replicas: false }
    }
}

/// Whether a process of a run with `dist` writes files (checkpoints, history, plots): rank 0, or any process of a
/// plain run.
pub fn is_chief(dist: Option<&Distributed>) -> bool {
    dist.is_none_or(|d| d.group.is_chief())
}

/// Joins the group the launcher's variables describe (`--distributed`).
pub fn start(backend: &str, device: Device, timeout_s: u64, sync_bn: bool, check: bool) -> Result<Distributed> {
    if timeout_s == 0 {
        return Err(Error::config("⟨dist_timeout⟩ 0: give the seconds to wait for the other ranks, e.g. 300"));
    }
    let env = DistEnv::from_env()?;
    let backend = Backend::parse(backend, device)?;
    if backend == Backend::Nccl && !device.is_cuda() {
        return Err(Error::config(
            "⟨dist_backend⟩ nccl needs ⟨device⟩ cuda (NCCL moves CUDA tensors); use gloo on the CPU",
        ));
    }
    let group = ProcessGroup::join(&env, backend, std::time::Duration::from_secs(timeout_s))?;
    Ok(Distributed { group: Arc::new(group), sync_bn, check_replicas: check })
}

/// Whether this binary was built with Gloo (it is when Gloo's headers were found at build time).
pub const HAS_GLOO: bool = cfg!(tchzoo_gloo);
/// Whether this binary was built with NCCL.
pub const HAS_NCCL: bool = cfg!(tchzoo_nccl);

/// NCCL's version as `major.minor.patch`, when built with it.
pub fn nccl_version() -> Option<String> {
    ffi::nccl_version().map(|v| {
        // NCCL ≥ 2.9 encodes major*10000 + minor*100 + patch.
        format!("{}.{}.{}", v / 10000, (v / 100) % 100, v % 100)
    })
}
