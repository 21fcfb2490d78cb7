//! Hostile input and faults through the binary (issue 19): non-finite values in the run state, kill -9 at the
//! finishing moment, a run folder that is locked and writes only inside itself, allocation bombs refused before
//! allocating (under `prlimit --as`), values that would panic, and data values that make no sense. Every refusal
//! is exit code 2 and one `error:` line, with no panic text; every input is made here, small, in a temp folder.
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{tchzoo, tempdir};
use tchzoo::train::{resume, History};

const MOONS: &str = "moons:n_samples=200,noise=0.2";

fn run(cmd: &mut Command) -> Output {
    cmd.env("RUST_BACKTRACE", "1").stdin(Stdio::null()).output().expect("run tchzoo")
}

fn train(args: &[&str]) -> Output {
    run(tchzoo().arg("train").args(args))
}

fn succeeded(out: &Output) {
    assert!(
        out.status.success(),
        "failed ({:?})\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Checks a refusal (exit 2, one `error:` line naming each of `names`, no panic) and returns the line.
fn refused(out: &Output, names: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let context =
        format!("status {:?}\nstdout:\n{}\nstderr:\n{stderr}", out.status, String::from_utf8_lossy(&out.stdout));
    assert_eq!(out.status.code(), Some(2), "exit code is not 2: {context}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "stderr is not one line: {context}");
    assert!(lines[0].starts_with("error: "), "{context}");
    for bad in ["panicked", "backtrace", "internal error", "memory allocation", "Aborted"] {
        assert!(!stderr.contains(bad), "stderr mentions '{bad}': {context}");
    }
    for n in names {
        assert!(lines[0].contains(n), "the error does not name '{n}': {context}");
    }
    lines[0].to_string()
}

/// `prlimit --as=BYTES tchzoo ARGS`: the binary with its address space capped (an allocation beyond it fails
/// instead of succeeding on a large machine).
fn limited(bytes: u64, args: &[&str]) -> Output {
    run(Command::new("prlimit").arg(format!("--as={bytes}")).arg("--").arg(env!("CARGO_BIN_EXE_tchzoo")).args(args))
}

/// The address-space cap of the bomb tests: what the binary maps at start (libtorch, thread stacks) plus 1.5 GiB.
fn cap() -> u64 {
    static CAP: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *CAP.get_or_init(|| {
        // A one-epoch run's peak address space (libtorch, threads, malloc arenas) is the floor of every command.
        let tmp = tempdir();
        let out = run(Command::new("bash").arg("-c").arg(format!(
            "{} train --model mlp --data moons:n_samples=50 --epochs 1 -q --out {} >/dev/null 2>&1 & pid=$!; peak=0; \
             while kill -0 $pid 2>/dev/null; do \
             v=$(awk '/VmPeak/ {{print $2}}' /proc/$pid/status 2>/dev/null); [ -n \"$v\" ] && [ $v -gt $peak ] && \
             peak=$v; sleep 0.01; done; echo $peak",
            env!("CARGO_BIN_EXE_tchzoo"),
            tmp.path().join("probe").display()
        )));
        let kb: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0);
        assert!(kb > 0, "could not measure tchzoo's address space");
        kb * 1024 + (3 << 29)
    })
}

/// Every file under `dir` with its bytes: to show that nothing there changed.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(p.clone());
                out.push((p, vec![]));
            } else {
                let bytes = std::fs::read(&p).unwrap_or_default();
                out.push((p, bytes));
            }
        }
    }
    out.sort();
    out
}

/// A victim folder outside the run folder: a file and a sub-folder with a file.
fn victim(root: &Path) -> PathBuf {
    let v = root.join("victim");
    std::fs::create_dir_all(v.join("keep")).unwrap();
    std::fs::write(v.join("victim.txt"), b"precious").unwrap();
    std::fs::write(v.join("keep/inner.txt"), b"also precious").unwrap();
    v
}

/// Makes a finished run resumable again for `epochs` in all (as a run killed after its last saved epoch is).
fn reopen(dir: &Path, epochs: usize) {
    let cfg_path = dir.join("config.json");
    let mut cfg = tchzoo::config::RunConfig::from_json_file(&cfg_path).unwrap();
    cfg.epochs = epochs;
    std::fs::write(&cfg_path, cfg.to_json().unwrap()).unwrap();
    let text = std::fs::read_to_string(dir.join("resume.json")).unwrap();
    let text = text.replace("\"finished\": true", "\"finished\": false").replace("\"ended\": true", "\"ended\": false");
    std::fs::write(dir.join("resume.json"), text).unwrap();
    for f in resume::FINAL_FILES {
        let _ = std::fs::remove_file(dir.join(f));
    }
}

