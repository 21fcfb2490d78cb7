//! Devices: `auto | cpu | cuda | cuda:N`, and the facts `tchzoo doctor` prints.
use tch::{Cuda, Device};

use crate::error::{Error, Result};

pub fn parse(spec: &str) -> Result<Device> {
    let spec = spec.trim().to_lowercase();
    match spec.as_str() {
        "auto" => Ok(Device::cuda_if_available()),
        "cpu" => Ok(Device::Cpu),
        "cuda" | "gpu" => cuda(0),
        s if s.starts_with("cuda:") => {
            let n: usize = s[5..].parse().map_err(|_| {
                Error::Device(format!("'{spec}' is not a device; use auto, cpu, cuda or cuda:N (N a GPU index)"))
            })?;
            cuda(n)
        }
        _ => Err(Error::Device(format!("'{spec}' is not a device; use auto, cpu, cuda or cuda:N"))),
    }
}

fn cuda(n: usize) -> Result<Device> {
    let count = Cuda::device_count().max(0) as usize;
    if count == 0 {
        return Err(Error::Device(format!(
            "cuda:{n} was asked for but CUDA is not available here (no GPU or driver); use ⟨device⟩ cpu or auto"
        )));
    }
    if n >= count {
        return Err(Error::Device(format!(
            "cuda:{n} was asked for but there are {count} GPU(s): use cuda:0..{}",
            count - 1
        )));
    }
    Ok(Device::Cuda(n))
}

pub fn name(device: Device) -> String {
    match device {
        Device::Cpu => "cpu".into(),
        Device::Cuda(n) => format!("cuda:{n}"),
        Device::Mps => "mps".into(),
        Device::Vulkan => "vulkan".into(),
    }
}

/// What `tchzoo doctor` prints.
#[derive(Debug, serde::Serialize)]
pub struct Facts {
    pub tchzoo_version: &'static str,
    pub libtorch_version: String,
    pub libtorch_path: Option<String>,
    pub cuda_available: bool,
    pub cudnn_available: bool,
    pub gpu_count: i64,
    pub threads: i32,
    /// The c10d backends this binary can train distributed with (`--distributed`).
    pub distributed_backends: Vec<&'static str>,
    /// NCCL's version, when this binary has NCCL.
    pub nccl_version: Option<String>,
}

pub fn facts() -> Facts {
    Facts {
        tchzoo_version: env!("CARGO_PKG_VERSION"),
        libtorch_version: libtorch_version(),
        libtorch_path: libtorch_path(),
        cuda_available: Cuda::is_available(),
        cudnn_available: Cuda::cudnn_is_available(),
        gpu_count: Cuda::device_count(),
        threads: tch::get_num_threads(),
        distributed_backends: [("gloo", crate::dist::HAS_GLOO), ("nccl", crate::dist::HAS_NCCL)]
            .into_iter()
            .filter_map(|(name, built)| built.then_some(name))
            .collect(),
        nccl_version: crate::dist::nccl_version(),
    }
}

/// The version of the libtorch the binary loaded, read from the library's own `version.py` beside it when present,
/// else the version tch was built for.
fn libtorch_version() -> String {
    if let Some(p) = libtorch_path() {
        let version_py = std::path::Path::new(&p).join("..").join("version.py");
        if let Ok(text) = std::fs::read_to_string(version_py) {
            if let Some(line) = text.lines().find(|l| l.starts_with("__version__")) {
                return line.split('\'').nth(1).unwrap_or(line).to_string();
            }
        }
    }
    "2.13.0 (as tch 0.26 expects)".into()
}

/// The folder libtorch_cpu.so was loaded from (from /proc/self/maps).
fn libtorch_path() -> Option<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let line = maps.lines().find(|l| l.ends_with("libtorch_cpu.so"))?;
    let path = line.split_whitespace().last()?;
    std::path::Path::new(path).parent().map(|p| p.display().to_string())
}
