//! A data spec (`--data`, `--validation-data`) resolved once into what it names: [`DataSource`]. `RunConfig::resolve`
//! holds a run's as `Run::data` and `Run::validation_data`; the readers (`data::load_source`, `workers::for_run`,
//! `shards::for_run`, `inputs`) take the typed value and never parse the string again. `config.json` keeps the
//! user's string.
//!
//! Resolution is by syntax, with one look at the disk: a path that is a folder is asked whether it holds IDX or
//! CIFAR-10 files (`files::is_image_folder`), as the readers always asked, to tell an image folder (read lazily by
//! a run) from a folder read into memory. A path that does not exist resolves to [`DataSource::Path`]: whether it
//! exists is for the reader to say when the data is loaded (a finished run's folder can be read after its data
//! is gone).
use std::path::{Path, PathBuf};

use super::{files, generators, shards};
use crate::error::{Error, Result};
use crate::util::Options;

/// A folder format named by its prefix: `cifar10:DIR[,options]`, `mnist:DIR`, `fashion_mnist:DIR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Cifar10,
    Mnist,
    FashionMnist,
}

impl Format {
    pub const ALL: [Format; 3] = [Format::Cifar10, Format::Mnist, Format::FashionMnist];

    /// The prefix's name (`cifar10`).
    pub fn name(self) -> &'static str {
        match self {
            Format::Cifar10 => "cifar10",
            Format::Mnist => "mnist",
            Format::FashionMnist => "fashion_mnist",
        }
    }
}

/// A dataset named by name, not by a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Named {
    /// The embedded 8×8 digits.
    Digits,
    /// `pairs:path=FILE` (entity embeddings).
    Pairs,
    /// `series:path=FILE` (forecasting windows).
    Series,
    /// The digits read row by row as sequences.
    DigitRows,
    /// `text:path=FILE` (a corpus).
    Text,
    /// One of [`generators::NAMES`].
    Generator(&'static str),
}

impl Named {
    /// The names that are not generators, as a spec gives them.
    pub const OTHERS: [Named; 5] = [Named::Digits, Named::DigitRows, Named::Pairs, Named::Series, Named::Text];

    pub fn name(self) -> &'static str {
        match self {
            Named::Digits => "digits",
            Named::Pairs => "pairs",
            Named::Series => "series",
            Named::DigitRows => "digit_rows",
            Named::Text => "text",
            Named::Generator(g) => g,
        }
    }

    fn find(name: &str) -> Option<Named> {
        Named::OTHERS
            .into_iter()
            .find(|n| n.name() == name)
            .or_else(|| generators::NAMES.iter().find(|g| **g == name).map(|g| Named::Generator(g)))
    }
}

/// The options of tar shards: `shuffle=N` (the training stream's shuffle buffer) and `channels=1|3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ShardOptions {
    /// The shuffle buffer in samples (`None`: `shards::DEFAULT_BUFFER`).
    pub shuffle: Option<usize>,
    pub channels: Option<u32>,
}

/// What a data spec names, with its options parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum DataSource {
    /// WebDataset tar shards: a brace pattern or paths separated by spaces, all `.tar`.
    Shards { pattern: String, options: ShardOptions },
    /// A folder with one sub-folder of images per class: read lazily by a run (the only option it takes there is
    /// `channels=1|3`, checked by `workers::folder_channels`), into memory by `data::load_source`.
    ImageFolder { dir: PathBuf, options: Options },
    /// A folder named with its format's prefix (`cifar10:DIR`), read into memory.
    Format { format: Format, dir: PathBuf, options: Options },
    /// A named dataset: the digits, a generator, `pairs`, `series`, `digit_rows`, `text`.
    Named { name: Named, options: Options },
    /// A file, a folder read into memory (IDX, CIFAR-10), or a path that does not exist (an error when loaded).
    Path { path: PathBuf, options: Options },
}

