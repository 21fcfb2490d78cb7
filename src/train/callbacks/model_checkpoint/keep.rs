//! Lightning 2.6.6's ModelCheckpoint bookkeeping (`lightning/pytorch/callbacks/model_checkpoint.py`), transcribed:
//! which checkpoints `save_top_k` keeps (`check_monitor_top_k`, `_update_best_and_save`, `best_k_models` in
//! insertion order, ties resolved as Python's `min`/`max` resolve them: the first), when `last.pt` is written
//! (`_save_last_checkpoint`: only when a top-k checkpoint was written at the same step, and once at train end if
//! nothing was), the step and time triggers (`on_train_batch_end`: no save while the monitored value is not yet
//! logged; mid-epoch saves see the last epoch's values), `-vN` names for a file that exists, and a NaN score
//! stored as the worst. tchzoo validates once at each epoch's end, which is Lightning's default
//! `val_check_interval=1.0`: Lightning then saves in `on_train_epoch_end` (`_should_save_on_train_epoch_end` is
//! true), after validation, and its deferral to `on_validation_end` never acts, so neither is transcribed.
//! tests/checkpoint_topk.rs compares the kept files with Lightning's own callback run by a Lightning `Trainer`.
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{template_keys, ModelCheckpoint};
use crate::error::Result;
use crate::train::callbacks::{Action, CallbackContext, Logs, StepInfo};

/// One entry of Lightning's `best_k_models`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Scored {
    pub path: String,
    #[serde(with = "crate::util::json::f64_value")]
    pub score: f64,
}

/// What survives a resume, as Lightning's `state_dict` (plus its private step counters).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KeepState {
    pub best_k_models: Vec<Scored>,
    pub kth_best_model_path: String,
    pub best_model_path: String,
    pub last_model_path: String,
    pub last_checkpoint_saved: String,
    pub last_global_step_saved: u64,
    pub global_step: u64,
}

impl ModelCheckpoint {
    fn monitor_name(&self) -> Option<&str> {
        self.config.save_best_only.then_some(self.config.monitor.as_str())
    }

    /// Lightning's `_monitor_candidates` (the logs and `step`, the optimizer steps so far), and 0 for a template
    /// name not (yet) logged, as its file names do.
    fn candidates(&self, logs: &Logs) -> Logs {
        let mut c = logs.clone();
        c.insert("step".into(), self.state.keep.global_step as f64);
        for k in template_keys(&self.config.filepath).unwrap_or_default() {
            c.entry(k).or_insert(0.0);
        }
        c
    }

    fn skip(&self) -> bool {
        self.state.keep.last_global_step_saved == self.state.keep.global_step
    }

    /// `-vN` before the extension, as Lightning's `format_checkpoint_name(ver=N)`.
    fn versioned(path: &Path, ver: u32) -> PathBuf {
        let stem = path.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
        let name = match path.extension() {
            Some(e) => format!("{stem}-v{ver}.{}", e.to_string_lossy()),
            None => format!("{stem}-v{ver}"),
        };
        path.with_file_name(name)
    }

    /// Lightning's version counter: a name that exists (and is not the one about to be replaced) gets `-v1`, …
    /// A file exists when it is on disk or this hook asked for it, unless this hook asked to remove it.
    fn free_name(&self, first: PathBuf, replacing: &str, ctx: &CallbackContext) -> String {
        let exists = |p: &Path| {
            self.chief
                && ctx.actions.iter().fold(p.exists(), |there, a| match a {
                    Action::Save { path, .. } if path == p => true,
                    Action::Remove { path } if path == p => false,
                    _ => there,
                })
        };
        let mut path = first.clone();
        let mut ver = 1;
        while exists(&path) && path.display().to_string() != replacing {
            path = Self::versioned(&first, ver);
            ver += 1;
        }
        path.display().to_string()
    }

    fn write(&mut self, path: &str, epoch: usize, logs: &Logs, ctx: &mut CallbackContext) {
        self.save(Path::new(path), epoch, logs, ctx);
        self.state.keep.last_global_step_saved = self.state.keep.global_step;
        self.state.keep.last_checkpoint_saved = path.to_string();
        self.state.last_saved = Some(path.to_string());
    }

