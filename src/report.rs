//! What a run tells its user, as values. The library does not print: each [`Message`] goes to the [`Reporter`]
//! its caller gave in an [`Output`] (the CLI's words and prints them, `-q` silences all but the warnings), and is dropped
//! when there is none. Errors are not messages: they are returned.
use std::fmt;
use std::sync::Arc;

pub use crate::train::progress::Verbosity;

/// One thing the library has to say.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// Something done on the user's behalf that they should know of: a partial weights load, the pretrained and
    /// frozen tensors, the weights of an unfinished run's last epoch used.
    Note(String),
    /// A problem that did not stop the run: `count` images of an epoch that did not decode (`first` of them).
    SkippedImages { count: usize, first: String },
    /// A callback's Keras-style line (`verbose=1`): a checkpoint saved, early stopping, the lr reduced.
    Callback(String),
    /// The end of an epoch: Keras' `Epoch 3/30 - loss: … - 1.2s` line.
    Epoch(String),
    /// What the run is about to do: the data it found, the learning rate the range test chose.
    Summary(String),
}

impl Message {
    /// A problem the run went on despite (said even when quiet).
    pub fn is_warning(&self) -> bool {
        matches!(self, Message::SkippedImages { .. })
    }
}

/// Receives the library's messages (the CLI's printer, a GUI, a test's recorder).
pub trait Reporter: Send + Sync {
    fn report(&self, message: &Message);
}

/// Where a run's messages go, and how much of them: the verbosity decides the progress bar and, when `Silent`,
/// silences every message but the warnings; without a reporter the messages are dropped.
#[derive(Clone)]
pub struct Output {
    pub verbosity: Verbosity,
    reporter: Option<Arc<dyn Reporter>>,
}

impl Output {
    pub fn new(verbosity: Verbosity, reporter: Arc<dyn Reporter>) -> Self {
        Output { verbosity, reporter: Some(reporter) }
    }
    /// Nothing said, no bar.
    pub fn silent() -> Self {
        Output { verbosity: Verbosity::Silent, reporter: None }
    }
    pub fn is_silent(&self) -> bool {
        self.verbosity == Verbosity::Silent
    }
    /// The same reporter with another verbosity (a distributed run's other ranks are silent).
    pub fn with_verbosity(&self, verbosity: Verbosity) -> Self {
        Output { verbosity, reporter: self.reporter.clone() }
    }
    /// Hands `message` to the reporter; a silent output keeps only the warnings (a quiet run still says that it
    /// skipped data).
    pub fn say(&self, message: Message) {
        if let Some(r) = &self.reporter {
            if !self.is_silent() || message.is_warning() {
                r.report(&message);
            }
        }
    }
}

/// A verbosity alone: the progress bar as it says, the messages dropped (library callers and tests).
impl From<Verbosity> for Output {
    fn from(verbosity: Verbosity) -> Self {
        Output { verbosity, reporter: None }
    }
}

impl Default for Output {
    fn default() -> Self {
        Output::silent()
    }
}

impl fmt::Debug for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Output")
            .field("verbosity", &self.verbosity)
            .field("reporter", &self.reporter.is_some())
            .finish()
    }
}

/// Keeps every message (tests, and callers that show them later).
#[derive(Default)]
pub struct Recorder(std::sync::Mutex<Vec<Message>>);

impl Recorder {
    pub fn messages(&self) -> Vec<Message> {
        self.0.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

impl Reporter for Recorder {
    fn report(&self, message: &Message) {
        if let Ok(mut m) = self.0.lock() {
            m.push(message.clone());
        }
    }
}
