//! A saved model applied to inputs: the library half of `tchzoo predict` and `tchzoo evaluate` (the CLI parses and
//! prints). A run folder's model is built at its training input size, its images get the run's recorded evaluation
//! transform and its data the run's split; a model given by name is built for the shape of what it is given (as a
//! PyTorch model takes any size it can) and its images get the registry's evaluation transform. Whether a model
//! takes a shape is found by running it.
use std::collections::BTreeMap;
use std::path::Path;

use tch::Tensor;

use crate::data::inputs::{self, ImagePrep};
use crate::data::{workers, Dataset};
use crate::error::{Error, Result};
use crate::run::{load_model, LoadedModel, ModelSource};

/// Loads a model given by name at `shape` when it builds and loads there, else at its registry input shape (a model
/// whose weights depend on the input size, such as an MLP's or LeNet-5's first linear layer, keeps the size its
/// weights were made for; running it says whether it takes the input).
fn load_named_at(source: &ModelSource, shape: &[i64]) -> Result<LoadedModel> {
    let at = ModelSource { input_shape: Some(shape.to_vec()), ..source.clone() };
    load_model(&at).or_else(|_| load_model(&ModelSource { input_shape: None, ..source.clone() }))
}

/// `predict`: a model and how it reads its inputs.
pub struct Predictor {
    source: ModelSource,
    /// The model as first loaded: a run's, or a named model at its registry input shape.
    base: LoadedModel,
    /// A named model loaded for other sample shapes.
    by_shape: BTreeMap<Vec<i64>, LoadedModel>,
    prep: Option<ImagePrep>,
}

impl Predictor {
    pub fn new(source: ModelSource) -> Result<Self> {
        let base = load_model(&source)?;
        Ok(Predictor { source, base, by_shape: BTreeMap::new(), prep: None })
    }

    /// The model as loaded (its class names, loss, the run's config).
    pub fn model(&self) -> &LoadedModel {
        &self.base
    }

    /// How this model's images are prepared: a run on an image folder, its recorded evaluation transform; a run on
    /// data in memory, that data's size and scaling; a model given by name, the registry's evaluation transform.
    pub fn image_prep(&mut self) -> Result<&ImagePrep> {
        if self.prep.is_none() {
            let prep = match (&self.base.run, &self.source.model) {
                (Some(run), _) => match inputs::recorded_transforms(run)? {
                    Some(t) => ImagePrep::Eval(t),
                    None => ImagePrep::for_samples(&self.base.input_shape).ok_or_else(|| {
                        Error::config(format!(
                            "the run's model takes samples of shape {:?}, not images; give a tensor",
                            self.base.input_shape
                        ))
                    })?,
                },
                (None, Some(spec)) => ImagePrep::Eval(inputs::model_transforms(spec)?),
                (None, None) => return Err(Error::config("give ⟨run⟩ DIR, or ⟨model⟩ NAME with ⟨weights⟩ FILE")),
            };
            self.prep = Some(prep);
        }
        self.prep.as_ref().ok_or_else(|| Error::invalid("no image preparation"))
    }

    /// An input file as a batch [N, …] (see [`inputs::read_input`]).
    pub fn read(&mut self, path: &Path) -> Result<Tensor> {
        let rank = self.base.input_shape.len();
        if inputs::is_image(path) {
            let prep = self.image_prep()?.clone();
            return inputs::read_input(path, rank, Some(&prep));
        }
        inputs::read_input(path, rank, None)
    }

    /// The model's outputs (logits, or with `proba` probabilities) for a batch read from `path`. A shape the model
    /// cannot take is one error naming it.
    pub fn predict(&mut self, xs: &Tensor, proba: bool, batch_size: usize, path: &Path) -> Result<Tensor> {
        refuse_empty_batches(batch_size)?;
        let shape = xs.size()[1..].to_vec();
        if self.source.run.is_none() && shape != self.base.input_shape && !self.by_shape.contains_key(&shape) {
            let loaded = load_named_at(&self.source, &shape)?;
            self.by_shape.insert(shape.clone(), loaded);
        }
        let model = self.by_shape.get(&shape).unwrap_or(&self.base);
        let trainer = &model.trainer;
        crate::util::catch_torch(|| {
            if proba {
                trainer.predict_proba(xs, batch_size)
            } else {
                trainer.predict(xs, batch_size)
            }
        })
        .map_err(|e| {
            let built = match &self.source.run {
                Some(_) => format!("the run's model trained on samples of {:?}", self.base.input_shape),
                None => format!("built for samples of {:?}", model.input_shape),
            };
            Error::data(
                path.display(),
                format!("input of shape {:?}: the model cannot take it ({built}): {e}", xs.size()),
            )
        })
    }
}

