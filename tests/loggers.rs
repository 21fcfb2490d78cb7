//! The loggers of issue #17 point 5: TensorBoard event files read back by Python's `tensorboard` package (its
//! `EventAccumulator`, through scripts/fixtures/tensorboard_read.py) equal `history.json`, the weight histograms
//! and the config text; a resumed run's events show each epoch once; `steps.jsonl` has one line every N steps.
mod common;

use std::path::Path;

use serde_json::Value;
use tchzoo::config::RunConfig;
use tchzoo::train::progress::Verbosity;
use tchzoo::train::{Callback, CallbackContext, History, Logs};

fn moons(out: &Path) -> RunConfig {
    RunConfig {
        model: "mlp:hidden=16".into(),
        data: "moons:n_samples=400".into(),
        epochs: 4,
        augment: None,
        device: "cpu".into(),
        threads: Some(1),
        metrics: vec!["accuracy".into()],
        clip_grad_norm: Some("1.0".into()),
        out: Some(out.display().to_string()),
        ..RunConfig::default()
    }
}

fn read_events(dir: &Path) -> Value {
    let text = common::run_script("tensorboard_read.py", &[dir.to_str().unwrap()]);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Every scalar read back equals `history`'s value at the same epoch, as float32; the tags are the history's names.
fn assert_scalars_are_the_history(events: &Value, history: &History) {
    let scalars = events["scalars"].as_object().unwrap();
    let tags: Vec<&String> = scalars.keys().collect();
    let names: Vec<&String> = history.history.keys().collect();
    assert_eq!(tags, names, "one scalar tag per history name");
    for (name, values) in &history.history {
        let read: Vec<(usize, f32)> = scalars[name]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p[0].as_u64().unwrap() as usize, p[1].as_f64().unwrap() as f32))
            .collect();
        let want: Vec<(usize, f32)> = history.epoch.iter().copied().zip(values.iter().map(|v| *v as f32)).collect();
        assert_eq!(read, want, "scalar '{name}' (step, value) against history.json");
    }
}

