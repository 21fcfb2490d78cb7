//! Keras' CSVLogger: one row per epoch (`epoch` then the logs, sorted by name), flushed every epoch.
use std::io::Write;
use std::path::PathBuf;

use super::{Callback, CallbackContext, Logs};
use crate::error::{Error, Result};

pub struct CsvLogger {
    pub path: PathBuf,
    pub separator: char,
    pub append: bool,
    keys: Option<Vec<String>>,
    /// Set by `load_state`: the log is cut back to the resumed epoch at train begin.
    resumed: bool,
}

impl CsvLogger {
    pub fn new(path: impl Into<PathBuf>, append: bool) -> Self {
        CsvLogger { path: path.into(), separator: ',', append, keys: None, resumed: false }
    }
}

impl CsvLogger {
    /// Keeps the header and the rows of epochs `0..epochs`.
    fn truncate(&self, epochs: usize) -> Result<()> {
        let Ok(text) = std::fs::read_to_string(&self.path) else { return Ok(()) };
        let mut lines = text.lines();
        let Some(header) = lines.next() else { return Ok(()) };
        let mut out = format!("{header}\n");
        let mut dropped = false;
        for line in lines {
            let epoch = line.split(self.separator).next().and_then(|e| e.trim().parse::<usize>().ok());
            if epoch.is_some_and(|e| e < epochs) {
                out.push_str(line);
                out.push('\n');
            } else {
                dropped = true;
            }
        }
        if dropped {
            crate::util::write_atomic(&self.path, out.as_bytes())?;
        }
        Ok(())
    }
}

impl Callback for CsvLogger {
    fn name(&self) -> &'static str {
        "csv_logger"
    }
    fn on_train_begin(&mut self, ctx: &mut CallbackContext) -> Result<()> {
        if self.resumed && ctx.is_chief {
            // A kill between this row and the resume state leaves rows of epochs the resumed run repeats.
            self.truncate(ctx.history.len())?;
        }
        // In a distributed run only rank 0 writes the log.
        if !self.append && ctx.is_chief {
            let _ = std::fs::remove_file(&self.path);
        }
        Ok(())
    }
    fn on_epoch_end(&mut self, epoch: usize, logs: &Logs, ctx: &mut CallbackContext) -> Result<()> {
        if !ctx.is_chief {
            return Ok(());
        }
        let keys = self.keys.get_or_insert_with(|| logs.keys().cloned().collect());
        let exists = self.path.exists() && std::fs::metadata(&self.path).map(|m| m.len() > 0).unwrap_or(false);
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| Error::io(&self.path, e))?;
        let sep = self.separator.to_string();
        let mut text = String::new();
        if !exists {
            text.push_str(&format!("epoch{sep}{}\n", keys.join(&sep)));
        }
        let row: Vec<String> = keys.iter().map(|k| logs.get(k).map(|v| v.to_string()).unwrap_or_default()).collect();
        text.push_str(&format!("{epoch}{sep}{}\n", row.join(&sep)));
        f.write_all(text.as_bytes()).and_then(|_| f.flush()).map_err(|e| Error::io(&self.path, e))
    }
    fn load_state(&mut self, _state: &serde_json::Value) -> Result<()> {
        // A resumed run appends to the log it already has (cut back to the resumed epoch).
        self.append = true;
        self.resumed = true;
        Ok(())
    }
}
