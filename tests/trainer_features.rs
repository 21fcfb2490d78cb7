//! Issue #17's trainer features against the PyTorch code a user would otherwise run (scripts/fixtures/
//! trainer_loop.py): `fit` with gradient clipping, accumulation or an EMA, from the same initial weights, data and
//! batch order as a plain PyTorch loop with `clip_grad_norm_`/`clip_grad_value_`, Lightning's accumulation and
//! `AveragedModel(multi_avg_fn=get_ema_multi_avg_fn(decay))`; then the debugging limits with Lightning's meanings,
//! the EMA across `--resume`, and bad values through the binary.
mod common;

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;

use tch::{Device, Kind, Tensor};
use tchzoo::config::RunConfig;
use tchzoo::data::{Dataset, Loader, Task};
use tchzoo::models;
use tchzoo::nn::VarStore;
use tchzoo::optim::{Optimizer, OptimizerConfig, OptimizerKind};
use tchzoo::train::amp::Precision;
use tchzoo::train::callbacks::{Callback, CallbackContext};
use tchzoo::train::features::{Ema, EmaConfig, GradClip, Limit};
use tchzoo::train::progress::Verbosity;
use tchzoo::train::{FitConfig, History, Loss, Metric, Trainer};

const IN: i64 = 6;

/// Runs through `tchzoo::run` set libtorch's global determinism switches: tests that use them hold this.
static GLOBAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn global() -> std::sync::MutexGuard<'static, ()> {
    GLOBAL.lock().unwrap_or_else(|e| e.into_inner())
}
const CLASSES: i64 = 4;

/// One `fit` and its PyTorch twin.
#[derive(Clone)]
struct Case {
    n: i64,
    batch_norm: bool,
    adam: bool,
    lr: f64,
    batch_size: usize,
    epochs: usize,
    clip: Option<GradClip>,
    accumulate: usize,
    ema: Option<EmaConfig>,
    fp16: bool,
    limit_train_batches: Option<usize>,
    shuffle: bool,
}

impl Default for Case {
    fn default() -> Self {
        Case {
            n: 100,
            batch_norm: false,
            adam: false,
            lr: 0.5,
            batch_size: 16,
            epochs: 3,
            clip: None,
            accumulate: 1,
            ema: None,
            fp16: false,
            limit_train_batches: None,
            shuffle: true,
        }
    }
}

fn data(n: i64, seed: i64) -> Dataset {
    tch::manual_seed(seed);
    let xs = Tensor::randn([n, IN], (Kind::Float, Device::Cpu)) * 2.0;
    let ys = Tensor::randint(CLASSES, [n], (Kind::Int64, Device::Cpu));
    Dataset::new("toy", xs, ys, Task::Classification { n_classes: CLASSES as usize }).unwrap()
}

fn trainer(case: &Case) -> Trainer {
    let store = VarStore::new(Device::Cpu);
    let spec = format!("mlp:hidden=16x12,activation=tanh,batch_norm={}", case.batch_norm);
    let model = models::build(&spec, &store, CLASSES, &[IN]).unwrap();
    let mut oc = OptimizerConfig::new(if case.adam { OptimizerKind::Adam } else { OptimizerKind::Sgd });
    oc.hyper.lr = case.lr;
    if !case.adam {
        oc.hyper.momentum = 0.9;
    }
    let opt = Optimizer::new(oc, store.parameters()).unwrap();
    let mut t = Trainer::new(model, store, opt, Loss::CrossEntropy, Metric::defaults(Loss::CrossEntropy));
    if case.fp16 {
        t.set_precision(Precision::Fp16);
    }
    t.clip = case.clip;
    if let Some(e) = case.ema {
        t.ema = Some(Ema::new(e, &t.store));
    }
    t
}

fn fit_config(case: &Case, seed: u64) -> FitConfig {
    FitConfig {
        epochs: case.epochs,
        batch_size: case.batch_size,
        shuffle: case.shuffle,
        seed,
        output: Verbosity::Silent.into(),
        accumulate_grad_batches: case.accumulate,
        limit_train_batches: case.limit_train_batches.map(Limit::Batches),
        ..FitConfig::default()
    }
}

struct Outcome {
    history: History,
    weights: Vec<(String, Tensor)>,
    ema: Vec<(String, Tensor)>,
    expected: std::collections::HashMap<String, Tensor>,
}

