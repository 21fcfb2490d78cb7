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
}

impl CsvLogger {
    pub fn new(path: impl Into<PathBuf>, append: bool) -> Self {
        CsvLogger { path: path.into(), separator: ',', append, keys: None }
    }
}

impl Callback for CsvLogger {
    fn name(&self) -> &'static str {
        "csv_logger"
    }
    fn on_train_begin(&mut self, _ctx: &mut CallbackContext) -> Result<()> {
        // In a distributed run only rank 0 writes the log.
        if !self.append && crate::dist::writes_files() {
            let _ = std::fs::remove_file(&self.path);
        }
        Ok(())
    }
    fn on_epoch_end(&mut self, epoch: usize, logs: &Logs, _ctx: &mut CallbackContext) -> Result<()> {
        if !crate::dist::writes_files() {
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
        // A resumed run appends to the log it already has.
        self.append = true;
        Ok(())
    }
}
