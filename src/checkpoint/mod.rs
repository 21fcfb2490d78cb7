//! State dicts and training checkpoints on disk, in PyTorch's formats.
//!
//! - `.pt` / `.pth` / `.bin`: what `torch.save` writes (zip + pickle), read and written here ([`read_pt`],
//!   [`write_pt`]). The reader accepts only what `torch.load(weights_only=True)` accepts and checks every size
//!   against the file before allocating; the writer's files load with plain `torch.load(path)`.
//! - `.safetensors`: Hugging Face's format.
//! - The general checkpoint `{"epoch", "model_state_dict", "optimizer_state_dict", "loss"}`:
//!   [`save_checkpoint`], [`load_checkpoint`].
//!
//! Every write goes to a temporary sibling first and is renamed into place, so a crash never leaves a
//! half-written file over a good one.
use std::fs::File;
use std::path::Path;

use tch::{Kind, Tensor};

use crate::error::{Error, Result};
use crate::nn::store::LoadReport;
use crate::nn::VarStore;

mod archive;
mod pickle;
mod pt;
mod safetensors;
mod training;

pub use training::{load_checkpoint, load_optimizer_state_dict, optimizer_state_dict, save_checkpoint, CheckpointInfo};

/// A Python object as found in a `torch.save` file: plain data and tensors.
#[derive(Debug)]
pub enum Object {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Object>),
    List(Vec<Object>),
    /// A `dict`, in insertion order.
    Dict(Vec<(Object, Object)>),
    /// A `collections.OrderedDict` (what `state_dict()` returns).
    OrderedDict(Vec<(Object, Object)>),
    Tensor(Tensor),
}

impl Object {
    /// A `dict` with string keys.
    pub fn dict(items: Vec<(&str, Object)>) -> Object {
        Object::Dict(items.into_iter().map(|(k, v)| (Object::Str(k.to_string()), v)).collect())
    }
    /// An `OrderedDict` of named tensors, as `model.state_dict()`.
    pub fn from_state_dict(named: &[(String, Tensor)]) -> Object {
        Object::OrderedDict(named.iter().map(|(k, t)| (Object::Str(k.clone()), Object::Tensor(t.detach()))).collect())
    }
    pub fn type_name(&self) -> &'static str {
        match self {
            Object::None => "None",
            Object::Bool(_) => "bool",
            Object::Int(_) => "int",
            Object::Float(_) => "float",
            Object::Str(_) => "str",
            Object::Bytes(_) => "bytes",
            Object::Tuple(_) => "tuple",
            Object::List(_) => "list",
            Object::Dict(_) => "dict",
            Object::OrderedDict(_) => "OrderedDict",
            Object::Tensor(_) => "tensor",
        }
    }
    /// The entries of a dict or OrderedDict.
    pub fn items(&self) -> Option<&[(Object, Object)]> {
        match self {
            Object::Dict(v) | Object::OrderedDict(v) => Some(v),
            _ => None,
        }
    }
    /// `self[key]` for a dict with string keys.
    pub fn get(&self, key: &str) -> Option<&Object> {
        self.items()?.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v)
    }
    /// The string keys of a dict, for messages.
    pub fn keys(&self) -> String {
        match self.items() {
            Some(items) => items
                .iter()
                .map(|(k, _)| match k {
                    Object::Str(s) => format!("'{s}'"),
                    Object::Int(i) => i.to_string(),
                    other => other.type_name().to_string(),
                })
                .collect::<Vec<_>>()
                .join(", "),
            None => String::new(),
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Object::Str(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Object::Int(i) => Some(*i),
            Object::Bool(b) => Some(*b as i64),
            Object::Tensor(t) if t.numel() == 1 && !t.is_floating_point() => t.f_int64_value(&[]).ok(),
            _ => None,
        }
    }
    /// A number: int, float, bool, or a one-element tensor (`loss` is sometimes saved as one).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Object::Int(i) => Some(*i as f64),
            Object::Float(f) => Some(*f),
            Object::Bool(b) => Some(*b as i64 as f64),
            Object::Tensor(t) if t.numel() == 1 => t.f_reshape([1]).and_then(|t| t.f_double_value(&[0])).ok(),
            _ => None,
        }
    }
    pub fn as_tensor(&self) -> Option<&Tensor> {
        match self {
            Object::Tensor(t) => Some(t),
            _ => None,
        }
    }
    /// The named tensors of a state dict: a dict whose keys are all strings and values all tensors.
    pub fn state_dict(&self) -> Option<Vec<(String, Tensor)>> {
        self.items()?.iter().map(|(k, v)| Some((k.as_str()?.to_string(), v.as_tensor()?.shallow_clone()))).collect()
    }
    /// The model weights in a file's top object: the object itself when it is a state dict, else its
    /// `model_state_dict` (the general checkpoint) or `state_dict` entry.
    pub fn find_state_dict(&self) -> Option<Vec<(String, Tensor)>> {
        self.state_dict().or_else(|| {
            ["model_state_dict", "state_dict"].iter().find_map(|k| self.get(k).and_then(|v| v.state_dict()))
        })
    }
}

/// The file formats, chosen by extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `torch.save`'s zip format: `.pt`, `.pth`, `.bin`.
    Pt,
    Safetensors,
}

