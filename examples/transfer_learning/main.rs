//! Transfer learning on the digits, as the seed's "Channel Boosted CNN using TL" note frames it: a LeNet-5 trained
//! on one task (digits 0–5, all 1,078 of them) is fine-tuned onto another (digits 6–9) from only `--per-class`
//! examples of each new digit; the rest of the 6–9s (about 620) are the test set.
//!
//! 1. pretrain on task A (Adam, `--epochs`);
//! 2. load its weights into a 4-class LeNet-5 with `load_pretrained` (the 6-class classifier is dropped and
//!    reported) and print the test accuracy before any fine-tuning (a fresh classifier: near chance);
//! 3. stage 1: features frozen (`frozen_names("features")`), the classifier trains; print the accuracy;
//! 4. stage 2: everything trains, at a tenth of the learning rate; print the accuracy;
//! 5. for comparison, the same LeNet-5 from scratch on the same few examples, as many epochs as stages 1 + 2.
//!
//! Run: `cargo run --release --example transfer_learning` (about 20 s on 2 CPU cores).
use anyhow::Result;
use clap::Parser;
use tch::Tensor;
use tchzoo::data::{self, Dataset};
use tchzoo::models;
use tchzoo::nn::VarStore;
use tchzoo::optim::{Optimizer, OptimizerConfig, OptimizerKind};
use tchzoo::train::progress::Verbosity;
use tchzoo::train::transfer::{frozen_names, load_pretrained, set_trainable};
use tchzoo::train::{FitConfig, Loss, Metric, Trainer};

#[derive(Parser)]
struct Args {
    /// Training examples of each new digit (6, 7, 8, 9).
    #[arg(long, default_value_t = 10)]
    per_class: i64,
    /// Epochs of pretraining, and of each fine-tuning stage.
    #[arg(long, default_value_t = 15)]
    epochs: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// What stage 1 freezes: `features.` (LeNet's convolutions, the module named `features`) or `features`
    /// (everything but the final classifier, as `--freeze features`).
    #[arg(long, default_value = "features.")]
    freeze: String,
}

fn trainer(store: VarStore, model: Box<dyn models::Model>, lr: f64) -> Result<Trainer> {
    let mut c = OptimizerConfig::new(OptimizerKind::Adam);
    c.hyper.lr = lr;
    let opt = Optimizer::new(c, store.parameters())?;
    Ok(Trainer::new(model, store, opt, Loss::CrossEntropy, vec![Metric::Accuracy]))
}

fn fit(t: &mut Trainer, data: &Dataset, epochs: usize, seed: u64) -> Result<()> {
    let config = FitConfig { epochs, batch_size: 16, seed, output: Verbosity::Silent.into(), ..FitConfig::default() };
    t.fit(data, None, &config, &mut [])?;
    Ok(())
}

fn accuracy(t: &Trainer, test: &Dataset) -> Result<f64> {
    Ok(t.evaluate(test, 256)?["accuracy"])
}

/// Task B: the first `per_class` examples of each of 6–9 for training, the others for testing.
fn task_b(per_class: i64) -> Result<(Dataset, Dataset)> {
    let all = data::load("digits:classes=6-9", 0)?;
    let labels: Vec<i64> = Vec::try_from(&all.ys)?;
    let mut seen = [0i64; 4];
    let (mut train, mut test) = (vec![], vec![]);
    for (i, &y) in labels.iter().enumerate() {
        let pick = if seen[y as usize] < per_class { &mut train } else { &mut test };
        pick.push(i as i64);
        seen[y as usize] += 1;
    }
    let subset = |idx: &[i64]| -> Result<Dataset> {
        let idx = Tensor::from_slice(idx);
        let mut d = Dataset::new("digits 6-9", all.xs.index_select(0, &idx), all.ys.index_select(0, &idx), all.task)?;
        d.class_names = all.class_names.clone();
        Ok(d)
    };
    Ok((subset(&train)?, subset(&test)?))
}

fn main() -> Result<()> {
    let args = Args::parse();
    tch::manual_seed(args.seed as i64);
    let task_a = data::load("digits:classes=0-5", 0)?;
    let (train_b, test_b) = task_b(args.per_class)?;
    let shape = task_a.sample_shape();
    println!(
        "task A: digits 0-5, {} images; task B: digits 6-9, {} training images ({} per digit), {} test images",
        task_a.len(),
        train_b.len(),
        args.per_class,
        test_b.len()
    );

    let store = VarStore::new(tch::Device::Cpu);
    let model = models::build("lenet5", &store, 6, &shape)?;
    let mut a = trainer(store, model, 2e-3)?;
    fit(&mut a, &task_a, args.epochs, args.seed)?;
    let pretrained = std::env::temp_dir().join(format!("tchzoo-transfer-{}.pt", std::process::id()));
    tchzoo::checkpoint::save_weights(&a.store, &pretrained)?;
    println!("pretrained on task A: training accuracy {:.3}", accuracy(&a, &task_a)?);

    let store = VarStore::new(tch::Device::Cpu);
    let model = models::build("lenet5", &store, 4, &shape)?;
    let report = load_pretrained(&store, &pretrained, "classifier.4")?;
    std::fs::remove_file(&pretrained)?;
    println!("load_pretrained: {}", report.describe());
    let frozen = frozen_names(&store, &args.freeze, "classifier.4")?;
    set_trainable(&store, &frozen, false);
    let mut b = trainer(store, model, 1e-2)?;
    println!("task B test accuracy before fine-tuning (new classifier): {:.3}", accuracy(&b, &test_b)?);
    fit(&mut b, &train_b, args.epochs, args.seed)?;
    println!("after stage 1 ({} frozen, {} epochs): {:.3}", args.freeze, args.epochs, accuracy(&b, &test_b)?);
    set_trainable(&b.store, &frozen, true);
    b.optimizer.set_lr(1e-3);
    fit(&mut b, &train_b, args.epochs, args.seed + 1)?;
    println!("after stage 2 (all layers, lr 1e-3, {} epochs): {:.3}", args.epochs, accuracy(&b, &test_b)?);

    tch::manual_seed(args.seed as i64);
    let store = VarStore::new(tch::Device::Cpu);
    let model = models::build("lenet5", &store, 4, &shape)?;
    let mut scratch = trainer(store, model, 2e-3)?;
    fit(&mut scratch, &train_b, 2 * args.epochs, args.seed)?;
    println!("from scratch on the same examples ({} epochs): {:.3}", 2 * args.epochs, accuracy(&scratch, &test_b)?);
    Ok(())
}
