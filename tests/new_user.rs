//! What a new user trips over (issue 18), through the binary: binary predictions, shape mismatches and closed
//! pipes, evaluating state dicts by name, class names kept by a run, the defaults and the data summary, typo'd
//! flags, Keras file names, extending a finished run and looking at an interrupted one, default folders started in
//! the same second, and the smaller points; then a sweep of every subcommand with its stdout closed after one line
//! and with a wrong-sized input, which must end with exit 0 or 2, never 101.
//! Every run is small (moons, the embedded digits for one epoch, a dozen 32×32 images).
mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use common::{tchzoo, tempdir};

const MOONS: &str = "moons:n_samples=200,noise=0.1";

fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).to_string(), String::from_utf8_lossy(&out.stderr).to_string())
}

fn run(args: &[&str]) -> Output {
    tchzoo().args(args).env("RUST_BACKTRACE", "1").output().expect("run tchzoo")
}

/// Succeeds; returns stdout.
fn ok(args: &[&str]) -> String {
    let out = run(args);
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success(),
        "tchzoo {} failed ({:?})\nstdout:\n{stdout}\nstderr:\n{stderr}",
        args.join(" "),
        out.status
    );
    stdout
}

/// Fails with exit 2 and exactly one `error:` line naming each of `names`, no panic text, nothing on stdout;
/// returns the line.
fn fails(args: &[&str], names: &[&str]) -> String {
    let out = run(args);
    let (stdout, stderr) = text(&out);
    let context = format!("tchzoo {}\nstdout:\n{stdout}\nstderr:\n{stderr}", args.join(" "));
    assert_eq!(out.status.code(), Some(2), "exit code is not 2 for {context}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "stderr is not one line for {context}");
    assert!(lines[0].starts_with("error: "), "not an error line: {context}");
    for bad in ["panicked", "backtrace", "internal error", "please report"] {
        assert!(!stderr.contains(bad), "stderr mentions '{bad}' for {context}");
    }
    for name in names {
        assert!(lines[0].contains(name), "the error does not name '{name}' for {context}");
    }
    assert!(stdout.trim().is_empty(), "stdout is not empty for {context}");
    lines[0].to_string()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// history.json's values without `epoch_time` (wall-clock).
fn history(dir: &Path) -> serde_json::Value {
    let mut h = read_json(&dir.join("history.json"))["history"].clone();
    h.as_object_mut().unwrap().remove("epoch_time");
    h
}

/// A run of LeNet-5 on the embedded digits for one epoch, shared by the tests of this file.
fn digits_run() -> &'static Path {
    static RUN: OnceLock<tempfile::TempDir> = OnceLock::new();
    RUN.get_or_init(|| {
        let dir = tempdir();
        ok(&[
            "train",
            "--model",
            "lenet5",
            "--data",
            "digits",
            "--epochs",
            "1",
            "-q",
            "--out",
            s(&dir.path().join("run")),
        ]);
        dir
    })
    .path()
    .join("run")
    .leak()
}

/// Writes `n` solid-colour 32×32 PNGs per class under `root/<class>/`; the colour says the class.
fn image_folder(root: &Path, classes: &[&str], n: usize, size: u32) {
    for class in classes {
        let colour = match *class {
            "cat" => [220u8, 30, 30],
            "dog" => [30, 200, 40],
            "fox" => [40, 40, 230],
            _ => [128, 128, 128],
        };
        let dir = root.join(class);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..n {
            let shade = (i * 7) as u8;
            let img = image::RgbImage::from_fn(size, size, |_, _| {
                image::Rgb([
                    colour[0].saturating_sub(shade),
                    colour[1].saturating_sub(shade),
                    colour[2].saturating_sub(shade),
                ])
            });
            img.save(dir.join(format!("{class}{i}.png"))).unwrap();
        }
    }
}

fn write_npy(path: &Path, values: &[f32], shape: &[i64]) {
    tch::Tensor::from_slice(values).reshape(shape).write_npy(path).unwrap();
}

// 1 ------------------------------------------------------------------------------------------------------------

/// A binary (one-logit) model labels a sample 1 when its probability is above 0.5, on the screen and in the
/// labels file beside --output.
#[test]
fn binary_predictions_follow_the_probability() {
    let tmp = tempdir();
    let run_dir = tmp.path().join("run");
    ok(&["train", "--model", "mlp", "--data", MOONS, "--epochs", "40", "--lr", "0.01", "-q", "--out", s(&run_dir)]);
    // Two points on the upper moon (class 0), two on the lower one (class 1).
    let input = tmp.path().join("pts.npy");
    write_npy(&input, &[-1.0, 0.1, 0.0, 1.0, 1.0, -0.45, 2.0, 0.4], &[4, 2]);
    let out = ok(&["predict", "--run", s(&run_dir), "--input", s(&input), "--proba"]);
    let mut labels = vec![];
    for line in out.lines() {
        // "0: class 1  [0.9767]"
        let label: usize = line.split("class ").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap();
        let p: f64 = line.split('[').nth(1).unwrap().trim_end_matches(']').parse().unwrap();
        assert_eq!(label, usize::from(p > 0.5), "{line}");
        labels.push(label);
    }
    assert_eq!(labels, [0, 0, 1, 1], "the model learned the moons: {out}");
    let npy = tmp.path().join("y.npy");
    ok(&["predict", "--run", s(&run_dir), "--input", s(&input), "--output", s(&npy)]);
    let side = std::fs::read_to_string(tmp.path().join("y.npy.labels.txt")).unwrap();
    assert_eq!(side, "class 0\nclass 0\nclass 1\nclass 1\n");
}

// 2 ------------------------------------------------------------------------------------------------------------

#[test]
fn evaluating_data_of_another_size_is_one_line() {
    let run_dir = digits_run();
    fails(&["evaluate", "--run", s(run_dir), "--data", "digits:size=8"], &["[1, 8, 8]", "[1, 32, 32]"]);
    // An image folder of another size and channel count.
    let tmp = tempdir();
    image_folder(tmp.path(), &["0", "1"], 2, 16);
    fails(&["evaluate", "--run", s(run_dir), "--data", s(tmp.path())], &["[3, 16, 16]", "[1, 32, 32]"]);
}

/// A reader that closes the pipe (`| head -0`): the command ends silently with exit 0.
fn closed_stdout(args: &[&str]) -> Output {
    let mut child = tchzoo()
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tchzoo");
    drop(child.stdout.take());
    child.wait_with_output().unwrap()
}

#[test]
fn a_closed_pipe_is_a_normal_end() {
    let weights = digits_run().join("model.pt");
    for args in [vec!["models"], vec!["inspect", s(&weights)], vec!["summary", "lenet5"]] {
        let out = closed_stdout(&args);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "tchzoo {args:?}: {stderr}");
        assert!(stderr.is_empty(), "tchzoo {args:?} printed: {stderr}");
    }
}

