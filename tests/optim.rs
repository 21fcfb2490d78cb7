//! Our optimizers against torch.optim: the same initial weights and data, 100 full-batch steps, then parameters
//! and optimizer state compared: equal to the bit (the step runs torch.optim's own ATen calls, csrc/optim.cpp).
//! Fixtures: scripts/fixtures/optim_parity.py.
mod common;

use std::collections::BTreeMap;

use tchzoo::models;
use tchzoo::nn::VarStore;
use tchzoo::optim::{parse_kind, Optimizer, OptimizerConfig};
use tchzoo::train::Loss;

const TOLERANCE: f64 = 0.0;

fn run_case(case: &str) {
    // One thread, as the fixture script: reductions then sum in the same order on both sides.
    tch::set_num_threads(1);
    let dir = common::fixtures("optim_parity.py");
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    let meta = &meta[case];
    let t = common::read_safetensors(&dir.join(format!("{case}.safetensors")));
    let store = VarStore::new(tch::Device::Cpu);
    let model = match meta["model"].as_str().unwrap() {
        "mlp" => models::build("mlp:hidden=16x12,activation=tanh", &store, 4, &[6]).unwrap(),
        "lenet5" => models::build("lenet5", &store, 5, &[1, 32, 32]).unwrap(),
        other => panic!("unknown model {other}"),
    };
    let init: Vec<(String, tch::Tensor)> =
        t.iter().filter_map(|(k, v)| k.strip_prefix("init.").map(|n| (n.to_string(), v.shallow_clone()))).collect();
    store.load_state_dict(&init, true, "fixture").unwrap();

    let hp = &meta["hp"];
    let mut c = OptimizerConfig::new(parse_kind(meta["optimizer"].as_str().unwrap()).unwrap());
    let f = |k: &str| hp.get(k).and_then(|v| v.as_f64());
    let b = |k: &str| hp.get(k).and_then(|v| v.as_bool()).unwrap_or(false);
    c.hyper.lr = f("lr").unwrap();
    if let Some(v) = f("momentum") {
        c.hyper.momentum = v;
    }
    if let Some(v) = f("dampening") {
        c.hyper.dampening = v;
    }
    if let Some(v) = f("weight_decay") {
        c.hyper.weight_decay = v;
    }
    if let Some(v) = f("alpha") {
        c.hyper.alpha = v;
    }
    if let Some(betas) = hp.get("betas").and_then(|v| v.as_array()) {
        c.hyper.betas = (betas[0].as_f64().unwrap(), betas[1].as_f64().unwrap());
    }
    c.hyper.nesterov = b("nesterov");
    c.hyper.amsgrad = b("amsgrad");
    c.hyper.centered = b("centered");
    if b("fused") {
        c.implementation = tchzoo::optim::OptimizerImpl::Fused;
    }
    if b("foreach") {
        c.implementation = tchzoo::optim::OptimizerImpl::Foreach;
    }
    let mut opt = Optimizer::new(c, store.parameters()).unwrap();
    let (x, y) = (&t["x"], &t["y"]);
    for _ in 0..meta["steps"].as_u64().unwrap() {
        opt.zero_grad().unwrap();
        let loss = Loss::CrossEntropy.compute(&model.forward_t(x, true), y);
        loss.backward();
        opt.step().unwrap();
    }

    let mut worst = BTreeMap::new();
    for (name, tensor) in store.state_dict() {
        let expected = &t[&format!("final.{name}")];
        let d = common::rel_diff(&tensor, expected);
        assert!(d <= TOLERANCE, "{case}: parameter {name} differs from torch.optim by {d:e}");
        worst.insert(name, d);
    }
    // Optimizer state, keyed as torch.optim's state_dict: parameter index, then name.
    let mut n_state = 0;
    for (i, _) in store.parameters().iter().enumerate() {
        for (key, value) in opt.param_state(i) {
            let expected =
                t.get(&format!("state.{i}.{key}")).unwrap_or_else(|| panic!("{case}: torch has no state.{i}.{key}"));
            let d = common::rel_diff(&value, expected);
            assert!(d <= TOLERANCE, "{case}: state {i}.{key} differs by {d:e}");
            n_state += 1;
        }
    }
    let torch_state = t.keys().filter(|k| k.starts_with("state.")).count();
    assert_eq!(n_state, torch_state, "{case}: we keep {n_state} state tensors, torch.optim {torch_state}");
    let max = worst.values().cloned().fold(0.0, f64::max);
    eprintln!("{case}: max relative difference {max:e} over {} tensors", worst.len());
}

