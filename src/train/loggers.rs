//! The loggers a config asks for (`--tensorboard [DIR]`, `--tb-histograms N`, `--log-every-n-steps N`): their
//! checks, made before any data is read, and their callbacks.
use std::path::{Path, PathBuf};

use crate::config::RunConfig;
use crate::error::{Error, Result};
use crate::train::callbacks::{Callback, StepLogger, TensorBoard};
use crate::train::run_dir::RunDir;

/// `--tensorboard` without a folder: this one, inside the run folder.
pub const TENSORBOARD_DIR: &str = "tensorboard";
/// The JSON-lines step log, inside the run folder.
pub const STEPS_FILE: &str = "steps.jsonl";

/// A count flag's value: at least 1.
pub fn positive(flag: &str, n: i64) -> Result<usize> {
    if n < 1 {
        return Err(Error::config(format!("--{flag} {n}: give at least 1 (every N epochs or steps)")));
    }
    Ok(n as usize)
}

/// The event folder: relative paths inside the run folder.
fn tensorboard_dir(dir: &str, run_dir: &Path) -> PathBuf {
    RunDir::new(run_dir).place(dir)
}

fn check_dir(path: &Path, given: &str) -> Result<()> {
    if path.exists() && !path.is_dir() {
        return Err(Error::config(format!(
            "⟨tensorboard⟩ {given}: {} is a file, not a folder; give a folder for the event files",
            path.display()
        )));
    }
    Ok(())
}

/// The loggers' values: counts at least 1, `--tb-histograms` only with `--tensorboard`, a folder that is not a file.
pub fn validate(config: &RunConfig) -> Result<()> {
    for (flag, n) in [("tb-histograms", config.tb_histograms), ("log-every-n-steps", config.log_every_n_steps)] {
        if n == Some(0) {
            positive(flag, 0)?;
        }
    }
    if config.tb_histograms.is_some() && config.tensorboard.is_none() {
        return Err(Error::config("⟨tb_histograms⟩ writes into TensorBoard's files: add ⟨tensorboard⟩"));
    }
    if let Some(d) = &config.tensorboard {
        if d.trim().is_empty() {
            return Err(Error::config("⟨tensorboard⟩ '': give a folder, or ⟨tensorboard⟩ alone for RUN/tensorboard"));
        }
        if let Some(out) = config.out.as_deref().map(Path::new).or(Path::new(d).is_absolute().then(|| Path::new(""))) {
            check_dir(&tensorboard_dir(d, out), d)?;
        }
    }
    Ok(())
}

/// The config's logger callbacks for the run in `run_dir`.
pub fn callbacks(config: &RunConfig, run_dir: &Path) -> Result<Vec<Box<dyn Callback>>> {
    let mut all: Vec<Box<dyn Callback>> = vec![];
    if let Some(d) = &config.tensorboard {
        let path = tensorboard_dir(d, run_dir);
        check_dir(&path, d)?;
        // The run's config as written into its folder (with the environment), else as given.
        let text = std::fs::read_to_string(run_dir.join("config.json")).ok().or_else(|| config.to_json().ok());
        all.push(Box::new(TensorBoard::new(path, config.tb_histograms, text)));
    }
    if let Some(n) = config.log_every_n_steps {
        all.push(Box::new(StepLogger::new(RunDir::new(run_dir).join(STEPS_FILE), n)));
    }
    Ok(all)
}
