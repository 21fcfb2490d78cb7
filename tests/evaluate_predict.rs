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

    // A batch of 0 samples is refused in one line by both (it used to be taken as 1 without a word).
    for args in [&["evaluate", "--run", run_s][..], &["predict", "--run", run_s, "--input", input.to_str().unwrap()]] {
        let err = run_err(&[args, &["--batch-size", "0"]].concat());
        assert!(err.contains("--batch-size 0: give at least 1"), "{err}");
    }
}

/// `predict --model resnet18 --input a.png` applies torchvision's ResNet eval transform (Resize(256),
/// CenterCrop(224), ToTensor, Normalize): on a 256×256 image (no resizing) the logits equal torchvision's on the
/// same weights; on a 300×200 image they differ only by the resampling (PIL's antialiased bilinear vs libtorch's
/// antialiased uint8 kernel, which torchvision uses on tensors).
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

fn run_err(args: &[&str]) -> String {
    let out = common::tchzoo().args(args).env("OMP_NUM_THREADS", "1").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(err.lines().count(), 1, "{err}");
    err
}

/// `predict --model NAME` builds the model for the input's shape and lets running it decide: ResNet-18 takes
/// [2, 3, 72, 72] and [1, 3, 224, 224] (and one sample [3, 72, 72]), giving the library's own forward pass on the
/// same weights; a shape it cannot take is one line naming it, exit 2.
#[test]
fn predict_with_a_named_model_takes_any_size_it_can() {
    use tch::{Device, Kind, Tensor};
    let dir = common::tempdir();
    let store = tchzoo::nn::VarStore::new(Device::Cpu);
    tch::manual_seed(1);
    let model = tchzoo::models::build("resnet18", &store, 10, &[3, 32, 32]).unwrap();
    let w = dir.path().join("w.safetensors");
    tchzoo::checkpoint::save_weights(&store, &w).unwrap();
    let w = w.to_str().unwrap();
    for (name, shape) in [("a", vec![2, 3, 72, 72]), ("b", vec![1, 3, 224, 224]), ("c", vec![3, 72, 72])] {
        let xs = Tensor::randn(shape.as_slice(), (Kind::Float, Device::Cpu));
        let input = dir.path().join(format!("{name}.npy"));
        xs.write_npy(&input).unwrap();
        let output = dir.path().join(format!("{name}_out.npy"));
        let (i, o) = (input.to_str().unwrap(), output.to_str().unwrap());
        run_ok(&["predict", "--model", "resnet18", "--num-classes", "10", "--weights", w, "--input", i, "--output", o]);
        let ours = Tensor::read_npy(&output).unwrap();
        let batch = if shape.len() == 3 { xs.unsqueeze(0) } else { xs };
        let want = tch::no_grad(|| model.forward_t(&batch, false));
        assert_eq!(ours.size(), vec![batch.size()[0], 10], "{shape:?}");
        let d = common::rel_diff(&ours, &want);
        assert!(d < 1e-5, "{shape:?}: {d}");
    }
    // Five channels: the first convolution cannot take them.
    let bad = dir.path().join("bad.npy");
    Tensor::zeros([2, 5, 72, 72], (Kind::Float, Device::Cpu)).write_npy(&bad).unwrap();
    let err = run_err(&[
        "predict",
        "--model",
        "resnet18",
        "--num-classes",
        "10",
        "--weights",
        w,
        "--input",
        bad.to_str().unwrap(),
    ]);
    assert!(err.contains("[2, 5, 72, 72]") && err.contains("cannot take"), "{err}");
    // A tensor of the wrong rank.
    let flat = dir.path().join("flat.npy");
    Tensor::zeros([7], (Kind::Float, Device::Cpu)).write_npy(&flat).unwrap();
    let err = run_err(&[
        "predict",
        "--model",
        "resnet18",
        "--num-classes",
        "10",
        "--weights",
        w,
        "--input",
        flat.to_str().unwrap(),
    ]);
    assert!(err.contains("[7]"), "{err}");
}

