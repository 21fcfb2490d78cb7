//! The monitored value shared by EarlyStopping, ModelCheckpoint and ReduceLROnPlateau (Keras' MonitorCallback):
//! the metric name, the direction, `min_delta`, and what counts as an improvement.
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Auto,
    Min,
    Max,
}

impl std::str::FromStr for Mode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Mode> {
        match s {
            "auto" => Ok(Mode::Auto),
            "min" => Ok(Mode::Min),
            "max" => Ok(Mode::Max),
            other => Err(Error::config(format!("mode '{other}' is not one of auto, min, max"))),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Monitor {
    pub monitor: String,
    /// The resolved direction: true when larger is better.
    pub maximize: bool,
    /// Always ≥ 0; applied in the improving direction.
    pub min_delta: f64,
}

impl Monitor {
    /// `auto` picks max for accuracy-like names (`accuracy`, `val_accuracy`, `auc`), min otherwise, as Keras.
    pub fn new(monitor: &str, mode: Mode, min_delta: f64) -> Result<Monitor> {
        if monitor.trim().is_empty() {
            return Err(Error::config("monitor must name a logged metric, e.g. val_loss"));
        }
        if !min_delta.is_finite() {
            return Err(Error::config(format!("min_delta {min_delta} must be a finite number")));
        }
        let maximize = match mode {
            Mode::Max => true,
            Mode::Min => false,
            Mode::Auto => {
                let base = monitor.trim_start_matches("val_");
                base.contains("acc") || base.starts_with("auc") || base.starts_with("fmeasure")
            }
        };
        Ok(Monitor { monitor: monitor.to_string(), maximize, min_delta: min_delta.abs() })
    }
    /// The starting best: +inf when minimising, −inf when maximising.
    pub fn worst(&self) -> f64 {
        if self.maximize {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        }
    }
    /// Keras' `_is_improvement`: `current` beats `reference` by more than `min_delta`.
    pub fn is_improvement(&self, current: f64, reference: f64) -> bool {
        if self.maximize {
            current - self.min_delta > reference
        } else {
            current + self.min_delta < reference
        }
    }
}

/// Parses `key=value,key=value` option lists of the CLI (`--early-stopping monitor=val_loss,patience=200`).
/// (`crate::util::parse_options`, with the callbacks' wording).
pub fn parse_options(spec: &str, what: &str) -> Result<std::collections::BTreeMap<String, String>> {
    crate::util::parse_options(spec, |kv| {
        Error::config(format!("{what}: '{kv}' is not key=value (e.g. monitor=val_loss)"))
    })
}

/// Reads option `key` as `T`, naming the callback and the value when it does not parse.
pub fn get<T: std::str::FromStr>(
    opts: &std::collections::BTreeMap<String, String>,
    key: &str,
    default: T,
    what: &str,
) -> Result<T> {
    crate::util::option(opts, key, default, |v| Error::config(format!("{what}: {key}={v} does not parse")))
}

/// Rejects keys outside `known`.
pub fn check_keys(opts: &std::collections::BTreeMap<String, String>, known: &[&str], what: &str) -> Result<()> {
    for k in opts.keys() {
        if !known.contains(&k.as_str()) {
            return Err(Error::config(format!(
                "{what} has no option '{k}'{}; its options: {}",
                crate::error::did_you_mean(k, known.iter().copied()),
                known.join(", ")
            )));
        }
    }
    Ok(())
}
