//! The text classifier of issue 7, `Embedding(mask_zero) → LSTM → Dense → softmax`, with the seed's
//! `Embedding(input_dim, output_dim, input_length)` set-up: a vocabulary of the 1,000 most frequent words (+ padding
//! and out-of-vocabulary: input_dim 1,002), 32 numbers per word, sequences padded to 24 tokens.
//!
//! Data (real, offline): data/scipy_docstrings.csv, written by scripts/setup from the pinned SciPy: the summary
//! line of each public function or class of seven subpackages (linalg, optimize, signal, special, stats, ndimage,
//! interpolate), labelled with its subpackage; 1,060 texts, the last 20 % for validation.
//!
//! Prints the validation accuracy, the subpackage the model gives to a few new sentences, and the words nearest to
//! "matrix" in the learned embedding (as `tchzoo similar` lists them). Measured (CPU, seed 42): validation
//! accuracy 0.86 after 20 epochs (the largest class is 0.27 of the texts).
//!
//! Run: `cargo run --release --example text_classifier`
use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;
use tch::Tensor;
use tchzoo::cli::similar::load_run_embeddings;
use tchzoo::config::RunConfig;
use tchzoo::data::sequences::{load_text_with_vocabulary, pad_sequence, Side};
use tchzoo::run::{load_model, ModelSource};
use tchzoo::train::progress::Verbosity;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "examples/text_classifier/scipy_docstrings.json")]
    config: PathBuf,
    #[arg(long, default_value = "auto")]
    device: String,
}

const SENTENCES: &[&str] = &[
    "Compute the eigenvalues of a symmetric matrix.",
    "Probability density function of the gamma distribution.",
    "Apply a median filter to the image.",
    "Design a digital Butterworth filter.",
    "Minimize a scalar function of several variables.",
    "Bessel function of the second kind.",
    "Cubic spline through the given data points.",
];

fn main() -> Result<()> {
    let args = Args::parse();
    let mut config = RunConfig::from_user_file(&args.config)?;
    config.device = args.device.clone();
    let dir = tchzoo::run::run_dir(&config);
    let _ = std::fs::remove_dir_all(&dir);
    let outcome = tchzoo::run::train(&config, Verbosity::Silent, vec![])?;
    println!("{}", outcome.summary_line(&config));

    // The vocabulary the run was trained with: rebuilt from its data spec, as `tchzoo similar` does.
    let spec = tchzoo::data::DataSpec::parse(&config.data, "data")?;
    let text = load_text_with_vocabulary(&spec.options)?;
    let length: usize = spec.options.get("length").map_or(Ok(50), |v| v.parse())?;
    let classes = text.data.class_names.clone().unwrap_or_default();
    let loaded = load_model(&ModelSource { run: Some(outcome.dir.clone()), ..ModelSource::default() })?;
    let mut rows = vec![];
    for s in SENTENCES {
        rows.extend(pad_sequence(&text.vocabulary.encode(s), length, Side::Pre, Side::Pre));
    }
    let xs = Tensor::from_slice(&rows).reshape([SENTENCES.len() as i64, length as i64]);
    let proba = loaded.trainer.predict_proba(&xs, 64);
    println!();
    for (i, s) in SENTENCES.iter().enumerate() {
        let p = proba.get(i as i64);
        let best = p.argmax(0, false).int64_value(&[]) as usize;
        println!("{:<58} → {} ({:.2})", s, classes[best], p.double_value(&[best as i64]));
    }
    let emb = load_run_embeddings(&outcome.dir, "embedding", None)?;
    println!("\n{}", emb.listing("matrix", 6, false)?);
    Ok(())
}
