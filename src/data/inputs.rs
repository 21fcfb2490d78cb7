//! What `evaluate` and `predict` feed a saved model, through the pipeline the run trained with: the run's data and
//! validation split as `run::prepare` reads them ([`run_data`]), its recorded transforms ([`recorded_transforms`]),
//! the model registry's evaluation transform for a model given by name ([`model_transforms`]), and the readers of
//! one input file, a tensor or an image ([`read_input`]).
use std::path::{Path, PathBuf};

use tch::{Kind, Tensor};

use super::transforms::{Interpolation, Transforms};
use super::{workers, Dataset};
use crate::checkpoint::Object;
use crate::config::{Run, RunConfig};
use crate::error::{Error, Result};

/// A run's data as its training reads it: an image folder lazily, with its transforms and the seeded, stratified
/// split; anything else in memory, with Keras' last-fraction split.
pub struct RunData {
    pub train: Dataset,
    pub validation: Option<Dataset>,
    /// The transforms of an image folder's pipeline (`None` for data held in memory).
    pub transforms: Option<Transforms>,
}

/// Reads a run's training and validation data (before they are matched to each other's classes).
pub fn run_data(run: &Run) -> Result<RunData> {
    let config = &run.config;
    if let Some((train, validation, transforms)) = workers::for_run(run)? {
        return Ok(RunData { train, validation, transforms: Some(transforms) });
    }
    let full = super::load_source(&run.data, config.seed)?;
    let (train, validation) = match (&run.validation_data, config.validation_split) {
        (Some(source), _) => (full, Some(super::load_source(source, config.seed)?)),
        (None, Some(f)) => {
            let (t, v) = full.split_validation(f)?;
            (t, Some(v))
        }
        (None, None) => (full, None),
    };
    Ok(RunData { train, validation, transforms: None })
}

/// A warning when Keras' last-fraction split is drawn from rows grouped by label (each class one block, as
/// scikit-learn's iris written by pandas): the validation part then holds only the last classes, in other
/// proportions than training. Keras splits the same way without a word; the run goes on, as Keras' would.
pub fn grouped_split_note(train: &Dataset, validation: &Dataset, fraction: f64) -> Option<String> {
    if !matches!(train.task, super::Task::Classification { .. }) {
        return None;
    }
    let labels = |d: &Dataset| Vec::<i64>::try_from(d.ys.flatten(0, -1).to_kind(Kind::Int64)).unwrap_or_default();
    let (t, v) = (labels(train), labels(validation));
    let rows = || t.iter().chain(&v);
    let changes = rows().zip(rows().skip(1)).filter(|(a, b)| a != b).count();
    let classes = rows().collect::<std::collections::BTreeSet<_>>().len();
    if classes < 2 || changes != classes - 1 {
        return None;
    }
    let mut held = v;
    held.dedup();
    let name = |c: i64| match train.class_names.as_ref().and_then(|n| n.get(c as usize)) {
        Some(n) => format!("'{n}'"),
        None => c.to_string(),
    };
    let shown: Vec<String> = held.iter().take(5).map(|&c| name(c)).collect();
    let more = if held.len() > 5 { format!(" and {} more", held.len() - 5) } else { String::new() };
    Some(format!(
        "warning: the rows of {} are grouped by label, so the last {}% that the validation split holds out (as \
         Keras' validation_split does) holds only class{} {}{more} of {classes}; shuffle the rows, or give \
         ⟨validation_data⟩",
        train.name,
        (fraction * 100.0 * 100.0).round() / 100.0,
        if held.len() == 1 { "" } else { "es" },
        shown.join(", "),
    ))
}

/// The data a saved run is evaluated on by default: its validation data, split as in training, with the
/// evaluation transform; without validation data, all its training data (an image folder's with the evaluation
/// transform).
pub fn evaluation_data(run: &Run) -> Result<Dataset> {
    recorded_transforms(run)?;
    let data = run_data(run)?;
    Ok(match data.validation {
        Some(v) => v,
        None => workers::for_evaluation(&data.train),
    })
}

/// The transforms an image-folder run recorded in its `config.json` (`None` when its data is not an image folder).
/// A config that does not record them all is an error, not a fallback to today's defaults.
pub fn recorded_transforms(run: &Run) -> Result<Option<Transforms>> {
    let config = &run.config;
    let Some((dir, options)) = run.data.image_folder() else { return Ok(None) };
    let missing: Vec<&str> = [
        ("train_crop_size", config.train_crop_size.is_none()),
        ("val_resize_size", config.val_resize_size.is_none()),
        ("val_crop_size", config.val_crop_size.is_none()),
        ("interpolation", config.interpolation.is_none()),
        ("mean", config.mean.is_none()),
        ("std", config.std.is_none()),
    ]
    .into_iter()
    .filter_map(|(k, m)| m.then_some(k))
    .collect();
    if !missing.is_empty() {
        return Err(Error::config(format!(
            "the run's config.json does not record its image transforms ({} missing); add them as the run used \
             them, e.g. \"val_crop_size\": 224",
            missing.join(", ")
        )));
    }
    let channels = workers::folder_channels(&dir.display().to_string(), options)?;
    workers::resolve_transforms(run, channels).map(Some)
}

/// The evaluation transform of a registered model given by name (`--model NAME`), as training on an image folder
/// would default it: the registry's input size, crop fraction, mean/std and interpolation (ImageNet models), or its
/// input size and pixels / 255 (models not made for ImageNet).
pub fn model_transforms(spec: &str) -> Result<Transforms> {
    let run = RunConfig { model: spec.to_string(), ..RunConfig::default() }.resolve()?;
    let entry = run.model;
    if !matches!(entry.default_input, [1 | 3, _, _]) {
        return Err(Error::config(format!(
            "{} takes inputs of shape {:?}, not images; give a tensor (.pt, .safetensors, .npy)",
            entry.name, entry.default_input
        )));
    }
    workers::resolve_transforms(&run, None)
}

