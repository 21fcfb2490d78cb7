//! MNIST's IDX format (also Fashion-MNIST, EMNIST, and our embedded digits): a big-endian header
//! `0, 0, type, rank, dims[rank] (u32)` followed by the values, row-major, raw or gzipped.
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use tch::{Kind, Tensor};

use super::{check_options, class_count, torch_err};
use crate::data::{Dataset, Task};
use crate::error::{Error, Result};
use crate::util::read_up_to;

/// Deflate expands at most about 1032:1, so a gzip file of n bytes cannot hold more than this many times n.
const MAX_DEFLATE_RATIO: u64 = 1040;
const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];

/// The value type named by the third magic byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdxType {
    U8,
    I8,
    I16,
    I32,
    F32,
    F64,
}

impl IdxType {
    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0x08 => IdxType::U8,
            0x09 => IdxType::I8,
            0x0B => IdxType::I16,
            0x0C => IdxType::I32,
            0x0D => IdxType::F32,
            0x0E => IdxType::F64,
            _ => return None,
        })
    }
    pub fn code(self) -> u8 {
        match self {
            IdxType::U8 => 0x08,
            IdxType::I8 => 0x09,
            IdxType::I16 => 0x0B,
            IdxType::I32 => 0x0C,
            IdxType::F32 => 0x0D,
            IdxType::F64 => 0x0E,
        }
    }
    pub fn size(self) -> usize {
        match self {
            IdxType::U8 | IdxType::I8 => 1,
            IdxType::I16 => 2,
            IdxType::I32 | IdxType::F32 => 4,
            IdxType::F64 => 8,
        }
    }
    pub fn is_integer(self) -> bool {
        !matches!(self, IdxType::F32 | IdxType::F64)
    }
}

/// One decoded IDX array; `data` holds the values as stored (big-endian).
#[derive(Debug, Clone)]
pub struct IdxArray {
    pub dims: Vec<usize>,
    pub dtype: IdxType,
    pub data: Vec<u8>,
}