impl DataSource {
    /// Resolves a data spec; errors are the spec's syntax (an option not `key=value`, a bad shard option). Cheap:
    /// nothing is read but, for a folder, its list of files.
    pub fn parse(spec: &str) -> Result<DataSource> {
        let trimmed = spec.trim();
        if trimmed.is_empty() {
            return Err(Error::config(
                "empty ⟨data⟩; give a generator (moons, circles, blobs, xor), digits, or a path",
            ));
        }
        // `cifar10:DIR[,options]`: the folder, then its options after a comma.
        for format in Format::ALL {
            if let Some(rest) = trimmed.strip_prefix(format.name()).and_then(|r| r.strip_prefix(':')) {
                let (dir, opts) = rest.split_once(',').unwrap_or((rest, ""));
                let whole = format!("{dir}:{opts}");
                let options = crate::util::parse_options(opts, |kv| bad_option(kv, whole.trim()))?;
                return Ok(DataSource::Format { format, dir: PathBuf::from(dir), options });
            }
        }
        // Only the text before the options decides: other readers' specs (`cifar10:PATH`) are not key=value lists.
        let spec_source = spec.split(':').next().unwrap_or_default();
        let (source, opts) = trimmed.split_once(':').unwrap_or((trimmed, ""));
        let options = crate::util::parse_options(opts, |kv| bad_option(kv, trimmed))?;
        if shards::is_shard_source(spec_source) {
            let (shuffle, channels) = shards::shard_options(source, &options)?;
            return Ok(DataSource::Shards { pattern: source.to_string(), options: ShardOptions { shuffle, channels } });
        }
        if let Some(name) = Named::find(source) {
            return Ok(DataSource::Named { name, options });
        }
        let path = PathBuf::from(source);
        if path.is_dir() && files::is_image_folder(&path)? {
            return Ok(DataSource::ImageFolder { dir: path, options });
        }
        Ok(DataSource::Path { path, options })
    }

    /// What the spec names, for messages: the name, the path or pattern, or the format's prefix.
    pub fn name(&self) -> String {
        match self {
            DataSource::Shards { pattern, .. } => pattern.clone(),
            DataSource::ImageFolder { dir, .. } => dir.display().to_string(),
            DataSource::Format { format, .. } => format.name().to_string(),
            DataSource::Named { name, .. } => name.name().to_string(),
            DataSource::Path { path, .. } => path.display().to_string(),
        }
    }

    /// The image folder this source is, with its options (`None`: another kind of source).
    pub fn image_folder(&self) -> Option<(&Path, &Options)> {
        match self {
            DataSource::ImageFolder { dir, options } => Some((dir, options)),
            _ => None,
        }
    }
}

