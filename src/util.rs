//! Small shared helpers.
use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// Writes a file through a temporary sibling and a rename, so a crash never leaves a half-written file
/// in place of a good one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    Ok(())
}

/// A name with `key=value` options: `moons:n_samples=500,noise=0.1`, `mlp:hidden=64x64`.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub source: String,
    pub options: std::collections::BTreeMap<String, String>,
}

impl Spec {
    /// `what` names the flag in messages ("data", "model").
    pub fn parse(spec: &str, what: &str) -> Result<Self> {
        let spec = spec.trim();
        if spec.is_empty() {
            return Err(Error::config(format!("empty {what} name")));
        }
        let (source, opts) = spec.split_once(':').unwrap_or((spec, ""));
        let options = parse_options(opts, |kv| {
            Error::config(format!("{what} option '{kv}' in '{spec}' is not key=value (e.g. name:key=value)"))
        })?;
        Ok(Spec { source: source.to_string(), options })
    }
}

/// Options by key, as `key=value,key=value` lists give them.
pub type Options = std::collections::BTreeMap<String, String>;

/// The one parser of `key=value,key=value` lists (a spec's options, a callback's flag); keys and values trimmed,
/// empty items skipped. `bad` words the error for an item without `=`.
pub fn parse_options(list: &str, bad: impl Fn(&str) -> Error) -> Result<Options> {
    let mut out = Options::new();
    for kv in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (k, v) = kv.split_once('=').ok_or_else(|| bad(kv))?;
        out.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(out)
}

/// Option `key` parsed as `T`, or `default` when it is absent; `bad(value)` words the error when it does not parse.
pub fn option<T: std::str::FromStr>(
    opts: &Options,
    key: &str,
    default: T,
    bad: impl FnOnce(&str) -> Error,
) -> Result<T> {
    match opts.get(key) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| bad(v)),
    }
}

/// `Read::read_exact` that stops at the end of the data: fills `buf` as far as the reader goes and returns how
/// many bytes it read (a short count means the data ended).
pub fn read_up_to<R: std::io::Read>(reader: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

thread_local! {
    static QUIET_PANICS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f`, turning a panic (libtorch raises them from tch's infallible calls) into an error whose message is
/// the panic's first line, and keeping the panic hook quiet meanwhile.
pub fn catch_torch<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    QUIET_PANICS.with(|q| q.set(true));
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    QUIET_PANICS.with(|q| q.set(false));
    out.map_err(|payload| {
        let text = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown error".into());
        first_line(&text)
    })
}

/// The first meaningful line of a libtorch message (tch wraps it as `Torch("…")` with a C++ backtrace).
pub fn first_line(text: &str) -> String {
    let text = text.trim_start_matches("called `Result::unwrap()` on an `Err` value: ");
    let text = text.trim_start_matches("Torch(\"");
    let line = text.split("\\n").next().unwrap_or(text);
    line.lines().next().unwrap_or(line).trim().trim_end_matches("\")").to_string()
}

/// A panic hook that prints one line (no backtrace), silent inside `catch_torch`.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        if QUIET_PANICS.with(|q| q.get()) {
            return;
        }
        let payload = info.payload();
        let text = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown error".into());
        eprintln!("error: internal error: {} (please report this)", first_line(&text));
    }));
}