fn without_time(h: &History) -> Vec<(String, Vec<u64>)> {
    // Bit patterns, so that NaN equals NaN.
    h.history
        .iter()
        .filter(|(k, _)| *k != "epoch_time")
        .map(|(k, v)| (k.clone(), v.iter().map(|x| x.to_bits()).collect()))
        .collect()
}

/// log.csv without its `epoch_time` column (wall-clock).
fn csv_without_time(path: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let rows: Vec<Vec<String>> = text.lines().map(|l| l.split(',').map(String::from).collect()).collect();
    let skip = rows[0].iter().position(|c| c == "epoch_time");
    rows.into_iter()
        .map(|r| r.into_iter().enumerate().filter(|(i, _)| Some(*i) != skip).map(|(_, c)| c).collect())
        .collect()
}

fn weights(path: &Path) -> Vec<(String, tch::Tensor)> {
    tchzoo::checkpoint::read_state_dict(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn same_weights(a: &Path, b: &Path) {
    let (wa, wb) = (weights(a), weights(b));
    assert_eq!(wa.len(), wb.len());
    for ((ka, ta), (kb, tb)) in wa.iter().zip(&wb) {
        assert_eq!(ka, kb);
        assert!(ta.equal(tb), "{} and {} differ at {ka}", a.display(), b.display());
    }
}

// ---------------------------------------------------------------------------------------------------------------
// 1. Non-finite values in history.json and resume.json.

#[test]
fn nan_in_the_history_is_written_as_python_reads_it_and_the_run_plots_and_resumes() {
    let tmp = tempdir();
    let dir = tmp.path().join("nan");
    let d = dir.to_str().unwrap();
    // A learning rate of 1e30 overflows the weights at the first step: the losses are NaN or infinite.
    let args = ["--model", "mlp:hidden=16x16", "--data", MOONS, "--optimizer", "sgd", "--lr", "1e30"];
    let common = ["--lr-schedule", "none", "--no-terminate-on-nan", "--threads", "1", "-q", "--csv-logger", "log.csv"];
    succeeded(&train(&[&args[..], &common[..], &["--epochs", "2", "--out", d]].concat()));
    let h = History::load_json(&dir.join("history.json")).unwrap();
    let loss = h.get("loss").unwrap();
    assert!(loss.iter().any(|v| !v.is_finite()), "the run was meant to diverge: {loss:?}");
    let text = std::fs::read_to_string(dir.join("history.json")).unwrap();
    assert!(!text.contains("null"), "a non-finite value was written as null:\n{text}");
    // Python's json module (and so pandas) reads it back, NaN and infinities included.
    let py = common::run_script("json_nonfinite.py", &[dir.join("history.json").to_str().unwrap()]);
    let bad_here = loss.iter().filter(|v| !v.is_finite()).count();
    assert_eq!(py.trim(), format!("{bad_here} 2"), "Python reads what tchzoo wrote");
    // resume.json reads back too: a resumed run continues the NaN history.
    resume::read(&dir).unwrap();
    succeeded(&run(tchzoo().args(["plot", d, "-o"]).arg(tmp.path().join("again.png"))));
    assert!(tmp.path().join("again.png").exists());
    reopen(&dir, 3);
    succeeded(&train(&["--resume", d, "-q"]));
    let resumed = History::load_json(&dir.join("history.json")).unwrap();
    assert_eq!(resumed.len(), 3);
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&resumed.get("loss").unwrap()[..2]), bits(loss), "the resumed history keeps the first epochs");
}

#[test]
fn a_run_terminate_on_nan_stopped_plots() {
    let tmp = tempdir();
    let dir = tmp.path().join("stopped");
    let d = dir.to_str().unwrap();
    let out = train(&[
        "--model",
        "mlp:hidden=16x16",
        "--data",
        MOONS,
        "--optimizer",
        "sgd",
        "--lr",
        "1e30",
        "--epochs",
        "5",
        "-q",
        "--out",
        d,
    ]);
    succeeded(&out);
    let h = History::load_json(&dir.join("history.json")).unwrap();
    assert!(h.len() < 5 && h.get("loss").unwrap().iter().any(|v| !v.is_finite()), "{h:?}");
    succeeded(&run(tchzoo().args(["plot", d, "-o"]).arg(tmp.path().join("p.png"))));
    // Finished: nothing to resume, said in one line.
    refused(&train(&["--resume", d, "-q"]), &["already finished"]);
}