/// Trains `case` here and in PyTorch.
fn run(case: &Case) -> Outcome {
    tch::set_num_threads(1);
    let seed = 11;
    let d = data(case.n, 5);
    let mut t = trainer(case);
    let dir = common::tempdir();
    let (inp, opts, out) =
        (dir.path().join("in.safetensors"), dir.path().join("opts.json"), dir.path().join("out.safetensors"));
    let mut tensors: Vec<(String, Tensor)> =
        t.store.state_dict().into_iter().map(|(k, v)| (format!("w.{k}"), v.detach().copy())).collect();
    tensors.push(("x".into(), d.xs.copy()));
    tensors.push(("y".into(), d.ys.copy()));
    let loader = Loader::new(&d.xs, &d.ys, case.batch_size, case.shuffle, seed);
    for e in 0..case.epochs {
        tensors.push((format!("order.{e}"), Tensor::from_slice(&loader.order(e))));
    }
    tchzoo::checkpoint::write_state_dict(&inp, &tensors).unwrap();
    let clip_norm = match case.clip {
        Some(GradClip::Norm { max_norm, norm_type }) => {
            serde_json::json!({"max_norm": max_norm, "norm_type": norm_type.to_string()})
        }
        _ => serde_json::Value::Null,
    };
    let clip_value = match case.clip {
        Some(GradClip::Value(v)) => serde_json::json!(v),
        _ => serde_json::Value::Null,
    };
    let options = serde_json::json!({
        "model": {"in": IN, "hidden": [16, 12], "out": CLASSES, "activation": "tanh", "batch_norm": case.batch_norm},
        "optimizer": {"kind": if case.adam { "adam" } else { "sgd" }, "lr": case.lr, "momentum": 0.9},
        "batch_size": case.batch_size,
        "epochs": case.epochs,
        "accumulate": case.accumulate,
        "clip_norm": clip_norm,
        "clip_value": clip_value,
        "ema": case.ema.map(|e| serde_json::json!({
            "decay": e.decay, "warmup": e.warmup, "use_buffers": e.use_buffers
        })),
        "precision": if case.fp16 { "fp16" } else { "fp32" },
        "limit_train_batches": case.limit_train_batches,
    });
    std::fs::write(&opts, options.to_string()).unwrap();
    let history = t.fit(&d, None, &fit_config(case, seed), &mut []).unwrap();
    let script = common::root().join("scripts/fixtures/trainer_loop.py");
    let o = std::process::Command::new(common::python())
        .args([&script, &inp, &opts, &out])
        .env("OMP_NUM_THREADS", "1")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    Outcome {
        history,
        weights: t.store.state_dict(),
        ema: t.ema.as_ref().map(|e| e.state_dict()).unwrap_or_default(),
        expected: common::read_safetensors(&out),
    }
}

impl Outcome {
    /// The largest relative gap of the weights (and of the EMA's, when there is one) from PyTorch's.
    fn weight_gap(&self) -> f64 {
        let mut gap: f64 = 0.0;
        for (prefix, tensors) in [("w.", &self.weights), ("ema.", &self.ema)] {
            for (k, v) in tensors {
                let expected = &self.expected[&format!("{prefix}{k}")];
                gap = gap.max(common::rel_diff(v, expected));
            }
        }
        gap
    }
    fn torch(&self, key: &str) -> Vec<f64> {
        Vec::<f64>::try_from(&self.expected[key]).unwrap()
    }
    fn losses_gap(&self) -> f64 {
        let ours = self.history.get("loss").unwrap();
        ours.iter().zip(self.torch("loss")).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max)
    }
}

fn bit_identical(case: Case, what: &str) -> Outcome {
    let o = run(&case);
    let (gap, loss_gap) = (o.weight_gap(), o.losses_gap());
    eprintln!("{what}: weights (and EMA) max rel gap {gap:e}, epoch losses max gap {loss_gap:e}");
    assert_eq!(gap, 0.0, "{what}: weights differ from PyTorch's by {gap:e}");
    assert!(loss_gap <= 1e-12, "{what}: epoch losses differ by {loss_gap:e}");
    o
}

#[test]
fn clip_grad_norm_is_torchs() {
    let clip = GradClip::parse_norm("0.5").unwrap();
    let o = bit_identical(Case { clip: Some(clip), ..Case::default() }, "clip_grad_norm_ 0.5 (L2), SGD");
    let ours = o.history.get("grad_norm").expect("grad_norm is in the history").to_vec();
    assert_eq!(ours, o.torch("grad_norm"), "the mean total norm of each epoch");
    assert!(ours.iter().all(|&n| n > 0.5), "the norms {ours:?} exceed 0.5, so every step was clipped");
}

