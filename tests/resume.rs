//! Stop and resume: a run stopped after epoch k and resumed gives the same history, value for value, and the same
//! weights as the run that never stopped; `kill -9` at random moments always leaves a loadable, resumable state.
mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use tchzoo::config::RunConfig;
use tchzoo::optim::HyperConfig;
use tchzoo::train::progress::Verbosity;
use tchzoo::train::resume;
use tchzoo::train::History;

fn config(out: &Path) -> RunConfig {
    RunConfig {
        model: "mlp:hidden=32x32,dropout=0.2".into(),
        data: "moons:n_samples=400,noise=0.25".into(),
        epochs: 14,
        hyper: HyperConfig { lr: Some(0.01), ..Default::default() },
        lr_schedule: Some("step:step_size=3,gamma=0.5".into()),
        early_stopping: Some("monitor=val_loss,patience=2,min_delta=0.002,verbose=false".into()),
        checkpoint: Some("best.pt,monitor=val_accuracy,save_best_only=true,verbose=false".into()),
        augment: None,
        threads: Some(1),
        out: Some(out.display().to_string()),
        ..RunConfig::default()
    }
}

fn without_time(h: &History) -> History {
    let mut h = h.clone();
    h.history.remove("epoch_time");
    h
}

fn weights(path: &Path) -> Vec<(String, tch::Tensor)> {
    tchzoo::checkpoint::read_state_dict(path).unwrap()
}

#[test]
fn a_resumed_run_repeats_the_uninterrupted_one_value_for_value() {
    let dir = common::tempdir();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let whole = tchzoo::run::train(&config(&a), Verbosity::Silent, vec![]).unwrap();

    let err = tchzoo::run::train(&config(&b), Verbosity::Silent, vec![Box::new(common::StopAt(3))]).unwrap_err();
    assert!(matches!(err, tchzoo::Error::Interrupted(_)), "{err}");
    assert!(tchzoo::cli::output::error_words(&err).contains("--resume"), "{err}");
    let state = resume::read(&b).unwrap();
    assert_eq!(state.epoch, 4, "epochs 0..=3 completed before the stop");
    let resumed = tchzoo::run::resume(&b, Verbosity::Silent, vec![]).unwrap();

    assert!(
        whole.history.len() < 14,
        "early stopping fired ({} epochs), so its state was part of the resume",
        whole.history.len()
    );
    assert_eq!(without_time(&resumed.history), without_time(&whole.history));
    for ((ka, ta), (kb, tb)) in weights(&a.join("model.pt")).iter().zip(weights(&b.join("model.pt")).iter()) {
        assert_eq!(ka, kb);
        assert!(ta.equal(tb), "final weights differ at {ka}");
    }
    // ModelCheckpoint's best.pt: written by both runs, and the resumed run's is the uninterrupted run's.
    let (best_a, best_b) = (weights(&a.join("best.pt")), weights(&b.join("best.pt")));
    assert!(
        !best_a.is_empty() && best_a.len() == best_b.len(),
        "best.pt: {} and {} tensors",
        best_a.len(),
        best_b.len()
    );
    for ((ka, ta), (kb, tb)) in best_a.iter().zip(best_b.iter()) {
        assert_eq!(ka, kb);
        assert!(ta.equal(tb), "best.pt differs at {ka}");
    }
    // A finished run is not resumed again.
    let e = tchzoo::run::resume(&b, Verbosity::Silent, vec![]).unwrap_err().to_string();
    assert!(e.contains("already finished"), "{e}");
}

