//! Helpers shared by the integration tests: the project's Python oracle and cached fixtures.
#![allow(dead_code)]
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

pub mod zoo;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Python of the project's `.venv` (made by scripts/setup), with real torch.
pub fn python() -> PathBuf {
    let p = root().join(".venv/bin/python");
    assert!(p.exists(), "{} is missing: run scripts/setup", p.display());
    p
}

fn hash_files(paths: &[PathBuf]) -> String {
    // FNV-1a over the scripts' bytes: enough to key a cache.
    let mut h: u64 = 0xcbf29ce484222325;
    for p in paths {
        for b in std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())) {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
    }
    format!("{h:016x}")
}

static FIXTURE_LOCK: Mutex<()> = Mutex::new(());

/// Runs `scripts/fixtures/<script>` once into `target/fixtures/<script>-<hash>/` (keyed by the script, the
/// reference models and the shared fixture code) and returns that folder; later calls and later runs reuse it.
pub fn fixtures(script: &str) -> PathBuf {
    let _guard = FIXTURE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let script_path = root().join("scripts/fixtures").join(script);
    let shared = ["scripts/reference_models.py", "scripts/fixtures/zoo_common.py"].map(|p| root().join(p));
    let key = hash_files(&[std::slice::from_ref(&script_path), shared.as_slice()].concat());
    let dir = root().join("target/fixtures").join(format!("{}-{key}", script.trim_end_matches(".py")));
    if dir.join(".complete").exists() {
        return dir;
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let out = Command::new(python()).arg(&script_path).arg(&dir).output().expect("run python");
    assert!(
        out.status.success(),
        "{script} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(dir.join(".complete"), b"").unwrap();
    dir
}

/// Runs `scripts/fixtures/<script>` with the venv's interpreter and returns stdout; panics with stderr on failure.
pub fn run_script(script: &str, args: &[&str]) -> String {
    let path = root().join("scripts/fixtures").join(script);
    let out = Command::new(python()).arg(&path).args(args).output().expect("run python");
    assert!(out.status.success(), "{script} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// max|a − b| / max(max|b|, 1e-12): the relative difference of two tensors.
pub fn rel_diff(a: &tch::Tensor, b: &tch::Tensor) -> f64 {
    let a = a.to_kind(tch::Kind::Double);
    let b = b.to_kind(tch::Kind::Double);
    let num = (&a - &b).abs().max().double_value(&[]);
    let den = b.abs().max().double_value(&[]).max(1e-12);
    num / den
}

/// The tchzoo binary built for these tests.
pub fn tchzoo() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tchzoo"))
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

pub fn read_safetensors(path: &Path) -> std::collections::HashMap<String, tch::Tensor> {
    tch::Tensor::read_safetensors(path).unwrap().into_iter().collect()
}

/// A picture of `w`×`h` whose pixels depend on `seed` (smooth gradients and a checker, so resizing has work to do).
pub fn picture(w: u32, h: u32, seed: u32) -> image::RgbImage {
    image::RgbImage::from_fn(w, h, |x, y| {
        let c = ((x / 3 + y / 3 + seed) % 2) as u8 * 60;
        image::Rgb([
            ((x * 7 + seed * 13) % 256) as u8 / 2 + c,
            ((y * 5 + seed * 29) % 256) as u8 / 2 + c,
            (((x + y) * 3 + seed * 7) % 256) as u8 / 2 + c,
        ])
    })
}

/// Runs a command with a time limit: a hang fails the test instead of blocking it.
pub fn run_limited(mut cmd: Command, limit: std::time::Duration) -> std::process::Output {
    let mut child =
        cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().expect("start");
    let started = std::time::Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("the command ran past {limit:?} (a hang?): {cmd:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Asks the trainer to stop (as Ctrl-C does) once epoch `at` (0-based) has ended.
pub struct StopAt(pub usize);
impl tchzoo::train::Callback for StopAt {
    fn on_epoch_end(
        &mut self,
        epoch: usize,
        _logs: &tchzoo::train::Logs,
        _ctx: &mut tchzoo::train::CallbackContext,
    ) -> tchzoo::Result<()> {
        if epoch == self.0 {
            tchzoo::train::resume::request_stop();
        }
        Ok(())
    }
}

/// `tchzoo train BASE --out OUT ARGS` is refused before training: exit 2, one `error:` line naming `name`, no
/// history written.
pub fn assert_refused(base: &[&str], out: &Path, args: &[&str], name: &str) {
    let o =
        tchzoo().arg("train").args(base).arg("--out").arg(out).args(args).env("RUST_BACKTRACE", "1").output().unwrap();
    assert_one_error_line(&o, args, name);
    assert!(!out.join("history.json").exists(), "{args:?}: history.json written");
}

/// A command that ended with exit 2 and one `error:` line naming `name` on stderr.
pub fn assert_one_error_line(o: &std::process::Output, args: &[&str], name: &str) {
    let stderr = String::from_utf8_lossy(&o.stderr);
    let context = format!("{args:?}: {stderr}");
    assert_eq!(o.status.code(), Some(2), "{context}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{context}");
    assert!(lines[0].starts_with("error:") && lines[0].contains(name), "{context}");
}