#[test]
fn non_finite_json_round_trips_in_process() {
    let mut h = History::default();
    let logs = |v: f64| [("loss".to_string(), v), ("val_loss".to_string(), 1.5)].into_iter().collect();
    for (e, v) in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 0.25].into_iter().enumerate() {
        h.push(e, &logs(v));
    }
    let tmp = tempdir();
    let p = tmp.path().join("h.json");
    h.save_json(&p).unwrap();
    let text = std::fs::read_to_string(&p).unwrap();
    for t in ["NaN", "Infinity", "-Infinity"] {
        assert!(text.contains(t), "{text}");
    }
    let back = History::load_json(&p).unwrap();
    assert_eq!(without_time(&back), without_time(&h));
    // A key that spells a token inside a string stays a string.
    let tricky = "{\"epoch\": [0], \"history\": {\"NaN \\\" Infinity\": [NaN]}}";
    let t: History = tchzoo::util::json::from_str(tricky).unwrap();
    assert!(t.history["NaN \" Infinity"][0].is_nan());
}

// ---------------------------------------------------------------------------------------------------------------
// 2 and 7. kill -9 at the finishing moment and at random moments; log.csv equals the uninterrupted run's.

fn torture_args(out: &Path, epochs: &str) -> Vec<String> {
    let mut a: Vec<String> = ["train", "--model", "mlp:hidden=32x32", "--data", "moons:n_samples=1000,noise=0.2"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    a.extend(["--epochs", epochs, "--batch-size", "16", "--threads", "1", "--checkpoint", "last.pt"].map(String::from));
    // A constant learning rate, so that a run reopened for more epochs equals one planned that long.
    a.extend(["--lr-schedule", "constant"].map(String::from));
    a.extend(["--csv-logger", "log.csv", "-q", "--out"].map(String::from));
    a.push(out.display().to_string());
    a
}

fn same_run(reference: &Path, run: &Path) {
    let a = History::load_json(&reference.join("history.json")).unwrap();
    let b = History::load_json(&run.join("history.json")).unwrap();
    assert_eq!(without_time(&a), without_time(&b), "history of {}", run.display());
    assert_eq!(
        csv_without_time(&reference.join("log.csv")),
        csv_without_time(&run.join("log.csv")),
        "log.csv of {}",
        run.display()
    );
    for f in ["model.pt", "model.safetensors", "last.pt"] {
        same_weights(&reference.join(f), &run.join(f));
    }
    assert!(run.join("curves.png").exists());
    assert!(resume::read(run).unwrap().finished);
}

#[test]
fn kill_9_at_the_finishing_moment_and_at_random_moments_leaves_a_run_that_resume_completes() {
    let tmp = tempdir();
    let reference = tmp.path().join("reference");
    succeeded(&run(tchzoo().args(torture_args(&reference, "12")).stdout(Stdio::null())));

    // At the finishing moment: as soon as resume.json says training ended, before the final files are all there.
    let mut caught = 0;
    for (round, delay_ms) in [0u64, 0, 10, 40].into_iter().enumerate() {
        let dir = tmp.path().join(format!("final-{round}"));
        let mut child =
            tchzoo().args(torture_args(&dir, "12")).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let text = std::fs::read_to_string(dir.join("resume.json")).unwrap_or_default();
            if text.contains("\"ended\": true") || child.try_wait().unwrap().is_some() {
                break;
            }
            assert!(Instant::now() < deadline, "the run did not end within 120 s");
            std::thread::sleep(Duration::from_micros(500));
        }
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        child.wait().unwrap();
        let state = resume::read(&dir).unwrap();
        assert!(state.ended && state.epoch == 12);
        if !state.finished {
            caught += 1;
            // Not finished: the final files are written before the state says so.
        } else {
            for f in resume::FINAL_FILES {
                assert!(dir.join(f).exists(), "finished but {f} is missing");
            }
        }
        let resumed = run(tchzoo().args(["train", "--resume", dir.to_str().unwrap(), "-q"]).stdout(Stdio::null()));
        if state.finished {
            // Killed after the run was whole: there is nothing to complete, and --resume says so in one line.
            assert_eq!(resumed.status.code(), Some(2));
            assert!(String::from_utf8_lossy(&resumed.stderr).contains("already finished"));
        } else {
            succeeded(&resumed);
        }
        same_run(&reference, &dir);
    }
    assert!(caught >= 1, "no kill landed between the end of training and the finished state");

    // At random moments, as many times as the run lasts; then the log equals the uninterrupted run's.
    let reference = tmp.path().join("reference-long");
    succeeded(&run(tchzoo().args(torture_args(&reference, "40")).stdout(Stdio::null())));
    let dir = tmp.path().join("random");
    let mut rng = 2024u64;
    let mut kills = 0;
    for _ in 0..12 {
        let args = if dir.join("resume.json").exists() {
            vec!["train".to_string(), "--resume".into(), dir.display().to_string(), "-q".into()]
        } else {
            torture_args(&dir, "40")
        };
        let before = resume::read(&dir).map(|s| s.epoch).unwrap_or(0);
        let mut child = tchzoo().args(args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        // Once this process has saved an epoch (so every round makes progress), at a random moment.
        let deadline = Instant::now() + Duration::from_secs(120);
        while resume::read(&dir).map(|s| s.epoch).unwrap_or(0) <= before && child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "no epoch saved within 120 s");
            std::thread::sleep(Duration::from_millis(2));
        }
        rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        std::thread::sleep(Duration::from_millis((rng >> 33) % 400));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            kills += 1;
        }
        let status = child.wait().unwrap();
        if status.success() {
            break;
        }
    }
    assert!(kills >= 1, "the test never caught the process running");
    if !resume::read(&dir).map(|s| s.finished).unwrap_or(false) {
        succeeded(&run(tchzoo().args(["train", "--resume", dir.to_str().unwrap(), "-q"]).stdout(Stdio::null())));
    }
    same_run(&reference, &dir);
}

