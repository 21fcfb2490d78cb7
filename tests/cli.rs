//! The `tchzoo` binary end to end: `train` and its run folder, progress lines, `--config` under flags, seeded
//! determinism, `models`, `summary`, `doctor`, and how the binary finds libtorch (RUNPATH, no LD_LIBRARY_PATH).
//! Runs are small (moons, a few hundred samples, a few epochs) so that the file stays fast.
mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use common::{tchzoo, tempdir};

const MOONS: &str = "moons:n_samples=300,noise=0.1";

/// Runs the command, checks that it succeeded, and returns stdout.
fn ok(cmd: &mut Command) -> String {
    let out: Output = cmd.output().expect("run tchzoo");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{cmd:?} failed ({:?})\nstdout:\n{stdout}\nstderr:\n{stderr}", out.status);
    stdout
}

fn train(args: &[&str], out: &Path) -> String {
    ok(tchzoo().arg("train").args(args).arg("--out").arg(out))
}

fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// history.csv as (header, rows of numbers).
fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<f64>>) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    let header: Vec<String> = lines.next().expect("a header").split(',').map(str::to_string).collect();
    let rows = lines
        .map(|l| {
            let row: Vec<f64> =
                l.split(',').map(|c| c.parse().unwrap_or_else(|_| panic!("cell '{c}' in '{l}'"))).collect();
            assert_eq!(row.len(), header.len(), "row '{l}' does not match the header {header:?}");
            row
        })
        .collect();
    (header, rows)
}

/// history.json's values, without `epoch_time` (wall-clock, never reproducible).
fn history_values(dir: &Path) -> BTreeMap<String, Vec<f64>> {
    let h = read_json(&dir.join("history.json"));
    let mut out: BTreeMap<String, Vec<f64>> = serde_json::from_value(h["history"].clone()).expect("history map");
    out.remove("epoch_time");
    out
}

#[test]
fn train_writes_the_run_folder() {
    let tmp = tempdir();
    let dir = tmp.path().join("run");
    let stdout = train(&["--model", "mlp", "--data", MOONS, "--epochs", "5", "-q"], &dir);
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "-q should print one summary line:\n{stdout}");
    assert!(lines[0].contains("mlp") && lines[0].contains("5 epochs"), "summary: {}", lines[0]);
    assert!(lines[0].contains(&dir.display().to_string()), "the summary does not name the run folder: {}", lines[0]);

    let config = read_json(&dir.join("config.json"));
    assert_eq!(config["model"], "mlp");
    assert_eq!(config["data"], MOONS);
    assert_eq!(config["epochs"], 5);
    assert_eq!(config["out"], dir.display().to_string());

    let history = read_json(&dir.join("history.json"));
    assert_eq!(history["epoch"], serde_json::json!([0, 1, 2, 3, 4]));
    for key in ["loss", "accuracy", "val_loss", "val_accuracy", "lr"] {
        let values = history["history"][key].as_array().unwrap_or_else(|| panic!("history.json lacks {key}"));
        assert_eq!(values.len(), 5, "{key}: {values:?}");
    }

    let (header, rows) = read_csv(&dir.join("history.csv"));
    assert_eq!(rows.len(), 5, "history.csv: one row per epoch");
    let col = |name: &str| header.iter().position(|h| h == name).unwrap_or_else(|| panic!("no {name} in {header:?}"));
    for name in ["loss", "accuracy", "val_loss", "val_accuracy", "lr"] {
        col(name);
    }
    let epochs: Vec<f64> = rows.iter().map(|r| r[col("epoch")]).collect();
    assert_eq!(epochs, [0.0, 1.0, 2.0, 3.0, 4.0]);
    for r in &rows {
        assert!(r[col("loss")].is_finite() && r[col("loss")] > 0.0, "{r:?}");
        assert!((0.0..=1.0).contains(&r[col("accuracy")]) && (0.0..=1.0).contains(&r[col("val_accuracy")]));
        assert!(r[col("lr")] > 0.0);
    }
    // The CSV and the JSON tell the same story.
    let json_loss: Vec<f64> = serde_json::from_value(history["history"]["loss"].clone()).unwrap();
    assert_eq!(json_loss, rows.iter().map(|r| r[col("loss")]).collect::<Vec<_>>());
    // Two moons at noise 0.1 are easy: five epochs of Adam must have learnt something.
    assert!(rows[4][col("loss")] < rows[0][col("loss")], "the loss did not fall: {rows:?}");

    let weights = common::read_safetensors(&dir.join("model.safetensors"));
    for name in ["features.1.weight", "features.1.bias", "classifier.weight", "classifier.bias"] {
        assert!(weights.contains_key(name), "model.safetensors lacks {name}: {:?}", weights.keys());
    }
    assert_eq!(weights["classifier.weight"].size()[1], 64);

    let png = image::open(dir.join("curves.png")).expect("curves.png decodes");
    assert!(png.width() >= 200 && png.height() >= 100, "curves.png is {}x{}", png.width(), png.height());
    assert_eq!(image::ImageFormat::from_path(dir.join("curves.png")).unwrap(), image::ImageFormat::Png);
    let magic = std::fs::read(dir.join("curves.png")).unwrap();
    assert!(magic.starts_with(b"\x89PNG\r\n\x1a\n"), "curves.png is not a PNG");
}

