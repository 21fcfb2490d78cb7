//! One error type for the library. Each variant renders as one line that names the value and the fix.
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A data source that cannot be read or has the wrong shape or content.
    #[error("data {source_name}: {msg}")]
    Data { source_name: String, msg: String },
    /// A configuration value that is out of range or does not parse.
    #[error("config: {0}")]
    Config(String),
    /// A model name that the registry does not know.
    #[error("unknown model '{name}'{hint}; `tchzoo models` lists them")]
    UnknownModel { name: String, hint: String },
    /// A device that is not there.
    #[error("device: {0}")]
    Device(String),
    /// File I/O with the path that failed.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A state dict or checkpoint problem (names, shapes, formats).
    #[error("checkpoint {path}: {msg}")]
    Checkpoint { path: String, msg: String },
    /// A shape or value problem inside a model or the trainer.
    #[error("{0}")]
    Invalid(String),
    /// Training was stopped by Ctrl-C or SIGTERM; the message says how to resume.
    #[error("{0}")]
    Interrupted(String),
    /// Joining or talking to the other processes of a distributed run.
    #[error("distributed: {0}")]
    Distributed(String),
    /// An error raised by libtorch, reduced to its first line.
    #[error("torch: {0}")]
    Torch(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn data(source_name: impl std::fmt::Display, msg: impl Into<String>) -> Self {
        Error::Data { source_name: source_name.to_string(), msg: msg.into() }
    }
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io { path: path.as_ref().display().to_string(), source }
    }
    pub fn config(msg: impl Into<String>) -> Self {
        Error::Config(msg.into())
    }
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }
}

impl From<tch::TchError> for Error {
    fn from(e: tch::TchError) -> Self {
        // libtorch messages carry a C++ backtrace after the first line; keep the message only.
        let text = e.to_string();
        let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
        Error::Torch(first.to_string())
    }
}

mod ffi {
    extern "C" {
        // csrc/optim.cpp: frees a message strdup'd by any of the C++ shims.
        pub fn tz_free_message(message: *mut std::ffi::c_char);
    }
}

/// A C++ shim's result (csrc/amp.cpp, grad.cpp, optim.cpp: null, or the message of the exception it caught) as
/// a `Result`: the message becomes `Error::Torch` prefixed with `what`, and is freed here.
pub(crate) fn from_c(message: *mut std::ffi::c_char, what: &str) -> Result<()> {
    if message.is_null() {
        return Ok(());
    }
    // SAFETY: a non-null result is a NUL-terminated string from strdup, freed here once.
    let text = unsafe { std::ffi::CStr::from_ptr(message) }.to_string_lossy().into_owned();
    unsafe { ffi::tz_free_message(message) };
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
    Err(Error::Torch(format!("{what}: {first}")))
}

/// The closest candidates to `name` among `choices`, for "did you mean" hints.
pub fn did_you_mean<'a>(name: &str, choices: impl IntoIterator<Item = &'a str>) -> String {
    let mut scored: Vec<(usize, &str)> =
        choices.into_iter().map(|c| (edit_distance(&name.to_lowercase(), &c.to_lowercase()), c)).collect();
    scored.sort();
    let best: Vec<&str> = scored.iter().filter(|(d, _)| *d <= 3.max(name.len() / 3)).take(3).map(|(_, c)| *c).collect();
    if best.is_empty() {
        String::new()
    } else {
        format!(" (did you mean {}?)", best.iter().map(|c| format!("'{c}'")).collect::<Vec<_>>().join(", "))
    }
}

pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}
