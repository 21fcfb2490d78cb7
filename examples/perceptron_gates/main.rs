//! Data: the four inputs of a two-input logic gate, (0,0) (0,1) (1,0) (1,1), with the gate's truth table as targets.
//! Expected: a single-layer perceptron, step(w·x + b), trained by Rosenblatt's rule w ← w + η(y − ŷ)x, prints the
//! truth tables of AND, OR and NAND with every output right (within 10 epochs); on XOR it never gets all four right
//! (no line separates XOR's classes), which the last table shows.
//!
//! `cargo run --example perceptron_gates [-- --epochs 20 --lr 0.1 --device cpu]`
use anyhow::{ensure, Result};
use clap::Parser;
use tch::{Device, Kind, Tensor};
use tchzoo::nn::Activation;

#[derive(Debug, Parser)]
struct Args {
    /// Passes over the four inputs.
    #[arg(long, default_value_t = 20)]
    epochs: usize,
    /// η of the perceptron rule.
    #[arg(long, default_value_t = 0.1)]
    lr: f64,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "cpu")]
    device: String,
}

/// step(w·x + b), the notes' single-layer perceptron with two inputs.
struct Perceptron {
    w: Tensor,
    b: Tensor,
}

impl Perceptron {
    fn new(device: Device) -> Self {
        Perceptron { w: Tensor::zeros([2], (Kind::Float, device)), b: Tensor::zeros([], (Kind::Float, device)) }
    }
    fn forward(&self, xs: &Tensor) -> Tensor {
        Activation::Step.apply(&(xs.matmul(&self.w) + &self.b))
    }
    /// One epoch of Rosenblatt's rule, sample by sample; returns how many samples were wrong before their update.
    fn epoch(&mut self, xs: &Tensor, ys: &Tensor, lr: f64) -> usize {
        let mut wrong = 0;
        for i in 0..xs.size()[0] {
            let (x, y) = (xs.get(i), ys.get(i));
            let err = (&y - self.forward(&x.unsqueeze(0)).squeeze()).double_value(&[]);
            if err != 0.0 {
                wrong += 1;
                self.w += &x * (lr * err);
                self.b += lr * err;
            }
        }
        wrong
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let device = tchzoo::device::parse(&args.device)?;
    let xs = Tensor::from_slice(&[0f32, 0., 0., 1., 1., 0., 1., 1.]).reshape([4, 2]).to_device(device);
    let gates: [(&str, [f32; 4]); 4] =
        [("AND", [0., 0., 0., 1.]), ("OR", [0., 1., 1., 1.]), ("NAND", [1., 1., 1., 0.]), ("XOR", [0., 1., 1., 0.])];
    for (name, table) in gates {
        let ys = Tensor::from_slice(&table).to_device(device);
        let mut p = Perceptron::new(device);
        let converged = (1..=args.epochs).find(|_| p.epoch(&xs, &ys, args.lr) == 0);
        let out = Vec::<f32>::try_from(&p.forward(&xs).to_device(Device::Cpu))?;
        let w = Vec::<f32>::try_from(&p.w.to_device(Device::Cpu))?;
        println!(
            "{name}: w = [{:.2}, {:.2}], b = {:.2}, {}",
            w[0],
            w[1],
            p.b.double_value(&[]),
            match converged {
                Some(e) => format!("no mistakes in epoch {e}"),
                None => format!("still wrong after {} epochs", args.epochs),
            }
        );
        println!("  x1 x2 | target | output");
        for (i, (t, o)) in table.iter().zip(&out).enumerate() {
            let mark = if t == o { "" } else { "  ✗" };
            println!("   {}  {} |   {t}    |   {o}{mark}", i / 2, i % 2);
        }
        let right = table.iter().zip(&out).filter(|(t, o)| t == o).count();
        if name == "XOR" {
            ensure!(right < 4, "XOR is not linearly separable, yet the perceptron got it right");
            println!("XOR: {right}/4 right: no single line separates (0,1),(1,0) from (0,0),(1,1)");
        } else {
            ensure!(right == 4, "{name}: the perceptron should learn it in {} epochs", args.epochs);
        }
    }
    Ok(())
}