#[test]
fn resume_cuts_the_csv_log_back_to_the_resumed_epoch() {
    let tmp = tempdir();
    let reference = tmp.path().join("reference");
    succeeded(&run(tchzoo().args(torture_args(&reference, "3")).stdout(Stdio::null())));
    let dir = tmp.path().join("cut");
    succeeded(&run(tchzoo().args(torture_args(&dir, "2")).stdout(Stdio::null())));
    reopen(&dir, 3);
    // A kill after the CSV row of epoch 2 but before its resume state leaves that row behind.
    let log = dir.join("log.csv");
    let mut text = std::fs::read_to_string(&log).unwrap();
    let last = text.lines().last().unwrap().to_string();
    text.push_str(&format!("2{}\n", &last[1..]));
    std::fs::write(&log, text).unwrap();
    succeeded(&run(tchzoo().args(["train", "--resume", dir.to_str().unwrap(), "-q"]).stdout(Stdio::null())));
    same_run(&reference, &dir);
}

// ---------------------------------------------------------------------------------------------------------------
// 3. The run folder writes and deletes only inside itself.

/// A finished 2-epoch run reopened for 3 epochs, with a victim folder beside it.
fn resumable(tmp: &Path) -> (PathBuf, PathBuf) {
    let dir = tmp.join("run");
    let args = [
        "--model",
        "mlp:hidden=8",
        "--data",
        MOONS,
        "--epochs",
        "2",
        "--threads",
        "1",
        "-q",
        "--csv-logger",
        "log.csv",
    ];
    succeeded(&train(&[&args[..], &["--checkpoint", "last.pt", "--out", dir.to_str().unwrap()]].concat()));
    reopen(&dir, 3);
    (dir, victim(tmp))
}

#[test]
fn a_symlinked_resume_folder_is_refused_and_the_target_untouched() {
    let tmp = tempdir();
    let (dir, victim) = resumable(tmp.path());
    let before = snapshot(&victim);
    // The state folder moved into the victim folder, and resume/ a link to it.
    std::fs::rename(dir.join("resume/epoch-00002"), victim.join("epoch-00002")).unwrap();
    std::fs::remove_dir_all(dir.join("resume")).unwrap();
    std::os::unix::fs::symlink(&victim, dir.join("resume")).unwrap();
    let before_with_state = snapshot(&victim);
    refused(&train(&["--resume", dir.to_str().unwrap(), "-q"]), &["resume/epoch-00002", "outside the run folder"]);
    assert_eq!(snapshot(&victim), before_with_state, "the link's target was changed");
    assert!(before.iter().all(|(p, _)| p.exists()));
}

