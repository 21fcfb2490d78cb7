//! Sequences for the recurrent models: time-series windows and tokenised text.
//!
//! **Windows** (the seed's forecaster data): a series [T, F] becomes inputs [N, n_seq, F] and targets
//! [N, n_pred · F] (the next `n_pred` steps, flat). Windows stay in time order, so Keras' `validation_split` (the
//! last fraction, before shuffling) is a split by time; the scaling is fitted on the training part only.
//!
//! - `series:path=FILE[,column=NAME(+NAME…),n_seq=12,n_pred=1,scale=minmax|standard|none,holdout=0.2,part=all|train|val]`:
//!   a CSV column (default the last) as a series. `holdout` is the fraction of windows kept out of the scaler's
//!   fit, the last ones: give the same value as `--validation-split`, or use `part=train` for `--data` and
//!   `part=val` for `--validation-data`. E.g. statsmodels' yearly sunspots, where statsmodels is installed:
//!   `python -c "import statsmodels.api as sm; sm.datasets.sunspots.load_pandas().data.to_csv('data/sunspots.csv', index=False)"`
//!   then `series:path=data/sunspots.csv,column=SUNACTIVITY,n_seq=12`.
//! - `digit_rows[:n_seq=5,n_pred=3]`: real sequences that need no download — scikit-learn's 1,797 handwritten
//!   digits (embedded) read top to bottom as 8 steps of 8 pixels (scaled by the fixed /16, nothing fitted): the
//!   first `n_seq` rows forecast the next `n_pred`. `digit_rows:task=classification` gives all 8 rows with the
//!   digit as the label (sequential digit classification).
//!
//! **Text** (the seed's `Embedding(input_dim, output_dim, input_length)` example):
//! `text:path=FILE[,text=COLUMN,label=COLUMN,vocab=1000,length=50,pad=pre|post,truncate=pre|post,holdout=0.2,part=all|train|val]`.
//! Keras' `Tokenizer` (lower case, punctuation removed, split on spaces), a [`Vocabulary`] of the `vocab` most
//! frequent words of the training part (ties: first seen first) indexed from 2 (0 = padding, 1 = a word out of the
//! vocabulary), then Keras' `pad_sequences` to `length` (padding and truncating at the front by default). Inputs
//! are int64 [N, length]; the text models take `vocab=` the same number. String labels become classes in sorted
//! order. Rows are used in file order: shuffle the file if it is sorted.
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use tch::{Kind, Tensor};

use super::files::{bad_opt, check_options, parse_opt};
use super::pairs::read_csv;
use super::{Dataset, Task};
use crate::error::{did_you_mean, Error, Result};

pub const SERIES_OPTIONS: &[&str] = &["path", "column", "n_seq", "n_pred", "scale", "holdout", "part"];
pub const DIGIT_ROWS_OPTIONS: &[&str] = &["n_seq", "n_pred", "task"];
pub const TEXT_OPTIONS: &[&str] = &["path", "text", "label", "vocab", "length", "pad", "truncate", "holdout", "part"];

/// Sliding windows over `series` [T, F]: inputs [N, n_seq, F] and targets [N, n_pred · F], N = T − n_seq − n_pred + 1.
pub fn windows(series: &Tensor, n_seq: i64, n_pred: i64) -> Result<(Tensor, Tensor)> {
    let size = series.size();
    if size.len() != 2 {
        return Err(Error::invalid(format!("windows: a series of shape [T, F], got {size:?}")));
    }
    if n_seq < 1 || n_pred < 1 {
        return Err(Error::config(format!("n_seq={n_seq} and n_pred={n_pred} must be ≥ 1")));
    }
    let (t, f) = (size[0], size[1]);
    let n = t - n_seq - n_pred + 1;
    if n < 1 {
        return Err(Error::config(format!(
            "a series of {t} steps has no window of {n_seq} inputs + {n_pred} targets; shorten n_seq or n_pred"
        )));
    }
    // unfold: [N, F, n_seq + n_pred] → [N, n_seq + n_pred, F]
    let all = series.unfold(0, n_seq + n_pred, 1).permute([0, 2, 1]).contiguous();
    let xs = all.narrow(1, 0, n_seq).contiguous();
    let ys = all.narrow(1, n_seq, n_pred).reshape([n, n_pred * f]);
    Ok((xs, ys))
}

