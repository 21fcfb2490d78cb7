//! Keras' `History`: one list per metric name (`loss`, `accuracy`, `val_loss`, `lr`, `epoch_time`, …), one entry per epoch.
use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct History {
    /// Epoch numbers (0-based, as Keras' `history.epoch`).
    pub epoch: Vec<usize>,
    /// Metric name -> value per epoch, in epoch order (non-finite values as Python's `json` writes them).
    #[serde(with = "crate::util::json::f64_lists")]
    pub history: BTreeMap<String, Vec<f64>>,
}

impl History {
    pub fn push(&mut self, epoch: usize, logs: &BTreeMap<String, f64>) {
        self.epoch.push(epoch);
        for (k, v) in logs {
            self.history.entry(k.clone()).or_default().push(*v);
        }
    }
    pub fn get(&self, key: &str) -> Option<&[f64]> {
        self.history.get(key).map(|v| v.as_slice())
    }
    pub fn last(&self, key: &str) -> Option<f64> {
        self.get(key).and_then(|v| v.last().copied())
    }
    pub fn len(&self) -> usize {
        self.epoch.len()
    }
    pub fn is_empty(&self) -> bool {
        self.epoch.is_empty()
    }
    /// Metric names without the `val_` prefix that have a training curve (`loss`, `accuracy`, …),
    /// excluding bookkeeping (`lr`, `epoch_time`).
    pub fn metric_names(&self) -> Vec<String> {
        self.history.keys().filter(|k| !k.starts_with("val_") && *k != "lr" && *k != "epoch_time").cloned().collect()
    }

    pub fn save_json(&self, path: &Path) -> Result<()> {
        let text = crate::util::json::to_string_pretty(self).map_err(|e| Error::invalid(e.to_string()))?;
        crate::util::write_atomic(path, text.as_bytes())
    }
    pub fn load_json(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        crate::util::json::from_str(&text).map_err(|e| Error::data(path.display(), format!("not a history file: {e}")))
    }
    /// One row per epoch: `epoch,<metric>,...` with the metric columns sorted by name.
    pub fn save_csv(&self, path: &Path) -> Result<()> {
        let keys: Vec<&String> = self.history.keys().collect();
        let mut out = String::from("epoch");
        for k in &keys {
            out.push(',');
            out.push_str(k);
        }
        out.push('\n');
        for (row, epoch) in self.epoch.iter().enumerate() {
            out.push_str(&epoch.to_string());
            for k in &keys {
                out.push(',');
                if let Some(v) = self.history[*k].get(row) {
                    out.push_str(&format!("{v}"));
                }
            }
            out.push('\n');
        }
        crate::util::write_atomic(path, out.as_bytes())
    }
}
