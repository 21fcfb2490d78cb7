//! Keras' TerminateOnNaN. Keras checks every batch; reading the loss per batch would force a host synchronisation,
//! so this checks the epoch's accumulated loss (NaN or inf if any batch was) and stops at the end of that epoch.
//! ModelCheckpoint never saves a non-finite epoch in Keras mode, so the last good checkpoint survives (with
//! Lightning's save_top_k a NaN score ranks worst and never displaces a kept file).
use super::{Callback, CallbackContext, Logs};
use crate::error::Result;

#[derive(Debug, Default)]
pub struct TerminateOnNaN {
    pub terminated_at: Option<usize>,
}

impl Callback for TerminateOnNaN {
    fn name(&self) -> &'static str {
        "terminate_on_nan"
    }
    fn on_epoch_end(&mut self, epoch: usize, logs: &Logs, ctx: &mut CallbackContext) -> Result<()> {
        if logs.get("loss").is_some_and(|l| !l.is_finite()) {
            ctx.say(format!("Epoch {:05}: invalid loss, terminating training", epoch + 1));
            self.terminated_at = Some(epoch);
            ctx.stop_training = true;
        }
        Ok(())
    }
}

/// True when every logged value of the epoch is finite (what a checkpoint may be written from).
pub fn logs_are_finite(logs: &Logs) -> bool {
    logs.iter().filter(|(k, _)| k.ends_with("loss")).all(|(_, v)| v.is_finite())
}
