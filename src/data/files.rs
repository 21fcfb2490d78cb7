//! Data from files: MNIST-style IDX folders, CIFAR-10 binary folders, image folders (one sub-folder per class),
//! CSV tables, and NumPy `.npy`/`.npz` arrays. `load_path` picks the format from what the path holds.
//!
//! Every reader checks sizes against the file before it allocates, and reports a malformed input as one
//! `Error::Data` line that names the file and what to do. Images become float32 [N, C, H, W] in [0, 1].
//!
//! The option helpers at the bottom are shared with the generators and the embedded digits.
use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;

use tch::{Kind, Tensor};

use super::Dataset;
use crate::error::{did_you_mean, Error, Result};

pub mod cifar;
pub mod csv;
pub mod idx;
pub mod images;
pub mod npy;

/// Loads the dataset in a file or folder, detecting its format.
///
/// Files: `.csv`/`.tsv` (or any text table), `.npy`, `.npz` (also recognised by their magic bytes).
/// Folders: IDX files (`train-images-idx3-ubyte[.gz]`, also under `raw/`), CIFAR-10 binary batches
/// (`data_batch_N.bin`, `test_batch.bin`, also under `cifar-10-batches-bin/`), or one sub-folder of images per class.
pub fn load_path(path: &Path, options: &BTreeMap<String, String>) -> Result<Dataset> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.is_dir() {
        return load_dir(path, options);
    }
    let name = path.display().to_string();
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "csv" | "tsv" | "txt" => return csv::load(path, options),
        "npy" => return npy::load_npy(path, options),
        "npz" => return npy::load_npz(path, options),
        _ => {}
    }
    if file_name.contains("idx3-ubyte") || file_name.contains("idx1-ubyte") {
        return Err(Error::data(
            &name,
            "this is one IDX file; give the folder that holds the images and labels files instead",
        ));
    }
    if cifar::RECORD_FILES.iter().any(|f| file_name == *f) {
        return Err(Error::data(&name, "this is one CIFAR-10 batch; give the folder that holds the batches instead"));
    }
    // No telling extension: sniff the first bytes.
    let mut head = [0u8; 6];
    let n = {
        use std::io::Read;
        let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        f.read(&mut head).map_err(|e| Error::io(path, e))?
    };
    if head[..n].starts_with(npy::NPY_MAGIC) {
        return npy::load_npy(path, options);
    }
    if head[..n].starts_with(b"PK\x03\x04") {
        return npy::load_npz(path, options);
    }
    Err(Error::data(
        &name,
        "unknown file format; give a .csv/.tsv table, a .npy or .npz array file, or a folder (IDX, CIFAR-10 binary, \
         or one sub-folder of images per class)",
    ))
}

/// Whether `dir` is read as an image folder (one sub-folder per class): not an IDX or CIFAR-10 folder.
pub fn is_image_folder(dir: &Path) -> Result<bool> {
    let nested = dir.join("cifar-10-batches-bin");
    let raw = dir.join("raw");
    Ok(!(cifar::is_cifar_dir(dir)
        || cifar::is_cifar_dir(&nested)
        || idx::is_idx_dir(dir)?
        || (raw.is_dir() && idx::is_idx_dir(&raw)?)))
}

fn load_dir(dir: &Path, options: &BTreeMap<String, String>) -> Result<Dataset> {
    if cifar::is_cifar_dir(dir) {
        return cifar::load_folder(dir, options);
    }
    let nested = dir.join("cifar-10-batches-bin");
    if cifar::is_cifar_dir(&nested) {
        return cifar::load_folder(&nested, options);
    }
    if idx::is_idx_dir(dir)? {
        return idx::load_folder(dir, options);
    }
    let raw = dir.join("raw");
    if raw.is_dir() && idx::is_idx_dir(&raw)? {
        return idx::load_folder(&raw, options);
    }
    images::load_folder(dir, options)
}

// ---------------------------------------------------------------------------------------------------------------
// Option helpers, shared by the file readers, the generators and the digits.

/// Fails on an option key that `valid` does not list, naming the valid ones.
pub(crate) fn check_options(source: &str, options: &BTreeMap<String, String>, valid: &[&str]) -> Result<()> {
    for key in options.keys() {
        if !valid.contains(&key.as_str()) {
            let list = if valid.is_empty() { "none".to_string() } else { valid.join(", ") };
            return Err(Error::data(
                source,
                format!(
                    "unknown option '{key}'{}; valid options here: {list}",
                    did_you_mean(key, valid.iter().copied())
                ),
            ));
        }
    }
    Ok(())
}