#[test]
fn clip_grad_norm_inf_with_adam_is_torchs() {
    let clip = GradClip::parse_norm("0.05,norm_type=inf").unwrap();
    let case = Case { clip: Some(clip), adam: true, lr: 0.05, ..Case::default() };
    let o = bit_identical(case, "clip_grad_norm_ 0.05 (inf), Adam");
    assert_eq!(o.history.get("grad_norm").unwrap(), o.torch("grad_norm").as_slice());
}

#[test]
fn clip_grad_value_is_torchs() {
    let case = Case { clip: Some(GradClip::value(0.02).unwrap()), ..Case::default() };
    let o = bit_identical(case.clone(), "clip_grad_value_ 0.02, SGD");
    assert!(o.history.get("grad_norm").is_none(), "no norm is computed when clipping by value");
    // Clipping changed the run: without it the weights end elsewhere.
    let plain = run(&Case { clip: None, ..case });
    let moved = common::rel_diff(&plain.weights[0].1, &o.weights[0].1);
    assert!(moved > 1e-3, "clipping by value made no difference ({moved:e})");
}

#[test]
fn fp16_unscales_before_clipping_as_grad_scaler() {
    let clip = GradClip::parse_norm("0.5").unwrap();
    let case = Case { clip: Some(clip), fp16: true, lr: 0.1, ..Case::default() };
    let o = run(&case);
    let gap = o.weight_gap();
    let ours = o.history.get("grad_norm").unwrap().to_vec();
    let torch = o.torch("grad_norm");
    eprintln!("fp16 + clip 0.5: weights max rel gap {gap:e}; grad_norm {ours:?} vs torch {torch:?}");
    assert_eq!(gap, 0.0, "fp16: weights differ by {gap:e}");
    assert_eq!(ours, torch, "grad_norm: the norm of the unscaled gradients");
    assert!(ours[0] < 100.0, "the norm {} is of unscaled gradients (the scale is 65536)", ours[0]);
}

#[test]
fn accumulation_is_lightnings_with_a_final_partial_group() {
    // 100 samples in batches of 8: 13 batches, groups of 3 and a last group of one, stepped at the epoch's end.
    let case = Case { accumulate: 3, batch_size: 8, lr: 0.2, ..Case::default() };
    bit_identical(case, "accumulate 3 × batch 8 (13 batches)");
}

#[test]
fn k_batches_of_b_are_one_batch_of_k_times_b() {
    tch::set_num_threads(1);
    let d = data(96, 9);
    let train = |batch_size: usize, accumulate: usize| {
        let case = Case { batch_size, accumulate, shuffle: false, epochs: 4, lr: 0.3, ..Case::default() };
        tch::manual_seed(3);
        let mut t = trainer(&case);
        t.fit(&d, None, &fit_config(&case, 0), &mut []).unwrap();
        t.store.state_dict()
    };
    let (big, accumulated, small) = (train(32, 1), train(8, 4), train(8, 1));
    let gap = |a: &[(String, Tensor)], b: &[(String, Tensor)]| {
        a.iter().zip(b).map(|((_, x), (_, y))| common::rel_diff(x, y)).fold(0.0, f64::max)
    };
    let (same, other) = (gap(&accumulated, &big), gap(&small, &big));
    eprintln!("4 × 8 accumulated vs 32: {same:e}; 8 without accumulation vs 32: {other:e}");
    assert!(same <= 1e-5, "accumulating 4 batches of 8 is not one batch of 32 ({same:e})");
    assert!(other > 1e-2, "the comparison cannot tell ({other:e})");
}

#[test]
fn ema_is_averaged_model_with_get_ema_multi_avg_fn() {
    let ema = EmaConfig::parse("decay=0.9").unwrap();
    let case = Case { ema: Some(ema), batch_norm: true, ..Case::default() };
    let o = bit_identical(case, "EMA 0.9, buffers copied");
    // The average is not the model: the test compares something.
    let gap = common::rel_diff(&o.ema[0].1, &o.weights[0].1);
    assert!(gap > 1e-3, "EMA equals the weights ({gap:e})");
}

