//! What a run tells its user, as values. The library does not print: each [`Message`] goes to the [`Reporter`]
//! its caller gave in an [`Output`] (the CLI's words and prints them, `-q` silences all but the warnings), and is dropped
//! when there is none. Errors are not messages: they are returned.
//!
//! Both name the settings they speak of by key, never by a front end's spelling: a text writes `⟨lr_mult⟩` for the
//! run config's `lr_mult`, and the front end words the key when it shows the text ([`name_settings`]: the CLI
//! writes `--lr-mult`, [`crate::Error`]'s `Display` writes `` `lr_mult` ``).
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
    /// An epoch's batches begin (for a progress bar; sent only to a reporter that [`Reporter::wants_progress`]).
    EpochBegin { epoch: usize, epochs: usize, batches: usize },
    /// Where the epoch is, a few times a second: batches done, the running mean loss (Keras' progbar), the mean
    /// gradient norm when clipping by norm, the learning rate, and the share of the time spent waiting for data.
    Batch { done: usize, loss: f64, grad_norm: Option<f64>, lr: Option<f64>, data_wait: Option<f64> },
    /// The epoch begun will not finish (the run was stopped or failed in it).
    EpochAbandoned,
}

impl Message {
    /// A problem the run went on despite (said even when quiet).
    pub fn is_warning(&self) -> bool {
        match self {
            Message::SkippedImages { .. } => true,
            Message::Note(text) => text.starts_with("warning:"),
            _ => false,
        }
    }
}

/// Receives the library's messages (the CLI's printer, a GUI, a test's recorder).
pub trait Reporter: Send + Sync {
    fn report(&self, message: &Message);
    /// Whether it shows progress within an epoch (a terminal's bar): only then does the library send
    /// `EpochBegin`, `Batch` and `EpochAbandoned`, and read the running loss from the device for them.
    fn wants_progress(&self) -> bool {
        false
    }
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
    /// Whether the run should report its progress within epochs: at `Auto`, to a reporter that shows it.
    pub fn wants_progress(&self) -> bool {
        self.verbosity == Verbosity::Auto && self.reporter.as_ref().is_some_and(|r| r.wants_progress())
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
pub struct Recorder {
    messages: std::sync::Mutex<Vec<Message>>,
    progress: bool,
}

impl Recorder {
    /// One that also asks for the progress within epochs.
    pub fn with_progress() -> Self {
        Recorder { progress: true, ..Default::default() }
    }
    pub fn messages(&self) -> Vec<Message> {
        self.messages.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

impl Reporter for Recorder {
    fn report(&self, message: &Message) {
        if let Ok(mut m) = self.messages.lock() {
            m.push(message.clone());
        }
    }
    fn wants_progress(&self) -> bool {
        self.progress
    }
}

/// The setting `key` as a text of the library writes it (`⟨lr_mult⟩`); a front end words it with [`name_settings`].
pub fn setting(key: &str) -> String {
    format!("{OPEN}{key}{CLOSE}")
}

const OPEN: char = '⟨';
const CLOSE: char = '⟩';

/// `text` with each setting `⟨key⟩` (a key is lowercase letters, digits and `_`) replaced by `name(key)`; anything
/// else, a lone bracket included, stays as it is.
pub fn name_settings(text: &str, name: impl Fn(&str) -> String) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(OPEN) {
        out.push_str(&rest[..start]);
        let after = &rest[start + OPEN.len_utf8()..];
        match after.find(CLOSE) {
            Some(end)
                if end > 0
                    && after[..end].bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') =>
            {
                out.push_str(&name(&after[..end]));
                rest = &after[end + CLOSE.len_utf8()..];
            }
            _ => {
                out.push(OPEN);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The keys of the settings `text` names, in order (tests check that a front end can word each of them).
pub fn settings_named(text: &str) -> Vec<String> {
    let keys = std::cell::RefCell::new(Vec::new());
    name_settings(text, |k| {
        keys.borrow_mut().push(k.to_string());
        String::new()
    });
    keys.into_inner()
}

/// How a text of the library reads without a front end: each setting as its config key, `` `lr_mult` ``.
pub fn plain_settings(text: &str) -> String {
    name_settings(text, |k| format!("`{k}`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_worded_by_the_front_end_and_nothing_else_is_touched() {
        let text = format!("{} 'x=a': the multiplier is not a number; or {} none", setting("lr_mult"), setting("lr"));
        assert_eq!(
            name_settings(&text, |k| format!("<{}>", k.to_uppercase())),
            "<LR_MULT> 'x=a': the multiplier is not a number; or <LR> none"
        );
        assert_eq!(plain_settings(&text), "`lr_mult` 'x=a': the multiplier is not a number; or `lr` none");
        assert_eq!(settings_named(&text), ["lr_mult", "lr"]);
        // A bracket that does not mark a key (a user's value, an unclosed one) is left as it is.
        for other in ["⟨Not A Key⟩ ⟨", "⟨⟩", "a ⟨b", "⟩ ⟨x-y⟩"] {
            assert_eq!(name_settings(other, |_| "!".into()), other);
        }
        assert_eq!(name_settings("⟨⟨lr⟩", |k| k.to_uppercase()), "⟨LR");
    }
}
