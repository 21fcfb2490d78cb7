//! Bad input through the binary: each case must exit with code 2 and print exactly one `error:` line on stderr that
//! names the offending value, with no panic or backtrace text, nothing on stdout, and no weights written.
//! The inputs are written by the tests themselves; every run is `tchzoo train ... --epochs 1 --out <tempdir>`.
mod common;

use std::path::{Path, PathBuf};

use common::{tchzoo, tempdir};

/// A scratch folder with the run folder inside it.
struct Case {
    dir: tempfile::TempDir,
}

impl Case {
    fn new() -> Self {
        Case { dir: tempdir() }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    /// Writes `bytes` to `name` (creating folders) and returns the path as a string.
    fn file(&self, name: &str, bytes: &[u8]) -> String {
        let p = self.path(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
        p.display().to_string()
    }
    fn out(&self) -> PathBuf {
        self.path("run")
    }

    /// Runs `tchzoo train --epochs 1 --out <run> ARGS` and checks the failure; returns the error line.
    fn fails(&self, args: &[&str], names: &[&str]) -> String {
        let out = self.out();
        let output = tchzoo()
            .args(["train", "--epochs", "1", "--out"])
            .arg(&out)
            .args(args)
            // A panic would then print a backtrace hint; the checks below must see it.
            .env("RUST_BACKTRACE", "1")
            .output()
            .expect("run tchzoo");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let context = format!("tchzoo train {}\nstdout:\n{stdout}\nstderr:\n{stderr}", args.join(" "));
        assert_eq!(output.status.code(), Some(2), "exit code is not 2 for {context}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "stderr is not exactly one line for {context}");
        let line = lines[0];
        assert!(line.starts_with("error:") && line.len() > "error:".len() + 1, "not an error line: {context}");
        for bad in ["panicked", "backtrace", "RUST_BACKTRACE", "internal error"] {
            assert!(!stderr.contains(bad), "stderr mentions '{bad}' for {context}");
        }
        for name in names {
            assert!(line.contains(name), "the error does not name '{name}' for {context}");
        }
        assert!(stdout.trim().is_empty(), "something was printed on stdout for {context}");
        assert!(!out.join("model.safetensors").exists(), "weights were written for {context}");
        line.to_string()
    }
}

fn gpu_count() -> i64 {
    let out = tchzoo().args(["doctor", "--json"]).output().expect("run tchzoo doctor");
    assert!(out.status.success(), "doctor failed: {}", String::from_utf8_lossy(&out.stderr));
    let facts: serde_json::Value = serde_json::from_slice(&out.stdout).expect("doctor --json is JSON");
    facts["gpu_count"].as_i64().expect("gpu_count")
}

/// A valid IDX file: big-endian dims after `00 00 <type> <rank>`.
fn idx(type_code: u8, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, type_code, dims.len() as u8];
    for d in dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend_from_slice(data);
    b
}

/// An IDX folder of two 16×16 images, with `images` as the images file's bytes.
fn idx_folder(case: &Case, images: Vec<u8>) -> (String, String) {
    let labels = idx(0x08, &[2], &[0, 1]);
    case.file("mnist/train-labels-idx1-ubyte", &labels);
    let images_path = case.file("mnist/train-images-idx3-ubyte", &images);
    (case.path("mnist").display().to_string(), images_path)
}

const GOOD_CSV: &str = "x1,x2,label\n0.1,0.2,0\n0.3,0.1,1\n0.5,0.9,0\n0.7,0.3,1\n0.2,0.8,0\n0.9,0.4,1\n";

#[test]
fn unknown_model_suggests_the_closest() {
    let line = Case::new().fails(&["--model", "lenet", "--data", "moons"], &["'lenet'", "lenet5"]);
    assert!(line.contains("did you mean"), "no suggestion: {line}");
}

#[test]
fn unknown_dataset_suggests_the_closest() {
    let line = Case::new().fails(&["--model", "mlp", "--data", "moonz"], &["moonz", "'moons'"]);
    assert!(line.contains("did you mean"), "no suggestion: {line}");
}

#[test]
fn missing_data_path() {
    let case = Case::new();
    let missing = case.path("nowhere/train.csv").display().to_string();
    case.fails(&["--model", "mlp", "--data", &missing], &[&missing]);
}

#[test]
fn csv_with_a_non_numeric_cell() {
    let case = Case::new();
    let csv = case.file("t.csv", b"x1,x2,label\n0.1,0.2,0\n0.3,oops,1\n0.5,0.9,0\n0.7,0.3,1\n");
    case.fails(&["--model", "mlp", "--data", &csv], &[&csv, "oops", "line 3"]);
}

#[test]
fn idx_with_a_bad_magic_number() {
    let case = Case::new();
    let mut images = idx(0x08, &[2, 16, 16], &[7; 2 * 16 * 16]);
    images[0] = 0x1f;
    images[1] = 0x07;
    let (dir, images_path) = idx_folder(&case, images);
    case.fails(&["--model", "mlp", "--data", &dir], &[&images_path, "magic", "1f 07"]);
}

#[test]
fn truncated_idx() {
    let case = Case::new();
    let mut images = idx(0x08, &[2, 16, 16], &[7; 2 * 16 * 16]);
    images.truncate(images.len() - 100);
    let (dir, images_path) = idx_folder(&case, images);
    case.fails(&["--model", "mlp", "--data", &dir], &[&images_path, "truncated"]);
}

#[test]
fn label_beyond_the_given_classes() {
    let case = Case::new();
    let csv = case.file("t.csv", b"x1,x2,label\n0.1,0.2,0\n0.3,0.1,5\n0.5,0.9,2\n0.7,0.3,1\n0.2,0.8,0\n");
    let spec = format!("{csv}:classes=3");
    case.fails(&["--model", "mlp", "--data", &spec], &[&csv, "label 5", "classes=3"]);
}

#[test]
fn validation_labels_beyond_the_training_classes() {
    let case = Case::new();
    let train = case.file("train.csv", GOOD_CSV.as_bytes());
    let val = case.file("val.csv", b"x1,x2,label\n0.1,0.2,0\n0.3,0.1,7\n0.5,0.5,1\n");
    case.fails(&["--model", "mlp", "--data", &train, "--validation-data", &val], &[&val, "7", "2 classes"]);
}

#[test]
fn validation_generator_with_more_classes() {
    Case::new().fails(
        &["--model", "mlp", "--data", "moons:n_samples=60", "--validation-data", "blobs:n_samples=60,centers=5"],
        &["blobs", "2 classes"],
    );
}

#[test]
fn regression_validation_for_a_classifier() {
    let case = Case::new();
    let val = case.file("val.csv", b"x1,x2,y\n0.1,0.2,0.5\n0.3,0.1,1.5\n0.5,0.5,2.5\n");
    let spec = format!("{val}:task=regression");
    case.fails(&["--model", "mlp", "--data", "moons:n_samples=60", "--validation-data", &spec], &[&val, "real value"]);
}

#[test]
fn validation_class_names_unknown_to_training() {
    let case = Case::new();
    let train = case.file("train.csv", b"a,b,kind\n0.1,0.2,cat\n0.3,0.1,dog\n0.5,0.9,cat\n0.7,0.3,dog\n");
    let val = case.file("val.csv", b"a,b,kind\n0.1,0.2,cat\n0.3,0.1,fish\n");
    case.fails(&["--model", "mlp", "--data", &train, "--validation-data", &val], &[&val, "'fish'"]);
}

#[test]
fn validation_split_outside_zero_one() {
    for v in ["0", "1", "1.5", "-0.1"] {
        Case::new().fails(
            &["--model", "mlp", "--data", "moons:n_samples=60", "--validation-split", v],
            &[&format!("validation split {v} ")],
        );
    }
}

#[test]
fn csv_with_a_header_only() {
    let case = Case::new();
    let csv = case.file("empty.csv", b"x1,x2,label\n");
    case.fails(&["--model", "mlp", "--data", &csv], &[&csv, "no data rows"]);
}

#[test]
fn config_that_is_not_json() {
    let case = Case::new();
    let config = case.file("run.json", b"{\"epochs\": 3,");
    case.fails(&["--config", &config, "--model", "mlp", "--data", "moons:n_samples=60"], &[&config]);
}

#[test]
fn config_with_an_unknown_key() {
    let case = Case::new();
    let config = case.file("run.json", b"{\"epochs\": 3, \"epochz\": 4}");
    case.fails(&["--config", &config, "--model", "mlp", "--data", "moons:n_samples=60"], &[&config, "epochz"]);
}

#[test]
fn cuda_without_a_gpu() {
    let gpus = gpu_count();
    if gpus == 0 {
        Case::new().fails(&["--model", "mlp", "--data", "moons:n_samples=60", "--device", "cuda"], &["cuda", "cpu"]);
    }
    if gpus <= 3 {
        Case::new().fails(&["--model", "mlp", "--data", "moons:n_samples=60", "--device", "cuda:3"], &["cuda:3"]);
    }
}

#[test]
fn not_a_device() {
    Case::new().fails(&["--model", "mlp", "--data", "moons:n_samples=60", "--device", "tpu"], &["'tpu'"]);
}

#[test]
fn unknown_optimizer() {
    let line =
        Case::new().fails(&["--model", "mlp", "--data", "moons:n_samples=60", "--optimizer", "adamx"], &["'adamx'"]);
    assert!(line.contains("did you mean 'adam'"), "no suggestion: {line}");
}

#[test]
fn negative_learning_rate() {
    Case::new().fails(&["--model", "mlp", "--data", "moons:n_samples=60", "--lr", "-1"], &["learning rate -1"]);
}

#[test]
fn zero_threads() {
    Case::new().fails(&["--model", "mlp", "--data", "moons:n_samples=60", "--threads", "0"], &["threads 0"]);
}

#[test]
fn bad_model_option() {
    Case::new().fails(&["--model", "mlp:hidden=abc", "--data", "moons:n_samples=60"], &["hidden=abc"]);
    Case::new().fails(&["--model", "mlp:widht=3", "--data", "moons:n_samples=60"], &["'widht'"]);
}

#[test]
fn input_shape_the_model_cannot_take() {
    Case::new().fails(&["--model", "lenet5", "--data", "moons:n_samples=60"], &["lenet5", "[2]"]);
}

#[test]
fn out_is_an_existing_file() {
    let case = Case::new();
    let file = case.file("taken", b"not a folder");
    let output = tchzoo()
        .args(["train", "--model", "mlp", "--data", "moons:n_samples=60", "--epochs", "1", "-q", "--out", &file])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error:") && stderr.contains(&file), "{stderr}");
    assert!(stderr.contains("is a file, not a folder"), "the line does not say what is wrong: {stderr}");
    assert!(!Path::new(&file).with_file_name("model.safetensors").exists());
}

#[test]
fn data_of_one_class_is_refused_before_a_run_folder_is_made() {
    // Softmax over one class is 1 for every input: the loss would be 0 from the first step and nothing learnt.
    let case = Case::new();
    let csv = case.file("one.csv", b"x1,x2,label\n1,2,0\n3,1,0\n2,2,0\n1,1,0\n0,1,0\n");
    case.fails(&["--model", "mlp", "--data", &csv], &[&csv, "one class (0)", "at least 2"]);
    assert!(!case.out().exists(), "a run folder was made");
    let folder = case.path("images");
    for i in 0..4u8 {
        let p = folder.join("cat").join(format!("{i}.png"));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        image::RgbImage::from_pixel(8, 8, image::Rgb([i * 60, 0, 0])).save(&p).unwrap();
    }
    let folder = folder.display().to_string();
    case.fails(&["--model", "lenet5", "--data", &folder, "--workers", "1"], &["one class ('cat')"]);
}

#[test]
fn an_unwritable_checkpoint_fails_before_the_first_epoch_naming_the_file_in_the_way() {
    // A file stands where the checkpoint's folder should be: the run fails at its start (as Lightning makes its
    // dirpath at setup), not after an epoch, naming that file and not a temporary one.
    for flag in ["--checkpoint", "--csv-logger"] {
        let case = Case::new();
        let blocker = case.file("blocker", b"a file");
        let target = format!("{blocker}/sub/log-file.pt");
        let output = tchzoo()
            .args(["train", "--model", "mlp", "--data", "moons:n_samples=60", "--epochs", "1", "--out"])
            .arg(case.out())
            .args([flag, &target])
            .output()
            .unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert_eq!(output.status.code(), Some(2), "{flag}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{flag}: {stderr}");
        assert!(stderr.starts_with(&format!("error: {blocker}: is a file")), "{flag}: {stderr}");
        assert!(!stderr.contains("log-file.pt.tmp") && !stderr.contains("os error"), "{flag}: {stderr}");
        assert!(!stdout.contains("Epoch 1/1"), "{flag}: an epoch ran before the failure:\n{stdout}");
    }
}

#[test]
fn weights_that_do_not_match_point_to_strict_false_and_unreadable_ones_do_not() {
    let case = Case::new();
    // A real state dict of another model: loading only what matches is the way out, and the line says so.
    let other = case.path("other.safetensors");
    tchzoo::checkpoint::write_state_dict(
        &other,
        &[("a".to_string(), tch::Tensor::zeros([3], (tch::Kind::Float, tch::Device::Cpu)))],
    )
    .unwrap();
    let other = other.display().to_string();
    case.fails(
        &["--model", "mlp", "--data", "moons:n_samples=60", "--weights", &other],
        &["missing keys", "--strict false"],
    );
    // A file cut in half does not load at all, whatever --strict says: no such hint.
    let bytes = std::fs::read(&other).unwrap();
    let cut = case.file("cut.safetensors", &bytes[..bytes.len() / 2]);
    let line = case.fails(&["--model", "mlp", "--data", "moons:n_samples=60", "--weights", &cut], &[&cut]);
    assert!(!line.contains("--strict"), "{line}");
}

#[test]
fn a_refused_run_leaves_no_folder_behind() {
    // Without --out the run claims `runs/<model>-<data>-<time>` before it reads its data; refused, it takes the
    // folder back (it holds only the lock). A new --out folder is not made at all.
    let case = Case::new();
    let csv = case.file("empty.csv", b"");
    let output =
        tchzoo().current_dir(case.dir.path()).args(["train", "--model", "mlp", "--data", &csv]).output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", String::from_utf8_lossy(&output.stderr));
    let left: Vec<_> =
        std::fs::read_dir(case.path("runs")).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "a refused run left {left:?}");
    case.fails(&["--model", "mlp", "--data", &csv], &["empty"]);
    assert!(!case.out().exists(), "the refused run made its --out folder");
}