/// How a series is scaled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScaleKind {
    /// To [0, 1] over the fitted part (scikit-learn's MinMaxScaler).
    MinMax,
    /// To mean 0, standard deviation 1 over the fitted part (StandardScaler).
    Standard,
    None,
}

/// A per-feature affine scaling `(x − shift) / scale`, fitted on part of a series.
#[derive(Debug)]
pub struct Scaler {
    pub kind: ScaleKind,
    pub shift: Tensor,
    pub scale: Tensor,
}

impl Scaler {
    /// Fits on `fit_part` [T, F].
    pub fn fit(kind: ScaleKind, fit_part: &Tensor) -> Scaler {
        let f = fit_part.size()[1];
        let ones = Tensor::ones([f], (Kind::Float, fit_part.device()));
        let (shift, scale) = match kind {
            ScaleKind::MinMax => {
                let lo = fit_part.amin(0, false);
                let range = fit_part.amax(0, false) - &lo;
                (lo, range.where_self(&range.gt(0.0), &ones))
            }
            ScaleKind::Standard => {
                let sd = fit_part.std_correction(0, 0, false);
                (fit_part.mean_dim(0, false, Kind::Float), sd.where_self(&sd.gt(0.0), &ones))
            }
            ScaleKind::None => (ones.zeros_like(), ones),
        };
        Scaler { kind, shift, scale }
    }
    /// `(x − shift) / scale` over the last dimension (F features, or n_pred·F flat targets).
    pub fn transform(&self, xs: &Tensor) -> Tensor {
        let (shift, scale) = self.expand(xs);
        (xs - shift) / scale
    }
    pub fn inverse(&self, xs: &Tensor) -> Tensor {
        let (shift, scale) = self.expand(xs);
        xs * scale + shift
    }
    fn expand(&self, xs: &Tensor) -> (Tensor, Tensor) {
        let last = xs.size().last().copied().unwrap_or(1);
        let f = self.shift.size()[0];
        let reps = (last / f).max(1);
        (self.shift.repeat([reps]).to_device(xs.device()), self.scale.repeat([reps]).to_device(xs.device()))
    }
}

/// Which windows a loader returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    All,
    Train,
    Val,
}

fn parse_part(source: &str, options: &BTreeMap<String, String>) -> Result<Part> {
    match options.get("part").map(|s| s.trim().to_ascii_lowercase()).as_deref() {
        None | Some("all") => Ok(Part::All),
        Some("train") => Ok(Part::Train),
        Some("val") | Some("validation") => Ok(Part::Val),
        Some(v) => Err(bad_opt(source, "part", v, "all, train or val")),
    }
}

/// Held-out count of `n`, rounded as `Dataset::split_validation` rounds, so that `holdout` = `--validation-split`
/// gives the same split.
fn held_out(source: &str, n: usize, holdout: f64) -> Result<usize> {
    if !(0.0..1.0).contains(&holdout) {
        return Err(bad_opt(source, "holdout", &holdout.to_string(), "a fraction in [0, 1), e.g. 0.2"));
    }
    let k = ((n as f64) * holdout).round() as usize;
    if k >= n {
        return Err(Error::data(source, format!("holdout={holdout} of {n} samples leaves none for training")));
    }
    Ok(k)
}

fn select_part(data: Dataset, part: Part, n_val: usize) -> Result<Dataset> {
    let n = data.len();
    match part {
        Part::All => Ok(data),
        Part::Train => Ok(data.slice(0, n - n_val)),
        Part::Val if n_val == 0 => Err(Error::data(&data.name, "part=val with holdout=0 is empty; set holdout=0.2")),
        Part::Val => Ok(data.slice(n - n_val, n)),
    }
}

