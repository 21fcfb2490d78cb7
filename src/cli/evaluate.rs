//! `tchzoo evaluate`: loss and metrics of a saved model on data (Keras' `evaluate` after `load_model`).
use std::path::PathBuf;

use clap::Args;

use crate::error::{Error, Result};
use crate::run::ModelSource;

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
    /// The data [default: the run's validation data, split as in training]. Class folders are matched to the run's
    /// classes by name; an image folder gets the run's recorded evaluation transform (or the registry's, with --model).
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
    let source = ModelSource {
        run: args.run.clone(),
        model: args.model.clone(),
        weights: args.weights.clone(),
        num_classes: args.num_classes,
        device: args.device.clone(),
        ..ModelSource::default()
    };
    let found = crate::inference::evaluate(&source, args.data.as_deref(), args.batch_size)?;
    for note in &found.notes {
        eprintln!("{note}");
    }
    let line: Vec<String> = found.logs.iter().map(|(k, v)| format!("{k}: {v:.4}")).collect();
    println!("{} samples - {}", found.samples, line.join(" - "));
    Ok(())
}
