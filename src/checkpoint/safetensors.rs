//! `.safetensors` state dicts (Hugging Face's format; PyTorch names and dtypes kept), in file order.
use std::path::Path;

use safetensors::{Dtype, SafeTensors};
use tch::{Kind, Tensor};

use super::pickle::Msg;
use crate::error::Result;

fn kind_of(dtype: Dtype) -> Option<Kind> {
    Some(match dtype {
        Dtype::BOOL => Kind::Bool,
        Dtype::U8 => Kind::Uint8,
        Dtype::I8 => Kind::Int8,
        Dtype::I16 => Kind::Int16,
        Dtype::I32 => Kind::Int,
        Dtype::I64 => Kind::Int64,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::F32 => Kind::Float,
        Dtype::F64 => Kind::Double,
        _ => return None,
    })
}

/// Reads every tensor, in the order of their data in the file.
pub(crate) fn read(path: &Path) -> std::result::Result<Vec<(String, Tensor)>, Msg> {
    let len = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
    // The file, and the tensors copied out of it.
    crate::util::check_memory(len.saturating_mul(2), path.display()).map_err(|e| e.to_string())?;
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| format!("not a readable safetensors file: {e}"))?;
    let mut views = st.tensors();
    views.sort_by_key(|(name, v)| (v.data().as_ptr() as usize, name.clone()));
    views
        .into_iter()
        .map(|(name, view)| {
            let kind = kind_of(view.dtype())
                .ok_or_else(|| format!("tensor '{name}' has dtype {:?}, which tchzoo does not read", view.dtype()))?;
            let size: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
            let numel = view.shape().iter().try_fold(1usize, |a, &d| a.checked_mul(d));
            // safetensors checks this already; from_data_size would read out of bounds if it were wrong.
            if numel.and_then(|n| n.checked_mul(kind.elt_size_in_bytes())) != Some(view.data().len()) {
                return Err(format!("tensor '{name}': shape {size:?} does not match its {} bytes", view.data().len()));
            }
            let mut data = view.data().to_vec();
            if kind == Kind::Bool {
                data.iter_mut().for_each(|b| *b = u8::from(*b != 0));
            }
            let t =
                Tensor::f_from_data_size(&data, &size, kind).map_err(|e| crate::util::first_line(&e.to_string()))?;
            Ok((name, t))
        })
        .collect()
}

/// Writes the tensors (contiguous, on the CPU) to `path` (the caller makes it atomic).
pub(crate) fn write(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    let named: Vec<(&str, Tensor)> = tensors
        .iter()
        .map(|(k, t)| Ok((k.as_str(), t.detach().f_to_device(tch::Device::Cpu)?.f_contiguous()?)))
        .collect::<Result<_>>()?;
    // Opening the file first gives a plain I/O error (a missing folder, no permission) rather than tch's wrapped one.
    std::fs::File::create(path).map_err(|e| crate::error::Error::io(path, e))?;
    Tensor::write_safetensors(&named, path)?;
    Ok(())
}
