//! `--swa` against the recipe a PyTorch user runs with `torch.optim.swa_utils` (scripts/fixtures/swa_parity.py):
//! `AveragedModel` + `SWALR` + `update_bn`, from the same initial weights, data (the embedded digits) and batch order,
//! on an MLP with batch norm; then the SWA state across `--resume`, and bad values through the binary.
mod common;

use std::path::Path;

use tch::Tensor;
use tchzoo::config::RunConfig;
use tchzoo::data::Loader;
use tchzoo::optim::{HyperConfig, OptimizerKind};
use tchzoo::train::progress::Verbosity;
use tchzoo::train::History;

/// Runs here set libtorch's global switches and the stop flag: the tests that train hold this.
static GLOBAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn global() -> std::sync::MutexGuard<'static, ()> {
    GLOBAL.lock().unwrap_or_else(|e| e.into_inner())
}

const HIDDEN: [i64; 2] = [32, 16];
const EPOCHS: usize = 6;
const BATCH: usize = 64;

fn config(out: &Path, swa: &str) -> RunConfig {
    RunConfig {
        model: format!("mlp:hidden={}x{},batch_norm=true", HIDDEN[0], HIDDEN[1]),
        data: "digits".into(),
        validation_split: None,
        epochs: EPOCHS,
        batch_size: BATCH,
        optimizer: OptimizerKind::Sgd,
        hyper: HyperConfig { lr: Some(0.1), momentum: 0.9, ..Default::default() },
        augment: None,
        device: "cpu".into(),
        threads: Some(1),
        swa: Some(swa.into()),
        out: Some(out.display().to_string()),
        ..RunConfig::default()
    }
}

fn read(path: &Path) -> Vec<(String, Tensor)> {
    tchzoo::checkpoint::read_state_dict(path).unwrap()
}

struct Case {
    name: &'static str,
    swa: &'static str,
    /// `step:step_size=1,gamma=0.5` (torch's StepLR) before the SWA phase.
    step_lr: bool,
}