/// `evaluate`'s data: `spec` if given, else the run's validation data as training split it. An image folder is
/// read through the lazy pipeline with the evaluation transform: the run's recorded one, or for a model given by
/// name the registry's.
fn evaluation_data(run: Option<&crate::config::Run>, model: Option<&str>, spec: Option<&str>) -> Result<Dataset> {
    let Some(spec) = spec else {
        return match run {
            Some(r) => inputs::evaluation_data(r),
            None => Err(Error::config("give ⟨data⟩ to evaluate on")),
        };
    };
    let seed = run.map_or(0, |r| r.config.seed);
    let source = crate::data::DataSource::parse(spec)?;
    let Some((dir, options)) = source.image_folder() else { return crate::data::load_source(&source, seed) };
    let (transforms, workers) = match (run, model) {
        (Some(r), _) => match inputs::recorded_transforms(r)? {
            Some(t) => (t, workers::worker_config(&r.config)),
            // A run on data held in memory reads a folder as it read its own data.
            None => return crate::data::load_source(&source, seed),
        },
        (None, Some(m)) => (inputs::model_transforms(m)?, workers::WorkerConfig::default()),
        (None, None) => return Err(Error::config("give ⟨run⟩ DIR, or ⟨model⟩ NAME with ⟨weights⟩ FILE")),
    };
    let name = dir.display().to_string();
    if let Some(c) = workers::folder_channels(&name, options)? {
        if c != transforms.channels {
            return Err(Error::data(
                name,
                format!("channels={c}, but the model takes {}-channel images", transforms.channels),
            ));
        }
    }
    workers::folder_dataset(dir, transforms, false, workers, seed)
}

/// What `evaluate` found: the number of samples, the loss and metrics, and what loading the model had to say.
pub struct Evaluation {
    pub samples: usize,
    pub logs: BTreeMap<String, f64>,
    pub notes: Vec<String>,
}

fn refuse_empty_batches(batch_size: usize) -> Result<()> {
    if batch_size == 0 {
        return Err(Error::config("⟨batch_size⟩ 0: give at least 1 sample a batch"));
    }
    Ok(())
}

/// `evaluate`: the loss and metrics of a saved model on data (see [`evaluation_data`]).
pub fn evaluate(source: &ModelSource, spec: Option<&str>, batch_size: usize) -> Result<Evaluation> {
    refuse_empty_batches(batch_size)?;
    let (loaded, data) = match &source.run {
        Some(_) => {
            let loaded = load_model(source)?;
            let data = evaluation_data(loaded.run.as_ref(), None, spec)?;
            (loaded, data)
        }
        None => {
            let model = source.model.as_deref();
            let data = evaluation_data(None, model, spec)?;
            (load_named_at(source, &data.sample_shape())?, data)
        }
    };
    let data = match loaded.task {
        Some(task) => crate::run::conform_to(data, task, loaded.class_names.as_ref())?,
        None => data,
    };
    let (got, want) = (data.sample_shape(), &loaded.input_shape);
    let logs = match crate::util::catch_torch(|| loaded.trainer.evaluate(&data, batch_size)) {
        Ok(Ok(logs)) => logs,
        _ if got != *want => {
            return Err(Error::data(
                &data.name,
                format!(
                    "samples of shape {got:?}, but the model was built for {want:?} and cannot take them; evaluate \
                     on data of shape {want:?} (the size and channels of its training data)"
                ),
            ))
        }
        Ok(Err(e)) => return Err(e),
        Err(e) => return Err(Error::data(&data.name, format!("the model cannot take it: {e:#}"))),
    };
    Ok(Evaluation { samples: data.len(), logs, notes: loaded.notes })
}