/// `Epoch 3/5 - loss: 0.4120 - accuracy: 0.8711 - val_loss: 0.3982 - val_accuracy: 0.8833 - lr: 1.00e-3 - 0.1s`
fn check_epoch_line(line: &str, epoch: usize, epochs: usize) {
    let parts: Vec<&str> = line.split(" - ").collect();
    assert_eq!(parts[0], format!("Epoch {epoch}/{epochs}"), "{line}");
    assert_eq!(parts[parts.len() - 2], "lr: 1.00e-3", "Adam's default learning rate: {line}");
    let keys: Vec<&str> = parts[1..parts.len() - 2]
        .iter()
        .map(|p| {
            let (k, v) = p.split_once(": ").unwrap_or_else(|| panic!("'{p}' is not 'key: value' in {line}"));
            let v: f64 = v.parse().unwrap_or_else(|_| panic!("'{v}' is not a number in {line}"));
            assert!(v.is_finite(), "{line}");
            assert_eq!(p.split_once('.').map(|(_, d)| d.len()), Some(4), "four decimals: {line}");
            k
        })
        .collect();
    assert_eq!(keys, ["loss", "accuracy", "val_loss", "val_accuracy"], "{line}");
    let time = parts.last().unwrap().strip_suffix('s').unwrap_or_else(|| panic!("no seconds at the end: {line}"));
    assert!(time.parse::<f64>().is_ok_and(|t| t >= 0.0), "{line}");
}

#[test]
fn train_prints_one_keras_line_per_epoch() {
    let tmp = tempdir();
    let stdout = train(&["--model", "mlp", "--data", MOONS, "--epochs", "5"], &tmp.path().join("run"));
    let epoch_lines: Vec<&str> = stdout.lines().filter(|l| l.starts_with("Epoch ")).collect();
    assert_eq!(epoch_lines.len(), 5, "one line per epoch when stdout is piped:\n{stdout}");
    for (i, line) in epoch_lines.iter().enumerate() {
        check_epoch_line(line, i + 1, 5);
    }
    assert!(epoch_lines[2].starts_with("Epoch 3/5 - loss: "), "{}", epoch_lines[2]);
    // No progress bar or escape codes on a pipe; the summary comes last.
    assert!(!stdout.contains('\u{1b}') && !stdout.contains('\r'), "control characters on a pipe:\n{stdout:?}");
    let last = stdout.lines().last().unwrap();
    assert!(last.starts_with("mlp on moons") && last.contains("5 epochs"), "{last}");
}

