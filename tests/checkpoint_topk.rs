//! `--checkpoint …,save_top_k=K,save_last=true,every_n_train_steps=N,train_time_interval=MIN` against Lightning
//! 2.6.6's own ModelCheckpoint (scripts/fixtures/lightning_checkpoint.py runs it in a Lightning `Trainer` over the
//! same scripted monitored values); atomic writes (a failing writer leaves the previous file, no temporary file
//! survives a run); bad values refused in one line before training.
mod common;

use std::collections::BTreeMap;
use std::path::Path;

use tch::{Device, Kind, Tensor};
use tchzoo::nn::VarStore;
use tchzoo::optim::{Optimizer, OptimizerConfig, OptimizerKind};
use tchzoo::train::callbacks::*;
use tchzoo::train::History;

struct Case {
    values: Vec<f64>,
    batches: usize,
    validate: bool,
    mode: &'static str,
    /// Lightning's keyword arguments (besides monitor and mode) as the `--checkpoint` options of the same name.
    options: Vec<(&'static str, &'static str)>,
}

fn cases() -> Vec<Case> {
    let seq = vec![0.5, 0.25, 0.75, 0.25, 0.125, 1.0];
    let c = |values: Vec<f64>, batches, validate, mode, options| Case { values, batches, validate, mode, options };
    vec![
        // Ties (0.25 twice), a last epoch that is not kept (last.pt stays at the newest *saved* checkpoint).
        c(seq.clone(), 2, true, "min", vec![("save_top_k", "2"), ("save_last", "true")]),
        c(seq.clone(), 2, true, "min", vec![("save_top_k", "1"), ("save_last", "true")]),
        c(seq.clone(), 2, false, "max", vec![("save_top_k", "3")]),
        c(seq.clone(), 2, true, "min", vec![("save_top_k", "-1")]),
        c(seq.clone(), 2, true, "min", vec![("save_top_k", "0"), ("save_last", "true")]),
        // NaN is stored as the worst score.
        c(vec![0.5, f64::NAN, 0.75, 0.25, f64::NAN], 2, true, "max", vec![("save_top_k", "3"), ("save_last", "true")]),
        c(vec![f64::NAN, 0.5, 0.25], 1, true, "min", vec![("save_top_k", "2")]),
        // Step triggers: no save before the monitored value is logged; mid-epoch saves see the last epoch's value.
        c(seq.clone(), 3, true, "min", vec![("save_top_k", "2"), ("save_last", "true"), ("every_n_train_steps", "2")]),
        c(seq.clone(), 3, false, "min", vec![("save_top_k", "2"), ("save_last", "true"), ("every_n_train_steps", "2")]),
        c(seq.clone(), 2, true, "max", vec![("save_top_k", "3"), ("every_n_train_steps", "3")]),
        // A zero interval saves after every batch.
        c(
            seq[..4].to_vec(),
            2,
            true,
            "min",
            vec![("save_top_k", "2"), ("save_last", "true"), ("train_time_interval", "0")],
        ),
        c(seq[..4].to_vec(), 2, false, "max", vec![("save_top_k", "2"), ("train_time_interval", "0")]),
    ]
}

/// Lightning's answer per case: the global steps held by the kept top-k files, and by last.ckpt.
fn lightning(cases: &[Case]) -> Vec<(Vec<i64>, Option<i64>)> {
    let dir = common::tempdir();
    let json: Vec<serde_json::Value> = cases
        .iter()
        .map(|c| {
            let mut options = serde_json::Map::new();
            options.insert("monitor".into(), (if c.validate { "val_score" } else { "score" }).into());
            options.insert("mode".into(), c.mode.into());
            for (k, v) in &c.options {
                let v = match *v {
                    "true" => serde_json::Value::Bool(true),
                    n => serde_json::from_str(n).unwrap(),
                };
                options.insert(k.to_string(), v);
            }
            serde_json::json!({
                "values": c.values.iter().map(|v| v.to_string()).collect::<Vec<_>>(),
                "batches": c.batches,
                "validate": c.validate,
                "options": options,
            })
        })
        .collect();
    let path = dir.path().join("cases.json");
    std::fs::write(&path, serde_json::to_string(&json).unwrap()).unwrap();
    let out = common::run_script("lightning_checkpoint.py", &[path.to_str().unwrap()]);
    out.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let kept = v["kept"].as_array().unwrap().iter().map(|s| s.as_i64().unwrap()).collect();
            (kept, v["last"].as_i64())
        })
        .collect()
}

/// A one-weight model whose weight is the global step, so a file tells which step wrote it.
struct Rig {
    store: VarStore,
    opt: Optimizer,
    history: History,
}