/// The `series` data spec.
pub fn load_series(options: &BTreeMap<String, String>) -> Result<Dataset> {
    check_options("series", options, SERIES_OPTIONS)?;
    let path = options.get("path").ok_or_else(|| {
        Error::data("series", "give the CSV as path=FILE, e.g. series:path=data/sunspots.csv,column=SUNACTIVITY")
    })?;
    let source = path.as_str();
    let (header, rows) = read_csv(Path::new(path))?;
    let columns: Vec<usize> = match options.get("column") {
        None => vec![header.len() - 1],
        Some(spec) => spec
            .split('+')
            .map(|c| {
                let c = c.trim();
                header.iter().position(|h| h == c || h.eq_ignore_ascii_case(c)).ok_or_else(|| {
                    Error::data(
                        source,
                        format!(
                            "no column '{c}'{}; the columns are: {}",
                            did_you_mean(c, header.iter().map(String::as_str)),
                            header.join(", ")
                        ),
                    )
                })
            })
            .collect::<Result<_>>()?,
    };
    let mut values = Vec::with_capacity(rows.len() * columns.len());
    for (line, fields) in &rows {
        for &c in &columns {
            let cell = fields[c].trim();
            let v: f32 = cell.parse().ok().filter(|v: &f32| v.is_finite()).ok_or_else(|| {
                Error::data(source, format!("line {line}, column '{}': '{cell}' is not a number", header[c]))
            })?;
            values.push(v);
        }
    }
    let series = Tensor::from_slice(&values).reshape([rows.len() as i64, columns.len() as i64]);
    let n_seq: i64 = parse_opt(source, options, "n_seq", 12, "a window length ≥ 1")?;
    let n_pred: i64 = parse_opt(source, options, "n_pred", 1, "a forecast length ≥ 1")?;
    let scale = match options.get("scale").map(|s| s.trim().to_ascii_lowercase()).as_deref() {
        None | Some("minmax") => ScaleKind::MinMax,
        Some("standard") => ScaleKind::Standard,
        Some("none") => ScaleKind::None,
        Some(v) => return Err(bad_opt(source, "scale", v, "minmax, standard or none")),
    };
    let holdout: f64 = parse_opt(source, options, "holdout", 0.2, "a fraction in [0, 1)")?;
    let part = parse_part(source, options)?;
    let (xs, ys) = windows(&series, n_seq, n_pred).map_err(|e| Error::data(source, e.to_string()))?;
    let n = xs.size()[0] as usize;
    let n_val = held_out(source, n, holdout)?;
    // The training windows cover steps 0 .. n_train + n_seq + n_pred − 1: the scaler sees those only.
    let covered = (n - n_val) as i64 + n_seq + n_pred - 1;
    let scaler = Scaler::fit(scale, &series.narrow(0, 0, covered));
    let data = Dataset::new(
        source,
        scaler.transform(&xs),
        scaler.transform(&ys),
        Task::Regression { n_outputs: (n_pred * columns.len() as i64) as usize },
    )?;
    select_part(data, part, n_val)
}

/// The `digit_rows` data spec.
pub fn load_digit_rows(options: &BTreeMap<String, String>) -> Result<Dataset> {
    const NAME: &str = "digit_rows";
    check_options(NAME, options, DIGIT_ROWS_OPTIONS)?;
    let digits = super::digits::load(&BTreeMap::from([("size".to_string(), "8".to_string())]))?;
    // [1797, 1, 8, 8] in [0, 1] → [1797, 8 rows, 8 pixels]
    let rows = digits.xs.squeeze_dim(1);
    if super::files::is_regression(NAME, options)? || !options.contains_key("task") {
        let n_seq: i64 = parse_opt(NAME, options, "n_seq", 5, "rows given, 1 to 7")?;
        let n_pred: i64 = parse_opt(NAME, options, "n_pred", 8 - n_seq, "rows forecast, n_seq + n_pred ≤ 8")?;
        if n_seq < 1 || n_pred < 1 || n_seq + n_pred > 8 {
            return Err(Error::data(
                NAME,
                format!(
                    "n_seq={n_seq}, n_pred={n_pred}: a digit has 8 rows; use n_seq ≥ 1, n_pred ≥ 1, n_seq + n_pred ≤ 8"
                ),
            ));
        }
        let xs = rows.narrow(1, 0, n_seq).contiguous();
        let ys = rows.narrow(1, n_seq, n_pred).reshape([-1, n_pred * 8]);
        return Dataset::new(NAME, xs, ys, Task::Regression { n_outputs: (n_pred * 8) as usize });
    }
    if options.contains_key("n_seq") || options.contains_key("n_pred") {
        return Err(Error::data(NAME, "task=classification reads all 8 rows; drop n_seq and n_pred"));
    }
    let mut data = Dataset::new(NAME, rows, digits.ys, Task::Classification { n_classes: 10 })?;
    data.class_names = digits.class_names;
    Ok(data)
}