/// Kills a training process with SIGKILL at pseudo-random moments, checks that every file it left loads, resumes,
/// and finally compares with an uninterrupted run.
#[test]
fn kill_9_at_random_moments_leaves_a_resumable_run() {
    let dir = common::tempdir();
    let run = dir.path().join("killed");
    let reference = dir.path().join("reference");
    let args = |out: &Path| -> Vec<String> {
        [
            "train",
            "--model",
            "mlp:hidden=64x64",
            "--data",
            "moons:n_samples=3000,noise=0.2",
            // Long enough (about 50 ms an epoch here) that the first kill, 150–1050 ms after the start, finds it
            // running: at 12 epochs a faster build finished before it.
            "--epochs",
            "60",
            "--batch-size",
            "16",
            "--threads",
            "1",
            "--checkpoint",
            "last.pt",
            "-q",
            "--out",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([out.display().to_string()])
        .collect()
    };
    let status = common::tchzoo().args(args(&reference)).stdout(Stdio::null()).status().unwrap();
    assert!(status.success());

    let mut rng = 12345u64;
    let mut kills = 0;
    for round in 0..8 {
        let mut cmd = common::tchzoo();
        if run.join("resume.json").exists() {
            cmd.args(["train", "--resume", run.to_str().unwrap(), "-q"]);
        } else {
            cmd.args(args(&run));
        }
        let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let wait_ms = 150 + (rng >> 33) % 900;
        std::thread::sleep(Duration::from_millis(wait_ms));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        let out = child.wait_with_output().unwrap();
        if out.status.success() {
            break;
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "round {round}: {stderr}");
        // Every file left behind is whole.
        if run.join("resume.json").exists() {
            let state = resume::read(&run).unwrap();
            tchzoo::checkpoint::read_pt(&run.join(&state.dir).join("checkpoint.pt")).unwrap();
            assert_eq!(state.history.len(), state.epoch);
        }
        if run.join("last.pt").exists() {
            tchzoo::checkpoint::read_pt(&run.join("last.pt")).unwrap();
        }
    }
    assert!(kills >= 1, "the test never caught the process running");
    // Finish whatever is left: resumed, or started again when every kill came before the first epoch ended (a slow,
    // loaded machine), which left nothing to resume.
    if !run.join("resume.json").exists() {
        let status = common::tchzoo().args(args(&run)).stdout(Stdio::null()).status().unwrap();
        assert!(status.success());
    } else if !run.join("history.json").exists() || !resume::read(&run).unwrap().finished {
        let status = common::tchzoo()
            .args(["train", "--resume", run.to_str().unwrap(), "-q"])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
    }
    let a = History::load_json(&reference.join("history.json")).unwrap();
    let b = History::load_json(&run.join("history.json")).unwrap();
    assert_eq!(without_time(&a), without_time(&b), "after {kills} kills the history equals the uninterrupted run's");
    let leftovers: Vec<_> = std::fs::read_dir(&run)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    let _ = Command::new("true").status();
    // Temporary files of a killed write may remain, but never under a real name.
    for l in leftovers {
        assert!(l.file_name().to_string_lossy().starts_with('.'), "{:?}", l.file_name());
    }
}

/// SIGTERM (as Ctrl-C) abandons the batch, exits with 130 and a message saying how to resume; the resume works.
#[test]
fn sigterm_stops_cleanly_and_says_how_to_resume() {
    let dir = common::tempdir();
    let run = dir.path().join("termed");
    let mut child = common::tchzoo()
        .args(["train", "--model", "mlp:hidden=64x64", "--data", "moons:n_samples=4000,noise=0.2", "--epochs", "200"])
        .args(["--batch-size", "8", "--threads", "1", "-q", "--out", run.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !run.join("resume.json").exists() {
        assert!(std::time::Instant::now() < deadline, "no epoch finished within 60 s");
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be stopped");
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("--resume") && stderr.contains(run.to_str().unwrap()), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let state = resume::read(&run).unwrap();
    assert!(!state.finished && state.epoch >= 1);
    // Continue, but only to a nearby end: shorten the run through its config.
    let cfg_path = run.join("config.json");
    let mut cfg = RunConfig::from_json_file(&cfg_path).unwrap();
    cfg.epochs = state.epoch + 1;
    std::fs::write(&cfg_path, cfg.to_json().unwrap()).unwrap();
    let out = common::tchzoo().args(["train", "--resume", run.to_str().unwrap(), "-q"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(History::load_json(&run.join("history.json")).unwrap().len(), state.epoch + 1);
}
