//! Datasets: generators, file formats, the embedded digits, splits and a seeded batch loader.
//!
//! A data source is named by a spec string: a generator (`moons`, `moons:n_samples=500,noise=0.1`), `digits`
//! (embedded), or a path to a file or folder (`data/mnist`, `table.csv:label=species`).
use std::collections::BTreeMap;
use std::path::Path;

use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};

pub mod augment;
pub mod augmix;
pub mod autoaugment;
pub mod digits;
pub mod draft;
pub mod erase;
pub mod files;
pub mod folder;
pub mod generators;
pub mod inputs;
pub mod loader;
pub mod mix;
pub mod pairs;
pub mod sequences;
pub mod shards;
pub mod source;
pub mod transforms;
pub mod workers;

pub use loader::Loader;
pub use source::{DataSource, Format, Named, ShardOptions};
pub use workers::DataLoader;

/// What the targets mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Task {
    /// Integer labels in `0..n_classes` (ys: int64 [N]).
    Classification { n_classes: usize },
    /// Real targets (ys: float32 [N, k]).
    Regression { n_outputs: usize },
}

/// An in-memory dataset: features and targets on one device, first dimension the sample index.
#[derive(Debug)]
pub struct Dataset {
    /// float32 [N, ...], or uint8 pixels [N, C, H, W] that batches turn into float32 in [0, 1] (a quarter of the
    /// memory); [`Dataset::features`] gives the float32 form.
    pub xs: Tensor,
    /// int64 [N] for classification, float32 [N, k] for regression.
    pub ys: Tensor,
    pub task: Task,
    /// Optional class names, index = label.
    pub class_names: Option<Vec<String>>,
    /// Where it came from, for messages.
    pub name: String,
    /// A lazily read image set (a folder): decoded and transformed by workers, batch by batch. `xs` then holds
    /// one zero sample of the transformed shape, and `ys` all the labels.
    pub images: Option<std::sync::Arc<workers::ImageSet>>,
}

impl Dataset {
    /// Builds a dataset and checks that it is usable: non-empty, matching lengths, labels in range.
    pub fn new(name: impl Into<String>, xs: Tensor, ys: Tensor, task: Task) -> Result<Self> {
        let name = name.into();
        let n = xs.size().first().copied().unwrap_or(0);
        if n == 0 {
            return Err(Error::data(&name, "the dataset is empty (0 samples)"));
        }
        if ys.size().first().copied() != Some(n) {
            return Err(Error::data(&name, format!("{} feature rows but {:?} targets", n, ys.size())));
        }
        let xs = if xs.kind() == Kind::Uint8 { xs } else { xs.to_kind(Kind::Float) };
        let ys = match task {
            Task::Classification { n_classes } => {
                let ys = ys.to_kind(Kind::Int64);
                let (lo, hi) = (ys.min().int64_value(&[]), ys.max().int64_value(&[]));
                if lo < 0 || hi >= n_classes as i64 {
                    return Err(Error::data(
                        &name,
                        format!("labels span {lo}..={hi} but the task has {n_classes} classes (0..={})", n_classes - 1),
                    ));
                }
                ys
            }
            Task::Regression { n_outputs } => ys.to_kind(Kind::Float).reshape([n, n_outputs as i64]),
        };
        Ok(Dataset { xs, ys, task, class_names: None, name, images: None })
    }