// 3 ------------------------------------------------------------------------------------------------------------

/// A 6-class LeNet-5's state dict saved as DataParallel does (`module.` names) evaluates by name with
/// --num-classes, to the same figures as its run; without it the hint names --num-classes 6, not --strict.
#[test]
fn evaluate_a_state_dict_by_name_with_num_classes() {
    let tmp = tempdir();
    let run_dir = tmp.path().join("run");
    ok(&["train", "--model", "lenet5", "--data", "digits:classes=0-5", "--epochs", "1", "-q", "--out", s(&run_dir)]);
    let tensors = tchzoo::checkpoint::read_state_dict(&run_dir.join("model.pt")).unwrap();
    let prefixed: Vec<(String, tch::Tensor)> = tensors.into_iter().map(|(k, t)| (format!("module.{k}"), t)).collect();
    let w = tmp.path().join("ddp.pt");
    tchzoo::checkpoint::write_state_dict(&w, &prefixed).unwrap();

    let line = fails(
        &["evaluate", "--model", "lenet5", "--weights", s(&w), "--data", "digits:classes=0-5"],
        &["--num-classes 6"],
    );
    assert!(!line.contains("--strict"), "{line}");
    let by_name = ok(&[
        "evaluate",
        "--model",
        "lenet5",
        "--weights",
        s(&w),
        "--num-classes",
        "6",
        "--data",
        "digits:classes=0-5",
    ]);
    let by_run = ok(&["evaluate", "--run", s(&run_dir), "--data", "digits:classes=0-5"]);
    assert_eq!(by_name, by_run);
    // --weights in train takes the prefixed file too.
    ok(&[
        "train",
        "--model",
        "lenet5",
        "--data",
        "digits:classes=0-5",
        "--epochs",
        "1",
        "-q",
        "--weights",
        s(&w),
        "--out",
        s(&tmp.path().join("again")),
    ]);
}

// 4 ------------------------------------------------------------------------------------------------------------

