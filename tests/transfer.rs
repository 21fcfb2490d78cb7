//! Transfer learning (src/train/transfer.rs, src/models/channel_boost.rs): `--pretrained` drops a classifier of
//! another size and reports the load; `--freeze` keeps parameters and their BatchNorm statistics as they were;
//! `--unfreeze-at` trains them again; the channel-boosted CNN equals its Python definition (logits, one SGD step
//! with the booster frozen) and trains from the CLI on a booster trained there; digits' `classes`/`per_class`.
mod common;

use std::collections::HashMap;
use std::path::Path;

use tch::{Device, Kind, Tensor};
use tchzoo::checkpoint::read_state_dict;
use tchzoo::models;
use tchzoo::nn::VarStore;
use tchzoo::optim::{Optimizer, OptimizerConfig, OptimizerKind};
use tchzoo::train::{Loss, Trainer};

fn state(path: &Path) -> HashMap<String, Tensor> {
    read_state_dict(path).unwrap().into_iter().collect()
}

fn equal(a: &Tensor, b: &Tensor) -> bool {
    a.size() == b.size() && a.to_kind(Kind::Double).equal(&b.to_kind(Kind::Double))
}

/// Runs `tchzoo train ARGS --quiet`; returns stderr, panics with it on failure.
fn train(args: &[&str]) -> String {
    run_train(args, &["--quiet"])
}

/// Without `--quiet`: what preparing the run reports (loaded, skipped and frozen tensors) is not an error, so `-q`
/// silences it.
fn train_loud(args: &[&str]) -> String {
    run_train(args, &[])
}