#[test]
fn sgd_plain() {
    run_case("sgd_plain");
}
#[test]
fn sgd_momentum_dampening_weight_decay() {
    run_case("sgd_momentum_wd");
}
#[test]
fn sgd_nesterov_lenet() {
    run_case("sgd_nesterov");
}
#[test]
fn adam() {
    run_case("adam");
}
#[test]
fn adam_amsgrad_weight_decay_lenet() {
    run_case("adam_amsgrad_wd");
}
#[test]
fn adamw() {
    run_case("adamw");
}
#[test]
fn rmsprop() {
    run_case("rmsprop");
}
#[test]
fn rmsprop_centered_momentum_lenet() {
    run_case("rmsprop_centered_momentum");
}

#[test]
fn sgd_nesterov_fused_lenet() {
    run_case("sgd_fused");
}
#[test]
fn sgd_plain_fused() {
    run_case("sgd_plain_fused");
}
#[test]
fn adam_amsgrad_fused_lenet() {
    run_case("adam_fused");
}
#[test]
fn adamw_fused() {
    run_case("adamw_fused");
}
#[test]
fn sgd_nesterov_foreach_lenet() {
    run_case("sgd_nesterov_foreach");
}
#[test]
fn sgd_momentum_dampening_foreach() {
    run_case("sgd_momentum_foreach");
}
#[test]
fn sgd_nesterov_without_weight_decay_foreach() {
    run_case("sgd_nesterov_no_wd_foreach");
}
#[test]
fn adam_amsgrad_foreach_lenet() {
    run_case("adam_amsgrad_foreach");
}
#[test]
fn adam_foreach() {
    run_case("adam_foreach");
}
#[test]
fn adamw_foreach() {
    run_case("adamw_foreach");
}

/// `zero_grad` is `set_to_none` (PyTorch's default): no gradient afterwards, and a parameter the next backward
/// does not reach is neither updated nor given state, as torch.optim skips a parameter whose grad is None.
#[test]
fn zero_grad_sets_gradients_to_none() {
    let used = tch::Tensor::ones([3], (tch::Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
    let unused = tch::Tensor::ones([2], (tch::Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
    let mut config = OptimizerConfig::new(parse_kind("sgd").unwrap());
    config.hyper.momentum = 0.9;
    let mut opt = Optimizer::new(config, vec![used.shallow_clone(), unused.shallow_clone()]).unwrap();
    for _ in 0..2 {
        (&used * 2.0).sum(tch::Kind::Float).backward();
        (&unused * 3.0).sum(tch::Kind::Float).backward();
        opt.step().unwrap();
        opt.zero_grad().unwrap();
        assert!(!used.grad().defined() && !unused.grad().defined());
    }
    assert_eq!(opt.param_state(1).len(), 1);
    let before = unused.copy();
    (&used * 2.0).sum(tch::Kind::Float).backward();
    opt.step().unwrap();
    assert!(unused.equal(&before), "a parameter without a gradient moved");
    // SGD momentum 0.9, lr 1e-3, gradient 2 three times: buffers 2, 3.8, 5.42.
    let expected = 1.0 - 1e-3 * (2.0 + 3.8 + 5.42);
    let got = used.double_value(&[0]);
    assert!((got - expected).abs() < 1e-6, "{got} vs {expected}");
}
