//! `tchzoo tune lr`: the learning-rate range test (Lightning's `Tuner.lr_find`) on the data and model `train`
//! would use, with `train`'s flags.
use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::train::TrainArgs;
use crate::error::{Error, Result};
use crate::train::lr_find::{self, LrFinderConfig};

#[derive(Debug, Args)]
pub struct TuneArgs {
    #[command(subcommand)]
    pub command: TuneCommand,
}

#[derive(Debug, Subcommand)]
pub enum TuneCommand {
    /// The learning-rate range test of Lightning's Tuner.lr_find: the lr grows exponentially from --min-lr to
    /// --max-lr over --num-steps optimizer steps; the suggestion is the steepest descent of the smoothed loss.
    /// Writes lr_find.json and lr_find.png in --out (default: a new run folder). Takes train's data and model flags.
    Lr(Box<LrArgs>),
}

#[derive(Debug, Args)]
pub struct LrArgs {
    #[command(flatten)]
    pub train: TrainArgs,
    /// The first learning rate.
    #[arg(long, default_value_t = 1e-8, allow_negative_numbers = true)]
    pub min_lr: f64,
    /// The last learning rate.
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub max_lr: f64,
    /// Optimizer steps from --min-lr to --max-lr (Lightning's num_training).
    #[arg(long, default_value_t = 100, allow_negative_numbers = true)]
    pub num_steps: i64,
    /// Stop when the smoothed loss passes this many times its best, or `none`.
    #[arg(long, default_value = "4.0")]
    pub early_stop_threshold: String,
}

pub fn run(args: TuneArgs) -> Result<()> {
    match args.command {
        TuneCommand::Lr(a) => lr(*a),
    }
}

fn lr(args: LrArgs) -> Result<()> {
    let t = &args.train;
    if t.resume.is_some() {
        return Err(Error::config("tune lr starts from a model's initial weights; use --weights FILE, not --resume"));
    }
    if t.distributed || t.sync_bn || t.dist_check {
        return Err(Error::config("tune lr runs in one process; leave out --distributed, --sync-bn and --dist-check"));
    }
    if t.hyper.lr.is_some() {
        return Err(Error::config("tune lr sets the learning rate itself (--min-lr to --max-lr); leave out --lr"));
    }
    let early_stop_threshold =
        match args.early_stop_threshold.trim() {
            "none" | "None" => None,
            v => Some(v.parse::<f64>().map_err(|_| {
                Error::config(format!("--early-stop-threshold '{v}': give a number > 0, e.g. 4, or none"))
            })?),
        };
    let num_training = usize::try_from(args.num_steps).map_err(|_| {
        Error::config(format!("--num-steps {}: the range test needs at least 2 steps (default 100)", args.num_steps))
    })?;
    let finder = LrFinderConfig {
        min_lr: args.min_lr,
        max_lr: args.max_lr,
        num_training,
        early_stop_threshold,
        ..Default::default()
    };
    finder.validate()?;
    let mut config = t.resolve()?;
    config.lr_auto = false;
    let mut run = config.resolve()?;
    lr_find::fit_config(&run)?;
    if let Some(out) = &config.out {
        let p = PathBuf::from(out);
        if out.is_empty() {
            return Err(Error::config("--out '' names no folder; give one, e.g. --out runs/lr-find"));
        }
        if p.exists() && !p.is_dir() {
            return Err(Error::config(format!("--out {out} is a file; give a folder")));
        }
    }
    let crate::run::Prepared { mut trainer, train, .. } = crate::run::prepare_in(&run, None)?;
    run.resolve_augment(&train.sample_shape())?;
    let fit = lr_find::fit_config(&run)?;
    super::install_signal_handler();
    let result = lr_find::lr_find(&mut trainer, &train, &fit, &finder)?;
    let dir = match &config.out {
        Some(out) => {
            let dir = PathBuf::from(out);
            crate::util::create_dir_all(&dir)?;
            dir
        }
        None => crate::run::claim_default_dir(&config)?,
    };
    result.save_json(&dir.join(lr_find::JSON_FILE))?;
    result.plot(&dir.join(lr_find::PLOT_FILE))?;
    println!("{} → {}", result.summary_line(), dir.display());
    Ok(())
}