/// The run records its class names; predict prints them; evaluating two of the three class folders maps them by
/// name (the accuracy equals the share of predict's labels that name their folder), and an unknown name fails.
#[test]
fn runs_keep_their_class_names() {
    let tmp = tempdir();
    let train_dir = tmp.path().join("train");
    image_folder(&train_dir, &["cat", "dog", "fox"], 4, 32);
    let run_dir = tmp.path().join("run");
    ok(&[
        "train",
        "--model",
        "lenet5",
        "--data",
        // In colour: an image folder otherwise takes the model's registry input (LeNet-5: grey), where these
        // red and blue squares are two close greys.
        &format!("{}:channels=3", s(&train_dir)),
        "--no-validation",
        "--epochs",
        "30",
        "--lr",
        "0.001",
        "--batch-size",
        "4",
        "-q",
        "--out",
        s(&run_dir),
    ]);
    assert_eq!(read_json(&run_dir.join("classes.json")), serde_json::json!(["cat", "dog", "fox"]));

    let eval_dir = tmp.path().join("eval");
    image_folder(&eval_dir, &["dog", "fox"], 3, 32);
    let out = ok(&["predict", "--run", s(&run_dir), "--input", s(&eval_dir.join("dog")), s(&eval_dir.join("fox"))]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 6, "{out}");
    let mut right = 0;
    for line in &lines {
        let (file, rest) = line.split_once(": ").unwrap();
        let label = rest.split_whitespace().next().unwrap();
        assert!(["cat", "dog", "fox"].contains(&label), "{line}");
        let folder = Path::new(file).parent().unwrap().file_name().unwrap().to_str().unwrap();
        right += usize::from(folder == label);
    }
    assert!(right >= 4, "the colours are learned: {out}");
    let eval = ok(&["evaluate", "--run", s(&run_dir), "--data", s(&eval_dir)]);
    assert!(eval.contains(&format!("accuracy: {:.4}", right as f64 / 6.0)), "{eval} vs {right} of 6 right");

    let unknown = tmp.path().join("unknown");
    image_folder(&unknown, &["dog", "cow"], 1, 32);
    fails(&["evaluate", "--run", s(&run_dir), "--data", s(&unknown)], &["'cow'", "cat, dog, fox"]);
}

// 5 ------------------------------------------------------------------------------------------------------------

#[test]
fn defaults_are_each_optimizers_and_augmentation_is_for_images() {
    let tmp = tempdir();
    for (opt, lr) in [("sgd", 0.01), ("adam", 0.001), ("adamw", 0.001), ("rmsprop", 0.001)] {
        let dir = tmp.path().join(opt);
        let out =
            ok(&["train", "--model", "mlp", "--data", MOONS, "--optimizer", opt, "--epochs", "1", "--out", s(&dir)]);
        let config = read_json(&dir.join("config.json"));
        assert_eq!(config["lr"].as_f64(), Some(lr), "{opt}");
        assert_eq!(read_json(&dir.join("history.json"))["history"]["lr"][0].as_f64(), Some(lr), "{opt}");
        assert!(config["augment"].is_null() && config["lr_schedule"].is_null(), "{opt}: {config}");
        assert_eq!(
            out.lines().next(),
            Some("Found 200 samples of 2 features in 2 classes; 160 for training, 40 for validation; augment: none"),
            "{out}"
        );
    }
    let dir = tmp.path().join("digits");
    let out = ok(&["train", "--data", "digits:classes=0-2", "--epochs", "1", "--out", s(&dir)]);
    assert_eq!(read_json(&dir.join("config.json"))["augment"], "affine");
    let first = out.lines().next().unwrap();
    assert!(
        first.starts_with("Found ")
            && first.contains(" images of 1×32×32 in 3 classes; ")
            && first.ends_with("; augment: affine"),
        "{out}"
    );
    let quiet =
        ok(&["train", "--model", "mlp", "--data", MOONS, "--epochs", "1", "-q", "--out", s(&tmp.path().join("q"))]);
    assert_eq!(quiet.lines().count(), 1, "-q prints the summary line only: {quiet}");
    let help = ok(&["train", "--help"]);
    for shown in ["Epochs to train [default: 50]", "Samples per batch [default: 32]", "sgd 0.01", "[default: none]"] {
        assert!(help.contains(shown), "--help lacks '{shown}'");
    }
}

// 6 ------------------------------------------------------------------------------------------------------------

