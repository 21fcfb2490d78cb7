//! Keras' CSVLogger: one row per epoch (`epoch` then the logs, sorted by name), flushed every epoch.
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
        if let (true, Some(folder)) = (ctx.is_chief, self.path.parent()) {
            // A folder that cannot be made fails now, not after the first epoch.
            crate::util::create_dir_all(folder)?;
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
        // The log is rewritten whole through a temporary file and a rename (a few kB), so a kill mid-write never
        // leaves a torn row.
        let mut text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(Error::io(&self.path, e)),
        };
        let exists = !text.is_empty();
        let sep = self.separator.to_string();
        if !exists {
            text.push_str(&format!("epoch{sep}{}\n", keys.join(&sep)));
        }
        let row: Vec<String> = keys.iter().map(|k| logs.get(k).map(|v| v.to_string()).unwrap_or_default()).collect();
        text.push_str(&format!("{epoch}{sep}{}\n", row.join(&sep)));
        crate::util::write_atomic(&self.path, text.as_bytes())
    }
    fn load_state(&mut self, _state: &serde_json::Value) -> Result<()> {
        // A resumed run appends to the log it already has (cut back to the resumed epoch).
        self.append = true;
        self.resumed = true;
        Ok(())
    }
}