/// How an image becomes a model input.
#[derive(Debug, Clone, PartialEq)]
pub enum ImagePrep {
    /// An image folder's pipeline (a run on one, or a registry model): decoded, `Resize` + `CenterCrop`,
    /// `Normalize`, exactly as the workers make an evaluation batch.
    Eval(Transforms),
    /// A run on data held in memory (IDX, CIFAR-10, arrays): decoded with the samples' channels, resized
    /// (antialiased bilinear) to their height and width when it differs, pixels / 255, as those batches are.
    Pixels { channels: u32, height: i64, width: i64 },
}

impl ImagePrep {
    /// The preparation for samples of `shape` held in memory; `None` when they are not images.
    pub fn for_samples(shape: &[i64]) -> Option<Self> {
        match shape {
            [c @ (1 | 3), h, w] => Some(ImagePrep::Pixels { channels: *c as u32, height: *h, width: *w }),
            _ => None,
        }
    }
}

/// File types `predict` reads.
const TENSOR_TYPES: [&str; 5] = ["pt", "pth", "bin", "safetensors", "npy"];
/// Image files: those the image-folder index reads (one list, `folder::READABLE`).
const IMAGE_TYPES: [&str; 6] = super::folder::READABLE;

fn extension(path: &Path) -> String {
    path.extension().and_then(|e| e.to_str()).unwrap_or("").to_lowercase()
}

/// An image file (PNG, JPEG, BMP, PPM/PGM) by its name.
pub fn is_image(path: &Path) -> bool {
    IMAGE_TYPES.contains(&extension(path).as_str())
}

/// The input files: each file given, and each folder's readable files in name order.
pub fn input_files(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = vec![];
    for p in inputs {
        if p.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| Error::io(p, e))?
                .flatten()
                .map(|e| e.path())
                .filter(|f| {
                    let e = extension(f);
                    f.is_file() && (TENSOR_TYPES.contains(&e.as_str()) || IMAGE_TYPES.contains(&e.as_str()))
                })
                .collect();
            if found.is_empty() {
                return Err(Error::data(
                    p.display(),
                    "a folder with no inputs (.pt, .safetensors, .npy, .png or .jpg files) in it",
                ));
            }
            found.sort();
            files.extend(found);
        } else {
            files.push(p.clone());
        }
    }
    Ok(files)
}

/// The one tensor a file holds (.npy, .pt of a tensor or a one-tensor state dict, .safetensors), as float32.
pub fn read_tensor(path: &Path) -> Result<Tensor> {
    let bad = |msg: String| Error::data(path.display(), msg);
    let one = |tensors: Vec<(String, Tensor)>| -> Result<Tensor> {
        let n = tensors.len();
        match tensors.into_iter().next() {
            Some((_, t)) if n == 1 => Ok(t),
            _ => Err(bad(format!("holds {n} tensors; save one tensor (torch.save(x, path))"))),
        }
    };
    let xs = match extension(path).as_str() {
        "npy" => super::files::npy::read_npy(path)?,
        "pt" | "pth" | "bin" => match crate::checkpoint::read_pt(path)? {
            Object::Tensor(t) => t,
            other => one(other.find_state_dict().unwrap_or_default())?,
        },
        "safetensors" => one(crate::checkpoint::read_state_dict(path)?)?,
        other => {
            return Err(bad(format!("unsupported input type '.{other}': use .pt, .safetensors, .npy, .png or .jpg")))
        }
    };
    xs.f_to_kind(Kind::Float).map_err(|e| bad(format!("not a numeric tensor: {e}")))
}

/// One image as a batch of one [1, C, H, W], float32, prepared as `prep` says.
pub fn read_image(path: &Path, prep: &ImagePrep) -> Result<Tensor> {
    let fail = |e: Error| Error::data(path.display(), e.to_string());
    match prep {
        ImagePrep::Eval(t) => {
            let bytes = super::folder::read_file(path)?;
            let none = None::<&mut rand_chacha::ChaCha8Rng>;
            let out = super::draft::decode_transform(&bytes, &path.display().to_string(), t, none)?;
            Ok(t.normalize(&out.unsqueeze(0)))
        }
        ImagePrep::Pixels { channels, height, width } => {
            let img = super::folder::decode(path, *channels)?;
            let img = super::transforms::resize(&img, [*height, *width], Interpolation::Bilinear).map_err(fail)?;
            Ok(super::pixels_to_float(&img.unsqueeze(0)))
        }
    }
}

/// An input file as a batch for a model whose samples have `sample_rank` dimensions: a tensor of that rank is one
/// sample, one of rank + 1 a batch; an image is prepared by `prep` (`None`: the model takes no images). Whether
/// the model takes the shape is for the model to say.
pub fn read_input(path: &Path, sample_rank: usize, prep: Option<&ImagePrep>) -> Result<Tensor> {
    if is_image(path) {
        return match prep {
            Some(p) => read_image(path, p),
            None => Err(Error::data(
                path.display(),
                format!("the model takes samples of {sample_rank} dimension(s), not images; give a tensor"),
            )),
        };
    }
    let xs = read_tensor(path)?;
    match xs.dim() {
        d if d == sample_rank => Ok(xs.unsqueeze(0)),
        d if d == sample_rank + 1 => Ok(xs),
        _ => Err(Error::data(
            path.display(),
            format!(
                "input of shape {:?}; the model takes one sample of {sample_rank} dimension(s) or a batch [N, …] of \
                 them",
                xs.size()
            ),
        )),
    }
}