/// `util::Spec::parse`'s message for an option that is not `key=value`.
fn bad_option(kv: &str, spec: &str) -> Error {
    Error::config(format!("data option '{kv}' in '{spec}' is not key=value (e.g. name:key=value)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> Options {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn message(spec: &str) -> String {
        DataSource::parse(spec).expect_err(spec).to_string()
    }

    #[test]
    fn each_kind_of_spec_resolves_to_its_variant() {
        let tmp = std::env::temp_dir().join(format!("tchzoo-source-{}", std::process::id()));
        let images = tmp.join("images");
        let idx = tmp.join("idx");
        std::fs::create_dir_all(images.join("cat")).unwrap();
        std::fs::create_dir_all(&idx).unwrap();
        std::fs::write(idx.join("train-images-idx3-ubyte"), b"").unwrap();
        let table = tmp.join("t.csv");
        std::fs::write(&table, "a,label\n1,0\n").unwrap();
        let s = |p: &Path| p.display().to_string();

        assert_eq!(
            DataSource::parse("moons:n_samples=50, noise=0.1").unwrap(),
            DataSource::Named {
                name: Named::Generator("moons"),
                options: opts(&[("n_samples", "50"), ("noise", "0.1")])
            }
        );
        for (spec, name) in [
            ("digits", Named::Digits),
            (" digit_rows ", Named::DigitRows),
            ("pairs:path=x.csv", Named::Pairs),
            ("series:path=s.csv", Named::Series),
            ("text:path=t.txt", Named::Text),
            ("synthetic", Named::Generator("synthetic")),
        ] {
            assert!(
                matches!(DataSource::parse(spec).unwrap(), DataSource::Named { name: n, .. } if n == name),
                "{spec}"
            );
        }
        assert_eq!(
            DataSource::parse("cifar10:data/c10,split=test").unwrap(),
            DataSource::Format { format: Format::Cifar10, dir: "data/c10".into(), options: opts(&[("split", "test")]) }
        );
        // A format's folder need not exist to resolve (loading says it is missing).
        assert_eq!(
            DataSource::parse("fashion_mnist:/nonexistent/fm").unwrap(),
            DataSource::Format { format: Format::FashionMnist, dir: "/nonexistent/fm".into(), options: opts(&[]) }
        );
        assert_eq!(
            DataSource::parse("s/train-{000..009}.tar:shuffle=50,channels=1").unwrap(),
            DataSource::Shards {
                pattern: "s/train-{000..009}.tar".into(),
                options: ShardOptions { shuffle: Some(50), channels: Some(1) }
            }
        );
        assert_eq!(
            DataSource::parse("a.tar b.tar").unwrap(),
            DataSource::Shards { pattern: "a.tar b.tar".into(), options: ShardOptions::default() }
        );
        assert_eq!(
            DataSource::parse(&format!("{}:channels=1", s(&images))).unwrap(),
            DataSource::ImageFolder { dir: images.clone(), options: opts(&[("channels", "1")]) }
        );
        // A folder of IDX files is read into memory: a path, not an image folder.
        assert_eq!(DataSource::parse(&s(&idx)).unwrap(), DataSource::Path { path: idx.clone(), options: opts(&[]) });
        assert_eq!(
            DataSource::parse(&format!("{}:label=label", s(&table))).unwrap(),
            DataSource::Path { path: table.clone(), options: opts(&[("label", "label")]) }
        );
        // A path that is gone resolves (a finished run's folder stays readable); loading it is the error.
        let gone = tmp.join("gone");
        assert_eq!(DataSource::parse(&s(&gone)).unwrap(), DataSource::Path { path: gone.clone(), options: opts(&[]) });
        let err = crate::data::load_source(&DataSource::parse(&s(&gone)).unwrap(), 0).unwrap_err().to_string();
        assert!(err.contains("no such dataset or path"), "{err}");
        let err = crate::data::load("mnist:/nonexistent/m", 0).unwrap_err().to_string();
        assert!(err.contains("mnist needs a folder of that dataset's files"), "{err}");
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn bad_specs_are_refused_with_what_to_do() {
        assert!(message("  ").contains("empty `data`; give a generator"));
        let m = message("moons:n_samples");
        assert!(m.contains("data option 'n_samples' in 'moons:n_samples' is not key=value"), "{m}");
        let m = message("cifar10:data/c10,split");
        assert!(m.contains("data option 'split' in 'data/c10:split' is not key=value"), "{m}");
        let m = message("s-{0..3}.tar:shuffle=many");
        assert!(m.contains("option shuffle=many: give the shuffle buffer in samples"), "{m}");
        let m = message("s.tar:size=32");
        assert!(m.contains("option 'size' unknown for tar shards"), "{m}");
        let m = message("s.tar:channels=2");
        assert!(m.contains("option channels=2: give 1 (grey) or 3 (RGB)"), "{m}");
    }

    #[test]
    fn a_run_resolves_its_data_and_validation_data() {
        let c = crate::config::RunConfig {
            data: "moons".into(),
            validation_data: Some("circles:noise=0.1".into()),
            ..Default::default()
        };
        let run = c.resolve().unwrap();
        assert_eq!(run.data, DataSource::Named { name: Named::Generator("moons"), options: opts(&[]) });
        assert_eq!(
            run.validation_data,
            Some(DataSource::Named { name: Named::Generator("circles"), options: opts(&[("noise", "0.1")]) })
        );
        // The recorded config keeps the user's strings.
        assert_eq!(run.config.validation_data.as_deref(), Some("circles:noise=0.1"));
        let bad = crate::config::RunConfig { validation_data: Some("x.tar:shuffle=-1".into()), ..Default::default() };
        let m = bad.resolve().unwrap_err().to_string();
        assert!(m.contains("option shuffle=-1"), "{m}");
    }
}