/// An image for a model given by name gets the registry's evaluation transform, which is torchvision's preset
/// (`ImageClassification`, as the weights' `transforms()` make it) within one grey level, for bilinear and bicubic
/// resizing, shrinking and enlarging, and Inception v3's 342/299.
#[test]
fn a_named_models_image_transform_is_torchvisions() {
    use tchzoo::data::inputs::{model_transforms, read_image, ImagePrep};
    let dir = common::fixtures("eval_transform.py");
    for case in ["resnet18", "inception_v3", "seresnet18"] {
        let t = model_transforms(case).unwrap();
        let std = tch::Tensor::from_slice(&t.std).to_kind(tch::Kind::Float).view([3, 1, 1]);
        for image in ["wide", "tall", "small", "square"] {
            let ours =
                read_image(&dir.join(format!("{image}.png")), &ImagePrep::Eval(t.clone())).unwrap().squeeze_dim(0);
            let theirs = tch::Tensor::read_npy(dir.join(format!("{image}_{case}.npy"))).unwrap();
            assert_eq!(ours.size(), theirs.size(), "{case} {image}");
            // In grey levels: (x − mean) / std · std · 255.
            let grey = f64::try_from(((ours - theirs) * &std * 255.0).abs().max()).unwrap();
            assert!(grey <= 1.0 + 1e-3, "{case} {image}: {grey} grey levels apart");
        }
    }
}

/// A PNG folder of 3 classes (`a`, `b`, `c`) whose images differ in size, and in colour by class.
fn png_folder(root: &std::path::Path, per_class: u32, offset: u32) {
    for (c, class) in ["a", "b", "c"].iter().enumerate() {
        let dir = root.join(class);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..per_class {
            let seed = i + offset;
            let (w, h) = (30 + (seed * 7) % 23, 28 + (seed * 5) % 19);
            let img = image::RgbImage::from_fn(w, h, |x, y| {
                let v = ((x * 9 + y * 5 + seed * 31) % 97) as u8;
                match c {
                    0 => image::Rgb([150 + v, 40 + v / 2, 20]),
                    1 => image::Rgb([30, 60 + v / 2, 140 + v]),
                    _ => image::Rgb([40 + v, 150 + v, 60]),
                }
            });
            img.save(dir.join(format!("img{i:03}.png"))).unwrap();
        }
    }
}