fn run_train(args: &[&str], extra: &[&str]) -> String {
    let out = common::tchzoo().arg("train").args(args).args(extra).args(["--threads", "1"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "train {args:?} failed:\n{stderr}");
    stderr
}

#[test]
fn channel_boost_equals_the_python_definition() {
    tch::set_num_threads(1);
    let dir = common::fixtures("transfer.py");
    let booster_pt = dir.join("booster.pt");
    let store = VarStore::new(Device::Cpu);
    let options = [("booster", "resnet20"), ("booster_weights", booster_pt.to_str().unwrap()), ("learner", "resnet20")];
    let (model, _) = tchzoo::train::transfer::build_model("channel_boost", &store, 4, &[1, 32, 32], &options).unwrap();
    // The booster's weights came from booster.pt (its class count, 7, read from its fc).
    let booster = state(&booster_pt);
    for (k, t) in &booster {
        assert!(equal(&store.get(&format!("booster.{k}")).unwrap(), t), "booster.{k} not loaded");
    }
    // The whole state dict from plain torch.save loads strictly, in the same order.
    let before = read_state_dict(&dir.join("model.pt")).unwrap();
    let ours: Vec<String> = store.state_dict().into_iter().map(|(k, _)| k).collect();
    assert_eq!(ours, before.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>());
    store.load_state_dict(&before, true, "model.pt").unwrap();
    let data = common::read_safetensors(&dir.join("data.safetensors"));
    let logits = tch::no_grad(|| model.forward_t(&data["x"], false));
    let d = common::rel_diff(&logits, &data["logits"]);
    eprintln!("channel_boost eval logits: max|Δ|/max|y| = {d:.2e}");
    assert!(d <= 1e-4, "logits differ: {d}");
    // The booster is frozen: parameters without requires_grad; the others train.
    for (k, p) in store.named_parameters() {
        assert_eq!(p.requires_grad(), !k.starts_with("booster."), "{k}");
    }
    // One SGD step in training mode equals torch.optim.SGD's on the trainable parameters; the booster (weights
    // and BatchNorm statistics) is untouched.
    let mut c = OptimizerConfig::new(OptimizerKind::Sgd);
    (c.hyper.lr, c.hyper.momentum, c.hyper.weight_decay) = (0.1, 0.9, 1e-4);
    let opt = Optimizer::new(c, store.parameters()).unwrap();
    let mut trainer = Trainer::new(model, store, opt, Loss::CrossEntropy, vec![]);
    let logs = trainer.train_on_batch(&data["x"], &data["y"]).unwrap();
    let loss = data["loss"].double_value(&[0]);
    assert!((logs["loss"] - loss).abs() <= 1e-4 * loss.abs(), "loss {} vs torch {loss}", logs["loss"]);
    let after = state(&dir.join("after.pt"));
    let mut worst = 0.0f64;
    for (k, t) in trainer.store.state_dict() {
        if let Some(name) = k.strip_prefix("booster.") {
            assert!(equal(&t, &booster[name]), "{k} changed");
        } else if t.is_floating_point() {
            worst = worst.max(common::rel_diff(&t, &after[&k]));
        } else {
            assert!(equal(&t, &after[&k]), "{k}");
        }
    }
    eprintln!("channel_boost after one SGD step: worst max|Δ|/max|p| = {worst:.2e}");
    assert!(worst <= 1e-4, "{worst}");
    // Our export loads strictly into the Python definition and gives its logits.
    let tmp = common::tempdir();
    let exported = tmp.path().join("ours.pt");
    tchzoo::checkpoint::save_weights(&trainer.store, &exported).unwrap();
    let scripts = common::root().join("scripts");
    let after_pt = dir.join("after.pt");
    let out = common::run_script(
        "channel_boost_verify.py",
        &[scripts.to_str().unwrap(), exported.to_str().unwrap(), after_pt.to_str().unwrap()],
    );
    let gap: f64 = out.trim().parse().unwrap();
    assert!(gap <= 1e-4, "Python's strict load of our export differs by {gap}");
}

#[test]
fn pretrained_freeze_and_unfreeze_from_the_cli() {
    let tmp = common::tempdir();
    let a = tmp.path().join("a");
    // Task A: digits 0–5. Task B: digits 6–9, 40 of each (4 classes: the classifier must be dropped).
    train(&["--model", "lenet5", "--data", "digits:classes=0-5", "--epochs", "2", "--out", a.to_str().unwrap()]);
    let a_pt = a.join("model.pt");
    let frozen = tmp.path().join("frozen");
    let task_b = "digits:classes=6-9,per_class=40";
    let stderr = train_loud(&[
        "--model",
        "lenet5",
        "--data",
        task_b,
        "--epochs",
        "2",
        "--out",
        frozen.to_str().unwrap(),
        "--pretrained",
        a_pt.to_str().unwrap(),
        "--freeze",
        "features",
    ]);
    assert!(
        stderr.contains("loaded 8 tensors, skipped 2 (classifier.4.weight: classifier of another size, [6, 84] in the file, [4, 84] here")
            && stderr.contains("new 2 (classifier.4.weight, classifier.4.bias)"),
        "{stderr}"
    );
    assert!(stderr.contains("freeze features: 60856 parameters in 8 tensors frozen"), "{stderr}");
    let (pre, fro) = (state(&a_pt), state(&frozen.join("model.pt")));
    for (k, t) in &fro {
        if k.starts_with("classifier.4.") {
            assert_eq!(t.size()[0], 4, "{k}");
        } else {
            assert!(equal(t, &pre[k]), "{k} changed while frozen");
        }
    }
    // --unfreeze-at 2: epoch 1 frozen, epoch 2 trains everything.
    let thawed = tmp.path().join("thawed");
    train(&[
        "--model",
        "lenet5",
        "--data",
        task_b,
        "--epochs",
        "2",
        "--out",
        thawed.to_str().unwrap(),
        "--pretrained",
        a_pt.to_str().unwrap(),
        "--freeze",
        "features",
        "--unfreeze-at",
        "2",
    ]);
    let th = state(&thawed.join("model.pt"));
    for k in ["features.0.weight", "features.3.weight", "classifier.0.weight"] {
        assert!(!equal(&th[k], &pre[k]), "{k} did not train after --unfreeze-at");
    }
}

#[test]
fn frozen_batchnorm_keeps_its_statistics() {
    let tmp = common::tempdir();
    let a = tmp.path().join("a");
    let data = "digits:classes=0-2,per_class=24";
    train(&[
        "--model",
        "resnet20",
        "--data",
        data,
        "--epochs",
        "1",
        "--out",
        a.to_str().unwrap(),
        "--batch-size",
        "16",
    ]);
    let b = tmp.path().join("b");
    let stderr = train_loud(&[
        "--model",
        "resnet20",
        "--data",
        data,
        "--epochs",
        "1",
        "--out",
        b.to_str().unwrap(),
        "--batch-size",
        "16",
        "--pretrained",
        a.join("model.pt").to_str().unwrap(),
        "--freeze",
        "conv1,bn1,layer1",
    ]);
    assert!(stderr.contains("loaded 116 tensors, skipped 0, new 0"), "{stderr}");
    let (pa, pb) = (state(&a.join("model.pt")), state(&b.join("model.pt")));
    for (k, t) in &pb {
        let frozen = ["conv1.", "bn1.", "layer1."].iter().any(|p| k.starts_with(p));
        // Frozen: weights, running statistics and num_batches_tracked as loaded. Trained: BatchNorm statistics
        // moved (and num_batches_tracked counted the batches).
        assert_eq!(equal(t, &pa[k]), frozen, "{k}: frozen {frozen}");
    }
}

#[test]
fn channel_boost_trains_from_the_cli_on_a_booster_trained_there() {
    let tmp = common::tempdir();
    let booster = tmp.path().join("booster");
    train(&[
        "--model",
        "resnet20",
        "--data",
        "digits:classes=0-2,per_class=24",
        "--epochs",
        "1",
        "--out",
        booster.to_str().unwrap(),
    ]);
    let weights = booster.join("model.pt");
    let run = tmp.path().join("boosted");
    train(&[
        "--model",
        "channel_boost:learner=lenet5,boost_channels=2",
        "--booster",
        "resnet20",
        "--booster-weights",
        weights.to_str().unwrap(),
        "--data",
        "digits:classes=6-9,per_class=24",
        "--epochs",
        "2",
        "--out",
        run.to_str().unwrap(),
    ]);
    let (b, m) = (state(&weights), state(&run.join("model.pt")));
    for (k, t) in &b {
        assert!(equal(&m[&format!("booster.{k}")], t), "booster.{k} changed");
    }
    assert_eq!(m["boost.weight"].size(), vec![2, 64, 1, 1]);
    assert_eq!(m["learner.features.0.weight"].size()[1], 3, "the learner sees 1 + 2 channels");
    // The run folder evaluates without the booster's weights file (the checkpoint holds the booster).
    std::fs::remove_file(&weights).unwrap();
    let out = common::tchzoo().args(["evaluate", "--run", run.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // A booster weights file of another architecture is one clear error.
    let lenet = tmp.path().join("lenet");
    train(&[
        "--model",
        "lenet5",
        "--data",
        "digits:classes=0-2,per_class=10",
        "--epochs",
        "1",
        "--out",
        lenet.to_str().unwrap(),
    ]);
    let out = common::tchzoo()
        .args(["train", "--model", "channel_boost", "--booster", "resnet20", "--booster-weights"])
        .arg(lenet.join("model.pt"))
        .args(["--data", "digits", "--epochs", "1", "--out"])
        .arg(tmp.path().join("bad"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.lines().count() == 1 && stderr.contains("resnet20") && stderr.contains("model.pt"), "{stderr}");
}

type StateDict = Vec<(String, Tensor)>;

#[test]
fn booster_weights_load_by_the_pretrained_path_and_fail_clearly() {
    let tmp = common::tempdir();
    // State dicts written here: a resnet20 for the digits' 1 channel (5 classes), and files that are not one.
    let save = |name: &str, spec: &str, channels: i64, edit: &dyn Fn(&mut StateDict)| {
        let store = VarStore::new(Device::Cpu);
        models::build(spec, &store, 5, &[channels, 32, 32]).unwrap();
        let mut tensors = store.state_dict();
        edit(&mut tensors);
        let path = tmp.path().join(name);
        tchzoo::checkpoint::write_state_dict(&path, &tensors).unwrap();
        (path, tensors.len())
    };
    let (good, count) = save("good.pt", "resnet20", 1, &|_| {});
    let base = [
        "--model",
        "channel_boost:learner=lenet5,boost_channels=2",
        "--booster",
        "resnet20",
        "--data",
        "digits:classes=0-2,per_class=4",
        "--epochs",
        "1",
    ];
    // A file that is not the booster's: exit 2, one line naming the file and what is wrong with it.
    let cases = [
        (save("rgb.pt", "resnet20", 3, &|_| {}).0, "shape mismatches such as booster.conv1.weight"),
        (
            save("short.pt", "resnet20", 1, &|t| t.retain(|(k, _)| k != "layer1.0.conv1.weight")).0,
            "1 booster tensors missing (first: booster.layer1.0.conv1.weight)",
        ),
        (
            save("extra.pt", "resnet20", 1, &|t| {
                t.push(("extra.weight".into(), Tensor::zeros([2], (Kind::Float, Device::Cpu))))
            })
            .0,
            "unexpected keys such as booster.extra.weight",
        ),
        (save("lenet.pt", "lenet5", 1, &|_| {}).0, "has no fc.weight, the classifier of booster resnet20"),
        (tmp.path().join("absent.pt"), "absent.pt"),
    ];
    for (file, expected) in &cases {
        let out = tmp.path().join("bad");
        let o = common::tchzoo()
            .arg("train")
            .args(base)
            .args(["--threads", "1"])
            .arg("--out")
            .arg(&out)
            .arg("--booster-weights")
            .arg(file)
            .output()
            .unwrap();
        common::assert_one_error_line(&o, &[file.to_str().unwrap()], expected);
        assert!(String::from_utf8_lossy(&o.stderr).contains(file.to_str().unwrap()), "{file:?} not named");
        assert!(!out.join("history.json").exists());
    }
    // A good file: its load is reported as --pretrained's is (a note that -q silences).
    let out = tmp.path().join("good");
    let stderr = train_loud(
        &[&base[..], &["--booster-weights", good.to_str().unwrap(), "--out", out.to_str().unwrap()]].concat(),
    );
    let note = format!("booster_weights {}: loaded {count} tensors, skipped 0, new 0", good.display());
    assert!(stderr.contains(&note), "{stderr}");
    // The model's build reads no file: the option naming one is refused there (the file need not exist).
    let store = VarStore::new(Device::Cpu);
    let options = [("booster_weights", "absent.pt")];
    let e = models::build_with("channel_boost", &store, 3, &[1, 32, 32], &options).err().unwrap().to_string();
    assert!(e.contains("booster_weights") && e.contains("not by the model's build"), "{e}");
}

#[test]
fn digits_classes_and_per_class_make_other_tasks() {
    let d = tchzoo::data::load("digits:classes=6-9,per_class=40", 0).unwrap();
    assert_eq!(d.xs.size(), vec![160, 1, 32, 32]);
    assert_eq!(d.class_names.as_deref().unwrap(), ["6", "7", "8", "9"]);
    let counts = d.ys.bincount::<Tensor>(None, 4);
    assert_eq!(Vec::<i64>::try_from(&counts).unwrap(), vec![40, 40, 40, 40]);
    // The same images as the full set's first 40 sixes.
    let all = tchzoo::data::load("digits", 0).unwrap();
    let sixes = all.ys.eq(6).nonzero().squeeze_dim(1).narrow(0, 0, 40);
    let first = d.ys.eq(0).nonzero().squeeze_dim(1);
    assert!(all.xs.index_select(0, &sixes).equal(&d.xs.index_select(0, &first)));
    for bad in ["digits:classes=7-3", "digits:classes=0-10", "digits:classes=x", "digits:per_class=0"] {
        let e = tchzoo::data::load(bad, 0).unwrap_err().to_string();
        assert!(e.contains("digits") && e.contains("option"), "{bad}: {e}");
    }
}

#[test]
fn transfer_flags_fail_clearly() {
    let cases: &[(&[&str], &str)] = &[
        (&["--unfreeze-at", "2"], "--unfreeze-at needs --freeze"),
        (&["--freeze", "features", "--unfreeze-at", "0"], "counts epochs from 1"),
        (&["--freeze", "conv9"], "no parameter is named 'conv9'"),
        (&["--booster-weights", "x.pt"], "--booster-weights needs --booster"),
        (&["--pretrained", "missing.pt"], "missing.pt"),
    ];
    for (args, expected) in cases {
        let out = common::tchzoo()
            .args(["train", "--epochs", "1", "--out", "/nonexistent/never"])
            .args(*args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.lines().count() == 1 && stderr.contains(expected), "{args:?}: {stderr}");
    }
}
