//! One workload of `scripts/bench` on tchzoo's real training path: a model from the library, our optimizer, and
//! the `Trainer`'s `fit` with its metrics (silent, no run folder), on data already in memory. Prints one JSON
//! object: `name`, `steps`, `seconds` (the `fit` call only), `steps_per_s`, `peak_rss_mb` (VmHWM of this process).
//! `scripts/bench.py` is the same workload in Python PyTorch; `scripts/bench` runs both, alternating.
//!
//! Run: `cargo run --release --bin tchzoo-bench -- --workload moons_mlp --threads 2`
use anyhow::{bail, Result};
use clap::Parser;
use tch::{Device, Kind, Tensor};
use tchzoo::data::{Dataset, Task};
use tchzoo::models::resnet::{ResNet, ResNetConfig, Stem};
use tchzoo::models::Model;
use tchzoo::nn::VarStore;
use tchzoo::optim::{Optimizer, OptimizerConfig, OptimizerKind};
use tchzoo::train::metrics::{Loss, Metric};
use tchzoo::train::progress::Verbosity;
use tchzoo::train::trainer::{FitConfig, Trainer};

#[derive(Parser)]
struct Args {
    /// moons_mlp, lenet5_digits, resnet18_cifar, lstm_forecaster, entity_embedding, image_pipeline or
    /// resnet18_folder; `_fused` after
    /// moons_mlp or lenet5_digits: the same with the fused optimizer (`fused=True` on the Python side).
    #[arg(long)]
    workload: String,
    /// Intra-op threads (`torch.set_num_threads` on the Python side).
    #[arg(long, default_value_t = 1)]
    threads: i32,
    /// A handful of steps: checks that it runs, times nothing.
    #[arg(long)]
    quick: bool,
    /// image_pipeline: the image folder to read.
    #[arg(long)]
    data: Option<std::path::PathBuf>,
    /// image_pipeline: decoding threads.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// image_pipeline, resnet18_folder: DCT-domain JPEG downscaling (`--decode-scaling` of `tchzoo train`), on|off.
    #[arg(long, default_value = "off")]
    decode_scaling: String,
    /// image_pipeline: the RandomResizedCrop size (the row's is 224).
    #[arg(long, default_value_t = 224)]
    crop_size: u32,
}