impl Rig {
    fn new() -> Rig {
        let store = VarStore::new(Device::Cpu);
        let _ = store.root().sub("layer").param("weight", Tensor::zeros([1], (Kind::Float, Device::Cpu)));
        let opt = Optimizer::new(OptimizerConfig::new(OptimizerKind::Sgd), store.parameters()).unwrap();
        Rig { store, opt, history: History::default() }
    }
    fn with<T>(&mut self, f: impl FnOnce(&mut CallbackContext) -> T) -> T {
        let mut ctx = CallbackContext::new(&self.store, &mut self.opt, &self.history, true);
        let out = f(&mut ctx);
        // As the trainer: the files the hook asked for are written when it returns.
        ctx.apply_actions().unwrap();
        out
    }
}

fn step_of(path: &Path) -> i64 {
    let sd = tchzoo::checkpoint::read_state_dict(path).unwrap();
    let w = &sd.iter().find(|(k, _)| k == "layer.weight").unwrap().1;
    w.double_value(&[0]) as i64
}

/// Drives the callback through the case as the trainer does: one optimizer step per batch, then the epoch end.
fn tchzoo_keeps(case: &Case) -> (Vec<i64>, Option<i64>) {
    let dir = common::tempdir();
    let monitor = if case.validate { "val_score" } else { "score" };
    let mut spec = format!("ck-{{epoch:03d}}-{{step}}.pt,monitor={monitor},mode={},save_best_only=true", case.mode);
    for (k, v) in &case.options {
        spec.push_str(&format!(",{k}={v}"));
    }
    let mut cb = ModelCheckpoint::new(ModelCheckpointConfig::parse(&spec).unwrap()).unwrap();
    cb.base_dir = Some(dir.path().to_path_buf());
    let mut rig = Rig::new();
    rig.with(|ctx| cb.on_train_begin(ctx)).unwrap();
    let mut step = 0;
    for (epoch, &v) in case.values.iter().enumerate() {
        for batch in 0..case.batches {
            step += 1;
            let _ = tch::no_grad(|| rig.store.get("layer.weight").unwrap().fill_(step as f64));
            let loss = tch::Tensor::from(1.0f32);
            let info = StepInfo {
                epoch,
                batch,
                stepped: true,
                last_batch: batch + 1 == case.batches,
                loss: &loss,
                lr: 0.01,
                grad_norm: None,
            };
            rig.with(|ctx| cb.on_train_batch_end(&info, ctx)).unwrap();
        }
        let logs: BTreeMap<String, f64> = [(monitor.to_string(), v), ("loss".to_string(), 1.0)].into();
        rig.history.push(epoch, &logs);
        rig.with(|ctx| cb.on_epoch_end(epoch, &logs, ctx)).unwrap();
    }
    rig.with(|ctx| cb.on_train_end(ctx)).unwrap();
    let (mut kept, mut last) = (vec![], None);
    for e in std::fs::read_dir(dir.path()).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        assert!(!name.contains(".tmp"), "a temporary file remained: {name}");
        if name.starts_with("last") {
            last = Some(step_of(&p));
        } else {
            kept.push(step_of(&p));
        }
    }
    kept.sort();
    (kept, last)
}

#[test]
fn top_k_last_and_step_triggers_keep_what_lightning_keeps() {
    let cases = cases();
    let expected = lightning(&cases);
    assert_eq!(expected.len(), cases.len());
    for (case, want) in cases.iter().zip(&expected) {
        let got = tchzoo_keeps(case);
        assert_eq!(
            &got, want,
            "values {:?}, {} batches, validate {}, {:?}",
            case.values, case.batches, case.validate, case.options
        );
    }
    // The cases are not trivial: some delete files, some keep last.pt apart from the newest epoch.
    assert!(expected.iter().any(|(k, _)| k.len() == 2));
    assert!(expected.iter().any(|(k, l)| l.is_some_and(|l| !k.contains(&l))));
}