#[test]
fn typos_get_suggestions_and_keras_spellings_work() {
    let tmp = tempdir();
    fails(&["train", "--epoch", "3"], &["'--epoch'", "'--epochs'"]);
    let dir = tmp.path().join("run");
    ok(&[
        "train",
        "--model",
        "mlp",
        "--data",
        MOONS,
        "--epochs",
        "1",
        "--validation_split",
        "0.1",
        "--batch_size",
        "16",
        "-q",
        "--out",
        s(&dir),
    ]);
    let config = read_json(&dir.join("config.json"));
    assert_eq!((config["validation_split"].as_f64(), config["batch_size"].as_u64()), (Some(0.1), Some(16)));
    let out = s(&tmp.path().join("x")).to_string();
    let line = fails(
        &["train", "--model", "mlp", "--data", MOONS, "--early-stopping", "monitor=val_acc", "--out", &out],
        &["'val_acc'", "val_accuracy"],
    );
    assert!(!line.contains("add --validation"), "{line}");
    fails(
        &[
            "train",
            "--model",
            "mlp",
            "--data",
            MOONS,
            "--no-validation",
            "--early-stopping",
            "monitor=val_loss",
            "--out",
            &out,
        ],
        &["'val_loss'", "--validation-split"],
    );
}

// 7 ------------------------------------------------------------------------------------------------------------

#[test]
fn keras_file_names_are_refused_and_save_freq_epoch_parses() {
    let tmp = tempdir();
    let dir = tmp.path().join("run");
    let base = ["train", "--model", "mlp", "--data", MOONS, "--epochs", "2", "-q", "--out", s(&dir)];
    for template in ["best.h5,monitor=val_loss", "ckpt-{epoch:02d}.keras"] {
        fails(&[&base[..], &["--checkpoint", template]].concat(), &["Keras", ".pt"]);
    }
    fails(&[&base[..], &["--checkpoint", "c.pt,save_freq=5"]].concat(), &["save_freq=5", "period="]);
    ok(&[&base[..], &["--checkpoint", "e-{epoch}.pt,save_freq=epoch"]].concat());
    assert!(dir.join("e-1.pt").exists() && dir.join("e-2.pt").exists());
    let dir2 = tmp.path().join("run2");
    ok(&[
        "train",
        "--model",
        "mlp",
        "--data",
        MOONS,
        "--epochs",
        "2",
        "-q",
        "--out",
        s(&dir2),
        "--checkpoint",
        "p-{epoch}.pt,period=2",
    ]);
    assert!(!dir2.join("p-1.pt").exists() && dir2.join("p-2.pt").exists());
}

// 8 ------------------------------------------------------------------------------------------------------------

/// A finished 5-epoch run extended with --resume --epochs 8 has the history of an 8-epoch run (the default
/// constant learning rate; shuffles and generators depend on (seed, epoch) only).
#[test]
fn a_finished_run_extends_as_if_asked_for_more_epochs() {
    let tmp = tempdir();
    let (five, eight) = (tmp.path().join("five"), tmp.path().join("eight"));
    let args = |epochs: &'static str, dir: &Path| -> Vec<String> {
        ["train", "--model", "mlp:dropout=0.2", "--data", MOONS, "--epochs", epochs, "-q", "--out", s(dir)]
            .map(String::from)
            .to_vec()
    };
    ok(&args("5", &five).iter().map(String::as_str).collect::<Vec<_>>());
    ok(&args("8", &eight).iter().map(String::as_str).collect::<Vec<_>>());
    fails(&["train", "--resume", s(&five)], &["already finished", "--epochs"]);
    fails(&["train", "--resume", s(&five), "--epochs", "4"], &["5 epochs", "--epochs"]);
    let out = ok(&["train", "--resume", s(&five), "--epochs", "8"]);
    assert!(out.contains("8 epochs"), "{out}");
    assert_eq!(history(&five), history(&eight));
    assert_eq!(read_json(&five.join("config.json"))["epochs"], 8);
    let w5 = common::read_safetensors(&five.join("model.safetensors"));
    let w8 = common::read_safetensors(&eight.join("model.safetensors"));
    for (k, t) in &w8 {
        assert!(t.equal(&w5[k]), "{k} differs");
    }
    // A run stopped by early stopping is not extended.
    let es = tmp.path().join("es");
    ok(&[
        "train",
        "--model",
        "mlp",
        "--data",
        MOONS,
        "--epochs",
        "50",
        "--lr",
        "0.5",
        "-q",
        "--early-stopping",
        "monitor=loss,patience=0,min_delta=10",
        "--out",
        s(&es),
    ]);
    fails(&["train", "--resume", s(&es), "--epochs", "60"], &["stopped by a callback"]);
}

