//! NumPy arrays: `.npy` (one 2-D array, the label in a column) and `.npz` (a features array and a labels array).
//! Our own reader, not tch's: it checks the declared size against the file before allocating, reads
//! big-endian, Fortran-order and unsigned arrays, and never panics on a malformed archive.
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use tch::{Kind, Tensor};

use super::{bad_opt, check_options, class_count, is_regression, torch_err};
use crate::data::{Dataset, Task};
use crate::error::{Error, Result};
use crate::util::read_up_to;

pub(crate) const NPY_MAGIC: &[u8] = b"\x93NUMPY";
/// Deflate expands at most about 1032:1.
const MAX_DEFLATE_RATIO: u64 = 1040;
const MAX_HEADER: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dtype {
    F2,
    F4,
    F8,
    I1,
    I2,
    I4,
    I8,
    U1,
    U2,
    U4,
    U8,
    B1,
}

impl Dtype {
    fn size(self) -> usize {
        match self {
            Dtype::I1 | Dtype::U1 | Dtype::B1 => 1,
            Dtype::F2 | Dtype::I2 | Dtype::U2 => 2,
            Dtype::F4 | Dtype::I4 | Dtype::U4 => 4,
            Dtype::F8 | Dtype::I8 | Dtype::U8 => 8,
        }
    }
}

#[derive(Debug)]
struct Header {
    dtype: Dtype,
    big_endian: bool,
    fortran: bool,
    shape: Vec<usize>,
    /// Bytes before the data: magic, version, length field and the header text.
    len: u64,
}

/// Reads one array from `reader`; `stored` is the byte count the container declares for it (the file length,
/// or the zip entry's size) and `limit` the most it can hold, used to refuse absurd headers before allocating.
fn read_array<R: Read>(mut reader: R, stored: u64, limit: u64, name: &str) -> Result<Tensor> {
    let header = read_header(&mut reader, name)?;
    let n_values = header.shape.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d as u64));
    let n_bytes = n_values.and_then(|n| n.checked_mul(header.dtype.size() as u64)).ok_or_else(|| {
        Error::data(name, format!("the header's shape {:?} is absurd; the file is corrupt", header.shape))
    })?;
    let size_error = |have: String| {
        Error::data(
            name,
            format!(
                "truncated or corrupt: the header declares shape {:?} of {:?} ({n_bytes} bytes) but {have}; \
                 save it again",
                header.shape, header.dtype
            ),
        )
    };
    if stored != header.len + n_bytes {
        return Err(size_error(format!("{} bytes follow the header", stored.saturating_sub(header.len))));
    }
    if n_bytes > limit {
        return Err(size_error(format!("the archive holds at most {limit} bytes for it")));
    }
    // An empty array's other dimensions cost nothing in the file but are looped over later: bound them by it.
    if let Some(d) = header.shape.iter().find(|&&d| d as u64 > limit.max(1 << 16)) {
        return Err(Error::data(
            name,
            format!(
                "the header's shape {:?} has a dimension of {d} in a {stored}-byte file; the file is corrupt",
                header.shape
            ),
        ));
    }
    // The array, and the float32 copy the loaders make of it.
    crate::util::check_memory(n_bytes + n_bytes / header.dtype.size() as u64 * 8, name)?;
    let mut data = Vec::with_capacity(n_bytes.min(limit) as usize);
    reader
        .take(n_bytes + 1)
        .read_to_end(&mut data)
        .map_err(|e| Error::data(name, format!("cannot read the array data: {e}; the file is corrupt")))?;
    if data.len() as u64 != n_bytes {
        return Err(size_error(format!("{} bytes could be read", data.len())));
    }
    // Hosts are little-endian (x86-64, aarch64): swap big-endian data.
    if header.big_endian && header.dtype.size() > 1 {
        for chunk in data.chunks_exact_mut(header.dtype.size()) {
            chunk.reverse();
        }
    }
    // Fortran order: the data is the C-order array of the reversed shape, transposed.
    let mut shape: Vec<i64> = header.shape.iter().map(|&d| d as i64).collect();
    if header.fortran {
        shape.reverse();
    }
    let native_u64 = |bytes: &[u8]| {
        let mut a = [0u8; 8];
        a[..bytes.len()].copy_from_slice(bytes);
        u64::from_le_bytes(a)
    };
    let t = match header.dtype {
        Dtype::U2 | Dtype::U4 | Dtype::U8 => {
            let values: Vec<i64> = data.chunks_exact(header.dtype.size()).map(|c| native_u64(c) as i64).collect();
            if values.iter().any(|&v| v < 0) {
                return Err(Error::data(name, "uint64 values above 2^63 do not fit; convert the array to int64"));
            }
            Tensor::f_from_slice(&values).and_then(|t| t.f_reshape(&shape)).map_err(torch_err(name))?
        }
        dtype => {
            let kind = match dtype {
                Dtype::F2 => Kind::Half,
                Dtype::F4 => Kind::Float,
                Dtype::F8 => Kind::Double,
                Dtype::I1 => Kind::Int8,
                Dtype::I2 => Kind::Int16,
                Dtype::I4 => Kind::Int,
                Dtype::I8 => Kind::Int64,
                Dtype::U1 => Kind::Uint8,
                _ => Kind::Bool,
            };
            Tensor::f_from_data_size(&data, &shape, kind).map_err(torch_err(name))?
        }
    };
    Ok(if header.fortran {
        let dims: Vec<i64> = (0..shape.len() as i64).rev().collect();
        t.permute(dims).contiguous()
    } else {
        t
    })
}

