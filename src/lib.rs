//! tchzoo: a deep-learning trainer on libtorch (through `tch`) with a model zoo, Keras-style `fit` and callbacks,
//! and state dicts that move to and from Python PyTorch.
//!
//! The data path: config → dataset → seeded loader → model from the registry → trainer → run folder.
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod data;
pub mod device;
pub mod dist;
pub mod error;
pub mod inference;
pub mod models;
pub mod nn;
pub mod optim;
pub mod plot;
pub mod report;
pub mod run;
pub mod train;
pub mod util;

pub use error::{Error, Result};