#[test]
fn swa_is_averaged_model_swalr_and_update_bn() {
    let _g = global();
    let dir = common::tempdir();
    let cases = [
        Case { name: "cos", swa: "start=4,lr=0.02,anneal_epochs=2", step_lr: false },
        Case {
            name: "linear_after_steplr",
            swa: "start=3,lr=0.03,anneal_epochs=3,anneal_strategy=linear",
            step_lr: true,
        },
        Case { name: "no_annealing", swa: "start=5,lr=0.01,anneal_epochs=0", step_lr: false },
    ];
    // The initial weights and the training data, as a run of this config prepares them.
    let prepared = tchzoo::run::prepare(&config(&dir.path().join("prep"), cases[0].swa)).unwrap();
    let init = dir.path().join("init.safetensors");
    tchzoo::checkpoint::write_state_dict(&init, &prepared.trainer.store.state_dict()).unwrap();
    let train = prepared.train;
    let classes = train.n_classes().unwrap();
    let xs = tchzoo::data::pixels_to_float(&train.xs);
    let mut tensors: Vec<(String, Tensor)> = read(&init).into_iter().map(|(k, v)| (format!("w.{k}"), v)).collect();
    tensors.push(("x".into(), xs.copy()));
    tensors.push(("y".into(), train.ys.copy()));
    let loader = Loader::new(&train.xs, &train.ys, BATCH, true, RunConfig::default().seed);
    for e in 0..=EPOCHS {
        tensors.push((format!("order.{e}"), Tensor::from_slice(&loader.order(e))));
    }
    let inp = dir.path().join("in.safetensors");
    tchzoo::checkpoint::write_state_dict(&inp, &tensors).unwrap();

    let mut runs = vec![];
    let mut options = vec![];
    for case in &cases {
        let out = dir.path().join(case.name);
        let c = RunConfig {
            weights: Some(init.display().to_string()),
            lr_schedule: case.step_lr.then(|| "step:step_size=1,gamma=0.5".to_string()),
            ..config(&out, case.swa)
        };
        let outcome = tchzoo::run::train(&c, Verbosity::Silent, vec![]).unwrap();
        let swa = tchzoo::train::swa::SwaConfig::parse(case.swa).unwrap();
        options.push(serde_json::json!({
            "name": case.name,
            "model": {"in": train.sample_shape().iter().product::<i64>(), "hidden": HIDDEN, "out": classes, "activation": "relu"},
            "lr": 0.1, "momentum": 0.9, "batch_size": BATCH, "epochs": EPOCHS,
            "step_lr": case.step_lr.then(|| serde_json::json!({"step_size": 1, "gamma": 0.5})),
            "swa": {"start": swa.start, "lr": swa.lr, "anneal_epochs": swa.anneal_epochs,
                    "anneal_strategy": format!("{:?}", swa.anneal_strategy).to_lowercase()},
            "model_pt": out.join("model.pt").display().to_string(),
        }));
        runs.push((case, outcome, read(&out.join("model.pt"))));
    }
    let opts = dir.path().join("opts.json");
    std::fs::write(&opts, serde_json::json!({ "cases": options }).to_string()).unwrap();
    let out = dir.path().join("out.safetensors");
    common::run_script(
        "swa_parity.py",
        &[&inp.display().to_string(), &opts.display().to_string(), &out.display().to_string()],
    );
    let expected = common::read_safetensors(&out);

    for (case, outcome, swa) in &runs {
        let name = case.name;
        // SWALR's learning rates, epoch by epoch.
        let lrs = outcome.history.get("lr").unwrap().to_vec();
        let torch_lrs = Vec::<f64>::try_from(&expected[&format!("{name}.lr")]).unwrap();
        eprintln!("{name}: lr {lrs:?}");
        assert_eq!(lrs, torch_lrs, "{name}: the epochs' learning rates are SWALR's");
        // model.pt is the SWA model after update_bn, equal to torch's; Python loads it strictly.
        let mut gap: f64 = 0.0;
        for (k, v) in swa {
            let want = &expected[&format!("{name}.swa.{k}")];
            let loaded = &expected[&format!("{name}.loaded.{k}")];
            assert!(v.equal(loaded), "{name}: {k} read back by torch differs");
            gap = gap.max(common::rel_diff(v, want));
        }
        eprintln!("{name}: SWA weights and batch-norm statistics, max rel gap to torch {gap:e}");
        assert_eq!(gap, 0.0, "{name}: the SWA model differs from torch's by {gap:e}");
        // The comparison can tell: the average is not the trained model, and update_bn recomputed the statistics.
        let trained = |k: &str| &expected[&format!("{name}.w.{k}")];
        let sd: std::collections::HashMap<_, _> = swa.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let moved = common::rel_diff(sd["features.1.weight"], trained("features.1.weight"));
        let stats = common::rel_diff(sd["features.2.running_mean"], trained("features.2.running_mean"));
        eprintln!("{name}: SWA vs trained weights {moved:e}, running means {stats:e}");
        assert!(moved > 1e-4 && stats > 1e-4, "{name}: SWA model equals the trained one ({moved:e}, {stats:e})");
        let batches = train.len().div_ceil(BATCH) as i64;
        assert_eq!(sd["features.2.num_batches_tracked"].int64_value(&[]), batches, "{name}: one update_bn pass");
    }
}