fn read_header<R: Read>(reader: &mut R, name: &str) -> Result<Header> {
    let corrupt = |what: &str| Error::data(name, format!("{what}; not a valid .npy array (write it with numpy.save)"));
    let mut start = [0u8; 10];
    let got = read_up_to(reader, &mut start).map_err(|e| Error::data(name, format!("cannot read: {e}")))?;
    if got == 0 {
        return Err(Error::data(name, "the file is empty; expected a .npy array"));
    }
    if got < 8 || &start[..6] != NPY_MAGIC {
        return Err(corrupt("bad magic (the file does not start with \\x93NUMPY)"));
    }
    let (len_bytes, prefix) = match start[6] {
        1 => (2usize, 10u64),
        2 | 3 => (4, 12),
        v => return Err(corrupt(&format!("unknown .npy version {v}"))),
    };
    if got < 8 + 2 {
        return Err(corrupt("truncated header"));
    }
    let header_len = if len_bytes == 2 {
        u16::from_le_bytes([start[8], start[9]]) as usize
    } else {
        let mut more = [0u8; 2];
        if read_up_to(reader, &mut more).map_err(|e| Error::data(name, format!("cannot read: {e}")))? < 2 {
            return Err(corrupt("truncated header"));
        }
        u32::from_le_bytes([start[8], start[9], more[0], more[1]]) as usize
    };
    if header_len > MAX_HEADER {
        return Err(corrupt(&format!("the header claims {header_len} bytes")));
    }
    let mut text = vec![0u8; header_len];
    if read_up_to(reader, &mut text).map_err(|e| Error::data(name, format!("cannot read: {e}")))? < header_len {
        return Err(corrupt("truncated header"));
    }
    let text = String::from_utf8_lossy(&text);
    let descr = field(&text, "descr").ok_or_else(|| corrupt("no 'descr' in the header"))?;
    if descr.starts_with('[') {
        return Err(Error::data(name, "structured (record) arrays are not supported; save a plain numeric array"));
    }
    let quote = descr.chars().next().filter(|c| *c == '\'' || *c == '"').ok_or_else(|| corrupt("unreadable descr"))?;
    let descr = descr[1..].split(quote).next().unwrap_or("");
    let (endian, code) = match descr.chars().next() {
        Some(c @ ('<' | '>' | '|' | '=')) => (c, &descr[1..]),
        _ => ('=', descr),
    };
    let dtype = match code {
        "f2" | "e" => Dtype::F2,
        "f4" | "f" => Dtype::F4,
        "f8" | "d" => Dtype::F8,
        "i1" | "b" => Dtype::I1,
        "i2" | "h" => Dtype::I2,
        "i4" | "i" => Dtype::I4,
        "i8" | "q" | "l" => Dtype::I8,
        "u1" | "B" => Dtype::U1,
        "u2" | "H" => Dtype::U2,
        "u4" | "I" => Dtype::U4,
        "u8" | "Q" | "L" => Dtype::U8,
        "b1" | "?" => Dtype::B1,
        other => {
            return Err(Error::data(
                name,
                format!(
                    "dtype '{}' is not supported; save numbers (float, int, uint or bool), e.g. .astype('float32')",
                    other.escape_default()
                ),
            ))
        }
    };
    let fortran = match field(&text, "fortran_order").map(|v| v.trim_end_matches(',').trim()) {
        Some(v) if v.starts_with("True") => true,
        Some(v) if v.starts_with("False") => false,
        _ => return Err(corrupt("no fortran_order in the header")),
    };
    let shape_text = field(&text, "shape").ok_or_else(|| corrupt("no 'shape' in the header"))?;
    let close = shape_text.find(')').ok_or_else(|| corrupt("unreadable shape"))?;
    let shape_text = shape_text.strip_prefix('(').ok_or_else(|| corrupt("unreadable shape"))?;
    let shape = shape_text[..close - 1]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('L').parse::<usize>())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| corrupt("unreadable shape"))?;
    Ok(Header { dtype, big_endian: endian == '>', fortran, shape, len: prefix + header_len as u64 })
}