/// An interrupted run (its final files not yet written: what Ctrl-C leaves) can be plotted and evaluated from its
/// resume state, with the figures of its last completed epoch.
#[test]
fn an_interrupted_run_can_be_looked_at() {
    let tmp = tempdir();
    let dir = tmp.path().join("run");
    ok(&["train", "--model", "mlp", "--data", MOONS, "--epochs", "3", "-q", "--out", s(&dir)]);
    let before = ok(&["evaluate", "--run", s(&dir)]);
    for f in ["model.pt", "model.safetensors", "history.json", "history.csv", "curves.png"] {
        std::fs::remove_file(dir.join(f)).unwrap();
    }
    let svg = tmp.path().join("c.svg");
    ok(&["plot", s(&dir), "-o", s(&svg)]);
    assert!(std::fs::read_to_string(&svg).unwrap().contains("val_loss"));
    let after = ok(&["evaluate", "--run", s(&dir)]);
    assert_eq!(before, after);
}

// 9 ------------------------------------------------------------------------------------------------------------

/// Folders of the default name for this second and the next ten already hold runs: the run takes a suffix.
#[test]
fn default_folders_never_collide() {
    let tmp = tempdir();
    let now = chrono::Local::now();
    for s in 0..10 {
        let t = now + chrono::Duration::seconds(s);
        let d = tmp.path().join("runs").join(format!("mlp-moons-{}", t.format("%Y%m%d-%H%M%S")));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("resume.json"), "{}").unwrap();
    }
    let out = tchzoo()
        .current_dir(tmp.path())
        .args(["train", "--model", "mlp", "--data", MOONS, "--epochs", "1", "-q"])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let folder = stdout.trim().rsplit("→ ").next().unwrap();
    assert!(folder.starts_with("runs/mlp-moons-") && folder.ends_with("-2"), "{stdout}");
    assert!(tmp.path().join(folder).join("model.pt").exists());
}

// 10 -----------------------------------------------------------------------------------------------------------

#[test]
fn predict_refuses_run_with_model_and_takes_several_inputs() {
    let run_dir = digits_run();
    let tmp = tempdir();
    let (a, b) = (tmp.path().join("a.npy"), tmp.path().join("b.npy"));
    write_npy(&a, &vec![0.0; 1024], &[1, 32, 32]);
    write_npy(&b, &vec![0.5; 2048], &[2, 1, 32, 32]);
    fails(&["predict", "--run", s(run_dir), "--model", "resnet50", "--input", s(&a)], &["--run", "--model"]);
    let out = ok(&["predict", "--run", s(run_dir), "--input", s(&a), s(&b)]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    // The digits' class names are the digits.
    let digit = |line: &str, prefix: &str| {
        line.strip_prefix(prefix)
            .and_then(|r| r.split_whitespace().next())
            .is_some_and(|d| d.len() == 1 && d.as_bytes()[0].is_ascii_digit())
    };
    assert!(digit(lines[0], &format!("{}: ", a.display())), "{out}");
    assert!(digit(lines[1], &format!("{}[0]: ", b.display())), "{out}");
    assert!(digit(lines[2], &format!("{}[1]: ", b.display())), "{out}");
    let folder = ok(&["predict", "--run", s(run_dir), "--input", s(tmp.path())]);
    assert_eq!(folder, out);
}

#[test]
fn inspect_counts_parameters_as_summary_does() {
    let tmp = tempdir();
    let dir = tmp.path().join("run");
    let spec = "mlp:hidden=8,batch_norm=true";
    ok(&["train", "--model", spec, "--data", MOONS, "--epochs", "1", "-q", "--out", s(&dir)]);
    let summary = ok(&["summary", spec, "--input", "2", "--classes", "1"]);
    let total = summary.lines().find_map(|l| l.strip_prefix("Total params: ")).unwrap().to_string();
    let inspect = ok(&["inspect", s(&dir.join("model.pt"))]);
    assert!(inspect.contains(&format!("Total parameters: {total} in ")), "{inspect}\nvs {total}");
    // 8 running means, 8 running variances, 1 counter.
    assert!(inspect.contains("Buffers (BatchNorm running statistics and counters): 17 in 3 tensors"), "{inspect}");
}

#[test]
fn summary_models_and_quiet_runs() {
    fails(&["summary", "resnet18", "--input", "224x224x3"], &["3x224x224"]);
    fails(&["models", "zzz"], &["no model matches 'zzz'"]);
    fails(&["models", "resnet1888"], &["'resnet18'"]);
    let tmp = tempdir();
    let out = ok(&[
        "train",
        "--model",
        "mlp",
        "--data",
        MOONS,
        "--epochs",
        "2",
        "-q",
        "--out",
        s(&tmp.path().join("r")),
        "--checkpoint",
        "best.pt,save_best_only=true",
        "--early-stopping",
        "monitor=val_loss,patience=5",
    ]);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains("2 epochs in"), "{out}");
    let one =
        ok(&["train", "--model", "mlp", "--data", MOONS, "--epochs", "1", "-q", "--out", s(&tmp.path().join("one"))]);
    assert!(one.contains(": 1 epoch in ") && !one.contains("1 epochs"), "{one}");
}

