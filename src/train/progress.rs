//! Per-epoch progress, as messages: one Keras-style line per epoch and, for a reporter that shows a bar (the CLI's
//! on a terminal), where the epoch is a few times a second. The library draws nothing.
use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::Logs;
use crate::report::Message;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    Silent,
    /// The epoch lines, and the progress within epochs for a reporter that shows it (a bar on a terminal).
    Auto,
    /// One line per epoch.
    Lines,
}

pub struct Progress {
    /// Where the messages go.
    output: crate::report::Output,
    /// Whether the output shows the progress within epochs (else only the epoch lines are said).
    within: bool,
    /// Inside an epoch that has begun and not ended.
    open: bool,
    /// The running loss, as Keras' progbar: the sum of the epoch's batch losses on the device (read only when
    /// progress is said, a few times a second), and their count.
    loss_sum: Option<tch::Tensor>,
    batches: usize,
    shown: Option<Instant>,
    /// The share of the epoch the model waited for data (image pipelines), on the epoch line as `data 3%`.
    data_wait: Option<f64>,
    /// The learning rate of the last step and the running mean gradient norm (sum on the device, steps).
    lr: Option<f64>,
    norm_sum: Option<(tch::Tensor, usize)>,
    /// The time the epoch so far waited for its batches (see [`timed`]), and when it began.
    clock: Option<Rc<Cell<Duration>>>,
    epoch_started: Option<Instant>,
}

/// Counts the time `next` takes into `clock` (when given): the time the consumer waits for its batches.
pub fn timed<I: Iterator>(inner: I, clock: Option<Rc<Cell<Duration>>>) -> Timed<I> {
    Timed { inner, clock }
}

pub struct Timed<I> {
    inner: I,
    clock: Option<Rc<Cell<Duration>>>,
}

impl<I: Iterator> Iterator for Timed<I> {
    type Item = I::Item;
    fn next(&mut self) -> Option<I::Item> {
        let Some(clock) = &self.clock else { return self.inner.next() };
        let started = Instant::now();
        let item = self.inner.next();
        clock.set(clock.get() + started.elapsed());
        item
    }
}

/// A learning rate as the epoch line and bar show it: 4 decimals from 0.01, else 3 significant digits.
pub fn format_lr(lr: f64) -> String {
    if lr.abs() >= 0.01 {
        format!("{lr:.4}")
    } else {
        format!("{lr:.2e}")
    }
}

impl Progress {
    pub fn new(output: crate::report::Output) -> Self {
        Progress {
            within: output.wants_progress(),
            output,
            open: false,
            loss_sum: None,
            batches: 0,
            shown: None,
            data_wait: None,
            lr: None,
            norm_sum: None,
            clock: None,
            epoch_started: None,
        }
    }
    /// The share of the coming epoch line's time spent waiting for the data workers.
    pub fn set_data_wait(&mut self, share: f64) {
        self.data_wait = Some(share);
    }
    /// A clock the epoch's batch iterator adds its waiting time to (see [`timed`]), in the progress as `data 3%`.
    pub fn data_clock(&mut self) -> Rc<Cell<Duration>> {
        let clock = Rc::new(Cell::new(Duration::ZERO));
        self.clock = Some(clock.clone());
        clock
    }
    /// The learning rate of the step just taken and, when clipping by norm, its gradient norm.
    pub fn step_end(&mut self, lr: f64, grad_norm: Option<&tch::Tensor>) {
        if !self.open {
            return;
        }
        self.lr = Some(lr);
        if let Some(n) = grad_norm {
            let n = n.detach().to_kind(tch::Kind::Double);
            self.norm_sum = Some(match self.norm_sum.take() {
                Some((sum, k)) => (sum + n, k + 1),
                None => (n, 1),
            });
        }
    }
    pub fn epoch_begin(&mut self, epoch: usize, epochs: usize, batches: usize) {
        self.epoch_started = Some(Instant::now());
        self.norm_sum = None;
        self.loss_sum = None;
        self.batches = 0;
        self.shown = None;
        self.lr = None;
        self.open = self.within;
        if self.open {
            self.output.say(Message::EpochBegin { epoch, epochs, batches });
        }
    }
    /// One batch done; `loss` is its mean loss (said as the epoch's running mean).
    pub fn batch_end(&mut self, loss: &tch::Tensor) {
        if !self.open {
            return;
        }
        let loss = loss.detach().to_kind(tch::Kind::Double);
        self.loss_sum = Some(match self.loss_sum.take() {
            Some(sum) => sum + loss,
            None => loss,
        });
        self.batches += 1;
        if self.shown.is_none_or(|t| t.elapsed().as_millis() >= 250) {
            if let Some(sum) = &self.loss_sum {
                let data_wait = match (&self.clock, self.epoch_started) {
                    (Some(clock), Some(t)) => Some(clock.get().as_secs_f64() / t.elapsed().as_secs_f64().max(1e-9)),
                    _ => None,
                };
                self.output.say(Message::Batch {
                    done: self.batches,
                    loss: sum.double_value(&[]) / self.batches as f64,
                    grad_norm: self.norm_sum.as_ref().map(|(sum, k)| sum.double_value(&[]) / *k as f64),
                    lr: self.lr,
                    data_wait,
                });
            }
            self.shown = Some(Instant::now());
        }
    }
    /// Says that the epoch begun will not finish.
    pub fn abandon(&mut self) {
        if std::mem::take(&mut self.open) {
            self.output.say(Message::EpochAbandoned);
        }
    }
    pub fn epoch_end(&mut self, epoch: usize, epochs: usize, logs: &Logs, seconds: f64) {
        self.open = false;
        self.clock = None;
        self.loss_sum = None;
        self.norm_sum = None;
        if !self.output.is_silent() {
            let mut line = epoch_line(epoch, epochs, logs, seconds);
            if let Some(share) = self.data_wait.take() {
                line.push_str(&format!(" - data {:.0}%", share * 100.0));
            }
            self.output.say(Message::Epoch(line));
        }
    }
}

/// An epoch left by an error (`?` in the batch loop) is abandoned too, so a bar does not stay open under the error.
impl Drop for Progress {
    fn drop(&mut self) {
        self.abandon();
    }
}

/// `Epoch 3/30 - loss: 0.4120 - accuracy: 0.8711 - val_loss: 0.3982 - val_accuracy: 0.8833 - lr: 1.00e-3 - 1.2s`
/// (`grad_norm` among the training figures when clipping by norm logs it).
pub fn epoch_line(epoch: usize, epochs: usize, logs: &Logs, seconds: f64) -> String {
    let mut line = format!("Epoch {}/{}", epoch + 1, epochs);
    let mut keys: Vec<&String> = logs.keys().filter(|k| *k != "lr" && *k != "epoch_time").collect();
    // Training metrics first, then validation, each with loss first (Keras' order).
    keys.sort_by_key(|k| (k.starts_with("val_"), !k.trim_start_matches("val_").eq("loss"), k.to_string()));
    for k in keys {
        line.push_str(&format!(" - {k}: {:.4}", logs[k]));
    }
    if let Some(lr) = logs.get("lr") {
        line.push_str(&format!(" - lr: {}", format_lr(*lr)));
    }
    line.push_str(&format!(" - {seconds:.1}s"));
    line
}
