//! Stop and resume. After every epoch the trainer has the run folder ([`super::run_dir::RunDir::save_resume`]) write
//! the resume state:
//! `resume/epoch-NNNNN/` (the general checkpoint `checkpoint.pt` with weights and optimizer state, and the
//! callbacks' tensors) and then, atomically, `resume.json` naming that folder with the epoch, the history, the
//! learning rate and every callback's state. A kill at any moment leaves the previous complete state or the new one.
//! Randomness needs no saved state: each epoch reseeds libtorch's generator from (seed, epoch) and the loader's
//! shuffle depends on (seed, epoch) only.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::callbacks::Callback;
use super::history::History;
use crate::error::{Error, Result};
use crate::nn::VarStore;
use crate::optim::Optimizer;

static STOP: AtomicBool = AtomicBool::new(false);

/// Asks the running `fit` to stop after the current batch (what Ctrl-C and SIGTERM do).
pub fn request_stop() {
    STOP.store(true, Ordering::SeqCst);
}
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}
pub fn clear_stop() {
    STOP.store(false, Ordering::SeqCst);
}

/// The seed of libtorch's generator for `epoch`: a fixed mix of the run's seed and the epoch.
pub fn epoch_seed(seed: u64, epoch: usize) -> i64 {
    let mut z = seed.wrapping_add((epoch as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) >> 1) as i64
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResumeState {
    /// Epochs completed (the next epoch to run, 0-based).
    pub epoch: usize,
    /// True once the run is complete: training ended and the final files (`history.json`, `model.pt`,
    /// `model.safetensors`, `curves.png`) are written; set last, by [`mark_finished`].
    pub finished: bool,
    /// True once training ended (all epochs, or a callback stopped it); the final files may still be missing, and
    /// `--resume` writes them without training further.
    #[serde(default)]
    pub ended: bool,
    pub dir: String,
    #[serde(with = "crate::util::json::f64_value")]
    pub lr: f64,
    pub history: History,
    pub callbacks: BTreeMap<String, serde_json::Value>,
    /// float16's loss scale and growth tracker (`--precision fp16`).
    #[serde(default)]
    pub grad_scaler: Option<crate::train::amp::ScalerState>,
    /// `--ema`: the number of averaged updates; the averages are `ema.safetensors` beside the checkpoint.
    #[serde(default)]
    pub ema_updates: Option<u64>,
}

pub const RESUME_FILE: &str = "resume.json";
/// The EMA weights in a resume state's folder.
pub const EMA_FILE: &str = "ema.safetensors";

/// What the trainer holds that a resumed run needs back: weights, optimizer state, float16's loss scale.
pub struct TrainingState<'a> {
    pub store: &'a VarStore,
    pub optimizer: &'a Optimizer,
    pub grad_scaler: Option<crate::train::amp::ScalerState>,
    pub ema: Option<&'a crate::train::features::Ema>,
}

/// The advisory lock on a run folder (`flock` on `RUN/.lock`, which holds the owner's pid), held while the value
/// lives; the kernel releases it when the process ends, even on kill -9.
#[derive(Debug)]
pub struct RunLock {
    _file: std::fs::File,
}

pub const LOCK_FILE: &str = ".lock";

/// Takes the run folder's lock, or fails in one line naming the process that holds it.
pub fn lock(run_dir: &Path) -> Result<RunLock> {
    use std::io::{Read, Seek, Write};
    let path = run_dir.join(LOCK_FILE);
    refuse_symlink(&path)?;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let pid = pid.trim();
            let holder = if pid.is_empty() { "another process".to_string() } else { format!("process {pid}") };
            return Err(Error::config(format!(
                "{} is in use by {holder} (a train or ⟨resume⟩ on the same folder); wait for it to end or choose \
                 another ⟨out⟩",
                run_dir.display()
            )));
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&path, e)),
    }
    let written = file
        .set_len(0)
        .and_then(|_| file.rewind())
        .and_then(|_| file.write_all(std::process::id().to_string().as_bytes()))
        .and_then(|_| file.flush());
    written.map_err(|e| Error::io(&path, e))?;
    Ok(RunLock { _file: file })
}

/// Fails when `path` is a symbolic link (a run folder writes and deletes only inside itself).
pub(crate) fn refuse_symlink(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(Error::config(format!(
            "{} is a symbolic link; a run folder writes and deletes only inside itself: replace it by a folder",
            path.display()
        ))),
        _ => Ok(()),
    }
}

/// `rel` (a path read back from a run folder) resolved inside `run_dir`: not absolute, no `..`, and no symbolic
/// link on the way (a tampered run folder must not make a resumed run write outside it).
pub fn confine(run_dir: &Path, rel: &str, what: &str) -> Result<PathBuf> {
    super::run_dir::RunDir::new(run_dir).confine(rel, what)
}

/// The files a complete run folder holds besides its resume state.
pub const FINAL_FILES: [&str; 4] = ["history.json", "model.pt", "model.safetensors", "curves.png"];

/// Reads `resume.json` of a run folder.
pub fn read(run_dir: &Path) -> Result<ResumeState> {
    let path = run_dir.join(RESUME_FILE);
    if !path.exists() {
        return Err(Error::config(format!(
            "{} has no {RESUME_FILE}: it is not a run folder, or it never finished an epoch",
            run_dir.display()
        )));
    }
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    crate::util::json::from_str(&text).map_err(|e| Error::config(format!("{}: not a resume file: {e}", path.display())))
}

/// Restores weights, optimizer state and learning rate, and every callback's state. Returns the history so far.
pub fn restore(
    run_dir: &Path,
    state: &ResumeState,
    store: &VarStore,
    optimizer: &mut Optimizer,
    callbacks: &mut [Box<dyn Callback>],
) -> Result<()> {
    let dir: PathBuf = confine(run_dir, &state.dir, "the resume state folder")?;
    crate::checkpoint::load_checkpoint(&dir.join("checkpoint.pt"), store, optimizer)?;
    // The checkpoint's param_groups hold each group's lr; one group's is the base lr.
    if optimizer.groups().len() > 1 {
        optimizer.set_base_lr(state.lr);
    } else {
        optimizer.set_lr(state.lr);
    }
    // Always written next to checkpoint.pt (empty when no callback keeps tensors): a missing or corrupt file is an
    // error, not silently no best weights.
    let tensors = crate::checkpoint::read_state_dict(&dir.join("callbacks.safetensors"))?;
    for (i, cb) in callbacks.iter_mut().enumerate() {
        let key = super::callbacks::state_key(i, cb.as_ref());
        match state.callbacks.get(&key) {
            Some(s) => cb.load_state(s)?,
            None => {
                return Err(Error::config(format!(
                    "the resume state has no callback '{key}': resume with the callbacks the run was started with"
                )))
            }
        }
        let prefix = format!("{key}.");
        let mine: Vec<(String, Tensor)> = tensors
            .iter()
            .filter_map(|(k, t)| k.strip_prefix(&prefix).map(|n| (n.to_string(), t.shallow_clone())))
            .collect();
        cb.load_state_tensors(mine)?;
    }
    Ok(())
}
