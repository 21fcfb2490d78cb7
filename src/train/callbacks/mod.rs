//! The callback trait: hooks at train, epoch and batch begin/end. Callbacks decide; the trainer acts on
//! `ctx.stop_training` and the learning rate they set. The callbacks themselves (EarlyStopping, ModelCheckpoint,
//! …) build on this.
use std::collections::BTreeMap;

pub mod lr_scheduler;
pub use lr_scheduler::LearningRateScheduler;

use crate::error::Result;
use crate::nn::VarStore;
use crate::optim::Optimizer;
use crate::train::history::History;

/// What a callback may read and change.
pub struct CallbackContext<'a> {
    /// The model's parameters and buffers (read them, save them, load them back).
    pub store: &'a VarStore,
    pub optimizer: &'a mut Optimizer,
    pub history: &'a History,
    /// Set to true to end training after this hook.
    pub stop_training: bool,
}

pub type Logs = BTreeMap<String, f64>;

pub trait Callback {
    fn on_train_begin(&mut self, _ctx: &mut CallbackContext) -> Result<()> {
        Ok(())
    }
    fn on_epoch_begin(&mut self, _epoch: usize, _ctx: &mut CallbackContext) -> Result<()> {
        Ok(())
    }
    fn on_batch_end(&mut self, _batch: usize, _ctx: &mut CallbackContext) -> Result<()> {
        Ok(())
    }
    /// `logs` holds the epoch's `loss`, metrics, `val_*`, `lr` and `epoch_time`.
    fn on_epoch_end(&mut self, _epoch: usize, _logs: &Logs, _ctx: &mut CallbackContext) -> Result<()> {
        Ok(())
    }
    fn on_train_end(&mut self, _ctx: &mut CallbackContext) -> Result<()> {
        Ok(())
    }
    /// The metric names this callback reads (checked against what the run produces before training starts).
    fn monitors(&self) -> Vec<String> {
        vec![]
    }
}