/// An image-folder run (channels, sizes, interpolation and mean/std all set apart from the defaults): its
/// validation images through `predict --run` give, file by file, the probabilities of the training pipeline's
/// evaluation batches, and `evaluate --run` the loss and accuracy the run logged and that those probabilities give.
/// A config.json that no longer records a transform is one line.
#[test]
fn predict_and_evaluate_a_folder_run_as_training_evaluates() {
    use tch::{Kind, Tensor};
    let dir = common::tempdir();
    let (train, val) = (dir.path().join("train"), dir.path().join("val"));
    png_folder(&train, 5, 0);
    png_folder(&val, 3, 100);
    let config = dir.path().join("c.json");
    std::fs::write(&config, r#"{"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3]}"#).unwrap();
    let run = dir.path().join("run");
    let run_s = run.to_str().unwrap();
    let data = format!("{}:channels=3", train.display());
    run_ok(&[
        "train",
        "--config",
        config.to_str().unwrap(),
        "--model",
        "lenet5",
        "--data",
        &data,
        "--validation-data",
        val.to_str().unwrap(),
        "--train-crop-size",
        "24",
        "--val-resize-size",
        "30",
        "--interpolation",
        "bicubic",
        "--epochs",
        "2",
        "--batch-size",
        "3",
        "-j",
        "2",
        "--device",
        "cpu",
        "--out",
        run_s,
        "-q",
    ]);
    let c = tchzoo::config::RunConfig::from_json_file(&run.join("config.json")).unwrap();
    assert_eq!((c.train_crop_size, c.val_resize_size, c.val_crop_size), (Some(24), Some(30), Some(24)));
    assert_eq!(c.mean, Some(vec![0.5, 0.4, 0.3]));

    // The training pipeline's evaluation path: the run's validation set in batches, through the saved model.
    let loaded = tchzoo::run::load_model(&tchzoo::run::ModelSource {
        run: Some(run.clone()),
        device: Some("cpu".into()),
        ..Default::default()
    })
    .unwrap();
    let v = tchzoo::data::inputs::evaluation_data(&c.resolve().unwrap()).unwrap();
    assert_eq!(v.len(), 9);
    let mut expected = vec![];
    let mut labels = vec![];
    for batch in tchzoo::data::workers::DataLoader::new(&v, 3, false, 0).epoch(0) {
        let (xs, ys) = batch.unwrap();
        expected.push(loaded.trainer.predict_proba(&xs, 3));
        labels.push(ys);
    }
    let (expected, labels) = (Tensor::cat(&expected, 0), Tensor::cat(&labels, 0));

    let out = dir.path().join("p.npy");
    let (a, b, c3) = (val.join("a"), val.join("b"), val.join("c"));
    run_ok(&[
        "predict",
        "--run",
        run_s,
        "--input",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        c3.to_str().unwrap(),
        "--proba",
        "--output",
        out.to_str().unwrap(),
        "--device",
        "cpu",
    ]);
    let got = Tensor::read_npy(&out).unwrap();
    assert_eq!(got.size(), vec![9, 3]);
    assert!(common::rel_diff(&got, &expected) < 1e-5, "{got} vs {expected}");
    assert!(got.argmax(1, false).equal(&expected.argmax(1, false)));
    // The images go through the model --batch-size at a time (groups of 4 cross the folders), in name order.
    for batch in ["1", "4"] {
        let out = dir.path().join(format!("p{batch}.npy"));
        let folders = [a.to_str().unwrap(), b.to_str().unwrap(), c3.to_str().unwrap()];
        let args = ["predict", "--run", run_s, "--proba", "--batch-size", batch, "--output", out.to_str().unwrap()];
        run_ok(&[&args[..], &["--input"], &folders[..]].concat());
        let again = Tensor::read_npy(&out).unwrap();
        assert!(common::rel_diff(&again, &expected) < 1e-5, "--batch-size {batch}: {again} vs {expected}");
    }

    // The comparison can fail: the same images with the default statistics (mean 0, std 1) give other outputs.
    let mut other = tchzoo::data::inputs::recorded_transforms(&c.resolve().unwrap()).unwrap().unwrap();
    (other.mean, other.std) = (vec![0.0; 3], vec![1.0; 3]);
    let prep = tchzoo::data::inputs::ImagePrep::Eval(other);
    let files = tchzoo::data::inputs::input_files(&[a.clone(), b.clone(), c3.clone()]).unwrap();
    let xs: Vec<Tensor> = files.iter().map(|f| tchzoo::data::inputs::read_image(f, &prep).unwrap()).collect();
    let p = loaded.trainer.predict_proba(&Tensor::cat(&xs, 0), 9);
    assert!(common::rel_diff(&p, &expected) > 1e-3, "{p} vs {expected}");

    // evaluate --run: the history's last validation figures, and those of predict's probabilities.
    let h = History::load_json(&run.join("history.json")).unwrap();
    let line = run_ok(&["evaluate", "--run", run_s, "--device", "cpu"]);
    assert!(line.starts_with("9 samples"), "{line}");
    assert!((metric(&line, "loss") - h.last("val_loss").unwrap()).abs() < 6e-5, "{line}");
    assert!((metric(&line, "accuracy") - h.last("val_accuracy").unwrap()).abs() < 6e-5, "{line}");
    let nll = -f64::try_from(got.log().gather(1, &labels.view([-1, 1]), false).mean(Kind::Double)).unwrap();
    let acc = f64::try_from(got.argmax(1, false).eq_tensor(&labels).to_kind(Kind::Double).mean(Kind::Double)).unwrap();
    assert!((metric(&line, "loss") - nll).abs() < 1e-4, "{line} vs {nll}");
    assert!((metric(&line, "accuracy") - acc).abs() < 1e-4, "{line} vs {acc}");
    // The same on the folder given as --data: read as the run's validation data was.
    let line2 = run_ok(&["evaluate", "--run", run_s, "--data", val.to_str().unwrap(), "--device", "cpu"]);
    assert_eq!(line2, line);

    // A config.json without one of the transforms the run used: one line, exit 2.
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    json.as_object_mut().unwrap().remove("val_crop_size");
    std::fs::write(run.join("config.json"), json.to_string()).unwrap();
    let err = run_err(&["predict", "--run", run_s, "--input", a.join("img000.png").to_str().unwrap()]);
    assert!(err.contains("val_crop_size"), "{err}");
}
