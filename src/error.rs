//! One error type for the library. Each variant renders as one line that names the value and the fix.
use std::path::Path;

/// Settings are named by key in the messages (`⟨lr_mult⟩`, see [`crate::report::name_settings`]): `Display` words
/// them as config keys (`` `lr_mult` ``), the CLI as its flags (`--lr-mult`), and `{:#}` keeps them marked for an
/// error wrapped in another's message.
#[derive(Debug)]
pub enum Error {
    /// A data source that cannot be read or has the wrong shape or content.
    Data { source_name: String, msg: String },
    /// A configuration value that is out of range or does not parse.
    Config(String),
    /// A model name that the registry does not know.
    UnknownModel { name: String, hint: String },
    /// A device that is not there.
    Device(String),
    /// File I/O with the path that failed.
    Io { path: String, source: std::io::Error },
    /// A state dict or checkpoint problem (names, shapes, formats).
    Checkpoint { path: String, msg: String },
    /// A shape or value problem inside a model or the trainer.
    Invalid(String),
    /// Training was stopped by Ctrl-C or SIGTERM; the message says how to resume.
    Interrupted(String),
    /// Joining or talking to the other processes of a distributed run.
    Distributed(String),
    /// An error raised by libtorch, reduced to its first line.
    Torch(String),
}

impl Error {
    /// The one-line message with its settings still marked `⟨key⟩`.
    pub fn marked(&self) -> String {
        match self {
            Error::Data { source_name, msg } => format!("data {source_name}: {msg}"),
            Error::Config(msg) => format!("config: {msg}"),
            Error::UnknownModel { name, hint } => format!("unknown model '{name}'{hint}; `tchzoo models` lists them"),
            Error::Device(msg) => format!("device: {msg}"),
            Error::Io { path, source } => format!("{path}: {}", io_words(source)),
            Error::Checkpoint { path, msg } => format!("checkpoint {path}: {msg}"),
            Error::Invalid(msg) | Error::Interrupted(msg) => msg.clone(),
            Error::Distributed(msg) => format!("distributed: {msg}"),
            Error::Torch(msg) => format!("torch: {msg}"),
        }
    }

    /// The same error with the path `from` named as `to` wherever it appears (a temporary file reported under the
    /// name the user gave).
    pub fn naming(self, from: &Path, to: &Path) -> Error {
        let (from, to) = (from.display().to_string(), to.display().to_string());
        let fix = |s: String| s.replace(&from, &to);
        match self {
            Error::Data { source_name, msg } => Error::Data { source_name: fix(source_name), msg: fix(msg) },
            Error::Config(msg) => Error::Config(fix(msg)),
            Error::Device(msg) => Error::Device(fix(msg)),
            Error::Io { path, source } => Error::Io { path: fix(path), source },
            Error::Checkpoint { path, msg } => Error::Checkpoint { path: fix(path), msg: fix(msg) },
            Error::Invalid(msg) => Error::Invalid(fix(msg)),
            Error::Torch(msg) => Error::Torch(fix(msg)),
            other => other,
        }
    }

    /// The message with each setting worded by `name` (the CLI passes its flag names).
    pub fn words(&self, name: impl Fn(&str) -> String) -> String {
        crate::report::name_settings(&self.marked(), name)
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if f.alternate() {
            f.write_str(&self.marked())
        } else {
            f.write_str(&crate::report::plain_settings(&self.marked()))
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// An I/O error in words: the system's reason without its "(os error N)", and what to do where the kind says it.
fn io_words(e: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    let text = e.to_string();
    let reason = match text.rfind(" (os error ") {
        Some(at) if text.ends_with(')') => &text[..at],
        _ => text.as_str(),
    };
    let hint = match e.kind() {
        K::NotFound => "check the path",
        K::PermissionDenied => "check its permissions, or choose another path",
        K::AlreadyExists => "choose another path",
        K::StorageFull | K::QuotaExceeded => "free some disk space, or choose another disk",
        K::ReadOnlyFilesystem => "choose a writable place",
        K::NotADirectory => "a part of the path is a file, not a folder",
        K::IsADirectory => "give a file, not a folder",
        _ => return reason.to_string(),
    };
    format!("{reason}; {hint}")
}

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
