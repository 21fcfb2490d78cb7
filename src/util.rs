//! Small shared helpers.
use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// Writes a file through a temporary sibling and a rename, so a crash never leaves a half-written file
/// in place of a good one (see [`write_atomic_with`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |tmp| {
        let mut f = std::fs::File::create(tmp).map_err(|e| Error::io(tmp, e))?;
        f.write_all(bytes).map_err(|e| Error::io(tmp, e))
    })
}

static TMP_COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The one atomic writer of run folders and checkpoints: `write` fills a temporary sibling of `path`
/// (`.NAME.tmpPID-N`), which is synced, renamed over `path`, and the folder synced, so the rename itself survives a
/// power cut. On any failure the temporary file is removed and `path` keeps its previous content.
pub fn write_atomic_with(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    create_dir_all(dir)?;
    if path.is_dir() {
        return Err(Error::io(path, std::io::Error::other("is a directory")));
    }
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let n = TMP_COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.tmp{}-{n}", std::process::id()));
    let result = write(&tmp).map_err(|e| e.naming(&tmp, path)).and_then(|()| {
        std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(|e| Error::io(path, e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return result;
    }
    sync_dir(dir).map_err(|e| Error::io(dir, e))
}

/// `std::fs::create_dir_all`, with an error that names the file standing where a folder of the path should be.
pub fn create_dir_all(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| match dir.ancestors().find(|a| a.exists()) {
        Some(file) if !file.is_dir() => Error::io(
            file,
            std::io::Error::other(format!(
                "is a file, where {} needs a folder; move it, or choose another path",
                dir.display()
            )),
        ),
        _ => Error::io(dir, e),
    })
}

/// fsync of a folder, which makes a rename or a removal in it durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
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

/// The one parser of `key=value,key=value` lists (a spec's options, a callback's or trainer feature's flag), in the
/// user's order: keys and values trimmed, empty items skipped. An item without `=` is the value of `bare_key` when
/// the list has one (`--clip-grad-norm 1.0,norm_type=inf`), else `bad` words its error.
pub fn parse_pairs(list: &str, bare_key: Option<&str>, bad: impl Fn(&str) -> Error) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for kv in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (k, v) = match (kv.split_once('='), bare_key) {
            (Some((k, v)), _) => (k.trim(), v.trim()),
            (None, Some(key)) => (key, kv),
            (None, None) => return Err(bad(kv)),
        };
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

/// [`parse_pairs`] by key (a later item wins).
pub fn parse_options(list: &str, bad: impl Fn(&str) -> Error) -> Result<Options> {
    Ok(parse_pairs(list, None, bad)?.into_iter().collect())
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

/// Whether a panic now happens inside [`catch_torch`], which turns it into an error (a panic hook says nothing
/// then).
pub fn panics_are_caught() -> bool {
    QUIET_PANICS.with(|q| q.get())
}

/// JSON that keeps non-finite numbers, in the convention of Python's `json` module (which `json.load` and pandas
/// read): the bare tokens `NaN`, `Infinity` and `-Infinity`. serde_json writes them as `null` and cannot read them
/// back, so a value serialised with [`json::f64_value`] (or [`json::f64_lists`]) goes out as a marked string that
/// [`json::to_string_pretty`] turns into the bare token, and [`json::from_str`] turns the bare tokens back into
/// marked strings before parsing. `null` reads as NaN (files written before this convention).
pub mod json {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    const MARK: char = '\u{1}';
    const TOKENS: [&str; 3] = ["-Infinity", "Infinity", "NaN"];

    /// A float that serialises non-finite values as marked strings.
    #[derive(Debug, Clone, Copy)]
    pub struct F64(pub f64);

    fn token(v: f64) -> &'static str {
        if v.is_nan() {
            "NaN"
        } else if v > 0.0 {
            "Infinity"
        } else {
            "-Infinity"
        }
    }

    impl Serialize for F64 {
        fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
            if self.0.is_finite() {
                s.serialize_f64(self.0)
            } else {
                s.serialize_str(&format!("{MARK}{}", token(self.0)))
            }
        }
    }

    impl<'de> Deserialize<'de> for F64 {
        fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<F64, D::Error> {
            struct V;
            impl serde::de::Visitor<'_> for V {
                type Value = F64;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a number, NaN, Infinity or -Infinity")
                }
                fn visit_f64<E>(self, v: f64) -> std::result::Result<F64, E> {
                    Ok(F64(v))
                }
                fn visit_i64<E>(self, v: i64) -> std::result::Result<F64, E> {
                    Ok(F64(v as f64))
                }
                fn visit_u64<E>(self, v: u64) -> std::result::Result<F64, E> {
                    Ok(F64(v as f64))
                }
                fn visit_unit<E>(self) -> std::result::Result<F64, E> {
                    Ok(F64(f64::NAN))
                }
                fn visit_none<E>(self) -> std::result::Result<F64, E> {
                    Ok(F64(f64::NAN))
                }
                fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<F64, E> {
                    match v.trim_start_matches(MARK) {
                        "NaN" => Ok(F64(f64::NAN)),
                        "Infinity" => Ok(F64(f64::INFINITY)),
                        "-Infinity" => Ok(F64(f64::NEG_INFINITY)),
                        _ => Err(E::invalid_value(serde::de::Unexpected::Str(v), &self)),
                    }
                }
            }
            d.deserialize_any(V)
        }
    }

    /// `#[serde(with = "crate::util::json::f64_value")]` for an `f64` field.
    pub mod f64_value {
        use super::*;
        pub fn serialize<S: Serializer>(v: &f64, s: S) -> std::result::Result<S::Ok, S::Error> {
            F64(*v).serialize(s)
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
            F64::deserialize(d).map(|v| v.0)
        }
    }

    /// `#[serde(with = "crate::util::json::f64_lists")]` for a `BTreeMap<String, Vec<f64>>` field.
    pub mod f64_lists {
        use std::collections::BTreeMap;

        use super::*;
        pub fn serialize<S: Serializer>(v: &BTreeMap<String, Vec<f64>>, s: S) -> std::result::Result<S::Ok, S::Error> {
            let m: BTreeMap<&String, Vec<F64>> =
                v.iter().map(|(k, l)| (k, l.iter().map(|x| F64(*x)).collect())).collect();
            m.serialize(s)
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> std::result::Result<BTreeMap<String, Vec<f64>>, D::Error> {
            let m = BTreeMap::<String, Vec<F64>>::deserialize(d)?;
            Ok(m.into_iter().map(|(k, l)| (k, l.into_iter().map(|x| x.0).collect())).collect())
        }
    }

    /// Pretty JSON with the marked non-finite values as bare `NaN`, `Infinity`, `-Infinity`.
    pub fn to_string_pretty<T: Serialize>(v: &T) -> serde_json::Result<String> {
        let mut text = serde_json::to_string_pretty(v)?;
        for t in TOKENS {
            text = text.replace(&format!("\"\\u0001{t}\""), t);
        }
        Ok(text)
    }

    /// Parses JSON that may hold the bare tokens `NaN`, `Infinity`, `-Infinity` outside strings.
    pub fn from_str<T: serde::de::DeserializeOwned>(text: &str) -> serde_json::Result<T> {
        let mut out = String::with_capacity(text.len());
        let (mut in_string, mut escaped) = (false, false);
        let mut rest = text;
        while let Some(c) = rest.chars().next() {
            if in_string {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == '"' {
                    in_string = false;
                }
            } else if c == '"' {
                in_string = true;
            } else if let Some(t) = TOKENS.iter().find(|t| rest.starts_with(**t)) {
                out.push_str(&format!("\"\\u0001{t}\""));
                rest = &rest[t.len()..];
                continue;
            }
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
        serde_json::from_str(&out)
    }
}

/// Bytes this process may still allocate: the smaller of the machine's available memory (`MemAvailable`) and what
/// its address-space limit (`ulimit -v`, `prlimit --as`) leaves above its current size. `u64::MAX` when unknown.
pub fn memory_available() -> u64 {
    let field = |text: &str, key: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(key))?;
        line[key.len()..].split_whitespace().next()?.parse().ok()
    };
    let mut budget = u64::MAX;
    if let Ok(meminfo) = std::fs::read_to_string("/proc/meminfo") {
        if let Some(kb) = field(&meminfo, "MemAvailable:") {
            budget = budget.min(kb.saturating_mul(1024));
        }
    }
    if let Ok(limits) = std::fs::read_to_string("/proc/self/limits") {
        // "Max address space  <soft> <hard> bytes"
        if let Some(soft) = field(&limits, "Max address space") {
            let used = std::fs::read_to_string("/proc/self/status")
                .ok()
                .and_then(|s| field(&s, "VmSize:"))
                .map_or(0, |kb| kb.saturating_mul(1024));
            budget = budget.min(soft.saturating_sub(used));
        }
    }
    budget
}

