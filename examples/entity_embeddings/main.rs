//! The seed's book-embedding project on networkx's Les Misérables co-appearance graph (exported by scripts/setup to
//! data/les_miserables.csv: 77 characters, 254 co-appearances, both directions): `entity_embedding` (character
//! and co-appearing-character tables of 50 numbers, cosine, Dense(1) + sigmoid) on the pairs with 2 sampled
//! negatives per positive, then the nearest characters to `--query` in the seed's listing format and the 2-D PCA
//! of the character vectors with the query's neighbours highlighted.
//!
//! Expected: validation accuracy ≈ 0.85 after 40 epochs (a few seconds on a CPU); Valjean's nearest are characters
//! of his story (Javert first), see the README beside this file.
//!
//! Run: `cargo run --release --example entity_embeddings -- --query Valjean`
//! (`--config examples/entity_embeddings/davis_southern_women.json --query "Evelyn Jefferson"` for the Davis
//! Southern Women graph, `les_miserables_regression.json` for the seed's regression task).
use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;
use tchzoo::cli::similar::load_run_embeddings;
use tchzoo::config::RunConfig;
use tchzoo::train::progress::Verbosity;

#[derive(Parser)]
struct Args {
    /// A run config whose data is `pairs:` and model `entity_embedding`.
    #[arg(long, default_value = "examples/entity_embeddings/les_miserables.json")]
    config: PathBuf,
    /// The entity whose neighbours are listed and highlighted.
    #[arg(long, default_value = "Valjean")]
    query: String,
    #[arg(short, default_value_t = 5)]
    k: usize,
    #[arg(long, default_value = "auto")]
    device: String,
    /// The run folder [default: the config's `out`].
    #[arg(long)]
    out: Option<PathBuf>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let mut config = RunConfig::from_user_file(&args.config)?;
    config.device = args.device.clone();
    if let Some(out) = &args.out {
        config.out = Some(out.display().to_string());
    }
    let dir = tchzoo::run::run_dir(&config);
    // A fresh run each time: the run folder is the example's output.
    let _ = std::fs::remove_dir_all(&dir);
    let outcome = tchzoo::run::train(&config, Verbosity::Silent, vec![])?;
    println!("{}", outcome.summary_line(&config));
    let emb = load_run_embeddings(&outcome.dir, "entity", None)?;
    println!("\n{}", emb.listing(&args.query, args.k, false)?);
    println!("{}", emb.listing(&args.query, 3, true)?);
    let png = outcome.dir.join("embeddings.png");
    emb.plot(Some(&args.query), args.k + 1, &png)?;
    println!("wrote {}", png.display());
    Ok(())
}