#[test]
fn cleanup_deletes_only_state_folders_it_wrote_and_follows_no_link() {
    let tmp = tempdir();
    let (dir, victim) = resumable(tmp.path());
    let before = snapshot(&victim);
    // Inside resume/: a link named like a state folder, pointing at the victim, and a folder of the user's.
    std::os::unix::fs::symlink(&victim, dir.join("resume/epoch-00001")).unwrap();
    std::fs::create_dir_all(dir.join("resume/notes")).unwrap();
    std::fs::write(dir.join("resume/notes/n.txt"), b"mine").unwrap();
    succeeded(&train(&["--resume", dir.to_str().unwrap(), "-q"]));
    assert_eq!(resume::read(&dir).unwrap().epoch, 3);
    assert_eq!(snapshot(&victim), before, "the victim folder changed");
    assert!(dir.join("resume/notes/n.txt").exists(), "a folder the run did not write was deleted");
    assert!(!dir.join("resume/epoch-00002").exists(), "the previous state folder was kept");
    assert!(dir.join("resume/epoch-00003").is_dir());
}

#[test]
fn paths_in_a_tampered_config_are_confined_to_the_run_folder() {
    for (key, value) in [
        ("checkpoint", "../victim/victim.txt"),
        ("csv_logger", "../victim/victim.txt"),
        ("checkpoint", "/tmp/x-{epoch}.pt"),
    ] {
        let tmp = tempdir();
        let (dir, victim) = resumable(tmp.path());
        let before = snapshot(&victim);
        let cfg_path = dir.join("config.json");
        let mut cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
        cfg[key] = serde_json::Value::String(value.into());
        std::fs::write(&cfg_path, serde_json::to_string_pretty(&cfg).unwrap()).unwrap();
        refused(&train(&["--resume", dir.to_str().unwrap(), "-q"]), &[key, "outside the run folder"]);
        assert_eq!(snapshot(&victim), before, "{key}={value} changed the victim");
    }
    // A link inside the folder counts as outside too.
    let tmp = tempdir();
    let (dir, victim) = resumable(tmp.path());
    let before = snapshot(&victim);
    std::fs::remove_file(dir.join("log.csv")).unwrap();
    std::os::unix::fs::symlink(victim.join("victim.txt"), dir.join("log.csv")).unwrap();
    refused(&train(&["--resume", dir.to_str().unwrap(), "-q"]), &["csv_logger"]);
    assert_eq!(snapshot(&victim), before);
}

#[test]
fn csv_logger_outside_the_folder_never_overwrites_an_existing_file() {
    let tmp = tempdir();
    let victim = victim(tmp.path());
    let before = snapshot(&victim);
    let dir = tmp.path().join("run");
    let base = ["--model", "mlp:hidden=8", "--data", MOONS, "--epochs", "2", "-q", "--out", dir.to_str().unwrap()];
    refused(&train(&[&base[..], &["--csv-logger", "../victim/victim.txt"]].concat()), &["--csv-logger", "exists"]);
    assert_eq!(snapshot(&victim), before);
    assert!(!dir.join("model.pt").exists());
    // A new file outside the folder, given explicitly, is written.
    succeeded(&train(&[&base[..], &["--csv-logger", "../fresh.csv"]].concat()));
    assert_eq!(std::fs::read_to_string(tmp.path().join("fresh.csv")).unwrap().lines().count(), 3);
}

// ---------------------------------------------------------------------------------------------------------------
// 4. One process per run folder.

