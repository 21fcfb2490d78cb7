//! `tchzoo tune lr` against Lightning 2.6's own `Tuner(trainer).lr_find(...)` (scripts/fixtures/
//! lr_find_lightning.py): the same `mlp` from the same initial weights (a state dict tchzoo wrote), the same digits
//! in the same order (no shuffling on either side), the same optimizer; then `train --lr auto` against `tune lr`,
//! and bad values through the binary.
mod common;

use std::path::Path;

use serde::Deserialize;
use tchzoo::nn::VarStore;
use tchzoo::train::lr_find::{suggestion_index, LrFinderResult};
use tchzoo::util::json::F64;

/// One range test on each side.
struct Case {
    /// `tune lr` flags (besides the data, model and weights).
    flags: Vec<&'static str>,
    /// The same case for the fixture.
    json: serde_json::Value,
}

#[derive(Deserialize)]
struct Lightning {
    lrs: Vec<f64>,
    losses: Vec<F64>,
    suggestion: Option<f64>,
}

fn same(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b
}

#[test]
fn tune_lr_is_lightnings_lr_find() {
    let dir = common::tempdir();
    let data = tchzoo::data::load("digits:size=8", 0).unwrap();
    let (x, y) = (data.xs.shallow_clone(), data.ys.shallow_clone());
    assert_eq!(x.size(), [1797, 1, 8, 8]);
    let store = VarStore::new(tch::Device::Cpu);
    tch::manual_seed(7);
    tchzoo::models::build("mlp:hidden=32", &store, 10, &[1, 8, 8]).unwrap();
    let weights = dir.path().join("init.safetensors");
    tchzoo::checkpoint::save_weights(&store, &weights).unwrap();
    let mut tensors: Vec<(String, tch::Tensor)> =
        store.state_dict().into_iter().map(|(k, t)| (format!("w.{k}"), t)).collect();
    tensors.push(("x".into(), x));
    tensors.push(("y".into(), y));
    let inputs = dir.path().join("in.safetensors");
    tch::Tensor::write_safetensors(&tensors, &inputs).unwrap();

    let model = serde_json::json!({"in": 64, "hidden": [32], "out": 10});
    let cases = [
        // Lightning's defaults with Adam, up to lr 100: the loss diverges before 100 steps and the search stops.
        Case {
            flags: vec!["--optimizer", "adam", "--max-lr", "100"],
            json: serde_json::json!({"model": model, "optimizer": {"kind": "adam", "lr": 1e-3, "momentum": 0.0},
                "batch_size": 64, "accumulate": 1, "min_lr": 1e-8, "max_lr": 100.0, "num_training": 100,
                "early_stop_threshold": 4.0}),
        },
        // SGD with momentum, two batches a step (a partial group at each epoch's end), no early stop, up to lr 10.
        Case {
            flags: vec![
                "--optimizer",
                "sgd",
                "--momentum",
                "0.9",
                "--accumulate-grad-batches",
                "2",
                "--min-lr",
                "1e-5",
                "--max-lr",
                "10",
                "--num-steps",
                "40",
                "--early-stop-threshold",
                "none",
            ],
            json: serde_json::json!({"model": model, "optimizer": {"kind": "sgd", "lr": 1e-2, "momentum": 0.9},
                "batch_size": 64, "accumulate": 2, "min_lr": 1e-5, "max_lr": 10.0, "num_training": 40,
                "early_stop_threshold": null}),
        },
    ];
    let cases_path = dir.path().join("cases.json");
    let list: Vec<&serde_json::Value> = cases.iter().map(|c| &c.json).collect();
    std::fs::write(&cases_path, serde_json::to_string(&list).unwrap()).unwrap();
    let printed = common::run_script("lr_find_lightning.py", &[inputs.to_str().unwrap(), cases_path.to_str().unwrap()]);
    let line = printed.lines().last().unwrap_or_default();
    let expected: Vec<Lightning> = tchzoo::util::json::from_str(line).unwrap_or_else(|e| panic!("{e}: {printed}"));

    for (i, (case, want)) in cases.iter().zip(&expected).enumerate() {
        let out = dir.path().join(format!("case{i}"));
        let o = common::tchzoo()
            .args(["tune", "lr", "--model", "mlp:hidden=32", "--data", "digits:size=8", "--no-validation"])
            .args(["--no-shuffle", "--augment", "none", "--batch-size", "64", "--threads", "1", "--weights"])
            .arg(&weights)
            .arg("--out")
            .arg(&out)
            .args(&case.flags)
            .output()
            .unwrap();
        assert!(o.status.success(), "case {i}: {}", String::from_utf8_lossy(&o.stderr));
        let stdout = String::from_utf8_lossy(&o.stdout);
        assert!(stdout.contains("Learning-rate finder:"), "{stdout}");
        let got = LrFinderResult::load_json(&out.join("lr_find.json")).unwrap();
        let png = std::fs::read(out.join("lr_find.png")).unwrap();
        assert!(png.starts_with(b"\x89PNG") && png.len() > 2000, "case {i}: lr_find.png is not a plot");

        // The schedule: bit for bit, as long as Lightning's.
        assert_eq!(got.lrs, want.lrs, "case {i}: learning rates");
        let (ours, theirs): (Vec<f64>, Vec<f64>) = (got.losses(), want.losses.iter().map(|l| l.0).collect());
        assert_eq!(ours.len(), theirs.len(), "case {i}: recorded steps (ours {ours:?}, Lightning's {theirs:?})");
        let mut worst = 0.0f64;
        for (k, (a, b)) in ours.iter().zip(&theirs).enumerate() {
            if a.is_finite() && b.is_finite() {
                let gap = (a - b).abs() / b.abs().max(1.0);
                worst = worst.max(gap);
                assert!(gap <= 1e-6, "case {i} step {k}: smoothed loss {a} against Lightning's {b}");
            } else {
                assert!(same(*a, *b), "case {i} step {k}: smoothed loss {a} against Lightning's {b}");
            }
        }
        eprintln!(
            "case {i}: {} steps, largest relative loss gap {worst:e}, suggestion {:?} (Lightning {:?})",
            ours.len(),
            got.suggestion,
            want.suggestion
        );
        assert_eq!(got.suggestion, want.suggestion, "case {i}: suggestion");
        assert!(got.suggestion.is_some(), "case {i}: the fixture should give a suggestion");
        // The suggestion is recomputed from the losses Lightning recorded: the same index.
        assert_eq!(
            suggestion_index(&want.lrs, &theirs, 10, 1).map(|k| want.lrs[k]),
            want.suggestion,
            "case {i}: our suggestion() on Lightning's losses"
        );
        if i == 0 {
            assert!(got.stopped_early && got.steps < 100, "case 0 should stop early: {} steps", got.steps);
        } else {
            assert_eq!(got.steps, 40);
        }
    }
}