/// Fails in one line when `bytes` (what `what` would allocate) exceed [`memory_available`], before allocating.
pub fn check_memory(bytes: u64, what: impl std::fmt::Display) -> Result<()> {
    let have = memory_available();
    if bytes > have {
        let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
        return Err(Error::invalid(format!(
            "{what} would need {:.2} GiB of memory, more than the {:.2} GiB this process can still allocate",
            gib(bytes),
            gib(have)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod option_list_tests {
    use super::*;

    #[test]
    fn pairs_keep_order_take_a_bare_value_and_refuse_one_without_a_key() {
        let bad = |kv: &str| Error::config(format!("'{kv}' is not key=value"));
        let pairs = parse_pairs(" 1.5 , norm_type = inf,,", Some("max_norm"), bad).unwrap();
        assert_eq!(pairs, [("max_norm".to_string(), "1.5".to_string()), ("norm_type".into(), "inf".into())]);
        let ordered = parse_pairs("layer4=2,classifier=10", None, bad).unwrap();
        assert_eq!(ordered[0].0, "layer4");
        assert!(parse_pairs("a=1,b", None, bad).unwrap_err().to_string().contains("'b' is not key=value"));
        let by_key = parse_options("a=1,a=2", bad).unwrap();
        assert_eq!(by_key["a"], "2", "a later item wins");
    }
}