    /// Asks for a checkpoint this callback saved to be deleted.
    fn remove(&self, path: &str, ctx: &mut CallbackContext) {
        if self.config.verbose && self.chief {
            ctx.say(format!("Removing checkpoint {path}"));
        }
        ctx.actions.push(Action::Remove { path: PathBuf::from(path) });
    }

    fn save_topk(&mut self, epoch: usize, logs: &Logs, ctx: &mut CallbackContext) -> Result<()> {
        let k = self.config.top_k();
        if k == 0 {
            return Ok(());
        }
        let Some(monitor) = self.monitor_name().map(str::to_string) else {
            // `_save_none_monitor_checkpoint`
            let path = self.free_name(self.path_for(epoch, logs)?, &self.state.keep.best_model_path.clone(), ctx);
            let previous = std::mem::replace(&mut self.state.keep.best_model_path, path.clone());
            self.write(&path, epoch, logs, ctx);
            if k == 1 && !previous.is_empty() && previous != path {
                self.remove(&previous, ctx);
            }
            return Ok(());
        };
        let current = logs.get(&monitor).copied();
        if self.check_monitor_top_k(current) {
            self.update_best_and_save(current.unwrap_or(f64::NAN), epoch, logs, ctx)
        } else {
            if self.config.verbose && self.chief {
                ctx.say(format!(
                    "Epoch {}, global step {}: '{monitor}' was not in top {k}",
                    epoch, self.state.keep.global_step
                ));
            }
            Ok(())
        }
    }

    fn score_of(&self, path: &str) -> Option<f64> {
        self.state.keep.best_k_models.iter().find(|s| s.path == path).map(|s| s.score)
    }

    fn check_monitor_top_k(&self, current: Option<f64>) -> bool {
        let Some(current) = current else { return false };
        let k = self.config.top_k();
        if k == -1 || (self.state.keep.best_k_models.len() as i64) < k {
            return true;
        }
        let kth = self.score_of(&self.state.keep.kth_best_model_path).unwrap_or(f64::NAN);
        // torch.lt / torch.gt: false for NaN.
        if self.monitor.maximize {
            current > kth
        } else {
            current < kth
        }
    }

    /// The first entry whose score is the largest (`worst = true` when minimising) or smallest, as Python's
    /// `max`/`min` over a dict.
    fn first_extreme(&self, largest: bool) -> String {
        let mut best: Option<&Scored> = None;
        for s in &self.state.keep.best_k_models {
            let better = match best {
                None => true,
                Some(b) => {
                    if largest {
                        s.score > b.score
                    } else {
                        s.score < b.score
                    }
                }
            };
            if better {
                best = Some(s);
            }
        }
        best.map(|s| s.path.clone()).unwrap_or_default()
    }

    fn update_best_and_save(
        &mut self,
        current: f64,
        epoch: usize,
        logs: &Logs,
        ctx: &mut CallbackContext,
    ) -> Result<()> {
        let maximize = self.monitor.maximize;
        let keep = &mut self.state.keep;
        let k = if self.config.top_k() == -1 { keep.best_k_models.len() as i64 + 1 } else { self.config.top_k() };
        let mut del = None;
        if keep.best_k_models.len() as i64 == k && k > 0 {
            let kth = keep.kth_best_model_path.clone();
            keep.best_k_models.retain(|s| s.path != kth);
            del = Some(kth);
        }
        let current = if current.is_nan() {
            if maximize {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            }
        } else {
            current
        };
        let path = self.free_name(self.path_for(epoch, logs)?, del.as_deref().unwrap_or(""), ctx);
        let keep = &mut self.state.keep;
        match keep.best_k_models.iter_mut().find(|s| s.path == path) {
            Some(s) => s.score = current,
            None => keep.best_k_models.push(Scored { path: path.clone(), score: current }),
        }
        if keep.best_k_models.len() as i64 == k {
            self.state.keep.kth_best_model_path = self.first_extreme(!maximize);
        }
        self.state.keep.best_model_path = self.first_extreme(maximize);
        self.state.best = self.score_of(&self.state.keep.best_model_path.clone());
        if self.config.verbose && self.chief {
            ctx.say(format!(
                "Epoch {}, global step {}: '{}' reached {current:.5} (best {:.5}), saving model to '{path}' as top {k}",
                epoch,
                self.state.keep.global_step,
                self.config.monitor,
                self.state.best.unwrap_or(f64::NAN)
            ));
        }
        self.write(&path, epoch, logs, ctx);
        if let Some(del) = del.filter(|d| *d != path) {
            self.remove(&del, ctx);
        }
        Ok(())
    }