#[test]
fn config_file_applies_and_flags_override_it() {
    let tmp = tempdir();
    let config = tmp.path().join("run.json");
    std::fs::write(
        &config,
        r#"{"model": "mlp:hidden=16", "data": "moons:n_samples=200", "epochs": 3, "batch_size": 16,
            "seed": 7, "optimizer": "sgd", "lr": 0.05, "lr_schedule": null, "augment": null}"#,
    )
    .unwrap();
    let config_arg = config.display().to_string();

    let from_file = tmp.path().join("from_file");
    train(&["--config", &config_arg, "-q"], &from_file);
    let (_, rows) = read_csv(&from_file.join("history.csv"));
    assert_eq!(rows.len(), 3, "the config's epochs");
    let resolved = read_json(&from_file.join("config.json"));
    assert_eq!(resolved["model"], "mlp:hidden=16");
    assert_eq!(resolved["batch_size"], 16);
    assert_eq!(resolved["optimizer"], read_json(&config)["optimizer"]);
    assert_eq!(resolved["lr_schedule"], serde_json::Value::Null);
    let lr: Vec<f64> = history_values(&from_file)["lr"].clone();
    assert_eq!(lr, [0.05; 3], "the config's lr, constant without a schedule");
    // hidden=16 from the config; one output, as two classes train with binary cross-entropy by default.
    assert_eq!(common::read_safetensors(&from_file.join("model.safetensors"))["classifier.weight"].size(), [1, 16]);

    let flagged = tmp.path().join("flagged");
    train(&["--config", &config_arg, "--epochs", "2", "--lr", "0.01", "--seed", "8", "-q"], &flagged);
    let (_, rows) = read_csv(&flagged.join("history.csv"));
    assert_eq!(rows.len(), 2, "--epochs 2 overrides the config's 3");
    let resolved = read_json(&flagged.join("config.json"));
    assert_eq!(resolved["epochs"], 2);
    assert_eq!(resolved["seed"], 8);
    assert_eq!(resolved["lr"], 0.01);
    assert_eq!(resolved["batch_size"], 16, "what the flags leave alone stays as the config says");
    assert_eq!(resolved["model"], "mlp:hidden=16");
    assert_eq!(history_values(&flagged)["lr"], [0.01; 2]);
}

#[test]
fn same_seed_same_history_other_seed_other_history() {
    let tmp = tempdir();
    let run = |name: &str, seed: &str| {
        let dir = tmp.path().join(name);
        train(
            &["--model", "mlp", "--data", "moons:n_samples=200,noise=0.2", "--epochs", "3", "--seed", seed, "-q"],
            &dir,
        );
        dir
    };
    let (a, b, c) = (run("a", "3"), run("b", "3"), run("c", "4"));
    let (ha, hb, hc) = (history_values(&a), history_values(&b), history_values(&c));
    assert_eq!(ha, hb, "the same seed must give the same history, bit for bit");
    assert_ne!(ha["loss"], hc["loss"], "another seed must give another history");
    let bytes = |d: &Path| std::fs::read(d.join("model.safetensors")).unwrap();
    assert_eq!(bytes(&a), bytes(&b), "the same seed must give the same weights");
    assert_ne!(bytes(&a), bytes(&c));
}

#[test]
fn explicit_validation_data_uses_the_training_class_numbers() {
    // String labels are numbered in sorted order per file; validation's {dog, fish} must map to training's 1, 2.
    let tmp = tempdir();
    let train_csv = tmp.path().join("train.csv");
    let val_csv = tmp.path().join("val.csv");
    std::fs::write(&train_csv, "a,b,kind\n0,0,cat\n1,0,dog\n0,1,fish\n0,0,cat\n1,0,dog\n0,1,fish\n").unwrap();
    std::fs::write(&val_csv, "a,b,kind\n1,0,dog\n0,1,fish\n0,1,fish\n").unwrap();
    let config = tchzoo::config::RunConfig {
        model: "mlp".into(),
        data: train_csv.display().to_string(),
        validation_data: Some(val_csv.display().to_string()),
        device: "cpu".into(),
        ..Default::default()
    };
    let prepared = tchzoo::run::prepare(&config).unwrap();
    let v = prepared.validation.expect("validation data");
    assert_eq!(Vec::<i64>::try_from(&v.ys).unwrap(), [1, 2, 2]);
    assert_eq!(v.n_classes(), Some(3));
    assert_eq!(v.class_names, prepared.train.class_names);
}

#[test]
fn models_lists_the_registry_with_parameter_counts() {
    let stdout = ok(tchzoo().arg("models"));
    let row = |name: &str| -> Vec<String> {
        let line = stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("`tchzoo models` does not list {name}:\n{stdout}"));
        line.split_whitespace().map(str::to_string).collect()
    };
    assert_eq!(row("lenet5")[2], "61,706");
    assert_eq!(row("mlp")[2], "4,482", "mlp: 2→64→64→2");
    assert_eq!(row("perceptron")[2], "6", "perceptron: 2→2");
    assert_eq!(row("lenet5")[3], "1x32x32");
    let filtered = ok(tchzoo().args(["models", "lenet"]));
    assert!(filtered.contains("lenet5") && !filtered.contains("perceptron"), "{filtered}");
}

