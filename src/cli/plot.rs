//! `tchzoo plot activations [-o activations.png] [--names relu,tanh]`: each activation beside its derivative;
//! `tchzoo plot RUN_DIR|history.json [-o curves.png]`: a run's training curves, redrawn.
use std::path::{Path, PathBuf};

use clap::Args;

use crate::error::{Error, Result};
use crate::nn::Activation;

#[derive(Debug, Args)]
pub struct PlotArgs {
    /// `activations`, or one or more run folders (or history.json files): one run is redrawn with its marks,
    /// several are overlaid for comparison.
    #[arg(required = true)]
    pub what: Vec<String>,
    /// The image to write, .png or .svg [default: activations.png; for a run: curves.png beside its history].
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// The activations to draw, comma-separated [default: the notes' fifteen].
    #[arg(long, value_delimiter = ',')]
    pub names: Option<Vec<String>>,
    /// The panels of a run's curves, comma-separated (e.g. loss,accuracy) [default: every metric].
    #[arg(long, value_delimiter = ',')]
    pub metrics: Option<Vec<String>>,
    /// Draw a run's embeddings in 2-D (PCA) instead of its curves [default output: embeddings.png in the run].
    #[arg(long)]
    pub embeddings: bool,
    /// With --embeddings: the entity whose nearest neighbours are highlighted.
    #[arg(long, requires = "embeddings")]
    pub query: Option<String>,
    /// With --query: how many to highlight, the query included (as `tchzoo similar -k`).
    #[arg(short, default_value_t = 5, requires = "query")]
    pub k: usize,
}

pub fn run(args: PlotArgs) -> Result<()> {
    let written = if args.embeddings {
        let [run] = args.what.as_slice() else {
            return Err(Error::config("--embeddings draws one run folder: tchzoo plot RUN_DIR --embeddings"));
        };
        crate::cli::similar::plot_run(Path::new(run), args.query.as_deref(), args.k, args.output)?
    } else if args.what.len() == 1 && args.what[0] == "activations" {
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
        let targets: Vec<&Path> = args.what.iter().map(Path::new).collect();
        plot_runs(&targets, args.output, args.metrics)?
    };
    println!("wrote {}", written.display());
    Ok(())
}

fn history_path(target: &Path) -> Result<PathBuf> {
    let history_path = if target.is_dir() { target.join("history.json") } else { target.to_path_buf() };
    // An interrupted run has no history.json yet; its resume state holds the history of the completed epochs.
    let resumable = target.is_dir() && target.join(crate::train::resume::RESUME_FILE).is_file();
    if !(history_path.is_file() || resumable) {
        return Err(Error::config(format!(
            "plot {}: no such run folder or history file; use `tchzoo plot activations` or a run folder with a \
             history.json",
            target.display()
        )));
    }
    Ok(history_path)
}

/// The history at `path` (history.json), or else the resume state's in its folder (a run still going or stopped).
fn load_history(path: &Path) -> Result<crate::train::History> {
    if path.is_file() {
        return crate::train::History::load_json(path);
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    Ok(crate::train::resume::read(dir)?.history)
}

/// Redraws the curves of a run folder or a history.json; returns the image written.
pub fn plot_run(target: &Path, output: Option<PathBuf>) -> Result<PathBuf> {
    plot_runs(&[target], output, None)
}

/// One run: its curves with the best epoch and early stopping marked (read from its config.json and
/// resume.json). Several: overlaid, labelled by folder name. Returns the image written.
pub fn plot_runs(targets: &[&Path], output: Option<PathBuf>, metrics: Option<Vec<String>>) -> Result<PathBuf> {
    let paths = targets.iter().map(|t| history_path(t)).collect::<Result<Vec<_>>>()?;
    let histories = paths.iter().map(|p| load_history(p)).collect::<Result<Vec<_>>>()?;
    let labels: Vec<String> = paths
        .iter()
        .map(|p| {
            let dir = p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
            dir.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| dir.display().to_string())
        })
        .collect();
    let mut marks = crate::plot::CurveMarks::default();
    if paths.len() == 1 {
        let dir = paths[0].parent().unwrap_or(Path::new("."));
        if let Ok(config) = crate::config::RunConfig::from_json_file(&dir.join("config.json")) {
            let states = crate::train::resume::read(dir).map(|s| s.callbacks).unwrap_or_default();
            marks = crate::run::curve_marks(&config, &states);
        }
    }
    let out = match output {
        Some(o) => o,
        None if paths.len() == 1 => paths[0].with_file_name("curves.png"),
        None => PathBuf::from("comparison.png"),
    };
    let runs: Vec<(&str, &crate::train::History)> = labels.iter().map(String::as_str).zip(histories.iter()).collect();
    crate::plot::plot_runs(&runs, &out, &crate::plot::CurveOptions { metrics, marks })?;
    Ok(out)
}