/// The text after `'key':` in a header dict, trimmed.
fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let at = text.find(&format!("'{key}'")).or_else(|| text.find(&format!("\"{key}\"")))?;
    let rest = &text[at + key.len() + 2..];
    let rest = rest.trim_start().strip_prefix(':')?;
    Some(rest.trim_start())
}

/// Reads a `.npy` file as a tensor (its own dtype).
pub fn read_npy(path: &Path) -> Result<Tensor> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let stored = file.metadata().map_err(|e| Error::io(path, e))?.len();
    read_array(BufReader::new(file), stored, stored, &path.display().to_string())
}

/// Reads the named arrays of a `.npz` file (stored or deflated), each by its name without `.npy`.
/// Returns the names in the archive when one of `wanted` is missing.
pub fn read_npz(path: &Path, wanted: &[&str]) -> Result<Vec<Tensor>> {
    let name = path.display().to_string();
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut zip = zip::ZipArchive::new(BufReader::new(file))
        .map_err(|e| Error::data(&name, format!("not a valid .npz (zip) archive: {e}; save it with numpy.savez")))?;
    let mut out = Vec::new();
    for want in wanted {
        let entry_name = format!("{want}.npy");
        let mut entry = zip.by_name(&entry_name).map_err(|e| {
            Error::data(&name, format!("cannot open array '{want}' in the archive: {e}; the file is corrupt"))
        })?;
        let stored = entry.size();
        let limit = entry.compressed_size().saturating_mul(MAX_DEFLATE_RATIO);
        let label = format!("{name} (array '{want}')");
        out.push(read_array(&mut entry, stored, limit, &label)?);
    }
    Ok(out)
}

/// The array names in a `.npz` file.
pub fn npz_names(path: &Path) -> Result<Vec<String>> {
    let name = path.display().to_string();
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let zip = zip::ZipArchive::new(BufReader::new(file))
        .map_err(|e| Error::data(&name, format!("not a valid .npz (zip) archive: {e}; save it with numpy.savez")))?;
    Ok(zip.file_names().filter_map(|n| n.strip_suffix(".npy")).map(String::from).collect())
}

/// Loads a 2-D `.npy` array whose label is a column: option `label=INDEX` (negative from the end, default -1),
/// `task=classification|regression`, `classes=N`.
pub fn load_npy(path: &Path, options: &BTreeMap<String, String>) -> Result<Dataset> {
    let name = path.display().to_string();
    check_options(&name, options, &["label", "task", "classes"])?;
    let regression = is_regression(&name, options)?;
    let arr = read_npy(path)?;
    let size = arr.size();
    if size.len() != 2 || size[1] < 2 {
        return Err(Error::data(
            &name,
            format!(
                "expected a 2-D array [samples, features + label], got shape {size:?}; for separate features and \
                 labels save an .npz with arrays x and y"
            ),
        ));
    }
    let cols = size[1];
    let label = match options.get("label") {
        None => cols - 1,
        Some(v) => match v.trim().parse::<i64>() {
            Ok(i) if (-cols..cols).contains(&i) => i.rem_euclid(cols),
            _ => return Err(bad_opt(&name, "label", v, &format!("a column index in 0..{cols} (or -1 for the last)"))),
        },
    };
    let features: Vec<i64> = (0..cols).filter(|&c| c != label).collect();
    let xs = arr.index_select(1, &Tensor::from_slice(&features)).to_kind(Kind::Float);
    check_finite(&name, &xs, "features")?;
    let ys = arr.select(1, label);
    targets(&name, options, xs, ys, regression)
}