#[test]
fn suggestion_needs_two_finite_losses_after_the_skips() {
    let lrs: Vec<f64> = (0..13).map(|k| 1e-4 * 2f64.powi(k)).collect();
    let falling: Vec<f64> = (0..13).map(|k| 3.0 - 0.1 * k as f64).collect();
    // [10:-1] keeps 1 of 12 points, 2 of 13.
    assert_eq!(suggestion_index(&lrs[..12], &falling[..12], 10, 1), None);
    assert!(suggestion_index(&lrs, &falling, 10, 1).is_some());
    let mut with_nan = falling.clone();
    with_nan[10] = f64::NAN;
    assert_eq!(suggestion_index(&lrs, &with_nan, 10, 1), None);
    assert_eq!(suggestion_index(&lrs, &falling, 0, 0), None, "Python's [0:-0] is empty");
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn train_lr_auto_uses_tune_lrs_suggestion_and_trains_as_with_that_lr() {
    let dir = common::tempdir();
    let base = [
        "--model",
        "mlp:hidden=16",
        "--data",
        "moons:n_samples=200",
        "--batch-size",
        "16",
        "--seed",
        "5",
        "--threads",
        "1",
        "--optimizer",
        "adam",
    ];
    let run = |args: &[&str]| {
        let o = common::tchzoo().args(args).args(base).output().unwrap();
        assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    let (auto, tuned, fixed) = (dir.path().join("auto"), dir.path().join("tuned"), dir.path().join("fixed"));
    let printed = run(&["train", "--epochs", "2", "--lr", "auto", "--out", auto.to_str().unwrap()]);
    run(&["tune", "lr", "--out", tuned.to_str().unwrap()]);
    let suggested = LrFinderResult::load_json(&tuned.join("lr_find.json")).unwrap().suggestion.unwrap();
    assert!(printed.contains("Learning-rate finder: suggested lr"), "{printed}");

    let config = read_json(&auto.join("config.json"));
    assert_eq!(config["lr_auto"], serde_json::json!(true));
    assert_eq!(config["lr"].as_f64(), Some(suggested), "config.json's lr against tune lr's suggestion");
    let in_run = LrFinderResult::load_json(&auto.join("lr_find.json")).unwrap();
    assert_eq!(in_run.suggestion, Some(suggested));
    assert!(auto.join("lr_find.png").exists());

    // The finder put the weights and optimizer back: training then equals a run given that lr outright.
    let lr = format!("{suggested:e}");
    run(&["train", "--epochs", "2", "--lr", &lr, "--out", fixed.to_str().unwrap()]);
    assert_eq!(read_json(&fixed.join("config.json"))["lr"].as_f64(), Some(suggested));
    let (a, b) = (read_json(&auto.join("history.json")), read_json(&fixed.join("history.json")));
    assert_eq!(a["history"]["loss"], b["history"]["loss"], "history after --lr auto against --lr {lr}");
    assert_eq!(a["history"]["val_loss"], b["history"]["val_loss"]);
}

#[test]
fn bad_values_are_one_line_and_exit_2() {
    let dir = common::tempdir();
    let out = dir.path().join("out");
    let tune: &[(&[&str], &str)] = &[
        (&["--min-lr", "1", "--max-lr", "0.1"], "min-lr"),
        (&["--min-lr", "0.1", "--max-lr", "0.1"], "min-lr"),
        (&["--min-lr", "0"], "min-lr"),
        (&["--max-lr", "inf"], "max-lr"),
        (&["--num-steps", "1"], "num-steps"),
        (&["--num-steps", "-3"], "num-steps"),
        (&["--early-stop-threshold", "abc"], "early-stop-threshold"),
        (&["--early-stop-threshold", "0"], "early-stop-threshold"),
        (&["--lr", "0.1"], "--lr"),
        (&["--fast-dev-run"], "fast-dev-run"),
    ];
    for (args, name) in tune {
        let o = common::tchzoo()
            .args(["tune", "lr", "--model", "mlp", "--data", "moons", "--out"])
            .arg(&out)
            .args(*args)
            .env("RUST_BACKTRACE", "1")
            .output()
            .unwrap();
        common::assert_one_error_line(&o, args, name);
        assert!(!out.join("lr_find.json").exists());
    }
    let train: &[(&[&str], &str)] =
        &[(&["--lr", "fast"], "--lr"), (&["--lr", "auto", "--fast-dev-run"], "fast-dev-run")];
    for (args, name) in train {
        let o = common::tchzoo()
            .args(["train", "--model", "mlp", "--data", "moons", "--epochs", "1", "--out"])
            .arg(&out)
            .args(*args)
            .env("RUST_BACKTRACE", "1")
            .output()
            .unwrap();
        common::assert_one_error_line(&o, args, name);
        assert!(!out.join("history.json").exists());
    }
}
