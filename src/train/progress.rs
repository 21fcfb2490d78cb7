//! Per-epoch progress: a bar on a terminal, one Keras-style line per epoch otherwise.
use std::cell::Cell;
use std::io::IsTerminal;
use std::rc::Rc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use super::Logs;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    Silent,
    /// A bar on a terminal, lines elsewhere.
    Auto,
    /// One line per epoch.
    Lines,
}

pub struct Progress {
    verbosity: Verbosity,
    /// Where the epoch lines go.
    output: crate::report::Output,
    bar: Option<ProgressBar>,
    /// The bar's running loss, as Keras' progbar: the sum of the epoch's batch losses on the device (read only
    /// when the bar is redrawn, a few times a second), and their count.
    loss_sum: Option<tch::Tensor>,
    batches: usize,
    shown: Option<std::time::Instant>,
    /// The share of the epoch the model waited for data (image pipelines), shown as `data 3%`.
    data_wait: Option<f64>,
    /// The bar's learning rate and running mean gradient norm (sum on the device, steps).
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
        let verbosity = match output.verbosity {
            Verbosity::Auto if !std::io::stderr().is_terminal() => Verbosity::Lines,
            v => v,
        };
        Progress {
            verbosity,
            output,
            bar: None,
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
    /// A clock the epoch's batch iterator adds its waiting time to (see [`timed`]), shown on the bar as `data 3%`.
    pub fn data_clock(&mut self) -> Rc<Cell<Duration>> {
        let clock = Rc::new(Cell::new(Duration::ZERO));
        self.clock = Some(clock.clone());
        clock
    }
    /// The learning rate of the step just taken and, when clipping by norm, its gradient norm.
    pub fn step_end(&mut self, lr: f64, grad_norm: Option<&tch::Tensor>) {
        if self.bar.is_none() {
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
        if self.verbosity == Verbosity::Auto {
            let bar = ProgressBar::new(batches as u64);
            let style = ProgressStyle::with_template("Epoch {prefix} [{bar:30}] {pos}/{len} - ETA {eta} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(format!("{}/{}", epoch + 1, epochs));
            self.bar = Some(bar);
            self.loss_sum = None;
            self.batches = 0;
            self.shown = None;
        }
    }
    /// One batch done; `loss` is its mean loss (shown as the epoch's running mean).
    pub fn batch_end(&mut self, loss: &tch::Tensor) {
        let Some(bar) = &self.bar else { return };
        let loss = loss.detach().to_kind(tch::Kind::Double);
        self.loss_sum = Some(match self.loss_sum.take() {
            Some(sum) => sum + loss,
            None => loss,
        });
        self.batches += 1;
        bar.inc(1);
        if self.shown.is_none_or(|t| t.elapsed().as_millis() >= 250) {
            if let Some(sum) = &self.loss_sum {
                let mut msg = format!("- loss: {:.4}", sum.double_value(&[]) / self.batches as f64);
                if let Some((sum, k)) = &self.norm_sum {
                    msg.push_str(&format!(" - grad_norm: {:.4}", sum.double_value(&[]) / *k as f64));
                }
                if let Some(lr) = self.lr {
                    msg.push_str(&format!(" - lr: {}", format_lr(lr)));
                }
                if let (Some(clock), Some(t)) = (&self.clock, self.epoch_started) {
                    let share = clock.get().as_secs_f64() / t.elapsed().as_secs_f64().max(1e-9);
                    msg.push_str(&format!(" - data {:.0}%", share * 100.0));
                }
                bar.set_message(msg);
            }
            self.shown = Some(std::time::Instant::now());
        }
    }
    /// Clears the bar of an epoch that will not finish.
    pub fn abandon(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.abandon();
        }
    }
    pub fn epoch_end(&mut self, epoch: usize, epochs: usize, logs: &Logs, seconds: f64) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        self.clock = None;
        if self.verbosity != Verbosity::Silent {
            let mut line = epoch_line(epoch, epochs, logs, seconds);
            if let Some(share) = self.data_wait.take() {
                line.push_str(&format!(" - data {:.0}%", share * 100.0));
            }
            self.output.say(crate::report::Message::Epoch(line));
        }
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
