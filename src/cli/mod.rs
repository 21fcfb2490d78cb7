//! The command-line interface: flags become a config, then the library does the work.
use clap::{Parser, Subcommand};

use crate::error::Result;

pub mod average;
pub mod convert;
pub mod doctor;
pub mod evaluate;
pub mod inspect;
pub mod models;
pub mod output;
pub mod pack;
pub mod plot;
pub mod predict;
pub mod similar;
pub mod summary;
pub mod train;
pub mod tune;

#[derive(Debug, Parser)]
#[command(
    name = "tchzoo",
    version,
    about = "Train neural networks on libtorch from Rust, with a model zoo and Keras-style fit"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train a model (with no flags: LeNet-5 on the embedded digits).
    Train(Box<train::TrainArgs>),
    /// Loss and metrics of a saved model (a run folder or --model with --weights) on data.
    Evaluate(evaluate::EvaluateArgs),
    /// Outputs of a saved model for an input tensor or image.
    Predict(predict::PredictArgs),
    /// List every architecture with its parameter count.
    Models(models::ModelsArgs),
    /// A Keras-style summary of a model: layers, output shapes, parameters.
    Summary(summary::SummaryArgs),
    /// libtorch version, CUDA and cuDNN availability, GPU and thread counts.
    Doctor(doctor::DoctorArgs),
    /// Convert a state dict between .pt/.pth/.bin (torch.save) and .safetensors.
    Convert(convert::ConvertArgs),
    /// List the tensors of a state dict or training checkpoint: name, shape, dtype, total parameters.
    Inspect(inspect::InspectArgs),
    /// Draw the activation functions beside their derivatives, or redraw a run's training curves.
    Plot(plot::PlotArgs),
    /// The nearest entities of an entity-embedding run by cosine similarity (`--least`: the farthest).
    Similar(similar::SimilarArgs),
    /// Write an image folder as WebDataset tar shards (resized, JPEG), for `--data "PREFIX-{000000..N}.tar"`.
    Pack(pack::PackArgs),
    /// Tuners: `tune lr`, the learning-rate range test (Lightning's Tuner.lr_find).
    Tune(tune::TuneArgs),
    /// Average state dicts or checkpoints of one model (uniform, or --weights): `average A.pt B.pt -o avg.pt`.
    Average(average::AverageArgs),
}

/// Parses `args` and runs the subcommand.
pub fn run<I, T>(args: I) -> Result<()>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e)
            if matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp
                    | clap::error::ErrorKind::DisplayVersion
                    | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) =>
        {
            e.exit()
        }
        Err(e) => {
            // clap's own message, first line only, as every other error: `error: unexpected argument '--epochz' …`.
            let text = e.render().to_string();
            let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("invalid arguments");
            let line = line.trim_start_matches("error: ");
            // clap's suggestion ("tip: a similar argument exists: '--epochs'") is on a later line: keep it.
            let tips: Vec<&str> = text.lines().filter_map(|l| l.trim().strip_prefix("tip: ")).collect();
            let tips = tips.iter().map(|t| format!("; {t}")).collect::<String>();
            return Err(crate::error::Error::config(format!("{line}{tips} (see tchzoo --help)")));
        }
    };
    match cli.command {
        Command::Train(a) => train::run(*a),
        Command::Models(a) => models::run(a),
        Command::Summary(a) => summary::run(a),
        Command::Doctor(a) => doctor::run(a),
        Command::Evaluate(a) => evaluate::run(a),
        Command::Predict(a) => predict::run(a),
        Command::Convert(a) => convert::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Plot(a) => plot::run(a),
        Command::Similar(a) => similar::run(a),
        Command::Pack(a) => pack::run(a),
        Command::Tune(a) => tune::run(a),
        Command::Average(a) => average::run(a),
    }
}

/// Installs the Ctrl-C / SIGTERM handler once: the first asks the running fit to stop after its batch (the run
/// then says how to resume it), the second exits at once.
pub fn install_signal_handler() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = ctrlc::set_handler(|| {
            if crate::train::resume::stop_requested() {
                eprintln!("error: interrupted twice; exiting without waiting for the batch");
                std::process::exit(130);
            }
            crate::train::resume::request_stop();
        });
    });
}