/// Keras' `Tokenizer` text standardisation: lower case, these characters replaced by spaces, split on whitespace.
pub const KERAS_FILTERS: &str = "!\"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n";

pub fn tokenize(text: &str) -> Vec<String> {
    let cleaned: String =
        text.to_lowercase().chars().map(|c| if KERAS_FILTERS.contains(c) { ' ' } else { c }).collect();
    cleaned.split_whitespace().map(String::from).collect()
}

/// Index 0 pads, index 1 stands for any word outside the vocabulary.
pub const PAD: i64 = 0;
pub const OOV: i64 = 1;

/// The `n` most frequent words of a corpus, indexed from 2 by frequency.
#[derive(Debug, Clone, PartialEq)]
pub struct Vocabulary {
    pub words: Vec<String>,
    index: HashMap<String, i64>,
}

impl Vocabulary {
    /// Counts the words of `texts`; ties keep the order of first appearance (Keras' `word_counts` order).
    pub fn fit<S: AsRef<str>>(texts: &[S], n: usize) -> Vocabulary {
        let mut counts: HashMap<String, (usize, usize)> = HashMap::new();
        let mut order = 0;
        for t in texts {
            for w in tokenize(t.as_ref()) {
                let e = counts.entry(w).or_insert((0, order));
                e.0 += 1;
                order += 1;
            }
        }
        let mut ranked: Vec<(String, (usize, usize))> = counts.into_iter().collect();
        ranked.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then(a.1 .1.cmp(&b.1 .1)));
        let words: Vec<String> = ranked.into_iter().take(n).map(|(w, _)| w).collect();
        let index = words.iter().enumerate().map(|(i, w)| (w.clone(), i as i64 + 2)).collect();
        Vocabulary { words, index }
    }
    /// The rows an embedding needs: the words + padding + out-of-vocabulary.
    pub fn input_dim(&self) -> i64 {
        self.words.len() as i64 + 2
    }
    pub fn encode(&self, text: &str) -> Vec<i64> {
        tokenize(text).iter().map(|w| self.index.get(w).copied().unwrap_or(OOV)).collect()
    }
}

/// Padding or truncating at the front (`pre`, Keras' default) or the back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Pre,
    Post,
}

/// Keras' `pad_sequences` for one sequence.
pub fn pad_sequence(seq: &[i64], length: usize, pad: Side, truncate: Side) -> Vec<i64> {
    let kept: &[i64] = if seq.len() > length {
        match truncate {
            Side::Pre => &seq[seq.len() - length..],
            Side::Post => &seq[..length],
        }
    } else {
        seq
    };
    let fill = vec![PAD; length - kept.len()];
    match pad {
        Side::Pre => [fill.as_slice(), kept].concat(),
        Side::Post => [kept, fill.as_slice()].concat(),
    }
}

fn parse_side(source: &str, options: &BTreeMap<String, String>, key: &str) -> Result<Side> {
    match options.get(key).map(|s| s.trim().to_ascii_lowercase()).as_deref() {
        None | Some("pre") => Ok(Side::Pre),
        Some("post") => Ok(Side::Post),
        Some(v) => Err(bad_opt(source, key, v, "pre or post")),
    }
}

/// A text table read and encoded: what the `text` spec loads, with the vocabulary kept.
#[derive(Debug)]
pub struct TextData {
    pub data: Dataset,
    pub vocabulary: Vocabulary,
}