#[test]
fn ema_use_buffers_and_warmup_are_torchs() {
    let ema = EmaConfig::parse("decay=0.95,use_buffers=true,warmup=true").unwrap();
    let case = Case { ema: Some(ema), batch_norm: true, accumulate: 2, ..Case::default() };
    bit_identical(case, "EMA 0.95, use_buffers, warmup, accumulate 2");
}

#[test]
fn validation_uses_the_ema_weights() {
    tch::set_num_threads(1);
    let d = data(120, 4);
    let (train, val) = d.split_validation(0.25).unwrap();
    let case = Case { ema: Some(EmaConfig::parse("0.8").unwrap()), ..Case::default() };
    let mut t = trainer(&case);
    let h = t.fit(&train, Some(&val), &fit_config(&case, 1), &mut []).unwrap();
    let live = t.evaluate(&val, case.batch_size).unwrap()["loss"];
    let e = trainer(&Case::default());
    e.store.load_state_dict(&t.ema.as_ref().unwrap().state_dict(), true, "ema").unwrap();
    let averaged = e.evaluate(&val, case.batch_size).unwrap()["loss"];
    assert_eq!(h.last("val_loss").unwrap(), averaged, "val_loss is the EMA weights' (live weights: {live})");
    assert_ne!(averaged, live);
    // The trained weights were put back after validation.
    assert_eq!(t.evaluate(&val, case.batch_size).unwrap()["loss"], live);
}

/// Counts training batches per epoch.
struct Count(Rc<RefCell<Vec<usize>>>);
impl Callback for Count {
    fn on_epoch_begin(&mut self, _epoch: usize, _ctx: &mut CallbackContext) -> tchzoo::Result<()> {
        self.0.borrow_mut().push(0);
        Ok(())
    }
    fn on_batch_end(&mut self, _batch: usize, _ctx: &mut CallbackContext) -> tchzoo::Result<()> {
        *self.0.borrow_mut().last_mut().unwrap() += 1;
        Ok(())
    }
}

fn moons(out: &Path) -> RunConfig {
    RunConfig {
        model: "mlp:hidden=16".into(),
        data: "moons:n_samples=400".into(),
        epochs: 3,
        augment: None,
        device: "cpu".into(),
        threads: Some(1),
        out: Some(out.display().to_string()),
        ..RunConfig::default()
    }
}

/// Batches per epoch of a run of `config` (320 training samples in batches of 32: 10 a full epoch).
fn batches(config: RunConfig) -> (Vec<usize>, tchzoo::run::RunOutcome) {
    let counts = Rc::new(RefCell::new(vec![]));
    let outcome = tchzoo::run::train(&config, Verbosity::Silent, vec![Box::new(Count(counts.clone()))]).unwrap();
    let counts = counts.borrow().clone();
    (counts, outcome)
}

#[test]
fn limits_fast_dev_run_and_overfit_batches_have_lightnings_meaning() {
    let _g = global();
    let dir = common::tempdir();
    let at = |name: &str| moons(&dir.path().join(name));
    let (n, _) = batches(RunConfig { limit_train_batches: Some(Limit::Batches(3)), ..at("int") });
    assert_eq!(n, [3, 3, 3], "an integer is a number of batches");
    let (n, _) = batches(RunConfig { limit_train_batches: Some(Limit::Fraction(0.25)), ..at("float") });
    assert_eq!(n, [2, 2, 2], "a float is a fraction: ⌊10 × 0.25⌋");
    let (n, _) = batches(RunConfig { limit_train_batches: Some(Limit::Batches(50)), ..at("more") });
    assert_eq!(n, [10, 10, 10], "at most all the batches");
    let (n, out) = batches(RunConfig {
        fast_dev_run: Some(2),
        checkpoint: Some("best.pt,monitor=val_loss,save_best_only=true,verbose=false".into()),
        ..at("fast")
    });
    assert_eq!(n, [2], "fast_dev_run 2: two batches, one epoch");
    assert_eq!(out.history.len(), 1);
    assert!(!out.dir.join("best.pt").exists(), "fast_dev_run writes no checkpoint");
    let (n, out) = batches(RunConfig { overfit_batches: Some(Limit::Batches(2)), epochs: 2, ..at("overfit") });
    assert_eq!(n, [2, 2]);
    assert!(out.history.get("val_loss").is_some());
    // A fraction that rounds to no batch is an error, as Lightning's.
    let err = tchzoo::run::train(
        &RunConfig { limit_train_batches: Some(Limit::Fraction(0.05)), ..at("tiny") },
        Verbosity::Silent,
        vec![],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("less than one batch"), "{err}");
}

