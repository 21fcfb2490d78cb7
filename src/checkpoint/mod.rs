//! State dicts on disk. Here: safetensors (PyTorch's names, dtypes kept). The `.pt` reader and writer come next.
use std::path::Path;

use tch::Tensor;

use crate::error::{Error, Result};
use crate::nn::store::LoadReport;
use crate::nn::VarStore;

/// Writes the store's state dict (parameters and buffers, PyTorch names) as safetensors, atomically.
pub fn save_weights(store: &VarStore, path: &Path) -> Result<()> {
    let named: Vec<(String, Tensor)> =
        store.state_dict().into_iter().map(|(k, t)| (k, t.detach().to_device(tch::Device::Cpu).contiguous())).collect();
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp =
        dir.join(format!(".{}.tmp{}", path.file_name().unwrap_or_default().to_string_lossy(), std::process::id()));
    Tensor::write_safetensors(&named, &tmp).map_err(|e| Error::Checkpoint {
        path: path.display().to_string(),
        msg: crate::util::first_line(&e.to_string()),
    })?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Reads a state dict file (safetensors).
pub fn read_state_dict(path: &Path) -> Result<Vec<(String, Tensor)>> {
    if !path.exists() {
        return Err(Error::Checkpoint { path: path.display().to_string(), msg: "no such file".into() });
    }
    match path.extension().and_then(|e| e.to_str()) {
        Some("safetensors") => Tensor::read_safetensors(path).map_err(|e| Error::Checkpoint {
            path: path.display().to_string(),
            msg: format!("not a readable safetensors file: {}", crate::util::first_line(&e.to_string())),
        }),
        other => Err(Error::Checkpoint {
            path: path.display().to_string(),
            msg: format!("unsupported weights format {:?}; use a .safetensors file", other.unwrap_or("")),
        }),
    }
}

/// Loads weights into `store` (strict: every name and shape must match).
pub fn load_weights(store: &VarStore, path: &Path, strict: bool) -> Result<LoadReport> {
    let tensors = read_state_dict(path)?;
    store.load_state_dict(&tensors, strict, &path.display().to_string())
}