/// The `text` data spec, keeping the vocabulary.
pub fn load_text_with_vocabulary(options: &BTreeMap<String, String>) -> Result<TextData> {
    check_options("text", options, TEXT_OPTIONS)?;
    let path = options
        .get("path")
        .ok_or_else(|| Error::data("text", "give the CSV as path=FILE, e.g. text:path=data/reviews.csv,vocab=1000"))?;
    let source = path.as_str();
    let (header, rows) = read_csv(Path::new(path))?;
    let column = |key: &str, default: usize| -> Result<usize> {
        let Some(w) = options.get(key).map(|s| s.trim()) else { return Ok(default) };
        header.iter().position(|h| h == w || h.eq_ignore_ascii_case(w)).ok_or_else(|| {
            Error::data(
                source,
                format!(
                    "no column '{w}' for {key}={w}{}; the columns are: {}",
                    did_you_mean(w, header.iter().map(String::as_str)),
                    header.join(", ")
                ),
            )
        })
    };
    if header.len() < 2 {
        return Err(Error::data(source, "a text table needs a text column and a label column"));
    }
    let (tc, lc) = (column("text", 0)?, column("label", header.len() - 1)?);
    if tc == lc {
        return Err(Error::data(source, format!("text and label are the same column '{}'", header[tc])));
    }
    let vocab: usize = parse_opt(source, options, "vocab", 1000, "the number of words to keep, ≥ 1")?;
    let length: usize = parse_opt(source, options, "length", 50, "the padded sequence length, ≥ 1")?;
    if vocab == 0 || length == 0 || length > 100_000 {
        return Err(Error::data(source, format!("vocab={vocab} and length={length} must be ≥ 1 (length ≤ 100000)")));
    }
    let (pad, truncate) = (parse_side(source, options, "pad")?, parse_side(source, options, "truncate")?);
    let holdout: f64 = parse_opt(source, options, "holdout", 0.2, "a fraction in [0, 1)")?;
    let part = parse_part(source, options)?;
    let n = rows.len();
    let n_val = held_out(source, n, holdout)?;
    let texts: Vec<&str> = rows.iter().map(|(_, f)| f[tc].as_str()).collect();
    let vocabulary = Vocabulary::fit(&texts[..n - n_val], vocab);
    let mut flat = Vec::with_capacity(n * length);
    for t in &texts {
        flat.extend(pad_sequence(&vocabulary.encode(t), length, pad, truncate));
    }
    let xs = Tensor::from_slice(&flat).reshape([n as i64, length as i64]);
    let labels: Vec<&str> = rows.iter().map(|(_, f)| f[lc].trim()).collect();
    if let Some(((line, _), _)) = rows.iter().zip(&labels).find(|(_, l)| l.is_empty()) {
        return Err(Error::data(source, format!("line {line}: the label '{}' is empty; fill it in", header[lc])));
    }
    let numeric: Option<Vec<i64>> = labels.iter().map(|l| l.parse::<i64>().ok().filter(|v| *v >= 0)).collect();
    let (ys, names) = match numeric {
        Some(v) => {
            let n_classes = v.iter().max().map_or(1, |m| *m as usize + 1);
            (v, (0..n_classes).map(|c| c.to_string()).collect::<Vec<_>>())
        }
        None => {
            let classes: Vec<&str> = labels.iter().copied().collect::<BTreeSet<_>>().into_iter().collect();
            let index: HashMap<&str, i64> = classes.iter().enumerate().map(|(i, c)| (*c, i as i64)).collect();
            (labels.iter().map(|l| index[l]).collect(), classes.into_iter().map(String::from).collect())
        }
    };
    let n_classes = names.len().max(2);
    let mut data =
        Dataset::new(source, xs.shallow_clone(), Tensor::from_slice(&ys), Task::Classification { n_classes })?;
    data.xs = xs;
    data.class_names = (names.len() == n_classes).then_some(names);
    Ok(TextData { data: select_part(data, part, n_val)?, vocabulary })
}

/// The `text` data spec.
pub fn load_text(options: &BTreeMap<String, String>) -> Result<Dataset> {
    Ok(load_text_with_vocabulary(options)?.data)
}
