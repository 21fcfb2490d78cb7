//! The parity harness of the zoo tests: fixture folders with `cases.json`, models built per case, state dicts
//! rebuilt from the fixture (large tensors are stored as one tile, repeated).
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use serde_json::Value;
use tch::{Kind, Tensor};
use tchzoo::models;
use tchzoo::nn::VarStore;
use tchzoo::optim::{Optimizer, OptimizerConfig, OptimizerKind};

/// Runs (or reuses) `scripts/fixtures/<script>` and reads its `cases.json`. One libtorch thread, as the script:
/// the same reduction order in every kernel.
pub fn fixtures(script: &str) -> (PathBuf, Value) {
    tch::set_num_threads(1);
    let dir = super::fixtures(script);
    let meta = serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    (dir, meta)
}

pub fn strings(v: &Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
}

pub fn build(m: &Value, store: &VarStore) -> Box<dyn models::Model> {
    let input: Vec<i64> = m["input"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
    models::build(m["spec"].as_str().unwrap(), store, m["outputs"].as_i64().unwrap(), &input).unwrap()
}

/// The case's state dict in torch's key order: stored tensors, and the large ones tiled as the fixture made them.
pub fn state_dict(case: &str, m: &Value, t: &HashMap<String, Tensor>) -> Vec<(String, Tensor)> {
    let tiled = m["tiled"].as_object().unwrap();
    strings(&m["keys"])
        .into_iter()
        .map(|k| {
            let tensor = match tiled.get(&k) {
                None => t[&format!("sd.{k}")].shallow_clone(),
                Some(g) => {
                    let shape: Vec<i64> = g["shape"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
                    let tensor = tile(&t[&format!("tile.{k}")], &shape);
                    let (ours, theirs) = (tensor.sum(Kind::Double).double_value(&[]), g["sum"].as_f64().unwrap());
                    let abs = tensor.abs().sum(Kind::Double).double_value(&[]);
                    assert!(
                        (ours - theirs).abs() <= 1e-9 * abs,
                        "{case}: {k} rebuilt sums to {ours}, torch's to {theirs}"
                    );
                    tensor
                }
            };
            (k, tensor)
        })
        .collect()
}

/// scripts/fixtures/zoo_classic.py `tiled`: the tile repeated over the flat tensor, cut to its size.
pub fn tile(tile: &Tensor, shape: &[i64]) -> Tensor {
    let n: i64 = shape.iter().product();
    let len = tile.size()[0];
    tile.repeat([(n + len - 1) / len]).narrow(0, 0, n).reshape(shape)
}

/// Logits within max|Δ| ≤ this × max(1, max|y|) in eval mode.
pub const LOGITS_TOLERANCE: f64 = 1e-4;
/// One SGD step: the loss and every tensor after it within this relative Δ of torch.optim's.
pub const TRAIN_TOLERANCE: f64 = 1e-4;
/// The fixture scripts' `SAMPLE` (a large tensor after a step is stored as this many evenly spaced values) and
/// `TRAIN_SEED` (seeded before the training step's forward pass: the dropout masks).
pub const SAMPLE: i64 = 4096;
pub const TRAIN_SEED: i64 = 1234;

/// For every case of a fixture: our model (made by `build`) has the reference's names, order and parameter count,
/// loads its state dict strictly, and gives its eval-mode logits within [`LOGITS_TOLERANCE`]. Returns a report line
/// per case.
pub fn check_logits_parity(
    dir: &std::path::Path,
    meta: &Value,
    build: impl Fn(&Value, &VarStore) -> Box<dyn models::Model>,
) -> Vec<String> {
    let mut report = vec![];
    for (case, m) in meta["cases"].as_object().unwrap() {
        let t = super::read_safetensors(&dir.join(format!("{case}.safetensors")));
        let store = VarStore::new(tch::Device::Cpu);
        let model = build(m, &store);
        let ours: Vec<String> = store.state_dict().into_iter().map(|(k, _)| k).collect();
        assert_eq!(ours, strings(&m["keys"]), "{case}: state-dict names and order");
        assert_eq!(store.num_parameters(), m["parameters"].as_i64().unwrap(), "{case}: parameter count");
        store.load_state_dict(&state_dict(case, m, &t), true, case).unwrap();
        let logits = tch::no_grad(|| model.forward_t(&t["x"], false));
        let expected = &t["logits"];
        assert_eq!(logits.size(), expected.size(), "{case}: logits shape");
        let delta = (&logits - expected).abs().max().double_value(&[]);
        let scale = expected.abs().max().double_value(&[]);
        assert!(
            delta <= LOGITS_TOLERANCE * scale.max(1.0),
            "{case}: logits differ from the reference's by {delta:e} (max|y| = {scale})"
        );
        report.push(format!("{case}: max|Δ| {delta:.2e}, relative {:.2e}", delta / scale));
    }
    report
}

/// `SAMPLE` evenly spaced values of a flattened tensor (all of it when smaller): how the fixtures store the state
/// after a training step of a large model.
pub fn sampled(v: &Tensor, sample: i64) -> Tensor {
    let n = v.numel() as i64;
    if n <= sample {
        return v.shallow_clone();
    }
    let idx: Vec<i64> = (0..sample).map(|i| i * (n - 1) / (sample - 1)).collect();
    v.reshape([-1]).index_select(0, &Tensor::from_slice(&idx))
}

/// Every variant of the fixture (`meta["variants"]`, the references built at 1,000 classes or their default):
/// ours gives the same state-dict names in the same order and the same parameter count. A variant whose fixture
/// input (3×32×32 by default) is too small for the model is built at the model's smallest input instead.
pub fn check_variants(meta: &Value) {
    for (name, m) in meta["variants"].as_object().unwrap() {
        let mut store = VarStore::new(tch::Device::Cpu);
        let spec = m["spec"].as_str().unwrap();
        let outputs = m["outputs"].as_i64().unwrap();
        let input: Vec<i64> = m["input"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
        if models::build(spec, &store, outputs, &input).is_err() {
            store = VarStore::new(tch::Device::Cpu);
            let entry = models::find(spec.split(':').next().unwrap()).unwrap();
            models::build(spec, &store, outputs, entry.default_input).unwrap();
        }
        let ours: Vec<String> = store.state_dict().into_iter().map(|(k, _)| k).collect();
        assert_eq!(ours, strings(&m["keys"]), "{name}: state-dict names and order");
        assert_eq!(store.num_parameters(), m["parameters"].as_i64().unwrap(), "{name}: parameter count");
    }
}

/// `reset_classifier(3)` on `spec` built for 10 classes on `input`: the same names in the same order, `head`'s
/// bias resized to 3, and 3 outputs from a forward pass.
pub fn check_reset_classifier(spec: &str, head: &str, input: &[i64]) {
    let store = VarStore::new(tch::Device::Cpu);
    let mut model = models::build(spec, &store, 10, input).unwrap();
    let before: Vec<String> = store.state_dict().into_iter().map(|(k, _)| k).collect();
    model.reset_classifier(3);
    let after: Vec<String> = store.state_dict().into_iter().map(|(k, _)| k).collect();
    assert_eq!(before, after, "{spec}");
    assert_eq!(store.get(&format!("{head}.bias")).unwrap().size(), vec![3], "{spec}");
    let shape: Vec<i64> = [1].iter().chain(input).copied().collect();
    let ys = tch::no_grad(|| model.forward_t(&Tensor::zeros(shape.as_slice(), (Kind::Float, tch::Device::Cpu)), false));
    assert_eq!(ys.size(), vec![1, 3], "{spec}");
    assert_eq!(model.num_outputs(), 3, "{spec}");
}

/// Building a model draws from libtorch's global generator, and so do dropout masks in a train-step check, which
/// must be the fixture's: in a test binary, whatever draws holds this lock.
static RNG: Mutex<()> = Mutex::new(());

pub fn rng_lock() -> MutexGuard<'static, ()> {
    RNG.lock().unwrap_or_else(|e| e.into_inner())
}

/// [`build`] holding [`rng_lock`].
pub fn build_locked(m: &Value, store: &VarStore) -> Box<dyn models::Model> {
    let _rng = rng_lock();
    build(m, store)
}

/// One SGD step (`lr`, `momentum`, torch.optim's defaults otherwise) on the parameters of `store` from the loss
/// `loss` computes, against the fixture's `train.loss` and `train.sd.<name>` (compared through [`sampled`] at
/// [`SAMPLE`] when `sample`): each within [`TRAIN_TOLERANCE`]. With `seed`, the loss is computed holding
/// [`rng_lock`] after `tch::manual_seed(seed)` (the dropout masks the fixture drew). Returns the loss's relative Δ
/// and the worst tensor with its Δ.
pub fn check_sgd_step(
    case: &str,
    store: &VarStore,
    t: &HashMap<String, Tensor>,
    (lr, momentum): (f64, f64),
    seed: Option<i64>,
    sample: bool,
    loss: impl FnOnce() -> Tensor,
) -> (f64, (String, f64)) {
    let mut config = OptimizerConfig::new(OptimizerKind::Sgd);
    config.hyper.lr = lr;
    config.hyper.momentum = momentum;
    let mut opt = Optimizer::new(config, store.parameters()).unwrap();
    opt.zero_grad().unwrap();
    let loss = match seed {
        Some(seed) => {
            let _rng = rng_lock();
            tch::manual_seed(seed);
            loss()
        }
        None => loss(),
    };
    loss.backward();
    opt.step().unwrap();
    let d = super::rel_diff(&loss.detach().reshape([1]), &t["train.loss"]);
    assert!(d <= TRAIN_TOLERANCE, "{case}: train loss differs from PyTorch's by {d:e}");
    let mut worst = (String::new(), 0.0);
    for (k, v) in store.state_dict() {
        let expected = &t[&format!("train.sd.{k}")];
        assert_eq!(v.kind(), expected.kind(), "{case}: dtype of {k}");
        let v = if sample { sampled(&v, SAMPLE) } else { v };
        let dk = super::rel_diff(&v, expected);
        assert!(dk <= TRAIN_TOLERANCE, "{case}: {k} after one SGD step differs from torch.optim's by {dk:e}");
        if dk > worst.1 {
            worst = (k, dk);
        }
    }
    (d, worst)
}

/// `spec` built for 10 classes at `input` (the model's smallest valid input in the bad-input tests) runs: a
/// forward pass in eval mode on a batch of one gives 10 finite logits.
pub fn check_runs_at(spec: &str, input: &[i64]) {
    let _rng = rng_lock();
    let store = VarStore::new(tch::Device::Cpu);
    let model = models::build(spec, &store, 10, input).unwrap_or_else(|e| panic!("{spec} at {input:?}: {e}"));
    let shape: Vec<i64> = [1].iter().chain(input).copied().collect();
    let xs = Tensor::randn(shape.as_slice(), (Kind::Float, tch::Device::Cpu));
    let ys = tchzoo::util::catch_torch(|| tch::no_grad(|| model.forward_t(&xs, false)))
        .unwrap_or_else(|e| panic!("{spec} at {input:?}: the forward pass fails: {e}"));
    assert_eq!(ys.size(), vec![1, 10], "{spec} at {input:?}");
    assert!(ys.isfinite().all().int64_value(&[]) == 1, "{spec} at {input:?}: logits not finite");
}