/// The format of `path` by its extension.
pub fn format_of(path: &Path) -> Result<Format> {
    match path.extension().and_then(|e| e.to_str()).map(|e| e.to_lowercase()).as_deref() {
        Some("pt" | "pth" | "bin" | "ckpt") => Ok(Format::Pt),
        Some("safetensors") => Ok(Format::Safetensors),
        other => Err(Error::Checkpoint {
            path: path.display().to_string(),
            msg: format!(
                "unknown extension {:?}; use .pt/.pth/.bin (torch.save) or .safetensors",
                other.map(|e| format!(".{e}")).unwrap_or_default()
            ),
        }),
    }
}

/// PyTorch's name of a dtype (`float32`, `int64`, …).
pub fn dtype_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Float => "float32",
        Kind::Double => "float64",
        Kind::Half => "float16",
        Kind::BFloat16 => "bfloat16",
        Kind::Int64 => "int64",
        Kind::Int => "int32",
        Kind::Int16 => "int16",
        Kind::Int8 => "int8",
        Kind::Uint8 => "uint8",
        Kind::Bool => "bool",
        Kind::ComplexFloat => "complex64",
        Kind::ComplexDouble => "complex128",
        Kind::ComplexHalf => "complex32",
        _ => "other",
    }
}

fn ckpt_err(path: &Path, msg: impl Into<String>) -> Error {
    Error::Checkpoint { path: path.display().to_string(), msg: msg.into() }
}

fn check_exists(path: &Path) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => Err(ckpt_err(path, "is a directory, not a file")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ckpt_err(path, "no such file")),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Reads a `torch.save` file (any object of tensors and plain data; nothing else is accepted).
pub fn read_pt(path: &Path) -> Result<Object> {
    check_exists(path)?;
    pt::read(path).map_err(|m| ckpt_err(path, m))
}

/// Writes `obj` as `torch.save(obj, path)` would, atomically.
pub fn write_pt(path: &Path, obj: &Object) -> Result<()> {
    write_atomically(path, |tmp| {
        let file = File::create(tmp).map_err(|e| Error::io(tmp, e))?;
        pt::write(file, obj).map_err(|e| match e {
            Error::Invalid(m) => ckpt_err(path, m),
            other => other,
        })
    })
}

/// Reads the named tensors of a state-dict file: `.safetensors`, or a `.pt` holding a state dict or a general
/// checkpoint (its `model_state_dict`).
pub fn read_state_dict(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let format = format_of(path)?;
    check_exists(path)?;
    match format {
        Format::Safetensors => safetensors::read(path).map_err(|m| ckpt_err(path, m)),
        Format::Pt => {
            let obj = read_pt(path)?;
            obj.find_state_dict().ok_or_else(|| {
                ckpt_err(
                    path,
                    format!(
                        "holds a {} ({}) with no state dict (a dict of tensors, or 'model_state_dict' of one)",
                        obj.type_name(),
                        obj.keys()
                    ),
                )
            })
        }
    }
}

/// Writes named tensors as a state dict (`.pt`: an OrderedDict as `torch.save(model.state_dict())`), atomically.
pub fn write_state_dict(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    if let Some((dup, _)) = tensors.iter().find(|(k, _)| !seen.insert(k.as_str())) {
        return Err(ckpt_err(path, format!("tensor name '{dup}' appears twice")));
    }
    match format_of(path)? {
        Format::Pt => write_pt(path, &Object::from_state_dict(tensors)),
        Format::Safetensors => write_atomically(path, |tmp| {
            safetensors::write(tmp, tensors).map_err(|e| match e {
                e @ Error::Io { .. } => e,
                e => ckpt_err(path, crate::util::first_line(&e.to_string())),
            })
        }),
    }
}

/// Writes the store's state dict (parameters and buffers, PyTorch names, dtypes kept); the format follows the
/// extension (`.pt`/`.pth`/`.bin` or `.safetensors`).
pub fn save_weights(store: &VarStore, path: &Path) -> Result<()> {
    write_state_dict(path, &store.state_dict())
}

/// Loads weights into `store`. Strict: every name and shape must match, and all differences are listed in one
/// error; otherwise what matches loads and the report lists the rest.
pub fn load_weights(store: &VarStore, path: &Path, strict: bool) -> Result<LoadReport> {
    let tensors = strip_module_prefix(store, read_state_dict(path)?);
    store.load_state_dict(&tensors, strict, &path.display().to_string())
}

/// A DataParallel/DDP state dict (`module.` before every name) with the prefix removed, unless the model's own
/// names start with `module.`.
pub fn strip_module_prefix(store: &VarStore, mut tensors: Vec<(String, Tensor)>) -> Vec<(String, Tensor)> {
    let prefixed = |k: &String| k.starts_with("module.");
    if !tensors.is_empty()
        && tensors.iter().all(|(k, _)| prefixed(k))
        && !store.state_dict().iter().any(|(k, _)| prefixed(k))
    {
        for (k, _) in tensors.iter_mut() {
            *k = k["module.".len()..].to_string();
        }
    }
    tensors
}

/// Runs `write` on a temporary sibling of `path`, syncs it, renames it over `path` and syncs the folder
/// ([`crate::util::write_atomic_with`]); on failure the temporary file is removed and `path` is left as it was.
fn write_atomically(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    if path.is_dir() {
        return Err(ckpt_err(path, "is a directory"));
    }
    crate::util::write_atomic_with(path, write)
}