    fn save_last(&mut self, epoch: usize, logs: &Logs, ctx: &mut CallbackContext) -> Result<()> {
        if !self.config.save_last {
            return Ok(());
        }
        let template = self.path_for(epoch, logs)?;
        let ext = template.extension().map(|e| format!(".{}", e.to_string_lossy())).unwrap_or_default();
        let first = template.with_file_name(format!("last{ext}"));
        let path = self.free_name(first, &self.state.keep.last_model_path.clone(), ctx);
        let previous = std::mem::replace(&mut self.state.keep.last_model_path, path.clone());
        self.write(&path, epoch, logs, ctx);
        if !previous.is_empty() && previous != path {
            self.remove(&previous, ctx);
        }
        Ok(())
    }

    /// The logs a mid-epoch save sees: the last epoch's (Lightning's `callback_metrics` between validations).
    fn stale_logs(ctx: &CallbackContext) -> Logs {
        ctx.history.history.iter().filter_map(|(k, v)| v.last().map(|v| (k.clone(), *v))).collect()
    }

    pub(super) fn lightning_batch_end(&mut self, step: &StepInfo, ctx: &mut CallbackContext) -> Result<()> {
        if step.stepped {
            self.state.keep.global_step += 1;
        }
        let skip_state = self.skip();
        let gs = self.state.keep.global_step;
        let skip_batch = self.config.every_n_train_steps.is_none_or(|n| !gs.is_multiple_of(n));
        let now = Instant::now();
        let skip_time = match (self.config.train_time_interval, self.last_time_checked) {
            (Some(minutes), Some(last)) => now.duration_since(last) < Duration::from_secs_f64(minutes * 60.0),
            _ => true,
        };
        if skip_batch && skip_time {
            return Ok(());
        }
        if !skip_time {
            self.last_time_checked = Some(now);
        }
        let logs = self.candidates(&Self::stale_logs(ctx));
        // Before the first epoch ends the monitored value is not logged yet (Lightning defers the save to a
        // validation end that does not save when saving at train epoch ends).
        if self.monitor_name().is_some_and(|m| !logs.contains_key(m)) {
            return Ok(());
        }
        if skip_state {
            return Ok(());
        }
        self.save_topk(step.epoch, &logs, ctx)?;
        self.save_last(step.epoch, &logs, ctx)
    }

    pub(super) fn lightning_epoch_end(&mut self, epoch: usize, logs: &Logs, ctx: &mut CallbackContext) -> Result<()> {
        if self.skip() {
            return Ok(());
        }
        let logs = self.candidates(logs);
        let every_n_epochs = if self.config.every_n_train_steps.is_some() || self.config.train_time_interval.is_some() {
            0
        } else {
            self.config.save_freq
        };
        if every_n_epochs >= 1 && (epoch + 1).is_multiple_of(every_n_epochs) {
            self.save_topk(epoch, &logs, ctx)?;
        }
        if self.skip() {
            self.save_last(epoch, &logs, ctx)?;
        }
        Ok(())
    }

    pub(super) fn lightning_train_end(&mut self, ctx: &mut CallbackContext) -> Result<()> {
        if self.config.save_last && self.state.keep.last_checkpoint_saved.is_empty() {
            let logs = self.candidates(&Self::stale_logs(ctx));
            let epoch = ctx.history.len().saturating_sub(1);
            self.save_last(epoch, &logs, ctx)?;
        }
        Ok(())
    }
}