/// Parses option `key` as `T`, or returns `default`; `expected` says what a valid value looks like.
pub(crate) fn parse_opt<T: FromStr>(
    source: &str,
    options: &BTreeMap<String, String>,
    key: &str,
    default: T,
    expected: &str,
) -> Result<T> {
    match options.get(key) {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|_| bad_opt(source, key, v, expected)),
    }
}

/// Parses a boolean option (`true/false`, `yes/no`, `1/0`).
pub(crate) fn parse_bool(source: &str, options: &BTreeMap<String, String>, key: &str, default: bool) -> Result<bool> {
    match options.get(key).map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) => match v.as_str() {
            "true" | "yes" | "1" | "on" => Ok(true),
            "false" | "no" | "0" | "off" => Ok(false),
            _ => Err(bad_opt(source, key, &v, "true or false")),
        },
    }
}

pub(crate) fn bad_opt(source: &str, key: &str, value: &str, expected: &str) -> Error {
    Error::data(source, format!("option {key}={value} is not valid; expected {expected}"))
}

/// Parses `size=HxW` (or `size=N` for a square).
pub(crate) fn parse_size(source: &str, options: &BTreeMap<String, String>) -> Result<Option<(usize, usize)>> {
    let Some(v) = options.get("size") else { return Ok(None) };
    let bad = || bad_opt(source, "size", v, "HxW in pixels, e.g. size=32x32 (or size=32)");
    let (h, w) = match v.trim().to_ascii_lowercase().split_once('x') {
        Some((h, w)) => (h.trim().parse::<usize>().map_err(|_| bad())?, w.trim().parse::<usize>().map_err(|_| bad())?),
        None => {
            let s = v.trim().parse::<usize>().map_err(|_| bad())?;
            (s, s)
        }
    };
    if h == 0 || w == 0 || h > 8192 || w > 8192 {
        return Err(bad());
    }
    Ok(Some((h, w)))
}

/// How the targets are to be read: `task=classification` (default) or `task=regression`.
pub(crate) fn is_regression(source: &str, options: &BTreeMap<String, String>) -> Result<bool> {
    match options.get("task").map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(false),
        Some(v) if v == "classification" => Ok(false),
        Some(v) if v == "regression" => Ok(true),
        Some(v) => Err(bad_opt(source, "task", &v, "classification or regression")),
    }
}

/// More classes than this means the labels are not class numbers (ids, prices, ...).
const MAX_CLASSES: usize = 1_000_000;

/// The class count for int64 labels `ys`: option `classes=N`, else `known` (e.g. the number of class names),
/// else the largest label + 1. Fails on negative labels or labels outside the count.
pub(crate) fn class_count(
    source: &str,
    options: &BTreeMap<String, String>,
    ys: &Tensor,
    known: Option<usize>,
) -> Result<usize> {
    if ys.numel() == 0 {
        return Err(Error::data(source, "the dataset is empty (0 samples)"));
    }
    let ys = ys.to_kind(Kind::Int64);
    let lo = ys.min().int64_value(&[]);
    let hi = ys.max().int64_value(&[]);
    if lo < 0 {
        return Err(Error::data(source, format!("label {lo} is negative; class labels must be 0, 1, 2, ...")));
    }
    let given = match options.get("classes") {
        None => None,
        Some(v) => match v.trim().parse::<usize>() {
            Ok(n) if n >= 1 => Some(n),
            _ => return Err(bad_opt(source, "classes", v, "the number of classes, a whole number ≥ 1")),
        },
    };
    let n = given.or(known).unwrap_or(hi as usize + 1);
    if n > MAX_CLASSES {
        return Err(Error::data(
            source,
            format!("label {hi} means {n} classes, more than {MAX_CLASSES}; labels must be class numbers 0..N-1"),
        ));
    }
    if hi as usize >= n {
        let why = if given.is_some() { format!("classes={n}") } else { format!("the {n} class names") };
        return Err(Error::data(
            source,
            format!("label {hi} is outside {why} (labels must be 0..={}); raise classes= or fix the labels", n - 1),
        ));
    }
    Ok(n)
}

/// Reads a whole file, refusing one larger than `limit` bytes.
pub(crate) fn read_all(path: &Path, limit: u64) -> Result<Vec<u8>> {
    let len = std::fs::metadata(path).map_err(|e| Error::io(path, e))?.len();
    if len > limit {
        return Err(Error::data(
            path.display(),
            format!("the file is {} MiB, more than the {} MiB this reader accepts", len >> 20, limit >> 20),
        ));
    }
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

/// Turns a tch error on user data into a data error naming the source.
pub(crate) fn torch_err(source: &str) -> impl Fn(tch::TchError) -> Error + '_ {
    move |e| {
        let text = e.to_string();
        let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string();
        Error::data(source, first)
    }
}