#[test]
fn a_second_process_on_a_training_folder_is_refused_naming_the_first() {
    let tmp = tempdir();
    let dir = tmp.path().join("busy");
    let d = dir.to_str().unwrap();
    let long = [
        "--model",
        "mlp:hidden=64x64",
        "--data",
        "moons:n_samples=4000,noise=0.2",
        "--epochs",
        "300",
        "--batch-size",
        "8",
        "--threads",
        "1",
        "-q",
    ];
    let mut first = tchzoo()
        .arg("train")
        .args(long)
        .args(["--out", d])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = first.id().to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !dir.join("resume.json").exists() {
        assert!(
            Instant::now() < deadline && first.try_wait().unwrap().is_none(),
            "the first run did not save an epoch"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let log_before = std::fs::read_to_string(dir.join("config.json")).unwrap();
    refused(&train(&[&long[..], &["--seed", "2", "--out", d]].concat()), &[&pid, d]);
    refused(&train(&["--resume", d, "-q"]), &[&pid]);
    assert_eq!(std::fs::read_to_string(dir.join("config.json")).unwrap(), log_before, "config.json was rewritten");
    // kill -9: the kernel releases the lock, and the run resumes.
    first.kill().unwrap();
    first.wait().unwrap();
    let state = resume::read(&dir).unwrap();
    let cfg_path = dir.join("config.json");
    let mut cfg = tchzoo::config::RunConfig::from_json_file(&cfg_path).unwrap();
    cfg.epochs = state.epoch + 1;
    std::fs::write(&cfg_path, cfg.to_json().unwrap()).unwrap();
    succeeded(&train(&["--resume", d, "-q"]));
    assert_eq!(History::load_json(&dir.join("history.json")).unwrap().len(), state.epoch + 1);
}

// ---------------------------------------------------------------------------------------------------------------
// 5. Allocation bombs: refused before allocating, under an address-space cap.

fn npy(shape: &str, data: &[u8]) -> Vec<u8> {
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    while (header.len() + 11) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

#[test]
fn an_empty_npy_with_a_huge_dimension_is_refused() {
    let tmp = tempdir();
    let p = tmp.path().join("bomb.npy");
    let bytes = npy("(0, 4611686018427387904)", &[]);
    assert!(bytes.len() <= 128);
    std::fs::write(&p, bytes).unwrap();
    let out = limited(
        cap(),
        &[
            "train",
            "--model",
            "mlp",
            "--data",
            p.to_str().unwrap(),
            "--epochs",
            "1",
            "--out",
            tmp.path().join("r").to_str().unwrap(),
        ],
    );
    refused(&out, &["bomb.npy"]);
}

/// A zip archive (deflated entries) as torch.save lays it out.
fn pt_archive(entries: &[(&str, &[u8])]) -> Vec<u8> {
    use std::io::Write;
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut buf);
        let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        for (name, data) in entries {
            zip.start_file(format!("archive/{name}"), opts).unwrap();
            zip.write_all(data).unwrap();
        }
        zip.finish().unwrap();
    }
    buf.into_inner()
}

#[test]
fn a_pickle_of_one_repeated_opcode_is_refused() {
    let tmp = tempdir();
    let p = tmp.path().join("bomb.pt");
    // 48 MiB of EMPTY_DICT: each byte pushes a dict; deflated to about 48 KB.
    let mut pkl = vec![0x80u8, 2];
    pkl.extend(std::iter::repeat_n(b'}', 48 << 20));
    pkl.push(b'.');
    let bytes = pt_archive(&[("data.pkl", &pkl), ("byteorder", b"little")]);
    assert!(bytes.len() < 128 << 10, "{}", bytes.len());
    std::fs::write(&p, bytes).unwrap();
    refused(&limited(cap(), &["inspect", p.to_str().unwrap()]), &["bomb.pt"]);
}

#[test]
fn a_stride_0_view_is_expanded_only_within_a_limit() {
    let tmp = tempdir();
    let p = tmp.path().join("wide.pt");
    common::run_script("expanded_view.py", &[p.to_str().unwrap(), "200000000"]);
    assert!(std::fs::metadata(&p).unwrap().len() < 4096);
    let target = tmp.path().join("wide.safetensors");
    let out = limited(cap(), &["convert", p.to_str().unwrap(), target.to_str().unwrap()]);
    refused(&out, &["wide.pt", "repeats"]);
    assert!(!target.exists());
    // A small expanded view is read as it is.
    let small = tmp.path().join("small.pt");
    common::run_script("expanded_view.py", &[small.to_str().unwrap(), "3"]);
    let w = weights(&small);
    assert_eq!(w[0].1.size(), [3, 2]);
}

#[test]
fn a_gzipped_idx_that_inflates_past_memory_is_refused() {
    use std::io::Write;
    let tmp = tempdir();
    let data = tmp.path().join("mnist");
    std::fs::create_dir_all(&data).unwrap();
    let (n, h, w) = (4096u32, 256u32, 256u32);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&[0, 0, 8, 3]).unwrap();
    for d in [n, h, w] {
        gz.write_all(&d.to_be_bytes()).unwrap();
    }
    let zeros = vec![0u8; (h * w) as usize];
    for _ in 0..n {
        gz.write_all(&zeros).unwrap();
    }
    let images = gz.finish().unwrap();
    assert!(images.len() < 4 << 20, "{}", images.len());
    std::fs::write(data.join("train-images-idx3-ubyte.gz"), images).unwrap();
    let mut labels = vec![0, 0, 8, 1];
    labels.extend_from_slice(&n.to_be_bytes());
    labels.extend((0..n).map(|i| (i % 10) as u8));
    std::fs::write(data.join("train-labels-idx1-ubyte"), labels).unwrap();
    let out = limited(
        cap(),
        &[
            "train",
            "--model",
            "mlp",
            "--data",
            data.to_str().unwrap(),
            "--epochs",
            "1",
            "--out",
            tmp.path().join("r").to_str().unwrap(),
        ],
    );
    refused(&out, &["memory"]);
}

