//! CIFAR-10's binary version (`cifar-10-binary.tar.gz`): each record is one label byte and 3×32×32 pixel bytes,
//! channel-major (all red, then green, then blue), so a record is already [C, H, W].
use std::collections::BTreeMap;
use std::path::Path;

use tch::{Kind, Tensor};

use super::{check_options, class_count, read_all, torch_err};
use crate::data::{Dataset, Task};
use crate::error::{Error, Result};

const IMAGE_BYTES: usize = 3 * 32 * 32;
const RECORD: usize = 1 + IMAGE_BYTES;
pub(crate) const TRAIN_FILES: [&str; 5] =
    ["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"];
pub(crate) const TEST_FILE: &str = "test_batch.bin";
pub(crate) const RECORD_FILES: [&str; 6] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
    "test_batch.bin",
];
/// One batch file is 10000 records; refuse files far larger than that.
const MAX_FILE: u64 = 64 << 20;

/// Whether `dir` holds CIFAR-10 binary batches.
pub fn is_cifar_dir(dir: &Path) -> bool {
    RECORD_FILES.iter().any(|f| dir.join(f).is_file())
}

/// Loads a CIFAR-10 binary folder. Option `split=train` (the `data_batch_N.bin` present, in order; default) or
/// `split=test` (`test_batch.bin`); class names from `batches.meta.txt` when it is there.
pub fn load_folder(dir: &Path, options: &BTreeMap<String, String>) -> Result<Dataset> {
    let name = dir.display().to_string();
    check_options(&name, options, &["split", "classes"])?;
    let files: Vec<&str> = match options.get("split").map(|s| s.trim().to_ascii_lowercase()).as_deref() {
        None | Some("train") => TRAIN_FILES.iter().copied().filter(|f| dir.join(f).is_file()).collect(),
        Some("test") => [TEST_FILE].into_iter().filter(|f| dir.join(f).is_file()).collect(),
        Some(other) => return Err(super::bad_opt(&name, "split", other, "train or test")),
    };
    if files.is_empty() {
        let want = if options.get("split").is_some_and(|s| s.trim() == "test") {
            TEST_FILE.to_string()
        } else {
            "data_batch_1.bin .. data_batch_5.bin".to_string()
        };
        return Err(Error::data(&name, format!("no {want} in this CIFAR-10 folder; pick the split that is there")));
    }
    let mut bytes = Vec::new();
    for f in &files {
        let path = dir.join(f);
        let chunk = read_all(&path, MAX_FILE)?;
        if chunk.is_empty() || chunk.len() % RECORD != 0 {
            return Err(Error::data(
                path.display(),
                format!(
                    "is {} bytes, not a whole number of {RECORD}-byte CIFAR-10 records (1 label + 3×32×32 pixels); \
                     it is truncated or not the binary version (use cifar-10-binary.tar.gz, not the python pickles)",
                    chunk.len()
                ),
            ));
        }
        bytes.extend_from_slice(&chunk);
    }
    let n = (bytes.len() / RECORD) as i64;
    let records = Tensor::f_from_data_size(&bytes, &[n, RECORD as i64], Kind::Uint8).map_err(torch_err(&name))?;
    let ys = records.narrow(1, 0, 1).reshape([n]).to_kind(Kind::Int64);
    let xs = records.narrow(1, 1, IMAGE_BYTES as i64).reshape([n, 3, 32, 32]).contiguous();

    let meta = dir.join("batches.meta.txt");
    let class_names: Option<Vec<String>> = if meta.is_file() {
        let text = read_all(&meta, 1 << 20)?;
        let text = String::from_utf8_lossy(&text);
        let names: Vec<String> = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
        (!names.is_empty()).then_some(names)
    } else {
        None
    };
    let n_classes = class_count(&name, options, &ys, class_names.as_ref().map(Vec::len))?;
    let mut data = Dataset::new(&name, xs, ys, Task::Classification { n_classes })?;
    data.class_names = class_names.filter(|c| c.len() == n_classes);
    Ok(data)
}
