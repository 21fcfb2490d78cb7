//! The early-stopping case study of the seed notes, reproduced: moons (100 samples, noise 0.2), the first 30 for
//! training and the other 70 for testing (used as validation data, as the notes do), an MLP 2 → 500 ReLU → 1
//! sigmoid with binary cross-entropy and Adam, 4,000 epochs at batch size 32, in four scenarios:
//! 1. no early stopping;
//! 2. EarlyStopping(val_loss) with patience 0;
//! 3. EarlyStopping(val_loss) with patience 200;
//! 4. patience 200 plus ModelCheckpoint(val_accuracy, max, save_best_only) and reloading the best model.
//!
//! Each prints `Train: x.xxx, Test: y.yyy` and the stopping epoch, and saves its curves to `--out`. Expected (the
//! notes' Keras figures): Train 1.000/Test 0.914 without stopping; a stop near epoch 219 with 0.967/0.814;
//! near 1,033 with 1.000/0.943. Our figures differ in detail: another random draw of the moons and PyTorch's
//! initialisation instead of Keras' Glorot (see the README beside this file).
//!
//! Run: `cargo run --release --example early_stopping_moons -- --out runs/case-study`
use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;
use tchzoo::data;
use tchzoo::models;
use tchzoo::nn::VarStore;
use tchzoo::optim::{Optimizer, OptimizerConfig, OptimizerKind};
use tchzoo::train::callbacks::{
    Callback, EarlyStopping, EarlyStoppingConfig, Mode, ModelCheckpoint, ModelCheckpointConfig,
};
use tchzoo::train::progress::Verbosity;
use tchzoo::train::{FitConfig, Loss, Metric, Trainer};

#[derive(Parser)]
struct Args {
    /// Where the curves and the best model go.
    #[arg(long, default_value = "runs/early-stopping-moons")]
    out: PathBuf,
    #[arg(long, default_value_t = 4000)]
    epochs: usize,
    /// Seeds the moons, the initial weights and the shuffles.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value = "cpu")]
    device: String,
}

fn main() -> Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.out)?;
    let device = tchzoo::device::parse(&args.device)?;
    let moons = data::load("moons:n_samples=100,noise=0.2", args.seed)?;
    let (train, test) = (moons.slice(0, 30), moons.slice(30, 100));

    for scenario in 1..=4 {
        tch::manual_seed(args.seed as i64);
        let store = VarStore::new(device);
        let model = models::build("mlp:hidden=500", &store, 1, &[2])?;
        let opt = Optimizer::new(OptimizerConfig::new(OptimizerKind::Adam), store.parameters())?;
        let mut trainer = Trainer::new(model, store, opt, Loss::BinaryCrossEntropy, vec![Metric::Accuracy]);
        let early = |patience: usize| -> Result<Box<dyn Callback>> {
            let cfg = EarlyStoppingConfig {
                monitor: "val_loss".into(),
                mode: Mode::Min,
                patience,
                verbose: true,
                ..EarlyStoppingConfig::default()
            };
            Ok(Box::new(EarlyStopping::new(cfg)?))
        };
        let best_path = args.out.join("best_model.pt");
        let mut callbacks: Vec<Box<dyn Callback>> = match scenario {
            1 => vec![],
            2 => vec![early(0)?],
            3 => vec![early(200)?],
            _ => {
                let mut mc = ModelCheckpointConfig::new(best_path.to_str().unwrap_or("best_model.pt"));
                mc.monitor = "val_accuracy".into();
                mc.mode = Mode::Max;
                mc.save_best_only = true;
                mc.save_weights_only = true;
                mc.verbose = false;
                vec![early(200)?, Box::new(ModelCheckpoint::new(mc)?)]
            }
        };
        let fit = FitConfig {
            epochs: args.epochs,
            batch_size: 32,
            seed: args.seed,
            output: Verbosity::Silent.into(),
            ..FitConfig::default()
        };
        let history = trainer.fit(&train, Some(&test), &fit, &mut callbacks)?;
        if scenario == 4 {
            // The seed's load_model: the best epoch's weights.
            tchzoo::checkpoint::load_weights(&trainer.store, &best_path, true)?;
        }
        let train_acc = trainer.evaluate(&train, 100)?["accuracy"];
        let test_acc = trainer.evaluate(&test, 100)?["accuracy"];
        let stopped = if history.len() < args.epochs {
            format!("stopped at epoch {}", history.len())
        } else {
            "ran all epochs".into()
        };
        println!("scenario {scenario}: Train: {train_acc:.3}, Test: {test_acc:.3} ({stopped})");
        tchzoo::plot::plot_history(&history, &args.out.join(format!("scenario{scenario}.png")))?;
    }
    Ok(())
}