#[test]
fn swa_survives_a_resume_exactly() {
    let _g = global();
    let dir = common::tempdir();
    let at = |name: &str| RunConfig {
        validation_split: Some(0.2),
        lr_schedule: Some("step:step_size=1,gamma=0.5".into()),
        ..config(&dir.path().join(name), "start=3,lr=0.02,anneal_epochs=2")
    };
    let whole = tchzoo::run::train(&at("whole"), Verbosity::Silent, vec![]).unwrap();
    // Stopped after epoch 4 (1-based): the SWA phase began at 3, two epochs are averaged.
    let err = tchzoo::run::train(&at("b"), Verbosity::Silent, vec![Box::new(common::StopAt(3))]).unwrap_err();
    assert!(matches!(err, tchzoo::Error::Interrupted(_)), "{err}");
    let b = dir.path().join("b");
    let state = tchzoo::train::resume::read(&b).unwrap();
    assert_eq!(state.epoch, 4);
    let swa = state.callbacks.iter().find(|(k, _)| k.ends_with(".swa")).expect("the SWA state is saved").1;
    assert_eq!(swa["n_averaged"].as_u64(), Some(2), "{swa}");
    assert_eq!(swa["steps"].as_u64(), Some(3), "SWALR's constructor step and two epoch steps: {swa}");
    let resumed = tchzoo::run::resume(&b, Verbosity::Silent, vec![]).unwrap();
    let strip = |h: &History| {
        let mut h = h.clone();
        h.history.remove("epoch_time");
        h
    };
    assert_eq!(strip(&resumed.history), strip(&whole.history));
    let (wa, wb) = (read(&whole.dir.join("model.pt")), read(&b.join("model.pt")));
    assert_eq!(wa.len(), wb.len());
    for ((ka, ta), (kb, tb)) in wa.iter().zip(&wb) {
        assert_eq!(ka, kb);
        assert!(ta.equal(tb), "SWA tensor {ka} differs after the resume");
    }
    // A run killed after its last epoch but before its final files: --resume trains no further and writes the same
    // SWA model (the averages come back from the resume state, update_bn runs again).
    std::fs::remove_file(whole.dir.join("model.pt")).unwrap();
    tchzoo::run::resume(&whole.dir, Verbosity::Silent, vec![]).unwrap();
    for ((k, t), (_, again)) in wa.iter().zip(&read(&whole.dir.join("model.pt"))) {
        assert!(t.equal(again), "{k} differs when the final files are written by --resume");
    }
    // Validation ran on the trained weights (Lightning's): the last val_loss is theirs, not the SWA model's.
    let last = tchzoo::train::resume::read(&whole.dir).unwrap();
    let trained = read(&whole.dir.join(&last.dir).join("checkpoint.pt"));
    let swa_loss = evaluate(&whole.dir, &wa);
    let trained_loss = evaluate(&whole.dir, &trained);
    let logged = whole.history.last("val_loss").unwrap();
    eprintln!("val_loss logged {logged}, trained weights {trained_loss}, SWA model {swa_loss}");
    assert_eq!(logged, trained_loss);
    assert_ne!(logged, swa_loss);
}

/// The validation loss of `weights` in the model and data of the run in `run`.
fn evaluate(run: &Path, weights: &[(String, Tensor)]) -> f64 {
    let config = RunConfig::from_json_file(&run.join("config.json")).unwrap();
    let prepared = tchzoo::run::prepare(&config).unwrap();
    prepared.trainer.store.load_state_dict(weights, true, "weights").unwrap();
    prepared.trainer.evaluate(prepared.validation.as_ref().unwrap(), BATCH).unwrap()["loss"]
}

#[test]
fn bad_values_are_one_line_and_exit_2_before_training() {
    let dir = common::tempdir();
    let cases: &[(&[&str], &str)] = &[
        (&["--swa", "start=0,lr=0.01"], "start"),
        (&["--swa", "start=3,lr=0.01"], "start 3 is after the last epoch"),
        (&["--swa", "lr=0.01"], "no start"),
        (&["--swa", "start=1"], "no SWA learning rate"),
        (&["--swa", "start=1,lr=0"], "lr 0"),
        (&["--swa", "start=1,lr=-1"], "lr -1"),
        (&["--swa", "start=1,lr=x"], "lr 'x'"),
        (&["--swa", "start=1,lr=0.1,anneal_epochs=-1"], "anneal_epochs"),
        (&["--swa", "start=1,lr=0.1,anneal_epochs=1.5"], "anneal_epochs"),
        (&["--swa", "start=1,lr=0.1,anneal_strategy=exp"], "anneal_strategy"),
        (&["--swa", "start=1,lr=0.1,foo=1"], "foo"),
        (&["--swa", "start=1,lr=0.1", "--cuda-graph"], "cuda-graph"),
        (&["--swa", "start=1,lr=0.1", "--ema", "0.9"], "--ema"),
    ];
    for (args, name) in cases {
        let out = dir.path().join("run");
        common::assert_refused(
            &["--model", "mlp", "--data", "moons", "--epochs", "2", "--device", "cpu"],
            &out,
            args,
            name,
        );
    }
}