/// A PNG of `w`x`h` pixels whose header is all there is (the pixels are never reached).
fn png_header_only(w: u32, h: u32) -> Vec<u8> {
    let chunk = |kind: &[u8], data: &[u8]| {
        let mut c = (data.len() as u32).to_be_bytes().to_vec();
        c.extend_from_slice(kind);
        c.extend_from_slice(data);
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        c.extend_from_slice(&crc.sum().to_be_bytes());
        c
    };
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    out.extend(chunk(b"IHDR", &ihdr));
    out.extend(chunk(b"IDAT", &[0x78, 0x01, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]));
    out.extend(chunk(b"IEND", &[]));
    out
}

#[test]
fn image_bombs_are_refused_from_their_headers() {
    let tmp = tempdir();
    let big = tmp.path().join("big");
    // Two classes (data of one class is refused before any image is read).
    for class in ["a", "b"] {
        std::fs::create_dir_all(big.join(class)).unwrap();
        std::fs::write(big.join(class).join("huge.png"), png_header_only(20000, 20000)).unwrap();
    }
    let out = limited(
        cap(),
        &[
            "train",
            "--model",
            "mlp",
            "--train-crop-size",
            "8",
            "--no-validation",
            "--data",
            big.to_str().unwrap(),
            "--epochs",
            "1",
            "--out",
            tmp.path().join("r1").to_str().unwrap(),
        ],
    );
    refused(&out, &["huge.png"]);

    // Twelve tiny images blown up to 7000x7000 by the crop size (an image folder's `size=` of old).
    let tiny = tmp.path().join("tiny");
    for i in 0..12 {
        let class = tiny.join(if i % 2 == 0 { "a" } else { "b" });
        std::fs::create_dir_all(&class).unwrap();
        image::RgbImage::from_pixel(2, 2, image::Rgb([i * 10, 0, 0])).save(class.join(format!("{i}.png"))).unwrap();
    }
    let out = limited(
        cap(),
        &[
            "train",
            "--model",
            "mlp",
            "--train-crop-size",
            "7000",
            "--data",
            tiny.to_str().unwrap(),
            "--epochs",
            "1",
            "--out",
            tmp.path().join("r2").to_str().unwrap(),
        ],
    );
    refused(&out, &["memory"]);
}

#[test]
fn a_csv_of_separators_is_refused() {
    let tmp = tempdir();
    let out = tmp.path().join("r");
    let train = |p: &Path| {
        let args = ["train", "--model", "mlp", "--data", p.to_str().unwrap(), "--epochs", "1", "--out"];
        limited(cap(), &[&args[..], &[out.to_str().unwrap()]].concat())
    };
    // 64 Mi commas in the header: 64 Mi column names would not fit, which the size check says before parsing.
    let p = tmp.path().join("commas.csv");
    let mut text = std::iter::repeat_n(b',', 64 << 20).collect::<Vec<u8>>();
    text.extend(b"\n1,2\n");
    std::fs::write(&p, text).unwrap();
    refused(&train(&p), &["commas.csv", "memory"]);
    // The same commas in a data row: one row of another width than the header's, named by its line.
    let p = tmp.path().join("row.csv");
    let mut text = b"a,b\n".to_vec();
    text.extend(std::iter::repeat_n(b',', 64 << 20));
    std::fs::write(&p, text).unwrap();
    refused(&train(&p), &["row.csv", "line 2 has 67108865 fields but the header has 2"]);
}