/// A config file's data path is found beside the file, from any current folder.
#[test]
fn config_paths_resolve_against_the_file() {
    let tmp = tempdir();
    let sub = tmp.path().join("conf");
    std::fs::create_dir_all(&sub).unwrap();
    let mut csv = String::from("a,b,label\n");
    for i in 0..40 {
        let x = i as f64 / 40.0;
        csv.push_str(&format!("{x},{},{}\n", 1.0 - x, usize::from(i % 2 == 0)));
    }
    std::fs::write(sub.join("pts.csv"), csv).unwrap();
    std::fs::write(sub.join("run.json"), r#"{"model": "mlp", "data": "pts.csv:label=label", "epochs": 1}"#).unwrap();
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let out = tchzoo()
        .current_dir(&elsewhere)
        .args(["train", "--config", "../conf/run.json", "-q", "--out", "r"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out).1);
    assert!(elsewhere.join("r/model.pt").exists());
}

/// The summary line's best value is the monitored one, and the curves mark the same value.
#[test]
fn the_summary_and_the_curves_name_the_same_best() {
    let tmp = tempdir();
    let dir = tmp.path().join("run");
    let out = ok(&[
        "train",
        "--model",
        "mlp",
        "--data",
        MOONS,
        "--epochs",
        "6",
        "-q",
        "--out",
        s(&dir),
        "--early-stopping",
        "monitor=val_loss,patience=10",
    ]);
    let h = read_json(&dir.join("history.json"));
    let best =
        h["history"]["val_loss"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).fold(f64::INFINITY, f64::min);
    let shown = format!("best val_loss {best:.4}");
    assert!(out.contains(&shown) && !out.contains("best val_accuracy"), "{out}");
    let svg = tmp.path().join("c.svg");
    ok(&["plot", s(&dir), "-o", s(&svg)]);
    assert!(std::fs::read_to_string(&svg).unwrap().contains(&shown));
    // lr is in the history, so it can be drawn.
    ok(&["plot", s(&dir), "--metrics", "lr,loss", "-o", s(&tmp.path().join("lr.svg"))]);
    fails(&["plot", s(&dir), "--metrics", "lrr"], &["'lrr'"]);
}

/// `similar -k 3` lists the query and 2 neighbours, and the map (`plot --embeddings --query Q -k 3`) highlights
/// the same 2.
#[test]
fn similar_and_its_map_show_the_same_neighbours() {
    let tmp = tempdir();
    let csv = tmp.path().join("pairs.csv");
    let mut rows = String::from("person,club\n");
    for (p, c) in [
        ("ann", "chess"),
        ("bob", "chess"),
        ("cat", "golf"),
        ("dan", "golf"),
        ("eve", "chess"),
        ("fay", "golf"),
        ("gus", "chess"),
    ] {
        rows.push_str(&format!("{p},{c}\n"));
    }
    std::fs::write(&csv, rows).unwrap();
    let dir = tmp.path().join("run");
    ok(&[
        "train",
        "--model",
        "entity_embedding:entities=7,links=2,dim=4",
        "--data",
        &format!("pairs:path={},negatives=1", csv.display()),
        "--epochs",
        "2",
        "--no-validation",
        "-q",
        "--out",
        s(&dir),
    ]);
    let listing = ok(&["similar", s(&dir), "--query", "ann", "-k", "3"]);
    let names: Vec<&str> = listing.lines().skip(1).map(|l| l.split_whitespace().nth(1).unwrap()).collect();
    assert_eq!(names.len(), 3, "{listing}");
    let svg = tmp.path().join("map.svg");
    ok(&["plot", s(&dir), "--embeddings", "--query", "ann", "-k", "3", "-o", s(&svg)]);
    let map = std::fs::read_to_string(&svg).unwrap();
    // The query is labelled in red, its neighbours in blue (the legend's texts are black).
    let highlighted: Vec<&str> = map
        .split("<text")
        .filter_map(|t| t.split_once('>'))
        .filter(|(attrs, _)| attrs.contains(r##"fill="#1F77B4""##) || attrs.contains(r##"fill="#D62728""##))
        .map(|(_, t)| t)
        .map(|t| t.split('<').next().unwrap().trim())
        .collect();
    let mut listed = names.clone();
    listed.sort();
    let mut drawn = highlighted.clone();
    drawn.sort();
    assert_eq!(drawn, listed, "{listing}");

    // The model's default tables (1000 entities and links) are larger than the graph: the rows no index reaches
    // are left out, and `similar` and the map read the graph's 7 people.
    let wide = tmp.path().join("wide");
    let data = format!("pairs:path={},negatives=1", csv.display());
    let args = ["train", "--model", "entity_embedding:dim=4", "--data", &data, "--epochs", "1", "--no-validation"];
    ok(&[&args[..], &["-q", "--out", s(&wide)]].concat());
    let listing = ok(&["similar", s(&wide), "--query", "ann", "-k", "7"]);
    let mut names: Vec<&str> = listing.lines().skip(1).map(|l| l.split_whitespace().nth(1).unwrap()).collect();
    names.sort();
    assert_eq!(names, ["ann", "bob", "cat", "dan", "eve", "fay", "gus"], "{listing}");
    ok(&["plot", s(&wide), "--embeddings", "-o", s(&tmp.path().join("wide.svg"))]);
}

/// On a terminal (a pseudo-terminal from `script`) the bar shows the running loss and an ETA.
#[test]
fn the_progress_bar_shows_loss_and_eta() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: no `script` to make a terminal");
        return;
    }
    let tmp = tempdir();
    let cmd = format!(
        "{} train --model lenet5 --data digits --epochs 1 --out {}",
        env!("CARGO_BIN_EXE_tchzoo"),
        tmp.path().join("run").display()
    );
    let out = Command::new("script").args(["-qec", &cmd, "/dev/null"]).output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("ETA") && stdout.contains("- loss: "), "{stdout}");
}

