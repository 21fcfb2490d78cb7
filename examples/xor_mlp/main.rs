//! Data: XOR's four points, (0,0)→0, (0,1)→1, (1,0)→1, (1,1)→0, repeated `--copies` times as one training set.
//! Expected: the 2-layer MLP `FC(4) => TANH => FC` trained with Adam prints XOR's truth table with all four right
//! (training accuracy 1.0 within the default 300 epochs); with `--activation identity` the same network is linear and
//! cannot get more than 3 of 4 right.
//!
//! `cargo run --example xor_mlp [-- --activation tanh --hidden 4 --epochs 300 --device cpu]`
use anyhow::{ensure, Result};
use clap::Parser;
use tch::{Device, Kind, Tensor};
use tchzoo::data::{Dataset, Task};
use tchzoo::models;
use tchzoo::nn::{Activation, VarStore};
use tchzoo::optim::{Optimizer, OptimizerConfig, OptimizerKind};
use tchzoo::train::progress::Verbosity;
use tchzoo::train::{FitConfig, Loss, Metric, Trainer};

#[derive(Debug, Parser)]
struct Args {
    /// The hidden layer's non-linearity (any of `tchzoo plot activations`); identity removes it.
    #[arg(long, default_value = "tanh")]
    activation: String,
    /// Hidden units.
    #[arg(long, default_value_t = 4)]
    hidden: i64,
    #[arg(long, default_value_t = 300)]
    epochs: usize,
    /// Copies of the four points per epoch.
    #[arg(long, default_value_t = 8)]
    copies: i64,
    #[arg(long, default_value_t = 0)]
    seed: i64,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "cpu")]
    device: String,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let device = tchzoo::device::parse(&args.device)?;
    let activation: Activation = args.activation.parse()?;
    tch::manual_seed(args.seed);

    let points = Tensor::from_slice(&[0f32, 0., 0., 1., 1., 0., 1., 1.]).reshape([4, 2]);
    let labels = Tensor::from_slice(&[0i64, 1, 1, 0]);
    let train = Dataset::new(
        "xor",
        points.repeat([args.copies, 1]),
        labels.repeat([args.copies]),
        Task::Classification { n_classes: 2 },
    )?;

    // A text diagram from the notes; `FC` without a size is the output layer, sized from the data (1 logit: BCE).
    let diagram = format!("FC({}) => {} => FC", args.hidden, activation.name().to_uppercase());
    let store = VarStore::new(device);
    let loss = Loss::BinaryCrossEntropy;
    let model = models::build(&diagram, &store, loss.num_outputs(train.task), &train.sample_shape())?;
    let mut adam = OptimizerConfig::new(OptimizerKind::Adam);
    adam.hyper.lr = 0.05;
    let optimizer = Optimizer::new(adam, store.parameters())?;
    let mut trainer = Trainer::new(model, store, optimizer, loss, vec![Metric::Accuracy]);
    let fit = FitConfig {
        epochs: args.epochs,
        batch_size: 8,
        seed: args.seed as u64,
        output: Verbosity::Silent.into(),
        ..FitConfig::default()
    };
    let history = trainer.fit(&train, None, &fit, &mut [])?;
    println!(
        "{diagram}: loss {:.4}, accuracy {:.2} after {} epochs",
        history.last("loss").unwrap_or(f64::NAN),
        history.last("accuracy").unwrap_or(f64::NAN),
        history.len()
    );

    let p = trainer.predict_proba(&points.to_device(device), 4).to_kind(Kind::Float).to_device(Device::Cpu);
    let p = Vec::<f32>::try_from(&p.reshape([-1]))?;
    println!("  x1 x2 | XOR | P(1)  | output");
    let mut right = 0;
    for (i, (&prob, want)) in p.iter().zip([0, 1, 1, 0]).enumerate() {
        let out = i64::from(prob > 0.5);
        right += usize::from(out == want);
        println!("   {}  {} |  {want}  | {prob:.3} |   {out}{}", i / 2, i % 2, if out == want { "" } else { "  ✗" });
    }
    if activation == Activation::Identity {
        ensure!(right < 4, "a linear network cannot compute XOR");
        println!("without a non-linearity the network is one linear map: {right}/4 right");
    } else {
        println!("{right}/4 right");
    }
    Ok(())
}
