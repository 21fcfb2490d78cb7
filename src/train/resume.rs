//! Stop and resume. After every epoch the trainer writes the resume state into the run folder:
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
use crate::util::write_atomic;

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

/// Installs the Ctrl-C / SIGTERM handler once.
pub fn install_signal_handler() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = ctrlc::set_handler(|| {
            if stop_requested() {
                eprintln!("error: interrupted twice; exiting without waiting for the batch");
                std::process::exit(130);
            }
            request_stop();
        });
    });
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
    /// True once training ended (all epochs, or a callback stopped it).
    pub finished: bool,
    pub dir: String,
    pub lr: f64,
    pub history: History,
    pub callbacks: BTreeMap<String, serde_json::Value>,
    /// float16's loss scale and growth tracker (`--precision fp16`).
    #[serde(default)]
    pub grad_scaler: Option<crate::train::amp::ScalerState>,
}

pub const RESUME_FILE: &str = "resume.json";

/// What the trainer holds that a resumed run needs back: weights, optimizer state, float16's loss scale.
pub struct TrainingState<'a> {
    pub store: &'a VarStore,
    pub optimizer: &'a Optimizer,
    pub grad_scaler: Option<crate::train::amp::ScalerState>,
}

/// Writes the state after `epoch` (0-based) completed.
pub fn save(
    run_dir: &Path,
    epoch: usize,
    finished: bool,
    state: TrainingState<'_>,
    history: &History,
    callbacks: &[Box<dyn Callback>],
) -> Result<()> {
    let rel = format!("resume/epoch-{:05}", epoch + 1);
    let dir = run_dir.join(&rel);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let loss = history.last("loss").unwrap_or(f64::NAN);
    let TrainingState { store, optimizer, grad_scaler } = state;
    crate::checkpoint::save_checkpoint(&dir.join("checkpoint.pt"), (epoch + 1) as i64, store, optimizer, loss)?;
    let mut tensors: Vec<(String, Tensor)> = vec![];
    let mut states = BTreeMap::new();
    for (i, cb) in callbacks.iter().enumerate() {
        let key = format!("{i}.{}", cb.name());
        states.insert(key.clone(), cb.state());
        tensors.extend(cb.state_tensors().into_iter().map(|(k, t)| (format!("{key}.{k}"), t)));
    }
    crate::checkpoint::write_state_dict(&dir.join("callbacks.safetensors"), &tensors)?;
    let state = ResumeState {
        epoch: epoch + 1,
        finished,
        dir: rel.clone(),
        lr: optimizer.lr(),
        history: history.clone(),
        callbacks: states,
        grad_scaler,
    };
    let text = serde_json::to_string_pretty(&state).map_err(|e| Error::invalid(e.to_string()))?;
    write_atomic(&run_dir.join(RESUME_FILE), text.as_bytes())?;
    // Older states are no longer named by resume.json.
    if let Ok(entries) = std::fs::read_dir(run_dir.join("resume")) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy() != rel.trim_start_matches("resume/") {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    Ok(())
}

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
    serde_json::from_str(&text).map_err(|e| Error::config(format!("{}: not a resume file: {e}", path.display())))
}

/// Restores weights, optimizer state and learning rate, and every callback's state. Returns the history so far.
pub fn restore(
    run_dir: &Path,
    state: &ResumeState,
    store: &VarStore,
    optimizer: &mut Optimizer,
    callbacks: &mut [Box<dyn Callback>],
) -> Result<()> {
    let dir: PathBuf = run_dir.join(&state.dir);
    crate::checkpoint::load_checkpoint(&dir.join("checkpoint.pt"), store, optimizer)?;
    optimizer.set_lr(state.lr);
    // Always written next to checkpoint.pt (empty when no callback keeps tensors): a missing or corrupt file is an
    // error, not silently no best weights.
    let tensors = crate::checkpoint::read_state_dict(&dir.join("callbacks.safetensors"))?;
    for (i, cb) in callbacks.iter_mut().enumerate() {
        let key = format!("{i}.{}", cb.name());
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
