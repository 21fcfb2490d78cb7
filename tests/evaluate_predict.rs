//! `tchzoo evaluate` and `tchzoo predict` on saved models (Keras' `load_model` then `evaluate` / `predict`).
mod common;

use tchzoo::train::History;

fn run_ok(args: &[&str]) -> String {
    let out = common::tchzoo().args(args).env("OMP_NUM_THREADS", "1").output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn metric(line: &str, key: &str) -> f64 {
    let pat = format!("{key}: ");
    let start = line.find(&pat).unwrap_or_else(|| panic!("no {key} in {line}")) + pat.len();
    line[start..].split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn evaluate_and_predict_a_saved_run() {
    let dir = common::tempdir();
    let run = dir.path().join("run");
    let run_s = run.to_str().unwrap();
    run_ok(&[
        "train",
        "--model",
        "mlp:hidden=16",
        "--data",
        "moons:n_samples=300,noise=0.2",
        "--epochs",
        "6",
        "--checkpoint",
        "best.pt,monitor=val_accuracy,save_best_only=true,verbose=false",
        "--out",
        run_s,
        "-q",
    ]);
    let h = History::load_json(&run.join("history.json")).unwrap();
    // The final weights on the validation split give the last epoch's figures.
    let line = run_ok(&["evaluate", "--run", run_s]);
    assert!(line.starts_with("60 samples"), "{line}");
    assert!((metric(&line, "accuracy") - h.last("val_accuracy").unwrap()).abs() < 6e-5, "{line}");
    assert!((metric(&line, "loss") - h.last("val_loss").unwrap()).abs() < 6e-5, "{line}");
    // The best checkpoint gives the best epoch's accuracy.
    let best = h.get("val_accuracy").unwrap().iter().cloned().fold(f64::MIN, f64::max);
    let line = run_ok(&["evaluate", "--run", run_s, "--weights", run.join("best.pt").to_str().unwrap()]);
    assert!((metric(&line, "accuracy") - best).abs() < 6e-5, "{line} vs best {best}");

    // predict: a .npy of 5 samples in, a .pt of 5 logits out, readable as a plain tensor.
    let xs = tch::Tensor::from_slice(&[1.0f32, 0.0, -1.0, 0.5, 0.0, 0.25, 2.0, 0.5, 1.5, -0.5]).reshape([5, 2]);
    let input = dir.path().join("x.npy");
    xs.write_npy(&input).unwrap();
    let output = dir.path().join("y.pt");
    run_ok(&["predict", "--run", run_s, "--input", input.to_str().unwrap(), "--output", output.to_str().unwrap()]);
    let ys = match tchzoo::checkpoint::read_pt(&output).unwrap() {
        tchzoo::checkpoint::Object::Tensor(t) => t,
        other => panic!("expected a tensor, got a {}", other.type_name()),
    };
    assert_eq!(ys.size(), vec![5, 1]);
    let text = run_ok(&["predict", "--run", run_s, "--input", input.to_str().unwrap(), "--proba"]);
    assert_eq!(text.lines().count(), 5, "{text}");

    // A wrong input shape is one clear line.
    let bad = dir.path().join("bad.npy");
    tch::Tensor::zeros([2, 3], (tch::Kind::Float, tch::Device::Cpu)).write_npy(&bad).unwrap();
    let out = common::tchzoo().args(["predict", "--run", run_s, "--input", bad.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("[2, 3]"), "{err}");
}

/// `predict --model resnet18 --input a.png` applies torchvision's ResNet eval transform (Resize(256),
/// CenterCrop(224), ToTensor, Normalize): on a 256×256 image (no resizing) the logits equal torchvision's on the
/// same weights; on a 300×200 image they differ only by the resampling filter (PIL's antialiased bilinear vs the
/// image crate's triangle filter).
#[test]
fn predict_an_image_with_the_references_preprocessing() {
    let dir = common::tempdir();
    common::run_script("predict_reference.py", &[dir.path().to_str().unwrap()]);
    for (name, tolerance) in [("square", 1e-4), ("wide", 5e-3)] {
        let input = dir.path().join(format!("{name}.png"));
        let output = dir.path().join(format!("{name}_ours.npy"));
        let w = dir.path().join("w.pt");
        run_ok(&[
            "predict",
            "--model",
            "resnet18",
            "--weights",
            w.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
        ]);
        let ours = tch::Tensor::read_npy(&output).unwrap();
        let theirs = tch::Tensor::read_npy(dir.path().join(format!("{name}_torch.npy"))).unwrap();
        assert_eq!(ours.size(), vec![1, 1000]);
        let d = common::rel_diff(&ours, &theirs);
        eprintln!("{name}: max|Δ|/max|y| = {d:.2e}");
        assert!(d <= tolerance, "{name}: {d}");
    }
}
