//! Our own definitions (no package has them: src/models/highway.rs, cmpe_se.rs) train on a small real task, the
//! embedded digits (chance 0.1). One test in its own binary, so that no other test draws from libtorch's global
//! generator meanwhile: the initial weights, and so the accuracies, are the same on every run.
mod common;

use tch::Device;
use tchzoo::data;
use tchzoo::models;
use tchzoo::nn::VarStore;
use tchzoo::optim::{Optimizer, OptimizerConfig, OptimizerKind};
use tchzoo::train::progress::Verbosity;
use tchzoo::train::{FitConfig, Loss, Metric, Trainer};

/// Fits `model` on the embedded digits (at `size`×`size`, the last 25 % for validation) with Adam and returns the
/// final validation accuracy.
fn digits_accuracy(model: &str, size: i64, epochs: usize, lr: f64) -> f64 {
    tch::manual_seed(7);
    let digits = data::load(&format!("digits:size={size}"), 0).unwrap();
    let (train, val) = digits.split_validation(0.25).unwrap();
    let store = VarStore::new(Device::Cpu);
    let loss = Loss::for_task(train.task);
    let model = models::build(model, &store, loss.num_outputs(train.task), &train.sample_shape()).unwrap();
    let mut oc = OptimizerConfig::new(OptimizerKind::Adam);
    oc.lr = lr;
    let opt = Optimizer::new(oc, store.parameters()).unwrap();
    let mut t = Trainer::new(model, store, opt, loss, Metric::defaults(loss));
    let fit = FitConfig { epochs, batch_size: 32, seed: 3, verbosity: Verbosity::Silent, ..FitConfig::default() };
    let h = t.fit(&train, Some(&val), &fit, &mut []).unwrap();
    h.last("val_accuracy").unwrap()
}

/// Our own definitions (no package has them) train on a small real task: the digits, chance 0.1.
#[test]
fn our_own_definitions_learn_the_digits() {
    for (model, size, epochs, lr, bar) in [
        ("highway_mlp", 8, 8, 3e-3, 0.8),
        ("cmpe_se_resnet20", 16, 3, 2e-3, 0.8),
        ("cmpe_se_ii_resnet20", 16, 3, 2e-3, 0.8),
    ] {
        let accuracy = digits_accuracy(model, size, epochs, lr);
        eprintln!("{model} on digits {size}×{size}: validation accuracy {accuracy:.3} after {epochs} epochs");
        assert!(accuracy >= bar, "{model}: validation accuracy {accuracy} on the digits");
    }
}