#[test]
fn summary_of_lenet5() {
    let stdout = ok(tchzoo().args(["summary", "lenet5"]));
    for needle in [
        "(1, 6, 28, 28)",
        "(1, 6, 14, 14)",
        "(1, 16, 10, 10)",
        "(1, 16, 5, 5)",
        "(1, 120)",
        "(1, 84)",
        "(1, 10)",
        "Total params: 61,706",
        "Trainable params: 61,706",
    ] {
        assert!(stdout.contains(needle), "no '{needle}' in:\n{stdout}");
    }
    let conv1 = stdout.lines().find(|l| l.contains("(1, 6, 28, 28)")).unwrap();
    assert!(conv1.starts_with("features.0") && conv1.trim_end().ends_with("156"), "conv1 has 6·(25+1) = 156: {conv1}");
}

#[test]
fn summary_of_an_mlp_for_four_features_and_three_classes() {
    let stdout = ok(tchzoo().args(["summary", "mlp", "--input", "4", "--classes", "3"]));
    // 4·64+64 + 64·64+64 + 64·3+3
    assert!(stdout.contains("Total params: 4,675"), "{stdout}");
    assert!(stdout.contains("(1, 64)") && stdout.contains("(1, 3)"), "{stdout}");
    let head = stdout.lines().find(|l| l.starts_with("classifier")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(head.contains("(1, 3)") && head.trim_end().ends_with("195"), "{head}");
}

#[test]
fn doctor_reports_libtorch_cuda_and_threads() {
    let stdout = ok(tchzoo().arg("doctor"));
    let value = |key: &str| -> String {
        let line = stdout.lines().find(|l| l.starts_with(key)).unwrap_or_else(|| panic!("no '{key}':\n{stdout}"));
        line[key.len()..].trim().to_string()
    };
    assert!(value("libtorch  ").starts_with("2.13.0"), "{stdout}");
    assert!(value("libtorch path").ends_with("torch/lib"), "{stdout}");
    let gpu_here = Path::new("/dev/nvidia0").exists();
    assert_eq!(value("CUDA available"), gpu_here.to_string(), "{stdout}");
    let threads: usize = value("CPU threads").parse().unwrap_or_else(|_| panic!("{stdout}"));
    assert!(threads >= 1);
    let json: serde_json::Value = serde_json::from_str(&ok(tchzoo().args(["doctor", "--json"]))).unwrap();
    assert_eq!(json["threads"].as_u64(), Some(threads as u64));
    assert_eq!(json["cuda_available"].as_bool(), Some(gpu_here));
}

#[test]
fn binary_links_libtorch_cuda_with_a_runpath() {
    let bin = env!("CARGO_BIN_EXE_tchzoo");
    let Ok(out) = Command::new("readelf").args(["-d", bin]).output() else {
        eprintln!("readelf is not installed; skipping the link check");
        return;
    };
    assert!(out.status.success(), "readelf failed: {}", String::from_utf8_lossy(&out.stderr));
    let dynamic = String::from_utf8_lossy(&out.stdout);
    let needed: Vec<&str> = dynamic
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| l.split('[').nth(1).and_then(|s| s.split(']').next()))
        .collect();
    for lib in ["libtorch_cuda.so", "libtorch_cpu.so", "libc10.so"] {
        assert!(needed.contains(&lib), "{bin} does not need {lib}; NEEDED: {needed:?}");
    }
    let paths: Vec<&str> = dynamic
        .lines()
        .filter(|l| l.contains("(RUNPATH)") || l.contains("(RPATH)"))
        .filter_map(|l| l.split('[').nth(1).and_then(|s| s.split(']').next()))
        .flat_map(|s| s.split(':'))
        .collect();
    assert!(
        paths.iter().any(|p| p.trim_end_matches('/').ends_with("torch/lib")),
        "no torch/lib in RUNPATH/RPATH: {paths:?}"
    );
    for p in paths.iter().filter(|p| p.ends_with("torch/lib")) {
        assert!(Path::new(p).join("libtorch_cpu.so").exists(), "{p} does not hold libtorch_cpu.so");
    }
}

#[test]
fn binary_runs_without_ld_library_path() {
    let stdout = ok(tchzoo().arg("doctor").env_remove("LD_LIBRARY_PATH"));
    assert!(stdout.contains("2.13.0"), "{stdout}");
    let tmp = tempdir();
    let stdout = ok(tchzoo()
        .args(["train", "--model", "perceptron", "--data", "xor:n_samples=40", "--epochs", "1", "-q", "--out"])
        .arg(tmp.path().join("run"))
        .env_remove("LD_LIBRARY_PATH"));
    assert!(stdout.contains("perceptron on xor"), "{stdout}");
}
