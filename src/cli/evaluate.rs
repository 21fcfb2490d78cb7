//! `tchzoo evaluate`: loss and metrics of a saved model on data (Keras' `evaluate` after `load_model`).
use std::path::PathBuf;

use clap::Args;

use crate::error::{Error, Result};
use crate::run::{load_model, ModelSource};

#[derive(Debug, Args)]
pub struct EvaluateArgs {
    /// A run folder: its config.json and model.pt (or --weights).
    #[arg(long)]
    pub run: Option<PathBuf>,
    /// A model spec, when not evaluating a run folder.
    #[arg(long)]
    pub model: Option<String>,
    /// Weights: a state dict (.pt, .safetensors) or a checkpoint of the run (e.g. best.pt).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Output units of the model given by --model [default: the registry's, e.g. 1000 for ImageNet models].
    #[arg(long)]
    pub num_classes: Option<i64>,
    /// The data [default: the run's validation data]. Class folders are matched to the run's classes by name.
    #[arg(long)]
    pub data: Option<String>,
    #[arg(long, default_value_t = 256)]
    pub batch_size: usize,
    #[arg(long)]
    pub device: Option<String>,
}

pub fn run(args: EvaluateArgs) -> Result<()> {
    if args.run.is_some() && (args.model.is_some() || args.num_classes.is_some()) {
        return Err(Error::config(
            "--run takes the model and its classes from the run folder: give --run DIR, or --model NAME --weights W \
             [--num-classes N], not both",
        ));
    }
    let loaded = load_model(&ModelSource {
        run: args.run.clone(),
        model: args.model.clone(),
        weights: args.weights.clone(),
        num_classes: args.num_classes,
        device: args.device.clone(),
        ..ModelSource::default()
    })?;
    let data = match (&args.data, &loaded.config) {
        (Some(spec), c) => crate::data::load(spec, c.as_ref().map_or(0, |c| c.seed))?,
        (None, Some(c)) if crate::data::workers::image_folder_spec(&c.data)?.is_some() => {
            // An image folder's run: its validation set through the same pipeline and evaluation transform.
            match crate::data::workers::for_run(c)? {
                Some((_, Some(v), _)) => v,
                Some((t, None, _)) => crate::data::workers::for_evaluation(&t),
                None => return Err(Error::config("the run's data is no longer an image folder")),
            }
        }
        (None, Some(c)) => {
            let full = crate::data::load(&c.data, c.seed)?;
            match (&c.validation_data, c.validation_split) {
                (Some(v), _) => crate::data::load(v, c.seed)?,
                (None, Some(f)) => full.split_validation(f)?.1,
                (None, None) => full,
            }
        }
        (None, None) => return Err(Error::config("give --data to evaluate on")),
    };
    let data = match loaded.task {
        Some(task) => crate::run::conform_to(data, task, loaded.class_names.as_ref())?,
        None => data,
    };
    let (got, want) = (data.sample_shape(), &loaded.input_shape);
    let result = crate::util::catch_torch(|| loaded.trainer.evaluate(&data, args.batch_size));
    let logs = match result {
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
        Err(e) => return Err(Error::data(&data.name, format!("the model cannot take it: {e}"))),
    };
    let line: Vec<String> = logs.iter().map(|(k, v)| format!("{k}: {v:.4}")).collect();
    println!("{} samples - {}", data.len(), line.join(" - "));
    Ok(())
}