impl IdxArray {
    /// The values as a tensor of shape `dims`: uint8, int8, int16, int32, float32 or float64.
    pub fn to_tensor(&self) -> Result<Tensor> {
        let shape: Vec<i64> = self.dims.iter().map(|&d| d as i64).collect();
        let t = match self.dtype {
            IdxType::U8 => Tensor::f_from_data_size(&self.data, &shape, Kind::Uint8)?,
            IdxType::I8 => Tensor::f_from_data_size(&self.data, &shape, Kind::Int8)?,
            IdxType::I16 => {
                let v: Vec<i16> = self.data.chunks_exact(2).map(|c| i16::from_be_bytes([c[0], c[1]])).collect();
                Tensor::f_from_slice(&v)?.f_reshape(&shape)?
            }
            IdxType::I32 => {
                let v: Vec<i32> =
                    self.data.chunks_exact(4).map(|c| i32::from_be_bytes([c[0], c[1], c[2], c[3]])).collect();
                Tensor::f_from_slice(&v)?.f_reshape(&shape)?
            }
            IdxType::F32 => {
                let v: Vec<f32> =
                    self.data.chunks_exact(4).map(|c| f32::from_be_bytes([c[0], c[1], c[2], c[3]])).collect();
                Tensor::f_from_slice(&v)?.f_reshape(&shape)?
            }
            IdxType::F64 => {
                let v: Vec<f64> = self
                    .data
                    .chunks_exact(8)
                    .map(|c| f64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                    .collect();
                Tensor::f_from_slice(&v)?.f_reshape(&shape)?
            }
        };
        Ok(t)
    }
}

/// Encodes an array in IDX form (uncompressed), the inverse of `decode_bytes`.
pub fn encode(dims: &[usize], dtype: IdxType, data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, dtype.code(), dims.len() as u8];
    for &d in dims {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

/// Reads an IDX file, raw or gzipped (told apart by the gzip magic bytes, not the name).
pub fn read_file(path: &Path) -> Result<IdxArray> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let stored = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut reader = BufReader::new(file);
    let gz = reader.fill_buf().map_err(|e| Error::io(path, e))?.starts_with(GZIP_MAGIC);
    let name = path.display().to_string();
    if gz {
        decode(GzDecoder::new(reader), stored, true, &name)
    } else {
        decode(reader, stored, false, &name)
    }
}

/// Decodes IDX bytes held in memory, raw or gzipped; `name` is used in messages.
pub fn decode_bytes(bytes: &[u8], name: &str) -> Result<IdxArray> {
    let stored = bytes.len() as u64;
    if bytes.starts_with(GZIP_MAGIC) {
        decode(GzDecoder::new(bytes), stored, true, name)
    } else {
        decode(bytes, stored, false, name)
    }
}

fn read_io(name: &str, e: std::io::Error) -> Error {
    Error::data(name, format!("cannot read: {e}; the file is corrupt, fetch it again"))
}

fn decode<R: Read>(reader: R, stored: u64, gz: bool, name: &str) -> Result<IdxArray> {
    let mut reader = reader;
    let mut head = [0u8; 4];
    let got = read_up_to(&mut reader, &mut head).map_err(|e| read_io(name, e))?;
    if got == 0 {
        return Err(Error::data(
            name,
            "the file is empty; expected an IDX file (e.g. MNIST's train-images-idx3-ubyte)",
        ));
    }
    if got < 4 || head[0] != 0 || head[1] != 0 {
        return Err(Error::data(
            name,
            format!(
                "bad magic number {}; not an IDX file (it starts 00 00 08 03 for MNIST images, 00 00 08 01 for labels)",
                head[..got].iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")
            ),
        ));
    }
    let dtype = IdxType::from_code(head[2]).ok_or_else(|| {
        Error::data(
            name,
            format!("bad magic number: value type 0x{:02x} is not an IDX type (08 09 0b 0c 0d 0e)", head[2]),
        )
    })?;
    let rank = head[3] as usize;
    if rank == 0 {
        return Err(Error::data(name, "bad magic number: the IDX header declares 0 dimensions"));
    }
    let mut dim_bytes = vec![0u8; 4 * rank];
    let got = read_up_to(&mut reader, &mut dim_bytes).map_err(|e| read_io(name, e))?;
    if got < dim_bytes.len() {
        return Err(Error::data(name, format!("truncated: the header declares {rank} dimensions but the file ends")));
    }
    let dims: Vec<usize> =
        dim_bytes.chunks_exact(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize).collect();
    let header_len = 4 + 4 * rank as u64;
    let n_bytes = dims.iter().try_fold(dtype.size() as u64, |acc, &d| acc.checked_mul(d as u64)).ok_or_else(|| {
        Error::data(name, format!("the header's dimensions {dims:?} are absurd; the file is corrupt"))
    })?;
    let size_error = |have: String| {
        Error::data(
            name,
            format!(
                "truncated or corrupt: the header declares dims {dims:?} of {dtype:?} ({n_bytes} bytes of values) \
                 but {have}; fetch the file again"
            ),
        )
    };
    if gz {
        if n_bytes > stored.saturating_mul(MAX_DEFLATE_RATIO) {
            return Err(size_error(format!("a {stored}-byte gzip file cannot hold that many")));
        }
    } else if stored != header_len + n_bytes {
        return Err(size_error(format!("the file has {} bytes after the header", stored.saturating_sub(header_len))));
    }
    // The values, and the float32 tensor the loaders make of them (twice, while converting).
    crate::util::check_memory(n_bytes + n_bytes / dtype.size() as u64 * 8, name)?;
    let mut data = Vec::new();
    if !gz {
        data.reserve_exact(n_bytes as usize);
    }
    reader.take(n_bytes + 1).read_to_end(&mut data).map_err(|e| read_io(name, e))?;
    match (data.len() as u64).cmp(&n_bytes) {
        std::cmp::Ordering::Less => Err(size_error(format!("the data ends after {} bytes", data.len()))),
        std::cmp::Ordering::Greater => Err(size_error("more data follows".to_string())),
        std::cmp::Ordering::Equal => Ok(IdxArray { dims, dtype, data }),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Folders of IDX files.

/// The images and labels files of one split, by prefix (`train`, `t10k`, ...).
#[derive(Debug, Default)]
struct Pair {
    images: Option<PathBuf>,
    labels: Option<PathBuf>,
}

/// Splits an IDX file name into (prefix, is_images); `train-images-idx3-ubyte.gz` → ("train", true).
fn classify_name(file_name: &str) -> Option<(String, bool)> {
    let lower = file_name.to_ascii_lowercase();
    let stem = lower.strip_suffix(".gz").unwrap_or(&lower);
    let (is_images, word) = if stem.ends_with("idx3-ubyte") {
        (true, "images")
    } else if stem.ends_with("idx1-ubyte") {
        (false, "labels")
    } else {
        return None;
    };
    let at = stem.find(word).unwrap_or(0);
    let prefix = stem[..at].trim_end_matches(['-', '.', '_']).to_string();
    Some((prefix, is_images))
}

fn scan(dir: &Path) -> Result<BTreeMap<String, Pair>> {
    let mut pairs: BTreeMap<String, Pair> = BTreeMap::new();
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut files: Vec<PathBuf> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        if entry.path().is_file() {
            files.push(entry.path());
        }
    }
    // Raw before gzipped when both are there (torchvision's raw/ keeps both): sorting puts `x` before `x.gz`.
    files.sort();
    for path in files {
        let Some((prefix, is_images)) = path.file_name().and_then(|n| n.to_str()).and_then(classify_name) else {
            continue;
        };
        let pair = pairs.entry(prefix).or_default();
        let slot = if is_images { &mut pair.images } else { &mut pair.labels };
        if slot.is_none() {
            *slot = Some(path);
        }
    }
    Ok(pairs)
}

/// Whether `dir` holds at least one IDX images file.
pub fn is_idx_dir(dir: &Path) -> Result<bool> {
    Ok(scan(dir)?.values().any(|p| p.images.is_some()))
}

const FASHION_CLASSES: [&str; 10] =
    ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

/// Loads a folder of IDX files. Option `split=train|test` (`test` means the `t10k-*` files; any other prefix
/// present also works), default `train`, or the only pair in the folder. Uint8 pixels scale to [0, 1].
pub fn load_folder(dir: &Path, options: &BTreeMap<String, String>) -> Result<Dataset> {
    let name = dir.display().to_string();
    check_options(&name, options, &["split", "classes"])?;
    let pairs = scan(dir)?;
    let found = || pairs.keys().map(|k| if k.is_empty() { "(no prefix)" } else { k.as_str() }).collect::<Vec<_>>();
    let prefix = match options.get("split").map(|s| s.trim().to_ascii_lowercase()) {
        Some(split) => {
            let candidates: Vec<String> = match split.as_str() {
                "test" | "t10k" => vec!["t10k".into(), "test".into()],
                other => vec![other.to_string()],
            };
            candidates.into_iter().find(|c| pairs.contains_key(c)).ok_or_else(|| {
                Error::data(
                    &name,
                    format!("no IDX files for split={split} here; found the splits: {}", found().join(", ")),
                )
            })?
        }
        None if pairs.contains_key("train") => "train".to_string(),
        None if pairs.len() == 1 => pairs.keys().next().cloned().unwrap_or_default(),
        None => {
            return Err(Error::data(
                &name,
                format!("several IDX splits and none named train; pick one with split= ({})", found().join(", ")),
            ))
        }
    };
    let pair = &pairs[&prefix];
    let images_path = pair.images.as_ref().ok_or_else(|| {
        Error::data(&name, format!("labels for '{prefix}' but no images file ({prefix}-images-idx3-ubyte[.gz])"))
    })?;
    let labels_path = pair.labels.as_ref().ok_or_else(|| {
        Error::data(&name, format!("images for '{prefix}' but no labels file ({prefix}-labels-idx1-ubyte[.gz])"))
    })?;
    let images = read_file(images_path)?;
    let labels = read_file(labels_path)?;
    let images_name = images_path.display().to_string();
    let labels_name = labels_path.display().to_string();

    if labels.dims.len() != 1 || !labels.dtype.is_integer() {
        return Err(Error::data(
            &labels_name,
            format!("labels must be a 1-D integer array, got dims {:?} of {:?}", labels.dims, labels.dtype),
        ));
    }
    let shape: Vec<i64> = match images.dims.len() {
        3 => vec![images.dims[0] as i64, 1, images.dims[1] as i64, images.dims[2] as i64],
        4 => images.dims.iter().map(|&d| d as i64).collect(),
        _ => {
            return Err(Error::data(
                &images_name,
                format!("images must have 3 dims [N, H, W] (or 4: [N, C, H, W]), got {:?}", images.dims),
            ))
        }
    };
    if images.dims[0] != labels.dims[0] {
        return Err(Error::data(
            &images_name,
            format!(
                "{} images but {} labels in {labels_name}; the two files must match",
                images.dims[0], labels.dims[0]
            ),
        ));
    }
    let xs = images.to_tensor()?.f_reshape(&shape).map_err(torch_err(&images_name))?;
    // uint8 pixels stay uint8 in memory (a quarter of float32); batches become float32 in [0, 1].
    let xs = if images.dtype == IdxType::U8 { xs } else { xs.to_kind(Kind::Float) };
    let ys = labels.to_tensor()?.to_kind(Kind::Int64);
    let lower = name.to_ascii_lowercase();
    let fashion = lower.contains("fashion");
    let n_classes = class_count(&labels_name, options, &ys, None)?;
    let mut data = Dataset::new(&name, xs, ys, Task::Classification { n_classes })?;
    if fashion && n_classes == 10 {
        data.class_names = Some(FASHION_CLASSES.iter().map(|s| s.to_string()).collect());
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(classify_name("train-images-idx3-ubyte.gz"), Some(("train".into(), true)));
        assert_eq!(classify_name("t10k-labels.idx1-ubyte"), Some(("t10k".into(), false)));
        assert_eq!(classify_name("digits-images-idx3-ubyte.gz"), Some(("digits".into(), true)));
        assert_eq!(classify_name("readme.txt"), None);
    }

    #[test]
    fn round_trip() {
        let bytes = encode(&[2, 3], IdxType::U8, &[1, 2, 3, 4, 5, 6]);
        let a = decode_bytes(&bytes, "x").unwrap();
        assert_eq!(a.dims, vec![2, 3]);
        assert_eq!(a.data, vec![1, 2, 3, 4, 5, 6]);
        assert!(decode_bytes(&bytes[..bytes.len() - 1], "x").is_err());
    }
}