// The sweep -----------------------------------------------------------------------------------------------------

/// Runs with stdout read for one line and then closed (`| head -1`); the exit code.
fn head_one(args: &[&str]) -> (Option<i32>, String) {
    let mut child = tchzoo()
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tchzoo");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.code(), text(&out).1)
}

#[test]
fn every_subcommand_ends_with_0_or_2() {
    let run_dir = digits_run();
    let tmp = tempdir();
    let p = |name: &str| -> PathBuf { tmp.path().join(name) };
    let pt = run_dir.join("model.pt");
    write_npy(&p("x.npy"), &vec![0.25; 5 * 1024], &[5, 1, 32, 32]);
    write_npy(&p("wrong.npy"), &[0.25; 5 * 7], &[5, 7]);
    std::fs::write(p("short.pt"), &std::fs::read(&pt).unwrap()[..300]).unwrap();
    std::fs::write(p("history.json"), r#"{"epoch": [0, 1, 2], "history": {"loss": [1.0], "val_loss": [1.0, 0.5]}}"#)
        .unwrap();
    let out_dir = p("train");
    let images = p("images");
    for (class, shade) in [("dark", 20u8), ("light", 230u8)] {
        std::fs::create_dir_all(images.join(class)).unwrap();
        image::GrayImage::from_pixel(12, 10, image::Luma([shade])).save(images.join(class).join("a.png")).unwrap();
    }
    let cases: Vec<(&str, Vec<String>, Vec<String>)> = vec![
        (
            "train",
            vec!["train", "--model", "mlp", "--data", MOONS, "--epochs", "3", "--out", s(&out_dir)]
                .into_iter()
                .map(String::from)
                .collect(),
            vec!["train", "--model", "lenet5", "--data", MOONS, "--epochs", "1", "--out", s(&p("t2"))]
                .into_iter()
                .map(String::from)
                .collect(),
        ),
        (
            "evaluate",
            vec!["evaluate".into(), "--run".into(), s(run_dir).into()],
            vec!["evaluate".into(), "--run".into(), s(run_dir).into(), "--data".into(), "digits:size=8".into()],
        ),
        (
            "predict",
            vec!["predict".into(), "--run".into(), s(run_dir).into(), "--input".into(), s(&p("x.npy")).into()],
            vec!["predict".into(), "--run".into(), s(run_dir).into(), "--input".into(), s(&p("wrong.npy")).into()],
        ),
        ("models", vec!["models".into()], vec!["models".into(), "zzz".into()]),
        (
            "summary",
            vec!["summary".into(), "lenet5".into()],
            vec!["summary".into(), "lenet5".into(), "--input".into(), "1x4x4".into()],
        ),
        ("doctor", vec!["doctor".into()], vec!["doctor".into(), "--json".into()]),
        (
            "convert",
            vec!["convert".into(), s(&pt).into(), s(&p("w.safetensors")).into()],
            vec!["convert".into(), s(&p("short.pt")).into(), s(&p("w2.safetensors")).into()],
        ),
        ("inspect", vec!["inspect".into(), s(&pt).into()], vec!["inspect".into(), s(&p("short.pt")).into()]),
        (
            "plot",
            vec!["plot".into(), s(run_dir).into(), "-o".into(), s(&p("c.png")).into()],
            vec!["plot".into(), s(&p("history.json")).into(), "-o".into(), s(&p("h.png")).into()],
        ),
        (
            "similar",
            vec!["similar".into(), s(run_dir).into(), "--query".into(), "x".into()],
            vec![
                "similar".into(),
                s(run_dir).into(),
                "--query".into(),
                "x".into(),
                "--weights".into(),
                s(&p("short.pt")).into(),
            ],
        ),
        (
            "pack",
            vec!["pack".into(), s(&images).into(), s(&p("shards/s")).into()],
            vec!["pack".into(), s(&p("no-such-folder")).into(), s(&p("shards2/s")).into()],
        ),
        (
            "tune",
            ["tune", "lr", "--model", "mlp", "--data", MOONS, "--num-steps", "5", "--out", s(&p("lr"))]
                .into_iter()
                .map(String::from)
                .collect(),
            ["tune", "lr", "--model", "lenet5", "--data", MOONS, "--num-steps", "5", "--out", s(&p("lr2"))]
                .into_iter()
                .map(String::from)
                .collect(),
        ),
        (
            "average",
            vec!["average".into(), s(&pt).into(), s(&pt).into(), "-o".into(), s(&p("avg.pt")).into()],
            vec!["average".into(), s(&pt).into(), s(&p("short.pt")).into(), "-o".into(), s(&p("avg2.pt")).into()],
        ),
    ];
    for (name, head, wrong) in &cases {
        for (how, args) in [("| head -1", head), ("wrong-sized input", wrong)] {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let (code, stderr) = if how == "| head -1" {
                head_one(&args)
            } else {
                let out = run(&args);
                (out.status.code(), text(&out).1)
            };
            assert!(matches!(code, Some(0) | Some(2)), "{name} {how}: exit {code:?}\n{stderr}");
            assert!(!stderr.contains("internal error") && !stderr.contains("panicked"), "{name} {how}:\n{stderr}");
        }
    }
    // Every subcommand is in the sweep.
    let help = ok(&["--help"]);
    let listed: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    let swept: Vec<&str> = cases.iter().map(|c| c.0).collect();
    assert_eq!(listed, swept);
}

/// scikit-learn's iris as pandas writes it is ordered by species: Keras' validation_split (the last 20 %) is all
/// virginica, while training holds 50 setosa, 50 versicolor and 20 virginica. The run goes on as Keras' would, with
/// a warning that says why and what to do; the same rows shuffled give no warning.
#[test]
fn a_split_of_rows_grouped_by_label_is_said() {
    let tmp = tempdir();
    let iris = common::root().join("data/iris.csv");
    let run_of = |data: &Path, out: &str| {
        let args = ["train", "--model", "mlp:hidden=8", "--data", s(data), "--epochs", "1", "--out"];
        let out = run(&[&args[..], &[s(&tmp.path().join(out))]].concat());
        assert!(out.status.success(), "{}", text(&out).1);
        text(&out).1
    };
    // Said even under -q, as the skipped-images warning is.
    let quiet = run(&[
        "train",
        "--model",
        "mlp:hidden=8",
        "--data",
        s(&iris),
        "--epochs",
        "1",
        "-q",
        "--out",
        s(&tmp.path().join("quiet")),
    ]);
    assert!(text(&quiet).1.starts_with("warning: the rows of"), "{}", text(&quiet).1);
    let stderr = run_of(&iris, "sorted");
    let warning = stderr.lines().find(|l| l.starts_with("warning: the rows of")).unwrap_or_else(|| {
        panic!("no warning:\n{stderr}");
    });
    for part in ["grouped by label", "last 20%", "only class 'virginica' of 3", "--validation-data"] {
        assert!(warning.contains(part), "'{part}' not in: {warning}");
    }
    let text = std::fs::read_to_string(&iris).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    // A fixed shuffle of the 150 rows: i ↦ 7·i mod 150 is a permutation (7 is prime to 150).
    let rows: Vec<&str> = (0..150).map(|i| lines[1 + (i * 7) % 150]).collect();
    lines.truncate(1);
    lines.extend(rows);
    let shuffled = tmp.path().join("iris_shuffled.csv");
    std::fs::write(&shuffled, lines.join("\n")).unwrap();
    let stderr = run_of(&shuffled, "shuffled");
    assert!(!stderr.contains("grouped by label"), "{stderr}");
}