#[test]
fn a_model_too_large_for_memory_is_refused_before_it_is_built() {
    let tmp = tempdir();
    let out = limited(
        cap(),
        &[
            "train",
            "--model",
            "mlp:hidden=100000000",
            "--data",
            MOONS,
            "--epochs",
            "1",
            "--out",
            tmp.path().join("r").to_str().unwrap(),
        ],
    );
    refused(&out, &["mlp", "memory"]);
}

// ---------------------------------------------------------------------------------------------------------------
// 6. Values that would panic or mean nothing: refused before training.

#[test]
fn values_that_would_panic_or_mean_nothing_are_refused_before_training() {
    let long_name = format!("{}.pt", "7".repeat(300));
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--lr", "1e39"], "learning rate"),
        (vec!["--checkpoint", "c-{epoch:99999d}.pt"], "99999d"),
        (vec!["--checkpoint", "c-{loss:.99999f}.pt"], ".99999f"),
        (vec!["--checkpoint", &long_name], "255"),
        (vec!["--checkpoint", "c-{epoch:0250d}-{loss:.4f}.pt"], "255"),
        (vec!["--threads", "1000000"], "1000000"),
        (vec!["--optimizer", "sgd", "--momentum", "nan"], "momentum"),
        (vec!["--optimizer", "sgd", "--dampening", "nan"], "dampening"),
        (vec!["--eps", "nan"], "eps"),
        (vec!["--optimizer", "rmsprop", "--alpha", "nan"], "alpha"),
        (vec!["--weight-decay", "inf"], "weight decay"),
        (vec!["--lr-schedule", "exponential:gamma=nan"], "gamma"),
        (vec!["--lr-schedule", "step:step_size=0"], "step_size"),
        (vec!["--lr-schedule", "cosine:t_max=0"], "t_max"),
    ];
    for (extra, name) in cases {
        let tmp = tempdir();
        let dir = tmp.path().join("r");
        let args = ["--model", "mlp", "--data", MOONS, "--epochs", "2", "-q", "--out", dir.to_str().unwrap()];
        let out = train(&[&args[..], &extra[..]].concat());
        refused(&out, &[name]);
        assert!(!dir.join("resume.json").exists(), "{extra:?} trained an epoch");
    }
}

// ---------------------------------------------------------------------------------------------------------------
// 8. Data values and --out.

#[test]
fn csv_values_that_are_not_finite_in_float32_are_refused() {
    let tmp = tempdir();
    let cases = [
        ("big.csv", "x,y,label\n1,2,0\n3,1e39,1\n0.5,1,0\n", vec!["line 3", "1e39"]),
        ("nancol.csv", "x,z,label\n1,nan,0\n2,NaN,1\n3,,0\n", vec!["'z'", "no finite number"]),
        ("nanlabel.csv", "x,y,label\n1,2,0\n3,4,1\n5,6,nan\n7,8,1\n", vec!["line 4", "nan"]),
    ];
    for (file, text, names) in cases {
        let p = tmp.path().join(file);
        std::fs::write(&p, text).unwrap();
        let out = train(&[
            "--model",
            "mlp",
            "--data",
            p.to_str().unwrap(),
            "--epochs",
            "1",
            "--no-validation",
            "--out",
            tmp.path().join(file).with_extension("run").to_str().unwrap(),
        ]);
        let names: Vec<&str> = names.into_iter().collect();
        refused(&out, &names);
    }
}

#[test]
fn out_must_name_a_new_empty_or_run_folder() {
    let tmp = tempdir();
    let args = ["--model", "mlp", "--data", MOONS, "--epochs", "1", "-q"];
    let before = snapshot(tmp.path());
    let out = run(tchzoo().arg("train").args(args).args(["--out", ""]).current_dir(tmp.path()));
    refused(&out, &["--out"]);
    assert_eq!(snapshot(tmp.path()), before, "--out '' wrote into the current folder");

    let theirs = tmp.path().join("theirs");
    std::fs::create_dir_all(&theirs).unwrap();
    std::fs::write(theirs.join("config.json"), b"{\"their\": \"config\"}").unwrap();
    std::fs::write(theirs.join("model.pt"), b"their model").unwrap();
    let before = snapshot(&theirs);
    refused(&train(&[&args[..], &["--out", theirs.to_str().unwrap()]].concat()), &["not a tchzoo run folder"]);
    assert_eq!(snapshot(&theirs), before);
    // An empty folder is fine.
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    succeeded(&train(&[&args[..], &["--out", empty.to_str().unwrap()]].concat()));
}