#[test]
fn bad_checkpoint_options_fail_in_one_line_before_training() {
    let dir = common::tempdir();
    for (spec, words) in [
        ("best.pt,save_top_k=2", "save_best_only=true"),
        ("best.pt,save_best_only=true,save_top_k=-2", "save_top_k=-2"),
        ("best.pt,every_n_train_steps=0", "every_n_train_steps=0"),
        ("best.pt,train_time_interval=-1", "train_time_interval=-1"),
        ("best.pt,every_n_train_steps=2,train_time_interval=1", "mutually exclusive"),
        ("best.pt,period=2,every_n_train_steps=2", "mutually exclusive"),
        ("best.pt,save_top_k=x", "save_top_k=x"),
    ] {
        let out = common::tchzoo()
            .args(["train", "--model", "perceptron", "--data", "xor:n_samples=40", "--epochs", "1", "-q"])
            .args(["--checkpoint", spec, "--out"])
            .arg(dir.path().join("run"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{spec}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{spec}: {stderr}");
        assert!(stderr.contains(words), "{spec}: {stderr}");
        assert!(!dir.path().join("run/history.json").exists(), "{spec}: trained anyway");
    }
}

#[test]
fn an_interrupted_write_leaves_the_previous_file() {
    let dir = common::tempdir();
    let path = dir.path().join("model.pt");
    tchzoo::util::write_atomic(&path, b"good").unwrap();
    // The writer dies half-way (a full disk, a failing tensor copy): the rename never happens.
    let err = tchzoo::util::write_atomic_with(&path, |tmp| {
        std::fs::write(tmp, b"half").unwrap();
        Err(tchzoo::Error::invalid("disk full"))
    });
    assert!(err.is_err());
    assert_eq!(std::fs::read(&path).unwrap(), b"good");
    let names: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect();
    assert_eq!(names, ["model.pt"], "the temporary file is removed");
    // A checkpoint write that fails inside the library (a tensor name twice) leaves the old weights too.
    let store = VarStore::new(Device::Cpu);
    let _ = store.root().param("w", Tensor::ones([2], (Kind::Float, Device::Cpu)));
    let ckpt = dir.path().join("w.pt");
    tchzoo::checkpoint::save_weights(&store, &ckpt).unwrap();
    let before = std::fs::read(&ckpt).unwrap();
    let t = Tensor::zeros([2], (Kind::Float, Device::Cpu));
    assert!(tchzoo::checkpoint::write_state_dict(&ckpt, &[("a".into(), t.shallow_clone()), ("a".into(), t)]).is_err());
    assert_eq!(std::fs::read(&ckpt).unwrap(), before);
}

#[test]
fn a_run_with_top_k_leaves_k_files_last_pt_and_no_temporary_file() {
    let tmp = common::tempdir();
    let dir = tmp.path().join("run");
    let out = common::tchzoo()
        .args(["train", "--model", "mlp", "--data", "moons:n_samples=200,noise=0.1", "--epochs", "4", "-q"])
        .args(["--batch-size", "20", "--validation-split", "0.2", "--csv-logger", "log.csv"])
        .args([
            "--checkpoint",
            "ckpt/m-{epoch:02d}-{step}.pt,save_best_only=true,save_top_k=2,save_last=true,every_n_train_steps=3",
        ])
        .arg("--out")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut files: Vec<String> = std::fs::read_dir(dir.join("ckpt"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    files.sort();
    assert_eq!(files.len(), 3, "two best and last.pt: {files:?}");
    assert!(files.contains(&"last.pt".to_string()), "{files:?}");
    // 160 training samples in batches of 20: 8 steps an epoch, 32 in all; saves fall on multiples of 3 only.
    for f in files.iter().filter(|f| *f != "last.pt") {
        let step: usize = f.trim_end_matches(".pt").rsplit('-').next().unwrap().parse().unwrap();
        assert!(step.is_multiple_of(3), "{f}");
    }
    let mut stack = vec![dir.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().to_string();
            assert!(!name.contains(".tmp"), "temporary file left: {}", e.path().display());
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            }
        }
    }
    assert_eq!(std::fs::read_to_string(dir.join("log.csv")).unwrap().lines().count(), 5);
}

#[test]
fn average_equals_python_and_loads_with_torch() {
    let tmp = common::tempdir();
    let d = tmp.path();
    common::run_script("average_checkpoints.py", &["make", d.to_str().unwrap()]);
    let inputs = ["a.pt", "b.pt", "c.safetensors"].map(|f| d.join(f));
    let avg = |out: &str, weights: Option<&str>| {
        let mut cmd = common::tchzoo();
        cmd.arg("average").args(&inputs).arg("-o").arg(d.join(out));
        if let Some(w) = weights {
            cmd.args(["--weights", w]);
        }
        let o = cmd.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        d.join(out).to_str().unwrap().to_string()
    };
    let uniform = avg("avg.pt", None);
    let weighted = avg("avg_w.pt", Some("1,2,5"));
    for (got, want) in [(uniform, "expected_uniform.pt"), (weighted, "expected_weighted.pt")] {
        let out = common::run_script("average_checkpoints.py", &["check", &got, d.join(want).to_str().unwrap()]);
        assert_eq!(out.trim(), "equal");
    }
    // Mismatches: one line naming the key and both files, exit 2.
    for (other, words) in [("bad.pt", "'0.weight'"), ("extra.pt", "'4.weight'")] {
        let o = common::tchzoo()
            .arg("average")
            .arg(d.join("b.pt"))
            .arg(d.join(other))
            .arg("-o")
            .arg(d.join("x.pt"))
            .output()
            .unwrap();
        let e = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{e}");
        assert_eq!(e.trim().lines().count(), 1, "{e}");
        assert!(e.contains(words) && e.contains("b.pt") && e.contains(other), "{e}");
        assert!(!d.join("x.pt").exists());
    }
    let o = common::tchzoo().arg("average").args(&inputs).args(["-o", "x.pt", "--weights", "1,2"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("one weight per file"));
}