#[test]
fn limit_val_batches_validates_on_the_first_batches() {
    tch::set_num_threads(1);
    let d = data(160, 2);
    let (train, val) = d.split_validation(0.4).unwrap();
    let case = Case::default();
    let mut t = trainer(&case);
    let fit = FitConfig { limit_val_batches: Some(Limit::Batches(2)), ..fit_config(&case, 0) };
    let h = t.fit(&train, Some(&val), &fit, &mut []).unwrap();
    let first = Dataset::new("first", val.xs.narrow(0, 0, 32), val.ys.narrow(0, 0, 32), val.task).unwrap();
    assert_eq!(h.last("val_loss").unwrap(), t.evaluate(&first, 16).unwrap()["loss"]);
    assert_ne!(h.last("val_loss").unwrap(), t.evaluate(&val, 16).unwrap()["loss"]);
    let fit = FitConfig { limit_val_batches: Some(Limit::Batches(0)), ..fit_config(&case, 0) };
    let h = t.fit(&train, Some(&val), &fit, &mut []).unwrap();
    assert!(h.get("val_loss").is_none(), "limit_val_batches 0 turns validation off");
}

/// Sleeps after every batch.
struct Slow;
impl Callback for Slow {
    fn on_batch_end(&mut self, _batch: usize, _ctx: &mut CallbackContext) -> tchzoo::Result<()> {
        std::thread::sleep(std::time::Duration::from_millis(150));
        Ok(())
    }
}

#[test]
fn max_time_stops_after_the_batch_that_passes_it() {
    let d = data(320, 1);
    let case = Case { batch_size: 32, epochs: 50, ..Case::default() };
    let mut t = trainer(&case);
    let max = tchzoo::train::features::parse_max_time("00:00:01").unwrap();
    let fit = FitConfig { max_time: Some(max), ..fit_config(&case, 0) };
    let started = std::time::Instant::now();
    let counts = Rc::new(RefCell::new(vec![]));
    let h = t.fit(&d, None, &fit, &mut [Box::new(Slow), Box::new(Count(counts.clone()))]).unwrap();
    let took = started.elapsed().as_secs_f64();
    // 10 batches of ≥ 150 ms an epoch: the second closes past 1 s, in its 7th batch at the latest.
    assert!(h.len() <= 2 && took < 3.0, "{} epochs in {took:.1}s", h.len());
    assert!(counts.borrow().last().copied().unwrap() < 10, "stopped within the epoch: {:?}", counts.borrow());
    for bad in ["1:00", "00:61:00", "00:00:00", "x"] {
        assert!(tchzoo::train::features::parse_max_time(bad).is_err(), "{bad}");
    }
    assert_eq!(tchzoo::train::features::parse_max_time("01:00:02:03").unwrap().as_secs(), 86400 + 123);
}

#[test]
fn the_ema_survives_a_resume_exactly() {
    let _g = global();
    let dir = common::tempdir();
    let config = |name: &str| RunConfig {
        ema: Some("decay=0.9,use_buffers=true".into()),
        model: "mlp:hidden=16,batch_norm=true".into(),
        clip_grad_norm: Some("1.0".into()),
        accumulate_grad_batches: 3,
        epochs: 4,
        ..moons(&dir.path().join(name))
    };
    let whole = tchzoo::run::train(&config("a"), Verbosity::Silent, vec![]).unwrap();
    let err = tchzoo::run::train(&config("b"), Verbosity::Silent, vec![Box::new(common::StopAt(1))]).unwrap_err();
    assert!(matches!(err, tchzoo::Error::Interrupted(_)), "{err}");
    let b = dir.path().join("b");
    assert!(tchzoo::train::resume::read(&b).unwrap().ema_updates.is_some());
    let resumed = tchzoo::run::resume(&b, Verbosity::Silent, vec![]).unwrap();
    let strip = |h: &History| {
        let mut h = h.clone();
        h.history.remove("epoch_time");
        h
    };
    assert_eq!(strip(&resumed.history), strip(&whole.history));
    let read = |p: &Path| tchzoo::checkpoint::read_state_dict(p).unwrap();
    let (ea, eb) = (read(&whole.dir.join("model_ema.pt")), read(&b.join("model_ema.pt")));
    let model = read(&whole.dir.join("model.pt"));
    assert_eq!(ea.len(), model.len(), "parameters and buffers of the EMA model");
    for ((ka, ta), (kb, tb)) in ea.iter().zip(&eb) {
        assert_eq!(ka, kb);
        assert!(ta.equal(tb), "EMA tensor {ka} differs after the resume");
    }
    assert!(!model[0].1.equal(&ea[0].1), "model_ema.pt holds the average, not the model");
}

