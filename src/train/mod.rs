//! Training: `fit`, `evaluate`, `predict` with Keras' meaning, metrics, history and callbacks.
pub mod amp;
pub mod callbacks;
pub mod cuda_graph;
pub mod features;
pub mod history;
pub mod loggers;
pub mod lr_find;
pub mod metrics;
pub mod progress;
pub mod resume;
pub mod run_dir;
pub mod swa;
pub mod tensorboard;
pub mod trainer;
pub mod transfer;

pub use callbacks::{Callback, CallbackContext, Logs};
pub use history::History;
pub use metrics::{Loss, Metric};
pub use trainer::{FitConfig, Trainer};
