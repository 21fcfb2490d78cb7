//! Per-epoch progress: a bar on a terminal, one Keras-style line per epoch otherwise.
use std::io::IsTerminal;

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
    bar: Option<ProgressBar>,
    /// The bar's running loss, as Keras' progbar: the sum of the epoch's batch losses on the device (read only
    /// when the bar is redrawn, a few times a second), and their count.
    loss_sum: Option<tch::Tensor>,
    batches: usize,
    shown: Option<std::time::Instant>,
    /// The share of the epoch the model waited for data (image pipelines), shown as `data 3%`.
    data_wait: Option<f64>,
}

impl Progress {
    pub fn new(verbosity: Verbosity) -> Self {
        let verbosity = match verbosity {
            Verbosity::Auto if !std::io::stderr().is_terminal() => Verbosity::Lines,
            v => v,
        };
        Progress { verbosity, bar: None, loss_sum: None, batches: 0, shown: None, data_wait: None }
    }
    /// The share of the coming epoch line's time spent waiting for the data workers.
    pub fn set_data_wait(&mut self, share: f64) {
        self.data_wait = Some(share);
    }
    pub fn epoch_begin(&mut self, epoch: usize, epochs: usize, batches: usize) {
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
                bar.set_message(format!("- loss: {:.4}", sum.double_value(&[]) / self.batches as f64));
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
        if self.verbosity != Verbosity::Silent {
            let mut line = epoch_line(epoch, epochs, logs, seconds);
            if let Some(share) = self.data_wait.take() {
                line.push_str(&format!(" - data {:.0}%", share * 100.0));
            }
            println!("{line}");
        }
    }
}

/// `Epoch 3/30 - loss: 0.4120 - accuracy: 0.8711 - val_loss: 0.3982 - val_accuracy: 0.8833 - 1.2s`
pub fn epoch_line(epoch: usize, epochs: usize, logs: &Logs, seconds: f64) -> String {
    let mut line = format!("Epoch {}/{}", epoch + 1, epochs);
    let mut keys: Vec<&String> = logs.keys().filter(|k| *k != "lr" && *k != "epoch_time").collect();
    // Training metrics first, then validation, each with loss first (Keras' order).
    keys.sort_by_key(|k| (k.starts_with("val_"), !k.trim_start_matches("val_").eq("loss"), k.to_string()));
    for k in keys {
        line.push_str(&format!(" - {k}: {:.4}", logs[k]));
    }
    line.push_str(&format!(" - {seconds:.1}s"));
    line
}