#[test]
fn bad_values_are_one_line_and_exit_2_before_training() {
    let dir = common::tempdir();
    let cases: &[(&[&str], &str)] = &[
        (&["--clip-grad-norm", "0"], "clip-grad-norm"),
        (&["--clip-grad-norm", "-1"], "clip-grad-norm"),
        (&["--clip-grad-norm", "1,norm_type=x"], "norm_type"),
        (&["--clip-grad-value", "0"], "clip-grad-value"),
        (&["--clip-grad-norm", "1", "--clip-grad-value", "1"], "not both"),
        (&["--accumulate-grad-batches", "0"], "accumulate-grad-batches"),
        (&["--ema", "decay=1"], "decay"),
        (&["--ema", "decay=0"], "decay"),
        (&["--ema", "decay=0.9,foo=1"], "foo"),
        (&["--max-time", "00:99:00"], "max-time"),
        (&["--limit-train-batches", "1.5"], "limit-train-batches"),
        (&["--limit-val-batches", "-1"], "limit-val-batches"),
        (&["--limit-train-batches", "0"], "limit-train-batches"),
        (&["--fast-dev-run", "0"], "fast-dev-run"),
        (&["--overfit-batches", "0"], "overfit-batches"),
        (&["--optimizer-impl", "foreach", "--optimizer", "rmsprop"], "foreach"),
        (&["--optimizer-impl", "fused", "--optimizer", "rmsprop"], "RMSprop"),
        (&["--optimizer-impl", "x"], "optimizer-impl"),
    ];
    for (args, name) in cases {
        let out = dir.path().join("run");
        common::assert_refused(&["--model", "mlp", "--data", "moons", "--epochs", "1"], &out, args, name);
    }
}

#[test]
fn config_json_records_the_environment_and_deterministic_mode() {
    let dir = common::tempdir();
    let out = dir.path().join("run");
    let o = common::tchzoo()
        .args(["train", "--model", "mlp", "--data", "moons:n_samples=200", "--epochs", "1", "--threads", "1"])
        .args(["--device", "cpu", "--seed", "7", "--deterministic", "--cudnn-benchmark", "-q", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let config: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("config.json")).unwrap()).unwrap();
    let env = &config["environment"];
    let torch = common::run_script("torch_version.py", &[]);
    assert_eq!(env["libtorch"].as_str(), Some(torch.trim()), "{env}");
    assert_eq!(env["tchzoo"].as_str(), Some(env!("CARGO_PKG_VERSION")));
    assert_eq!(env["seed"].as_u64(), Some(7));
    assert_eq!(env["threads"].as_i64(), Some(1));
    assert_eq!(env["device"].as_str(), Some("cpu"));
    assert_eq!(env["deterministic"].as_bool(), Some(true), "ATen's switch was on during the run: {env}");
    assert_eq!((config["deterministic"].as_bool(), config["cudnn_benchmark"].as_bool()), (Some(true), Some(true)));
    // The recorded config reads back (as --resume does).
    RunConfig::from_json_file(&out.join("config.json")).unwrap();
}

#[test]
fn deterministic_mode_makes_an_op_without_a_deterministic_kernel_an_error() {
    let _g = global();
    let put = || {
        let mut t = Tensor::zeros([4], (Kind::Float, Device::Cpu));
        let _ = t.put_(&Tensor::from_slice(&[0i64, 0]), &Tensor::from_slice(&[1f32, 2.0]), false);
    };
    tchzoo::train::features::set_determinism(true, false).unwrap();
    let err = tchzoo::util::catch_torch(put);
    tchzoo::train::features::set_determinism(false, false).unwrap();
    let err = err.expect_err("put_ has no deterministic kernel on the CPU, as torch.use_deterministic_algorithms says");
    assert!(err.contains("deterministic"), "{err}");
    assert!(tchzoo::util::catch_torch(put).is_ok(), "switched off again");
}