    /// The features as float32: uint8 pixels scaled to [0, 1], other data as stored.
    pub fn features(&self) -> Tensor {
        pixels_to_float(&self.xs)
    }
    pub fn len(&self) -> usize {
        self.ys.size()[0] as usize
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The shape of one sample, e.g. [1, 32, 32] or [2].
    pub fn sample_shape(&self) -> Vec<i64> {
        self.xs.size()[1..].to_vec()
    }
    pub fn n_classes(&self) -> Option<usize> {
        match self.task {
            Task::Classification { n_classes } => Some(n_classes),
            Task::Regression { .. } => None,
        }
    }
    pub fn to_device(&self, device: Device) -> Dataset {
        Dataset {
            xs: self.xs.to_device(device),
            ys: self.ys.to_device(device),
            task: self.task,
            class_names: self.class_names.clone(),
            name: self.name.clone(),
            images: self.images.clone(),
        }
    }
    /// Rows `start..end` (no copy).
    pub fn slice(&self, start: usize, end: usize) -> Dataset {
        if let Some(set) = &self.images {
            return workers::subset_of(self, set, &(start..end).collect::<Vec<_>>(), set.train);
        }
        Dataset {
            xs: self.xs.narrow(0, start as i64, (end - start) as i64),
            ys: self.ys.narrow(0, start as i64, (end - start) as i64),
            task: self.task,
            class_names: self.class_names.clone(),
            name: self.name.clone(),
            images: None,
        }
    }
    /// Keras' `validation_split`: the last `fraction` of the samples, taken before any shuffling. (An image
    /// folder is split by [`workers::split_stratified`] instead: its last fraction would be its last classes.)
    pub fn split_validation(&self, fraction: f64) -> Result<(Dataset, Dataset)> {
        if !(fraction > 0.0 && fraction < 1.0) {
            return Err(Error::config(format!("validation split {fraction} is outside (0, 1); use e.g. 0.2")));
        }
        let n = self.len();
        let n_val = ((n as f64) * fraction).round() as usize;
        if n_val == 0 || n_val >= n {
            return Err(Error::config(format!(
                "validation split {fraction} of {n} samples leaves an empty training or validation set"
            )));
        }
        Ok((self.slice(0, n - n_val), self.slice(n - n_val, n)))
    }
}

/// uint8 pixels as float32 in [0, 1] (as `ToTensor`); other tensors unchanged.
pub fn pixels_to_float(xs: &Tensor) -> Tensor {
    if xs.kind() == Kind::Uint8 {
        xs.to_kind(Kind::Float) / 255.0
    } else {
        xs.shallow_clone()
    }
}

/// A data spec split into its name or path and its `key=value` options, as a string's reader would (a run's data is
/// resolved into a [`DataSource`] instead).
pub type DataSpec = crate::util::Spec;

/// Loads a dataset from its spec (resolved by [`DataSource::parse`], then [`load_source`]). `seed` drives
/// generators.
pub fn load(spec: &str, seed: u64) -> Result<Dataset> {
    load_source(&DataSource::parse(spec)?, seed)
}

/// Loads a resolved data source into memory (an image folder too: a run reads one lazily, `workers::for_run`).
pub fn load_source(source: &DataSource, seed: u64) -> Result<Dataset> {
    match source {
        DataSource::Format { format, dir, options } => {
            if !dir.is_dir() {
                let name = format.name();
                return Err(Error::data(
                    dir.display(),
                    format!("{name} needs a folder of that dataset's files, e.g. {name}:data/cifar-10-batches-bin"),
                ));
            }
            files::load_path(dir, options)
        }
        DataSource::Named { name, options } => match name {
            Named::Digits => digits::load(options),
            Named::Pairs => pairs::load(options, seed),
            Named::Series => sequences::load_series(options),
            Named::DigitRows => sequences::load_digit_rows(options),
            Named::Text => sequences::load_text(options),
            Named::Generator(g) => generators::generate(g, options, seed),
        },
        DataSource::ImageFolder { dir, options } => files::load_path(dir, options),
        DataSource::Path { path, options } => load_path(path, options),
        // Tar shards are a stream a run reads (`shards::for_run`); held in memory they are a path like any other.
        DataSource::Shards { pattern, .. } => load_path(Path::new(pattern), &crate::util::Options::new()),
    }
}

/// A file or folder, or the error that names what exists instead.
fn load_path(path: &Path, options: &BTreeMap<String, String>) -> Result<Dataset> {
    if path.exists() {
        return files::load_path(path, options);
    }
    let name = path.display().to_string();
    let mut known: Vec<&str> = generators::NAMES.to_vec();
    known.extend(Named::OTHERS.map(Named::name));
    Err(Error::data(
        &name,
        format!(
            "no such dataset or path{}; known datasets: {}, or give a file or folder",
            crate::error::did_you_mean(&name, known.iter().copied()),
            known.join(", ")
        ),
    ))
}

/// Reads an option, parsing it as `T`, or returns `default`.
pub fn opt<T: std::str::FromStr>(
    options: &BTreeMap<String, String>,
    key: &str,
    default: T,
    source_name: &str,
) -> Result<T> {
    match options.get(key) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| Error::data(source_name, format!("option {key}={v} does not parse"))),
    }
}
