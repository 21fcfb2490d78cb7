//! Data: 256 random inputs of 5 features (standard normal, seeded).
//! Expected: the network `FC(16) => FC(16) => FC(3)` with its activations removed is one linear map: W = W3·W2·W1 and
//! b = W3(W2·b1 + b2) + b3 give the same outputs to 1e-6 (max |Δ| printed, about 1e-7). With `--activation relu`
//! between the layers, the same product is off by far more (about 0.6): the non-linearity is what makes depth matter.
//!
//! `cargo run --example linear_collapse [-- --hidden 16 --activation relu --device cpu]`
use anyhow::{ensure, Result};
use clap::Parser;
use tch::{Kind, Tensor};
use tchzoo::models;
use tchzoo::nn::{Activation, VarStore};

#[derive(Debug, Parser)]
struct Args {
    #[arg(long, default_value_t = 16)]
    hidden: i64,
    /// An activation to put back between the layers, for comparison.
    #[arg(long, default_value = "relu")]
    activation: String,
    #[arg(long, default_value_t = 0)]
    seed: i64,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "cpu")]
    device: String,
}

/// The network's outputs and those of the single linear map its layers multiply out to; max |Δ| between them.
fn collapse(diagram: &str, linear_layers: [&str; 3], xs: &Tensor, device: tch::Device) -> Result<f64> {
    let store = VarStore::new(device);
    let model = models::build(diagram, &store, 3, &[xs.size()[1]])?;
    let get = |name: String| -> Result<Tensor> {
        Ok(store.get(&name).ok_or_else(|| anyhow::anyhow!("no tensor {name}"))?.detach().to_kind(Kind::Double))
    };
    let [l1, l2, l3] = linear_layers;
    let (w1, w2, w3) = (get(format!("{l1}.weight"))?, get(format!("{l2}.weight"))?, get(format!("{l3}.weight"))?);
    let (b1, b2, b3) = (get(format!("{l1}.bias"))?, get(format!("{l2}.bias"))?, get(format!("{l3}.bias"))?);
    let weight = w3.matmul(&w2).matmul(&w1);
    let bias = w3.matmul(&(w2.matmul(&b1) + b2)) + b3;
    let ys = tch::no_grad(|| model.forward_t(xs, false)).to_kind(Kind::Double);
    let collapsed = xs.to_kind(Kind::Double).linear(&weight, Some(&bias));
    println!("{diagram}\n  one linear map: W {:?} (= W3·W2·W1), b {:?}", weight.size(), bias.size());
    Ok((ys - collapsed).abs().max().double_value(&[]))
}

fn main() -> Result<()> {
    let args = Args::parse();
    let device = tchzoo::device::parse(&args.device)?;
    let activation: Activation = args.activation.parse()?;
    tch::manual_seed(args.seed);
    let xs = Tensor::randn([256, 5], (Kind::Float, device));
    let h = args.hidden;

    let linear = collapse(&format!("FC({h}) => FC({h}) => FC(3)"), ["0", "1", "2"], &xs, device)?;
    println!("  max |network − linear map| = {linear:.2e}");
    ensure!(linear <= 1e-6, "without activations the network should be one linear map (max |Δ| {linear:e})");

    let act = activation.name().to_uppercase();
    let nonlinear = collapse(&format!("FC({h}) => {act} => FC({h}) => {act} => FC(3)"), ["0", "2", "4"], &xs, device)?;
    println!("  max |network − product of its weight matrices| = {nonlinear:.2e}");
    Ok(())
}
