//! `tchzoo plot activations [-o activations.png] [--names relu,tanh]`: each activation beside its derivative;
//! `tchzoo plot RUN_DIR|history.json [-o curves.png]`: a run's training curves, redrawn.
use std::path::{Path, PathBuf};

use clap::Args;

use crate::error::{Error, Result};
use crate::nn::Activation;

#[derive(Debug, Args)]
pub struct PlotArgs {
    /// `activations`, or a run folder (or its history.json) whose training curves to redraw.
    pub what: String,
    /// The image to write, .png or .svg [default: activations.png; for a run: curves.png beside its history].
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// The activations to draw, comma-separated [default: the notes' fifteen].
    #[arg(long, value_delimiter = ',')]
    pub names: Option<Vec<String>>,
}

pub fn run(args: PlotArgs) -> Result<()> {
    let written = if args.what == "activations" {
        let acts = match &args.names {
            None => crate::plot::activations::DEFAULT.to_vec(),
            Some(names) => names.iter().map(|n| n.parse::<Activation>()).collect::<Result<Vec<_>>>()?,
        };
        let out = args.output.unwrap_or_else(|| PathBuf::from("activations.png"));
        crate::plot::activations::plot_activations(&acts, &out)?;
        out
    } else {
        if args.names.is_some() {
            return Err(Error::config("--names belongs to `tchzoo plot activations`"));
        }
        plot_run(Path::new(&args.what), args.output)?
    };
    println!("wrote {}", written.display());
    Ok(())
}

/// Redraws the curves of a run folder or a history.json; returns the image written.
pub fn plot_run(target: &Path, output: Option<PathBuf>) -> Result<PathBuf> {
    let history_path = if target.is_dir() { target.join("history.json") } else { target.to_path_buf() };
    if !history_path.is_file() {
        return Err(Error::config(format!(
            "plot {}: no such run folder or history file; use `tchzoo plot activations` or a run folder with a \
             history.json",
            target.display()
        )));
    }
    let history = crate::train::History::load_json(&history_path)?;
    let out = output.unwrap_or_else(|| history_path.with_file_name("curves.png"));
    crate::plot::plot_history(&history, &out)?;
    Ok(out)
}