/// `image_pipeline`: the input pipeline alone, one epoch of a folder (decode, RandomResizedCrop(224), flip,
/// normalise; batches of 64, shuffled), as `scripts/bench.py` times torchvision's ImageFolder + DataLoader. Its
/// `steps` are images.
fn image_pipeline(args: &Args) -> Result<serde_json::Value> {
    use tchzoo::data::transforms::{Interpolation, Transforms};
    use tchzoo::data::workers::{folder_dataset, DataLoader, WorkerConfig};
    let Some(dir) = &args.data else { bail!("image_pipeline needs --data DIR") };
    let mut t = Transforms::preset(
        args.crop_size,
        0.875,
        vec![0.485, 0.456, 0.406],
        vec![0.229, 0.224, 0.225],
        Interpolation::Bilinear,
    );
    t.decode_scaling = args.decode_scaling == "on";
    let workers = WorkerConfig { workers: args.workers.max(1), prefetch: 2, skip_bad: false };
    let data = folder_dataset(dir, t, true, workers, 1)?;
    let started = std::time::Instant::now();
    let mut images = 0i64;
    let mut checksum = 0f64;
    for batch in DataLoader::new(&data, 64, true, 1).epoch(0) {
        let (xs, _) = batch?;
        images += xs.size()[0];
        checksum += xs.double_value(&[0, 0, 0, 0]);
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(serde_json::json!({
        "name": args.workload,
        "steps": images,
        "seconds": seconds,
        "steps_per_s": images as f64 / seconds,
        "peak_rss_mb": peak_rss_mb(),
        "final_loss": checksum,
        "threads": args.threads,
        "workers": args.workers,
    }))
}

/// `resnet18_folder`: end to end, ResNet-18 (8 classes, ImageNet stem) trained one epoch at 112×112 on an image
/// folder through the lazy pipeline (decode, RandomResizedCrop(112), flip, normalise; `--workers` threads), batch
/// 32, SGD momentum, with `fit`'s metrics, as `scripts/bench.py` trains torchvision's resnet18 on ImageFolder +
/// DataLoader. Its `steps` are images.
fn resnet18_folder(args: &Args) -> Result<serde_json::Value> {
    use tchzoo::data::transforms::{Interpolation, Transforms};
    use tchzoo::data::workers::{folder_dataset, WorkerConfig};
    let Some(dir) = &args.data else { bail!("resnet18_folder needs --data DIR") };
    let mut t =
        Transforms::preset(112, 0.875, vec![0.485, 0.456, 0.406], vec![0.229, 0.224, 0.225], Interpolation::Bilinear);
    t.decode_scaling = args.decode_scaling == "on";
    let workers = WorkerConfig { workers: args.workers.max(1), prefetch: 2, skip_bad: false };
    let data = folder_dataset(dir, t, true, workers, 1)?;
    let classes = data.class_names.as_ref().map_or(0, |c| c.len());
    let store = VarStore::new(Device::Cpu);
    let model = tchzoo::models::build("resnet18", &store, classes as i64, &[3, 112, 112])?;
    let mut sgd = OptimizerConfig::new(OptimizerKind::Sgd);
    (sgd.hyper.lr, sgd.hyper.momentum) = (0.01, 0.9);
    let optimizer = Optimizer::new(sgd, store.parameters())?;
    let mut trainer = Trainer::new(model, store, optimizer, Loss::CrossEntropy, Metric::defaults(Loss::CrossEntropy));
    let config = FitConfig {
        epochs: 1,
        batch_size: 32,
        shuffle: true,
        seed: 1,
        output: Verbosity::Silent.into(),
        ..FitConfig::default()
    };
    let started = std::time::Instant::now();
    let history = trainer.fit(&data, None, &config, &mut [])?;
    let seconds = started.elapsed().as_secs_f64();
    let images = data.len();
    Ok(serde_json::json!({
        "name": args.workload,
        "steps": images,
        "seconds": seconds,
        "steps_per_s": images as f64 / seconds,
        "peak_rss_mb": peak_rss_mb(),
        "final_loss": history.last("loss").unwrap_or(f64::NAN),
        "threads": args.threads,
        "workers": args.workers,
    }))
}

/// `index_1m` (not in the default table): the index alone of an image folder (`data::folder::index`, what training
/// builds before the first batch), as `scripts/bench.py` times torchvision's `ImageFolder(root)`. Its `steps` are
/// files.
fn index_folder(args: &Args) -> Result<serde_json::Value> {
    let Some(dir) = &args.data else { bail!("index_1m needs --data DIR") };
    let started = std::time::Instant::now();
    let index = tchzoo::data::folder::index(dir)?;
    let seconds = started.elapsed().as_secs_f64();
    Ok(serde_json::json!({
        "name": args.workload,
        "steps": index.len(),
        "seconds": seconds,
        "steps_per_s": index.len() as f64 / seconds,
        "peak_rss_mb": peak_rss_mb(),
        "final_loss": index.class_names.len(),
        "threads": args.threads,
    }))
}

/// A workload: model, data, optimizer, loss and epochs, as `scripts/bench.py` builds it.
struct Workload {
    model: Box<dyn Model>,
    store: VarStore,
    data: Dataset,
    optimizer: OptimizerConfig,
    loss: Loss,
    epochs: usize,
    batch_size: usize,
    shuffle: bool,
}

fn build(name: &str, quick: bool) -> Result<Workload> {
    let store = VarStore::new(Device::Cpu);
    let mut sgd = OptimizerConfig::new(OptimizerKind::Sgd);
    (sgd.hyper.lr, sgd.hyper.momentum) = (0.01, 0.9);
    let adam = OptimizerConfig::new(OptimizerKind::Adam);
    Ok(match name {
        // Full batch of 100: one step per epoch, where Python's per-step overhead dominates.
        "moons_mlp" => {
            let data = tchzoo::data::load("moons:n_samples=100,noise=0.2", 1)?;
            let model = tchzoo::models::build("mlp:hidden=500", &store, 1, &[2])?;
            let epochs = if quick { 5 } else { 4000 };
            let loss = Loss::BinaryCrossEntropy;
            Workload { model, store, data, optimizer: adam, loss, epochs, batch_size: 100, shuffle: false }
        }
        "lenet5_digits" => {
            let data = tchzoo::data::load("digits", 1)?;
            let model = tchzoo::models::build("lenet5", &store, 10, &[1, 32, 32])?;
            let (data, epochs) = if quick { (data.slice(0, 128), 1) } else { (data, 10) };
            let loss = Loss::CrossEntropy;
            Workload { model, store, data, optimizer: sgd, loss, epochs, batch_size: 64, shuffle: true }
        }
        // torchvision's resnet18 with the CIFAR stem (3×3 conv, no max pool), 30 steps of 64 random images.
        "resnet18_cifar" => {
            let config = ResNetConfig { stem: Stem::Cifar, ..ResNetConfig::resnet18() };
            let model: Box<dyn Model> = Box::new(ResNet::new(&store.root(), &config, 3, 10));
            let (batch, steps) = if quick { (4, 2) } else { (64, 30) };
            tch::manual_seed(1);
            let xs = Tensor::randn([batch * steps, 3, 32, 32], (Kind::Float, Device::Cpu));
            let ys = Tensor::randint(10, [batch * steps], (Kind::Int64, Device::Cpu));
            let data = Dataset::new("random 3×32×32", xs, ys, Task::Classification { n_classes: 10 })?;
            let loss = Loss::CrossEntropy;
            Workload { model, store, data, optimizer: sgd, loss, epochs: 1, batch_size: batch as usize, shuffle: true }
        }
        // The seed's forecaster on the sunspots (examples/lstm_forecast): 12 years in, the next out, LSTM(64).
        "lstm_forecaster" => {
            let data = tchzoo::data::load("series:path=data/sunspots.csv,column=sunactivity,n_seq=12,n_pred=1", 1)?;
            let model = tchzoo::models::build("lstm:units=64", &store, 1, &[12, 1])?;
            let epochs = if quick { 1 } else { 50 };
            let loss = Loss::Mse;
            Workload { model, store, data, optimizer: adam, loss, epochs, batch_size: 32, shuffle: true }
        }
        // Les Misérables co-appearances (examples/entity_embeddings) with 4 negatives per positive.
        "entity_embedding" => {
            let data = tchzoo::data::load("pairs:path=data/les_miserables.csv,negatives=4", 1)?;
            let model = tchzoo::models::build("entity_embedding:entities=77,links=77,dim=50", &store, 1, &[2])?;
            let epochs = if quick { 1 } else { 200 };
            let loss = Loss::BinaryCrossEntropy;
            Workload { model, store, data, optimizer: adam, loss, epochs, batch_size: 1024, shuffle: true }
        }
        other => bail!("unknown workload '{other}'"),
    })
}

/// The peak resident set of this process (VmHWM), in MiB.
fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() -> Result<()> {
    let args = Args::parse();
    tchzoo::optim::keep_freed_memory();
    tch::set_num_threads(args.threads);
    tch::manual_seed(1);
    if args.workload == "image_pipeline" {
        println!("{}", image_pipeline(&args)?);
        return Ok(());
    }
    if args.workload == "index_1m" {
        println!("{}", index_folder(&args)?);
        return Ok(());
    }
    if args.workload == "resnet18_folder" {
        println!("{}", resnet18_folder(&args)?);
        return Ok(());
    }
    let fused = matches!(args.workload.as_str(), "moons_mlp_fused" | "lenet5_digits_fused");
    let mut w = build(args.workload.trim_end_matches("_fused"), args.quick)?;
    if fused {
        w.optimizer.implementation = tchzoo::optim::OptimizerImpl::Fused;
    }
    let metrics = Metric::defaults(w.loss);
    let optimizer = Optimizer::new(w.optimizer, w.store.parameters())?;
    let mut trainer = Trainer::new(w.model, w.store, optimizer, w.loss, metrics);
    let config = FitConfig {
        epochs: w.epochs,
        batch_size: w.batch_size,
        shuffle: w.shuffle,
        seed: 1,
        output: Verbosity::Silent.into(),
        ..FitConfig::default()
    };
    let steps = w.epochs * w.data.len().div_ceil(w.batch_size);
    let started = std::time::Instant::now();
    let history = trainer.fit(&w.data, None, &config, &mut [])?;
    let seconds = started.elapsed().as_secs_f64();
    let loss = history.last("loss").unwrap_or(f64::NAN);
    let out = serde_json::json!({
        "name": args.workload,
        "steps": steps,
        "seconds": seconds,
        "steps_per_s": steps as f64 / seconds,
        "peak_rss_mb": peak_rss_mb(),
        "final_loss": loss,
        "threads": args.threads,
    });
    println!("{out}");
    Ok(())
}
