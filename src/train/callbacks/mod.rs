//! The callback trait: hooks at train, epoch and batch begin/end. Callbacks decide; the trainer acts on
//! `ctx.stop_training`, the learning rate they set and the file actions they push (`ctx.actions`: save these
//! weights there, remove that file), which the run folder's writer carries out ([`crate::train::run_dir`]). The
//! callbacks themselves (EarlyStopping, ModelCheckpoint, …) build on this.
use std::collections::BTreeMap;

pub mod csv_logger;
pub mod early_stopping;
pub mod lr_scheduler;
pub mod model_checkpoint;
pub mod monitor;
pub mod reduce_lr;
pub mod step_logger;
pub mod tensorboard;
pub mod terminate_on_nan;

pub use csv_logger::CsvLogger;
pub use early_stopping::{EarlyStopping, EarlyStoppingConfig};
pub use lr_scheduler::LearningRateScheduler;
pub use model_checkpoint::{ModelCheckpoint, ModelCheckpointConfig};
pub use monitor::{Mode, Monitor};
pub use reduce_lr::{ReduceLrOnPlateau, ReduceLrOnPlateauConfig};
pub use step_logger::StepLogger;
pub use tensorboard::TensorBoard;
pub use terminate_on_nan::TerminateOnNaN;

pub use crate::train::run_dir::{Action, Saved};

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
    /// Whether this process writes the run's files: rank 0 of a distributed run, or the one process of a plain run.
    pub is_chief: bool,
    /// The files this hook asks to write or delete, and the lines it has to say; carried out (by the chief) when
    /// the hook returns, in order.
    pub actions: Vec<Action>,
    /// Where the lines go (the run's output; silent by default).
    pub output: crate::report::Output,
}

impl<'a> CallbackContext<'a> {
    pub fn new(store: &'a VarStore, optimizer: &'a mut Optimizer, history: &'a History, is_chief: bool) -> Self {
        CallbackContext {
            store,
            optimizer,
            history,
            stop_training: false,
            is_chief,
            actions: vec![],
            output: crate::report::Output::silent(),
        }
    }

    /// Asks for a Keras-style line to be said (by the chief), in order with the file actions.
    pub fn say(&mut self, line: String) {
        self.actions.push(Action::Say(line));
    }

    /// Carries out the file actions pushed so far (in the chief process; the others drop them), as the trainer does
    /// after every callback's hook.
    pub fn apply_actions(&mut self) -> Result<()> {
        let actions = std::mem::take(&mut self.actions);
        if self.is_chief {
            crate::train::run_dir::apply(actions, self.store, self.optimizer, &self.output)?;
        }
        Ok(())
    }
}

pub type Logs = BTreeMap<String, f64>;

/// The key of the `i`-th callback's state in a resume file (`"{i}.{name}"`), also the prefix of its tensors
/// there: the one place it is built.
pub fn state_key(i: usize, cb: &dyn Callback) -> String {
    format!("{i}.{}", cb.name())
}

/// What one callback marks on a run's curves, from its own config and state.
#[derive(Debug, Clone, PartialEq)]
pub struct CurveMark {
    /// The value whose best epoch gets a line, and whether larger is better.
    pub monitor: (String, bool),
    /// The monitor decides when the run ends (early stopping's): it is marked in preference to the others.
    pub ends_run: bool,
    /// The epoch (0-based) at which this callback stopped training.
    pub stopped_epoch: Option<usize>,
}

/// The curves' marks of a run with `callbacks`: the monitor of the first that ends the run (early stopping), else
/// of the first that marks one (a best-only checkpoint), else `fallback`; the first stopped epoch.
pub fn curve_marks(callbacks: &[Box<dyn Callback>], fallback: (String, bool)) -> crate::plot::CurveMarks {
    let marks: Vec<CurveMark> = callbacks.iter().filter_map(|cb| cb.curve_mark()).collect();
    let monitor = marks.iter().find(|m| m.ends_run).or(marks.first()).map(|m| m.monitor.clone()).unwrap_or(fallback);
    let stopped_epoch = marks.iter().find_map(|m| m.stopped_epoch);
    crate::plot::CurveMarks { monitor: Some(monitor), stopped_epoch }
}

/// A training batch as [`Callback::on_train_batch_end`] sees it (the per-step loggers, Lightning's step-triggered
/// checkpoints).
pub struct StepInfo<'a> {
    pub epoch: usize,
    pub batch: usize,
    /// The optimizer stepped after this batch (false inside a gradient-accumulation group; Lightning's
    /// `global_step` counts the steps).
    pub stepped: bool,
    /// The epoch's last training batch.
    pub last_batch: bool,
    /// The batch's loss, undivided by accumulation (on the device: reading it waits for the step).
    pub loss: &'a tch::Tensor,
    /// The learning rate of the step.
    pub lr: f64,
    /// The step's total gradient norm, when clipping by norm.
    pub grad_norm: Option<&'a tch::Tensor>,
}

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
    /// After `on_batch_end`, what the trainer knows of the batch: its loss and learning rate, whether an optimizer
    /// step happened and whether it was the epoch's last batch.
    fn on_train_batch_end(&mut self, _step: &StepInfo, _ctx: &mut CallbackContext) -> Result<()> {
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
    /// A stable name, the key of this callback's state in a resume file.
    fn name(&self) -> &'static str {
        "callback"
    }
    /// What must survive a stop and resume (counters, best values), as JSON.
    fn state(&self) -> serde_json::Value {
        serde_json::Value::Null
    }
    /// Restores `state()`; a restored callback does not reset itself at train begin.
    fn load_state(&mut self, _state: &serde_json::Value) -> Result<()> {
        Ok(())
    }
    /// Tensors that must survive a resume (EarlyStopping's best weights).
    fn state_tensors(&self) -> Vec<(String, tch::Tensor)> {
        vec![]
    }
    fn load_state_tensors(&mut self, _tensors: Vec<(String, tch::Tensor)>) -> Result<()> {
        Ok(())
    }
    /// What this callback marks on the run's curves (`curves.png`, `tchzoo plot RUN`); see [`curve_marks`].
    fn curve_mark(&self) -> Option<CurveMark> {
        None
    }
}