/// Loads a `.npz` with a features array and a labels array: options `x=NAME`, `y=NAME`, else `x`/`y`, `X`/`y`,
/// `features`/`labels`, `data`/`target`, or `x_train`/`y_train` (`split=test`: `x_test`/`y_test`).
/// Uint8 features are images: scaled to [0, 1], [N, H, W] gains a channel, [N, H, W, C] becomes [N, C, H, W].
pub fn load_npz(path: &Path, options: &BTreeMap<String, String>) -> Result<Dataset> {
    let name = path.display().to_string();
    check_options(&name, options, &["x", "y", "split", "task", "classes"])?;
    let regression = is_regression(&name, options)?;
    let names = npz_names(path)?;
    let has = |n: &str| names.iter().any(|m| m == n);
    let test = match options.get("split").map(|s| s.trim().to_ascii_lowercase()).as_deref() {
        None | Some("train") => false,
        Some("test") => true,
        Some(v) => return Err(bad_opt(&name, "split", v, "train or test")),
    };
    let candidates: &[(&str, &str)] = if test {
        &[("x_test", "y_test"), ("X_test", "y_test")]
    } else {
        &[
            ("x", "y"),
            ("X", "y"),
            ("features", "labels"),
            ("data", "target"),
            ("x_train", "y_train"),
            ("X_train", "y_train"),
        ]
    };
    let (x_name, y_name) = match (options.get("x"), options.get("y")) {
        (Some(x), Some(y)) => (x.trim().to_string(), y.trim().to_string()),
        (Some(_), None) | (None, Some(_)) => {
            return Err(Error::data(&name, "give both x=NAME and y=NAME for the features and labels arrays"))
        }
        (None, None) => {
            candidates.iter().find(|(x, y)| has(x) && has(y)).map(|(x, y)| (x.to_string(), y.to_string())).ok_or_else(
                || {
                    let pairs: Vec<String> = candidates.iter().map(|(x, y)| format!("{x}/{y}")).collect();
                    Error::data(
                        &name,
                        format!(
                            "no {} arrays; the archive holds: {}; pass x=NAME,y=NAME",
                            pairs.join(" or "),
                            if names.is_empty() { "nothing".to_string() } else { names.join(", ") }
                        ),
                    )
                },
            )?
        }
    };
    for n in [&x_name, &y_name] {
        if !has(n) {
            return Err(Error::data(&name, format!("no array '{n}'; the archive holds: {}", names.join(", "))));
        }
    }
    let mut arrays = read_npz(path, &[&x_name, &y_name])?.into_iter();
    let (xs, ys) = match (arrays.next(), arrays.next()) {
        (Some(x), Some(y)) => (x, y),
        _ => return Err(Error::data(&name, "the archive lost an array while reading; the file is corrupt")),
    };
    let size = xs.size();
    if size.is_empty() {
        return Err(Error::data(&name, format!("array '{x_name}' is a scalar; expected [samples, ...]")));
    }
    let xs = if xs.kind() == Kind::Uint8 {
        let xs = match size.len() {
            3 => xs.unsqueeze(1),
            4 if matches!(size[3], 1 | 3) && !matches!(size[1], 1 | 3) => xs.permute([0, 3, 1, 2]),
            _ => xs,
        };
        // uint8 pixels stay uint8 in memory; batches become float32 in [0, 1].
        xs.contiguous()
    } else if size.len() == 1 {
        xs.to_kind(Kind::Float).unsqueeze(1)
    } else {
        xs.to_kind(Kind::Float)
    };
    check_finite(&name, &xs, &x_name)?;
    if ys.size().first() != xs.size().first() {
        return Err(Error::data(
            &name,
            format!("'{x_name}' has {} samples but '{y_name}' has shape {:?}; they must match", size[0], ys.size()),
        ));
    }
    targets(&name, options, xs.contiguous(), ys, regression)
}

fn check_finite(name: &str, t: &Tensor, what: &str) -> Result<()> {
    if t.numel() > 0 && t.isfinite().all().int64_value(&[]) == 0 {
        return Err(Error::data(name, format!("the {what} hold NaN or infinite values; clean them first")));
    }
    Ok(())
}

/// Builds the dataset from features and raw targets: integer class labels, or real targets for regression.
fn targets(
    name: &str,
    options: &BTreeMap<String, String>,
    xs: Tensor,
    ys: Tensor,
    regression: bool,
) -> Result<Dataset> {
    let n = xs.size()[0];
    if n == 0 {
        return Err(Error::data(name, "the dataset is empty (0 samples)"));
    }
    if regression {
        let ys = ys.to_kind(Kind::Float).reshape([n, -1]);
        check_finite(name, &ys, "targets")?;
        let k = ys.size()[1] as usize;
        return Dataset::new(name, xs, ys, Task::Regression { n_outputs: k });
    }
    let size = ys.size();
    if !(size.len() == 1 || (size.len() == 2 && size[1] == 1)) {
        return Err(Error::data(
            name,
            format!("class labels must be one per sample, got shape {size:?}; pass task=regression for vector targets"),
        ));
    }
    let ys = ys.reshape([n]);
    if ys.is_floating_point() {
        let ys64 = ys.to_kind(Kind::Double);
        let ok =
            ys64.isfinite().all().int64_value(&[]) != 0 && (&ys64 - ys64.round()).abs().max().double_value(&[]) == 0.0;
        if !ok {
            return Err(Error::data(
                name,
                "the labels hold non-integer values; class labels must be 0, 1, 2, ... (pass task=regression for real targets)",
            ));
        }
    }
    let ys = ys.to_kind(Kind::Int64);
    let n_classes = class_count(name, options, &ys, None)?;
    Dataset::new(name, xs, ys, Task::Classification { n_classes })
}