#[test]
fn tensorboard_scalars_histograms_and_config_read_back_in_python() {
    let dir = common::tempdir();
    let config = RunConfig { tensorboard: Some("tensorboard".into()), tb_histograms: Some(2), ..moons(dir.path()) };
    let out = tchzoo::run::train(&config, Verbosity::Silent, vec![]).unwrap();
    let history = History::load_json(&out.dir.join("history.json")).unwrap();
    for name in ["loss", "accuracy", "val_loss", "val_accuracy", "lr", "grad_norm", "epoch_time"] {
        assert!(history.get(name).is_some(), "the run logs {name}");
    }
    let events = read_events(&out.dir.join("tensorboard"));
    assert_eq!(events["files"], 1);
    assert_scalars_are_the_history(&events, &history);

    // Histograms of every parameter after epochs 2 and 4 (steps 1 and 3); the last one is of the final weights.
    let weights = common::read_safetensors(&out.dir.join("model.safetensors"));
    let hists = events["histograms"].as_object().unwrap();
    let mut tags: Vec<&String> = hists.keys().collect();
    let mut names: Vec<&String> = weights.keys().collect();
    tags.sort();
    names.sort();
    assert_eq!(tags, names);
    for (name, w) in &weights {
        let rows = hists[name].as_array().unwrap();
        let steps: Vec<u64> = rows.iter().map(|r| r["step"].as_u64().unwrap()).collect();
        assert_eq!(steps, [1, 3], "{name}");
        let last = &rows[1];
        let w = w.to_kind(tch::Kind::Double);
        let num = w.numel() as f64;
        assert_eq!(last["num"].as_f64().unwrap(), num, "{name}");
        assert_eq!(last["min"].as_f64().unwrap(), w.min().double_value(&[]), "{name}");
        assert_eq!(last["max"].as_f64().unwrap(), w.max().double_value(&[]), "{name}");
        let sum = w.sum(tch::Kind::Double).double_value(&[]);
        assert!((last["sum"].as_f64().unwrap() - sum).abs() <= 1e-9 * w.abs().sum(tch::Kind::Double).double_value(&[]));
        let buckets: f64 = last["bucket"].as_array().unwrap().iter().map(|b| b.as_f64().unwrap()).sum();
        assert_eq!(buckets, num, "{name}: the buckets count every value");
        let limits = last["bucket_limit"].as_array().unwrap();
        assert_eq!(limits.last().unwrap().as_f64().unwrap(), w.max().double_value(&[]), "{name}");
    }

    // The config as the text plugin's string tensor, at step 0: the run's config.json.
    let text = events["text"]["config"].as_array().unwrap();
    assert_eq!(text.len(), 1);
    assert_eq!(text[0][0], 0);
    let body = text[0][1].as_str().unwrap();
    let json = body.strip_prefix("```json\n").and_then(|b| b.strip_suffix("\n```")).unwrap_or(body);
    let read: Value = serde_json::from_str(json).unwrap();
    let written: Value = serde_json::from_str(&std::fs::read_to_string(out.dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(read, written);
}

/// Fails at the end of epoch `at`, after the loggers before it have written the epoch but before the resume state
/// holds it (as a kill there would).
struct FailAt(usize);
impl Callback for FailAt {
    fn on_epoch_end(&mut self, epoch: usize, _logs: &Logs, _ctx: &mut CallbackContext) -> tchzoo::Result<()> {
        if epoch == self.0 {
            return Err(tchzoo::Error::invalid("failed on purpose"));
        }
        Ok(())
    }
}

fn steps(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

#[test]
fn a_resumed_run_continues_the_events_and_the_step_log_without_repeats() {
    let dir = common::tempdir();
    let config = |name: &str| RunConfig {
        tensorboard: Some("tensorboard".into()),
        log_every_n_steps: Some(3),
        ..moons(&dir.path().join(name))
    };
    let whole = tchzoo::run::train(&config("whole"), Verbosity::Silent, vec![]).unwrap();
    let err = tchzoo::run::train(&config("cut"), Verbosity::Silent, vec![Box::new(FailAt(2))]).unwrap_err();
    assert!(err.to_string().contains("failed on purpose"), "{err}");
    let cut = dir.path().join("cut");
    // Epoch 2 (0-based) was logged but not saved: its events and steps are in the files already.
    let before = read_events(&cut.join("tensorboard"));
    assert_eq!(before["scalars"]["loss"].as_array().unwrap().len(), 3);
    let lines_before = steps(&cut.join("steps.jsonl")).len();
    let resumed = tchzoo::run::resume(&cut, Verbosity::Silent, vec![]).unwrap();
    assert_eq!(resumed.history.epoch, [0, 1, 2, 3]);

    // TensorBoard drops the first file's epoch 2 at the second file's restart: each epoch once, the resumed values.
    let events = read_events(&cut.join("tensorboard"));
    assert_eq!(events["files"], 2);
    assert_scalars_are_the_history(&events, &resumed.history);

    // 320 training samples in batches of 32: 10 steps an epoch, 40 in all, a line every 3rd: 13 lines.
    let (a, b) = (steps(&whole.dir.join("steps.jsonl")), steps(&cut.join("steps.jsonl")));
    assert!(lines_before > 6 && lines_before < 13, "{lines_before} lines before the resume");
    assert_eq!(a.len(), 40 / 3);
    let without_time = |v: &[Value]| -> Vec<Value> {
        v.iter()
            .map(|l| {
                let mut l = l.clone();
                l.as_object_mut().unwrap().remove("wall_time");
                l
            })
            .collect()
    };
    assert_eq!(without_time(&b), without_time(&a), "the resumed run's step log equals the uninterrupted run's");
    for (i, line) in a.iter().enumerate() {
        assert_eq!(line["step"], 3 * (i as u64 + 1));
        assert_eq!(line["epoch"], (3 * (i as u64 + 1) - 1) / 10, "{line}");
        assert!(line["loss"].as_f64().unwrap().is_finite(), "{line}");
        assert!(line["grad_norm"].as_f64().unwrap().is_finite(), "{line}");
        assert!(line["wall_time"].as_f64().unwrap() > 1.6e9, "{line}");
        assert_eq!(line["lr"].as_f64().unwrap(), whole.history.get("lr").unwrap()[0], "{line}");
    }
}

#[test]
fn the_epoch_line_shows_the_learning_rate_and_grad_norm() {
    let dir = common::tempdir();
    let out = dir.path().join("run");
    let o = common::tchzoo()
        .args(["train", "--model", "mlp", "--data", "moons:n_samples=200", "--epochs", "2", "--threads", "1"])
        .args(["--device", "cpu", "--lr", "0.003", "--clip-grad-norm", "1", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{stdout}{}", String::from_utf8_lossy(&o.stderr));
    let history = History::load_json(&out.join("history.json")).unwrap();
    let lines: Vec<&str> = stdout.lines().filter(|l| l.starts_with("Epoch ")).collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    for (i, line) in lines.iter().enumerate() {
        let field = |key: &str| -> String {
            line.split(" - ")
                .find_map(|p| p.strip_prefix(&format!("{key}: ")).map(str::to_string))
                .unwrap_or_else(|| panic!("no {key} in {line}"))
        };
        assert_eq!(field("lr"), "3.00e-3", "{line}");
        let norm: f64 = field("grad_norm").parse().unwrap();
        assert!((norm - history.get("grad_norm").unwrap()[i]).abs() <= 5e-5, "{line}");
    }
}

#[test]
fn bad_logger_values_are_one_line_and_exit_2_before_training() {
    let dir = common::tempdir();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let file = file.to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["--tensorboard", "--tb-histograms", "0"], "tb-histograms"),
        (&["--tensorboard", "--tb-histograms", "-2"], "tb-histograms"),
        (&["--tb-histograms", "2"], "--tensorboard"),
        (&["--log-every-n-steps", "0"], "log-every-n-steps"),
        (&["--tensorboard", file], "is a file"),
    ];
    for (args, name) in cases {
        let out = dir.path().join("run");
        common::assert_refused(&["--model", "mlp", "--data", "moons", "--epochs", "1"], &out, args, name);
    }
    // A config file's keys are checked as the flags.
    let config = dir.path().join("config.json");
    std::fs::write(&config, r#"{"model": "mlp", "data": "moons", "log_every_n_steps": 0}"#).unwrap();
    let o = common::tchzoo()
        .args(["train", "--config"])
        .arg(&config)
        .arg("--out")
        .arg(dir.path().join("from-config"))
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.lines().count() == 1 && stderr.contains("log-every-n-steps"), "{stderr}");
}
