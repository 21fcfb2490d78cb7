//! A JSON-lines log for tools that tail files: one object every N optimizer steps (Lightning's
//! `log_every_n_steps`), `{"epoch", "step", "loss", "lr", "grad_norm" (when clipping by norm), "wall_time"}`.
//! `step` counts optimizer steps from 1 over the whole run, `epoch` is 0-based as in `history.json`, `loss` is the
//! mean loss of the step's batches (one, or an accumulated group), `wall_time` is seconds since the Unix epoch.
use std::io::Write;
use std::path::PathBuf;

use super::{Callback, CallbackContext, StepInfo};
use crate::error::{Error, Result};

pub struct StepLogger {
    pub path: PathBuf,
    pub every: usize,
    /// Optimizer steps taken so far in the run (survives a resume).
    steps: u64,
    /// The loss sum and batch count of the step being accumulated.
    group: Option<(tch::Tensor, usize)>,
    file: Option<std::fs::File>,
    /// Set by `load_state`: the log is cut back to the resumed step at train begin.
    resumed: bool,
}

impl StepLogger {
    pub fn new(path: impl Into<PathBuf>, every: usize) -> Self {
        StepLogger { path: path.into(), every: every.max(1), steps: 0, group: None, file: None, resumed: false }
    }

    /// Keeps the lines of steps `1..=steps`.
    fn truncate(&self) -> Result<()> {
        let Ok(text) = std::fs::read_to_string(&self.path) else { return Ok(()) };
        let kept: String = text
            .lines()
            .filter(|l| {
                serde_json::from_str::<serde_json::Value>(l)
                    .ok()
                    .and_then(|v| v.get("step").and_then(|s| s.as_u64()))
                    .is_some_and(|s| s <= self.steps)
            })
            .map(|l| format!("{l}\n"))
            .collect();
        crate::util::write_atomic(&self.path, kept.as_bytes())
    }
}

impl Callback for StepLogger {
    fn name(&self) -> &'static str {
        "step_logger"
    }
    fn on_train_begin(&mut self, ctx: &mut CallbackContext) -> Result<()> {
        if !ctx.is_chief {
            return Ok(());
        }
        if self.resumed {
            // A kill between a line and the resume state leaves lines of steps the resumed run repeats.
            self.truncate()?;
        } else {
            let _ = std::fs::remove_file(&self.path);
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| Error::io(&self.path, e))?;
        self.file = Some(file);
        Ok(())
    }
    fn on_train_batch_end(&mut self, b: &StepInfo, _ctx: &mut CallbackContext) -> Result<()> {
        let loss = b.loss.detach().to_kind(tch::Kind::Double);
        self.group = Some(match self.group.take() {
            Some((sum, n)) => (sum + loss, n + 1),
            None => (loss, 1),
        });
        if !b.stepped {
            return Ok(());
        }
        self.steps += 1;
        let (sum, n) = self.group.take().expect("a loss was just added");
        if !self.steps.is_multiple_of(self.every as u64) {
            return Ok(());
        }
        let Some(file) = &mut self.file else { return Ok(()) };
        let wall_time =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        let mut line = serde_json::json!({
            "epoch": b.epoch,
            "step": self.steps,
            "loss": sum.double_value(&[]) / n as f64,
            "lr": b.lr,
        });
        if let Some(g) = b.grad_norm {
            line["grad_norm"] = serde_json::json!(g.double_value(&[]));
        }
        line["wall_time"] = serde_json::json!(wall_time);
        file.write_all(format!("{line}\n").as_bytes()).and_then(|_| file.flush()).map_err(|e| Error::io(&self.path, e))
    }
    fn state(&self) -> serde_json::Value {
        serde_json::json!({ "steps": self.steps })
    }
    fn load_state(&mut self, state: &serde_json::Value) -> Result<()> {
        self.steps = state.get("steps").and_then(|s| s.as_u64()).unwrap_or(0);
        self.resumed = true;
        Ok(())
    }
}
