//! Keras' TensorBoard callback: every epoch's logs as scalars (the names of `history.json`, step = the epoch as
//! `history.json` numbers it), the weights as histograms every N epochs, and the run's config as text.
use std::path::PathBuf;

use super::{Callback, CallbackContext, Logs};
use crate::error::Result;
use crate::train::tensorboard::{EventWriter, Histogram, Value};

/// Buckets of each weight histogram.
const BINS: usize = 30;

pub struct TensorBoard {
    pub dir: PathBuf,
    /// Weight histograms after every N-th epoch; `None` = none.
    pub histograms: Option<usize>,
    /// Written as the text summary `config` at step 0 of a new run.
    pub config_text: Option<String>,
    writer: Option<EventWriter>,
}

impl TensorBoard {
    pub fn new(dir: impl Into<PathBuf>, histograms: Option<usize>, config_text: Option<String>) -> Self {
        TensorBoard { dir: dir.into(), histograms, config_text, writer: None }
    }
}

impl Callback for TensorBoard {
    fn name(&self) -> &'static str {
        "tensorboard"
    }
    fn on_train_begin(&mut self, ctx: &mut CallbackContext) -> Result<()> {
        if !ctx.is_chief {
            return Ok(());
        }
        // A new file for every start: a resumed run's file begins with a restart at its first epoch, which hides
        // what the earlier files logged from that epoch on (a run killed after logging an epoch it did not save).
        let mut w = EventWriter::create(&self.dir)?;
        let next = ctx.history.epoch.last().map_or(0, |e| e + 1);
        if next > 0 {
            w.session_start(next as i64)?;
        } else if let Some(text) = &self.config_text {
            w.summary(0, &[("config", Value::Text(&format!("```json\n{text}\n```")))])?;
        }
        w.flush()?;
        self.writer = Some(w);
        Ok(())
    }
    fn on_epoch_end(&mut self, epoch: usize, logs: &Logs, ctx: &mut CallbackContext) -> Result<()> {
        let Some(w) = &mut self.writer else { return Ok(()) };
        let step = epoch as i64;
        let scalars: Vec<(&str, Value)> = logs.iter().map(|(k, v)| (k.as_str(), Value::Scalar(*v as f32))).collect();
        w.summary(step, &scalars)?;
        if self.histograms.is_some_and(|n| n > 0 && (epoch + 1).is_multiple_of(n)) {
            let named = ctx.store.named_parameters();
            let hists: Vec<(String, Histogram)> =
                named.iter().map(|(name, t)| (name.clone(), Histogram::of(t, BINS))).collect();
            let values: Vec<(&str, Value)> = hists.iter().map(|(n, h)| (n.as_str(), Value::Histogram(h))).collect();
            w.summary(step, &values)?;
        }
        w.flush()
    }
    fn on_train_end(&mut self, _ctx: &mut CallbackContext) -> Result<()> {
        match self.writer.take() {
            Some(mut w) => w.flush(),
            None => Ok(()),
        }
    }
}
