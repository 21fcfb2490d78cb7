//! WebDataset tar shards: `--data "shards/train-{000000..000127}.tar"` (brace expansion as webdataset's
//! `braceexpand`, or paths separated by spaces), samples grouped by key as webdataset's `group_by_keys` groups them
//! (`KEY.jpg|jpeg|png` + `KEY.cls`, the class index as text), and `pack`, which writes such shards from an image
//! folder.
//!
//! At start every shard's headers are read once (file data is skipped with a seek, only the small `.cls` files are
//! read): the sample count and labels are known before training, and a missing shard, a corrupt tar or a sample
//! without `.cls` fails in one line then. An epoch then streams the shards sequentially on one reader thread: the
//! shard order is shuffled with (seed, epoch) (webdataset's `shardshuffle`), the samples pass through a shuffle
//! buffer of `shuffle=N` samples with webdataset's `.shuffle(N)` semantics, seeded per epoch, and are cut into
//! batches of raw bytes that the worker threads decode and transform (per-sample generator keyed by (seed, epoch,
//! sample index), the sample index being its position in the shards), in batch order. One reader keeps the order
//! independent of the worker count (webdataset splits shards across workers instead, so its order depends on it);
//! reading a tar is sequential I/O, decoding is the cost that the workers share.
use std::collections::BTreeMap;
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicUsize;
use std::sync::mpsc::{channel, sync_channel, SyncSender};
use std::sync::{Arc, Mutex};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind};

use super::folder::{self, ImageIndex};
use super::transforms::Transforms;
use super::workers::{self, Batch, ImageSet, Shared, Stream, WorkerConfig};
use super::{DataSource, Dataset, ShardOptions};
use crate::error::{Error, Result};

/// The image suffixes a sample may carry (webdataset's keys, lower-cased).
pub const IMAGE_SUFFIXES: [&str; 3] = ["jpg", "jpeg", "png"];
/// The shuffle buffer of a training stream when the spec gives no `shuffle=` (webdataset's `.shuffle()` default).
pub const DEFAULT_BUFFER: usize = 1000;
const MAX_ENTRY: u64 = 256 << 20;
const MAX_CLS: u64 = 64;
const BLOCK: u64 = 512;

// ------------------------------------------------------------------------------------------------------------
// Shard lists

/// webdataset's `braceexpand`: `{a,b}` alternatives and `{000..127}` ranges (zero-padded to the wider bound when
/// either bound has a leading zero; `{0..10..2}` steps), nested and repeated, left to right.
pub fn brace_expand(pattern: &str) -> Result<Vec<String>> {
    let bytes = pattern.as_bytes();
    let Some(open) = pattern.find('{') else {
        if pattern.contains('}') {
            return Err(Error::data(pattern, "a '}' without its '{' in the shard pattern"));
        }
        return Ok(vec![pattern.to_string()]);
    };
    let mut depth = 0;
    let mut close = None;
    for (i, &b) in bytes.iter().enumerate().skip(open) {
        match b {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    close = Some(i);
                    break;
                }
            }
            _ => {}
        }
    }
    let close = close.ok_or_else(|| Error::data(pattern, "a '{' without its '}' in the shard pattern"))?;
    let (head, body, tail) = (&pattern[..open], &pattern[open + 1..close], &pattern[close + 1..]);
    let mut middles = Vec::new();
    if let Some(range) = range_items(body) {
        middles = range.map_err(|m| Error::data(pattern, m))?;
    } else {
        let mut depth = 0;
        let mut start = 0;
        for (i, b) in body.bytes().enumerate() {
            match b {
                b'{' => depth += 1,
                b'}' => depth -= 1,
                b',' if depth == 0 => {
                    middles.extend(brace_expand(&body[start..i])?);
                    start = i + 1;
                }
                _ => {}
            }
        }
        middles.extend(brace_expand(&body[start..])?);
    }
    let tails = brace_expand(tail)?;
    let mut out = Vec::with_capacity(middles.len() * tails.len());
    for m in &middles {
        for t in &tails {
            out.push(format!("{head}{m}{t}"));
        }
    }
    Ok(out)
}

/// `a..b` or `a..b..step` as a range, `None` when `body` is not one.
fn range_items(body: &str) -> Option<std::result::Result<Vec<String>, String>> {
    let parts: Vec<&str> = body.split("..").collect();
    if !(parts.len() == 2 || parts.len() == 3) || !parts.iter().all(|p| !p.is_empty()) {
        return None;
    }
    let nums: Vec<i64> = parts.iter().map(|p| p.parse::<i64>().ok()).collect::<Option<_>>()?;
    let step = nums.get(2).copied().unwrap_or(1).unsigned_abs().max(1) as usize;
    let (a, b) = (nums[0], nums[1]);
    if a.abs_diff(b) > 10_000_000 {
        return Some(Err(format!("the range {{{body}}} names more than 10,000,000 shards")));
    }
    let pad = (parts[0].starts_with('0') && parts[0].len() > 1) || (parts[1].starts_with('0') && parts[1].len() > 1);
    let width = if pad { parts[0].len().max(parts[1].len()) } else { 0 };
    let items: Vec<i64> = if a <= b { (a..=b).step_by(step).collect() } else { (b..=a).rev().step_by(step).collect() };
    Some(Ok(items.into_iter().map(|n| format!("{n:0width$}")).collect()))
}

/// The shard paths of a source: space-separated items, each brace-expanded.
pub fn expand(source: &str) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for item in source.split_whitespace() {
        out.extend(brace_expand(item)?.into_iter().map(PathBuf::from));
    }
    if out.is_empty() {
        return Err(Error::data(source, "no shards named"));
    }
    Ok(out)
}

/// Whether a data source names tar shards (every item ends with `.tar`, after expansion).
pub fn is_shard_source(source: &str) -> bool {
    let items: Vec<&str> = source.split_whitespace().collect();
    !items.is_empty() && items.iter().all(|s| s.ends_with(".tar") || (s.contains('{') && s.contains(".tar")))
}

// ------------------------------------------------------------------------------------------------------------
// Reading tar files

/// One tar member: its name and size; its data follows in the reader.
struct Entry {
    name: String,
    size: u64,
    regular: bool,
}

/// A sequential reader of POSIX (ustar, pax, GNU long-name) tar files, as Python's `tarfile` writes them.
struct TarReader<R> {
    r: R,
    path: String,
    offset: u64,
}

fn octal(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        // GNU base-256 for large numbers.
        let mut v: u64 = (field[0] & 0x7f) as u64;
        for &b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(b as u64)?;
        }
        return Some(v);
    }
    let s: String = field.iter().take_while(|&&b| b != 0).map(|&b| b as char).collect();
    let s = s.trim();
    if s.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(s, 8).ok()
}

fn cstr(field: &[u8]) -> String {
    String::from_utf8_lossy(&field[..field.iter().position(|&b| b == 0).unwrap_or(field.len())]).to_string()
}

impl<R: Read + Seek> TarReader<R> {
    fn corrupt(&self, what: impl std::fmt::Display) -> Error {
        Error::data(&self.path, format!("not a valid tar shard: {what} at byte {}; rewrite the shard", self.offset))
    }

    fn read_block(&mut self, buf: &mut [u8; 512]) -> Result<bool> {
        let n = crate::util::read_up_to(&mut self.r, buf).map_err(|e| Error::io(&self.path, e))?;
        if n == 0 {
            return Ok(false);
        }
        if n < 512 {
            return Err(self.corrupt("the file ends inside a header"));
        }
        self.offset += BLOCK;
        Ok(true)
    }

    /// The next member, `None` at the end of the archive.
    fn next_entry(&mut self) -> Result<Option<Entry>> {
        let mut long_name: Option<String> = None;
        loop {
            let mut h = [0u8; 512];
            if !self.read_block(&mut h)? {
                // tar ends an archive with zero blocks; a file that stops at a member's end was cut short.
                return Err(self.corrupt("the file ends without tar's end-of-archive blocks (truncated)"));
            }
            if h.iter().all(|&b| b == 0) {
                return Ok(None);
            }
            let stored = octal(&h[148..156]).ok_or_else(|| self.corrupt("an unreadable header checksum"))?;
            let sum: u64 =
                h.iter().enumerate().map(|(i, &b)| if (148..156).contains(&i) { 32 } else { b as u64 }).sum();
            if stored != sum {
                return Err(self.corrupt("a header whose checksum does not match"));
            }
            let size = octal(&h[124..136]).ok_or_else(|| self.corrupt("an unreadable member size"))?;
            let kind = h[156];
            match kind {
                b'x' | b'L' => {
                    let data = self.read_data(size, 1 << 20)?;
                    if kind == b'L' {
                        long_name = Some(cstr(&data));
                    } else {
                        long_name = pax_path(&data).or(long_name);
                    }
                    continue;
                }
                b'g' => {
                    self.skip_data(size)?;
                    continue;
                }
                _ => {}
            }
            let name = long_name.take().unwrap_or_else(|| {
                let (prefix, name) = (cstr(&h[345..500]), cstr(&h[0..100]));
                if &h[257..262] == b"ustar" && !prefix.is_empty() {
                    format!("{prefix}/{name}")
                } else {
                    name
                }
            });
            return Ok(Some(Entry { name, size, regular: kind == b'0' || kind == 0 || kind == b'7' }));
        }
    }

    fn padded(size: u64) -> u64 {
        size.div_ceil(BLOCK) * BLOCK
    }

    fn read_data(&mut self, size: u64, limit: u64) -> Result<Vec<u8>> {
        if size > limit {
            return Err(self.corrupt(format!("a member of {size} bytes (more than {limit})")));
        }
        let mut data = vec![0u8; Self::padded(size) as usize];
        let n = crate::util::read_up_to(&mut self.r, &mut data).map_err(|e| Error::io(&self.path, e))?;
        if n < data.len() {
            return Err(self.corrupt("the file ends inside a member (truncated)"));
        }
        self.offset += data.len() as u64;
        data.truncate(size as usize);
        Ok(data)
    }

    fn skip_data(&mut self, size: u64) -> Result<()> {
        let to = self.offset.checked_add(Self::padded(size)).ok_or_else(|| self.corrupt("a member size too large"))?;
        self.r.seek(SeekFrom::Start(to)).map_err(|e| Error::io(&self.path, e))?;
        self.offset = to;
        Ok(())
    }
}

/// The `path=` record of a pax header.
fn pax_path(data: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(data);
    text.lines().find_map(|l| l.split_once(' ').and_then(|(_, kv)| kv.strip_prefix("path=")).map(String::from))
}

/// webdataset's `base_plus_ext`: the key is the path up to the first dot of the file name, the suffix the rest.
fn key_suffix(name: &str) -> Option<(&str, String)> {
    let slash = name.rfind('/').map(|i| i + 1).unwrap_or(0);
    let dot = name[slash..].find('.')? + slash;
    if dot == slash {
        return None;
    }
    Some((&name[..dot], name[dot + 1..].to_ascii_lowercase()))
}

/// One sample as a shard holds it.
#[derive(Debug, Clone)]
pub struct RawSample {
    pub key: String,
    pub label: i64,
    /// The image file's bytes (empty when only scanned).
    pub image: Vec<u8>,
    pub suffix: String,
}

fn parse_cls(shard: &str, key: &str, data: &[u8]) -> Result<i64> {
    let text = String::from_utf8_lossy(data);
    match text.trim().parse::<i64>() {
        Ok(v) if v >= 0 => Ok(v),
        _ => Err(Error::data(
            shard,
            format!("sample '{key}': its .cls holds {:?}, not a class index (0, 1, ...)", text.trim()),
        )),
    }
}

/// Reads the samples of one shard in order, calling `f` for each; with `images` false the image bytes are skipped
/// (seeked over) and only the `.cls` files are read. A sample without an image or without `.cls`, a duplicate
/// member, a corrupt or truncated tar: an error naming the shard and the key.
pub fn read_shard(path: &Path, images: bool, mut f: impl FnMut(RawSample) -> Result<bool>) -> Result<()> {
    let shard = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::data(&shard, "no such shard; check the pattern (e.g. shards/train-{000000..000127}.tar)")
        } else {
            Error::io(path, e)
        }
    })?;
    let mut tar = TarReader { r: BufReader::with_capacity(1 << 16, file), path: shard.clone(), offset: 0 };
    struct Current {
        key: String,
        label: Option<i64>,
        image: Option<(String, Vec<u8>)>,
        suffixes: Vec<String>,
    }
    let finish = |c: Current, f: &mut dyn FnMut(RawSample) -> Result<bool>| -> Result<bool> {
        let (Some(label), Some((suffix, image))) = (c.label, c.image) else {
            let what = if c.label.is_none() { ".cls (its class index)" } else { "image (.jpg, .jpeg or .png)" };
            return Err(Error::data(&shard, format!("sample '{}' has no {what}; every sample needs both", c.key)));
        };
        f(RawSample { key: c.key, label, image, suffix })
    };
    let mut current: Option<Current> = None;
    let mut members = 0usize;
    while let Some(entry) = tar.next_entry()? {
        members += 1;
        let Some((key, suffix)) = entry.regular.then(|| key_suffix(&entry.name)).flatten() else {
            tar.skip_data(entry.size)?;
            continue;
        };
        if key.rsplit('/').next().is_some_and(|b| b.starts_with("__") && b.ends_with("__")) {
            tar.skip_data(entry.size)?;
            continue;
        }
        if current.as_ref().is_none_or(|c| c.key != key) {
            if let Some(c) = current.take() {
                if !finish(c, &mut f)? {
                    return Ok(());
                }
            }
            current = Some(Current { key: key.to_string(), label: None, image: None, suffixes: Vec::new() });
        }
        let c = current.as_mut().expect("set above");
        if c.suffixes.contains(&suffix) {
            return Err(Error::data(&shard, format!("sample '{key}' has two .{suffix} members; keys must be unique")));
        }
        c.suffixes.push(suffix.clone());
        if suffix == "cls" {
            let data = tar.read_data(entry.size, MAX_CLS)?;
            c.label = Some(parse_cls(&shard, key, &data)?);
        } else if IMAGE_SUFFIXES.contains(&suffix.as_str()) && c.image.is_none() {
            if images {
                let data = tar.read_data(entry.size, MAX_ENTRY)?;
                c.image = Some((suffix, data));
            } else {
                tar.skip_data(entry.size)?;
                c.image = Some((suffix, Vec::new()));
            }
        } else {
            tar.skip_data(entry.size)?;
        }
    }
    match current {
        Some(c) => {
            finish(c, &mut f)?;
        }
        None if members == 0 => return Err(Error::data(&shard, "the shard holds no samples (an empty tar)")),
        None => return Err(Error::data(&shard, "the shard holds no samples (no KEY.jpg + KEY.cls members)")),
    }
    Ok(())
}

/// Every sample of the shards as the training stream reads them, in order (no shuffling): (shard, key, label).
pub fn list(source: &str) -> Result<Vec<(String, String, i64)>> {
    let mut out = Vec::new();
    for shard in expand(source)? {
        read_shard(&shard, true, |s| {
            out.push((shard.display().to_string(), s.key, s.label));
            Ok(true)
        })?;
    }
    Ok(out)
}

// ------------------------------------------------------------------------------------------------------------
// Shards as a dataset

/// What the reader knows of a shard set after the scan.
#[derive(Debug)]
pub struct ShardSource {
    pub shards: Vec<PathBuf>,
    /// Samples per shard, in `shards` order.
    pub counts: Vec<usize>,
    /// The first sample index of each shard.
    pub starts: Vec<usize>,
    /// The shuffle buffer of a training stream (0 or 1: none).
    pub buffer: usize,
}

/// The class names written beside the shards: `PREFIX-classes.json` (as `pack` writes it, PREFIX being the first
/// shard's path less `-NNNNNN.tar`), else `classes.json` in the shards' folder; a JSON list of names.
pub fn class_names_for(first: &Path) -> Result<Option<Vec<String>>> {
    let name = first.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let mut candidates = Vec::new();
    if let Some(stem) = name.strip_suffix(".tar") {
        if let Some((prefix, digits)) = stem.rsplit_once('-') {
            if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                candidates.push(first.with_file_name(format!("{prefix}-classes.json")));
            }
        }
    }
    candidates.push(first.with_file_name("classes.json"));
    for c in candidates {
        if c.is_file() {
            let text = std::fs::read_to_string(&c).map_err(|e| Error::io(&c, e))?;
            let names: Vec<String> = serde_json::from_str(&text)
                .map_err(|e| Error::data(c.display(), format!("expected a JSON list of class names: {e}")))?;
            return Ok(Some(names));
        }
    }
    Ok(None)
}

/// Reads the headers of every shard of `source` (a shard spec's source) and makes a lazy dataset of them.
pub fn shard_dataset(
    source: &str,
    buffer: usize,
    transforms: Transforms,
    train: bool,
    workers: WorkerConfig,
    seed: u64,
) -> Result<Dataset> {
    let shards = expand(source)?;
    let mut labels: Vec<i64> = Vec::new();
    let (mut counts, mut starts) = (Vec::new(), Vec::new());
    for shard in &shards {
        starts.push(labels.len());
        read_shard(shard, false, |s| {
            labels.push(s.label);
            Ok(true)
        })?;
        counts.push(labels.len() - starts.last().copied().unwrap_or(0));
    }
    let max = labels.iter().copied().max().unwrap_or(0);
    let class_names = match class_names_for(&shards[0])? {
        Some(names) => {
            if max as usize >= names.len() {
                return Err(Error::data(
                    source,
                    format!("a sample has class {max} but the shards' class list names {} classes", names.len()),
                ));
            }
            names
        }
        None => (0..=max).map(|c| c.to_string()).collect(),
    };
    let root = shards[0].parent().map(Path::to_path_buf).unwrap_or_default();
    let index = Arc::new(ImageIndex { root, paths: Vec::new(), labels: Vec::new(), class_names });
    let shard_source = ShardSource { shards, counts, starts, buffer };
    let set = ImageSet {
        index,
        samples: Vec::new(),
        transforms,
        train,
        workers,
        seed,
        skipped: AtomicUsize::new(0),
        shards: Some(Arc::new(shard_source)),
    };
    Ok(workers::with_set(set, labels, source))
}

/// The same shard set with the training or evaluation transform.
pub fn with_transform(data: &Dataset, set: &ImageSet, train: bool) -> Dataset {
    let labels: Vec<i64> = Vec::try_from(data.ys.to_device(Device::Cpu).to_kind(Kind::Int64)).unwrap_or_default();
    let copy = ImageSet {
        index: set.index.clone(),
        samples: Vec::new(),
        transforms: set.transforms.clone(),
        train,
        workers: set.workers,
        seed: set.seed,
        skipped: AtomicUsize::new(0),
        shards: set.shards.clone(),
    };
    let mut d = workers::with_set(copy, labels, &data.name);
    d.task = data.task;
    d.class_names = data.class_names.clone();
    d
}

/// The `shuffle=N` and `channels=1|3` options of a shard spec (`DataSource::parse` types them).
pub(crate) fn shard_options(name: &str, options: &BTreeMap<String, String>) -> Result<(Option<usize>, Option<u32>)> {
    for k in options.keys() {
        if k != "channels" && k != "shuffle" {
            return Err(Error::data(
                name,
                format!("option '{k}' unknown for tar shards; they take shuffle=N, channels=1|3"),
            ));
        }
    }
    let buffer = match options.get("shuffle") {
        None => None,
        Some(v) => Some(v.parse::<usize>().map_err(|_| {
            Error::data(name, format!("option shuffle={v}: give the shuffle buffer in samples (e.g. 1000, 0 for none)"))
        })?),
    };
    let channels = match options.get("channels").map(|s| s.trim()) {
        None => None,
        Some("1") => Some(1),
        Some("3") => Some(3),
        Some(v) => return Err(Error::data(name, format!("option channels={v}: give 1 (grey) or 3 (RGB)"))),
    };
    Ok((buffer, channels))
}

/// A run's data when `--data` names tar shards (see [`workers::for_run`]); `None` otherwise.
pub fn for_run(run: &crate::config::Run) -> Result<Option<(Dataset, Option<Dataset>, Transforms)>> {
    let config = &run.config;
    let DataSource::Shards { pattern: source, options } = &run.data else { return Ok(None) };
    let ShardOptions { shuffle: buffer, channels } = *options;
    let transforms = workers::resolve_transforms(run, channels)?;
    let workers = workers::worker_config(config);
    // The default split (0.2) is not asked for: a stream without --validation-data trains without validation.
    let default_split = crate::config::RunConfig::default().validation_split;
    if run.validation_data.is_none() && config.validation_split.is_some() && config.validation_split != default_split {
        return Err(Error::config(format!(
            "{source}: tar shards are a stream and cannot be split for validation; pack a validation folder \
             (tchzoo pack VAL_DIR PREFIX) and give it with ⟨validation_data⟩ 'PREFIX-{{000000..N}}.tar'"
        )));
    }
    let side = transforms.train_crop_size.max(transforms.val_crop_size) as u64;
    let batch = config.batch_size as u64 * transforms.channels as u64 * side * side;
    let in_flight = (workers.workers * workers.prefetch) as u64 + 1;
    crate::util::check_memory(
        batch.saturating_mul(in_flight + 8),
        format!("{source}: batches of {} images of {side}x{side}", config.batch_size),
    )?;
    let buffer = buffer.unwrap_or(DEFAULT_BUFFER);
    let train = shard_dataset(source, buffer, transforms.clone(), true, workers, config.seed)?;
    let validation = match &run.validation_data {
        None => None,
        Some(DataSource::Shards { pattern: vsource, .. }) => {
            Some(shard_dataset(vsource, 0, transforms.clone(), false, workers, config.seed)?)
        }
        Some(_) => {
            return Err(Error::data(
                config.validation_data.as_deref().unwrap_or_default(),
                "the training data are tar shards, so the validation data must be shards too (a .tar pattern)",
            ))
        }
    };
    Ok(Some((train, validation, transforms)))
}

// ------------------------------------------------------------------------------------------------------------
// The stream of an epoch

/// webdataset's `.shuffle(bufsize, initial=100)` fed one sample at a time: each sample of its loop goes in; while
/// the buffer is below `bufsize` a second one goes in before anything comes out; then, once `initial` are in, a
/// random member comes out (swapped with the last, as webdataset's `pick`); at the end the buffer drains at random.
/// A size of 0 or 1 passes samples through in order.
struct ShuffleBuffer {
    buf: Vec<(usize, RawSample)>,
    size: usize,
    initial: usize,
    /// The loop took its first sample and waits for the second (`buf.append(next(data))`).
    second: bool,
    rng: ChaCha8Rng,
}

impl ShuffleBuffer {
    fn new(size: usize, rng: ChaCha8Rng) -> Self {
        ShuffleBuffer { buf: Vec::new(), size, initial: size.min(100), second: false, rng }
    }

    fn pick(&mut self) -> Option<(usize, RawSample)> {
        if self.buf.is_empty() {
            return None;
        }
        let k = self.rng.gen_range(0..self.buf.len());
        Some(self.buf.swap_remove(k))
    }

    /// A sample in; the sample that comes out, if one does.
    fn push(&mut self, s: (usize, RawSample)) -> Option<(usize, RawSample)> {
        self.buf.push(s);
        if !self.second && self.buf.len() < self.size {
            self.second = true;
            return None;
        }
        self.second = false;
        self.out()
    }

    fn out(&mut self) -> Option<(usize, RawSample)> {
        if self.buf.len() >= self.initial {
            self.pick()
        } else {
            None
        }
    }

    /// The end of the stream: the loop's last yield (if it waited for a second sample), then the rest.
    fn finish(&mut self) -> Vec<(usize, RawSample)> {
        let mut out = Vec::with_capacity(self.buf.len());
        if std::mem::take(&mut self.second) {
            out.extend(self.out());
        }
        while let Some(s) = self.pick() {
            out.push(s);
        }
        out
    }
}

/// One batch of raw samples for the workers: (batch number, [(sample index, sample)]).
type Job = (usize, Vec<(usize, RawSample)>);

/// Starts the stream of `epoch` over `set`'s shards: the reader thread and `set.workers.workers` decoders.
/// `labels` are the dataset's labels by sample index (as `run::conform_to` may have renumbered them); `shuffle`
/// turns on the shard shuffle and the buffer; `shard` is the (rank, world, pad) of a distributed run, whose rank
/// takes every `world`-th sample of the stream (padded as `DistributedSampler` pads).
pub fn stream(
    set: Arc<ImageSet>,
    labels: Arc<Vec<i64>>,
    batch_size: usize,
    shuffle: bool,
    shard: Option<(usize, usize, bool)>,
    epoch: usize,
    device: Device,
) -> Stream {
    let source = set.shards.clone().expect("a shard set");
    let n: usize = source.counts.iter().sum();
    let (rank, world, pad) = shard.unwrap_or((0, 1, false));
    let yielded = if world <= 1 {
        n
    } else if pad {
        n.div_ceil(world)
    } else {
        (n + world - 1).saturating_sub(rank) / world
    };
    let bs = batch_size.max(1);
    let n_batches = yielded.div_ceil(bs);
    // A distributed training stream: the ranks step together, so no rank may drop a whole batch.
    let in_step = world > 1 && pad;
    let shared = Arc::new(Shared::new());
    let (tx, rx) = channel::<workers::Finished>();
    let n_workers = set.workers.workers.max(1).min(n_batches.max(1));
    let capacity = set.workers.workers.max(1) * set.workers.prefetch.max(1);
    let (job_tx, job_rx) = sync_channel::<Job>(capacity);
    let job_rx = Arc::new(Mutex::new(job_rx));
    let mut threads = Vec::with_capacity(n_workers + 1);
    let reader = {
        let (shared, tx, set, source) = (shared.clone(), tx.clone(), set.clone(), source.clone());
        std::thread::Builder::new().name(workers::THREAD_NAME.into()).spawn(move || {
            let plan = Plan { rank, world: world.max(1), pad, n, bs, shuffle, epoch, capacity };
            let r = std::panic::catch_unwind(AssertUnwindSafe(|| read_epoch(&set, &source, &plan, &shared, job_tx)))
                .unwrap_or_else(|p| {
                    Err(Error::invalid(format!("the shard reader panicked: {}", workers::panic_text(p))))
                });
            if let Err(e) = r {
                // The batch the reader was making: those before it are with the workers and arrive first.
                let job = shared.lock().next_job;
                let _ = tx.send((job, Err(e)));
            }
        })
    };
    match reader {
        Ok(t) => threads.push(t),
        Err(_) => return Stream::from_parts(shared, rx, Vec::new(), n_batches, set, device),
    }
    for _ in 0..n_workers {
        let (tx, job_rx, set, labels) = (tx.clone(), job_rx.clone(), set.clone(), labels.clone());
        let spawned = std::thread::Builder::new().name(workers::THREAD_NAME.into()).spawn(move || loop {
            let job = {
                let rx = job_rx.lock().unwrap_or_else(|e| e.into_inner());
                rx.recv()
            };
            let Ok((number, samples)) = job else { return };
            let decode = || decode_batch(&set, &labels, &samples, epoch, in_step);
            let result = std::panic::catch_unwind(AssertUnwindSafe(decode))
                .unwrap_or_else(|p| Err(Error::invalid(format!("a data worker panicked: {}", workers::panic_text(p)))));
            if tx.send((number, result)).is_err() {
                return;
            }
        });
        if let Ok(t) = spawned {
            threads.push(t);
        }
    }
    Stream::from_parts(shared, rx, threads, n_batches, set, device)
}

struct Plan {
    rank: usize,
    world: usize,
    pad: bool,
    n: usize,
    bs: usize,
    shuffle: bool,
    epoch: usize,
    capacity: usize,
}

/// Cuts the samples leaving the shuffle buffer into this rank's batches and hands them to the workers.
struct Batcher<'a> {
    plan: &'a Plan,
    shared: &'a Shared,
    jobs: SyncSender<Job>,
    batch: Vec<(usize, RawSample)>,
    /// The stream position of the next sample out of the buffer.
    position: usize,
    /// The stream's first samples, kept for a distributed rank's padding.
    first: Vec<(usize, RawSample)>,
    job: usize,
}

impl Batcher<'_> {
    /// False when the stream stopped (the consumer went away).
    fn emit(&mut self, s: (usize, RawSample)) -> bool {
        if self.plan.pad && self.plan.world > 1 && self.first.len() < self.plan.world {
            self.first.push(s.clone());
        }
        let mine = self.position % self.plan.world == self.plan.rank;
        self.position += 1;
        if mine {
            self.batch.push(s);
            if self.batch.len() == self.plan.bs {
                return self.flush();
            }
        }
        true
    }

    fn flush(&mut self) -> bool {
        if self.batch.is_empty() {
            return true;
        }
        let b = std::mem::replace(&mut self.batch, Vec::with_capacity(self.plan.bs));
        let sent = send(self.shared, &self.jobs, self.plan.capacity, self.job, b);
        self.job += 1;
        sent
    }
}

/// The reader: shards in (shuffled) order, through the shuffle buffer, this rank's samples, cut into batches; a
/// batch is handed to the workers once it is within `capacity` of the batch the consumer waits for.
fn read_epoch(set: &ImageSet, source: &ShardSource, plan: &Plan, shared: &Shared, jobs: SyncSender<Job>) -> Result<()> {
    let mut order: Vec<usize> = (0..source.shards.len()).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(set.seed ^ 0x7368_6172_6473);
    rng.set_stream(plan.epoch as u64);
    if plan.shuffle {
        order.shuffle(&mut rng);
    }
    let mut buffer = ShuffleBuffer::new(if plan.shuffle { source.buffer } else { 0 }, rng);
    let mut out =
        Batcher { plan, shared, jobs, batch: Vec::with_capacity(plan.bs), position: 0, first: Vec::new(), job: 0 };
    for &i in &order {
        let shard = &source.shards[i];
        let (count, start) = (source.counts[i], source.starts[i]);
        let mut k = 0usize;
        let mut stopped = false;
        read_shard(shard, true, |s| {
            if k >= count {
                return Err(Error::data(
                    shard.display(),
                    format!("the shard changed since the run started (more than {count} samples); restart the run"),
                ));
            }
            k += 1;
            if let Some(s) = buffer.push((start + k - 1, s)) {
                stopped = !out.emit(s);
            }
            Ok(!stopped)
        })?;
        if stopped {
            return Ok(());
        }
        if k < count {
            return Err(Error::data(
                shard.display(),
                format!("the shard changed since the run started ({k} samples, not {count}); restart the run"),
            ));
        }
    }
    for s in buffer.finish() {
        if !out.emit(s) {
            return Ok(());
        }
    }
    // DistributedSampler's padding: the stream's first samples again, up to a multiple of the world size.
    if plan.pad && plan.world > 1 {
        let total = plan.n.div_ceil(plan.world) * plan.world;
        let mut p = 0;
        while out.position < total && !out.first.is_empty() {
            let s = out.first[p % out.first.len()].clone();
            p += 1;
            if !out.emit(s) {
                return Ok(());
            }
        }
    }
    out.flush();
    Ok(())
}

/// Waits until batch `job` may be in flight, then hands it to the workers; false when the stream stopped.
fn send(shared: &Shared, jobs: &SyncSender<Job>, capacity: usize, job: usize, b: Vec<(usize, RawSample)>) -> bool {
    {
        let mut st = shared.lock();
        while !st.stop && job >= st.consumed + capacity {
            st = shared.cv.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        if st.stop {
            return false;
        }
        st.next_job = job + 1;
    }
    jobs.send((job, b)).is_ok()
}

/// Decodes and transforms a batch of raw samples into uint8 [B, C, H, W] and labels (by sample index). With
/// `in_step` (a distributed training stream) a batch none of whose images decoded is an error even with
/// `skip_bad` (see [`workers::whole_batch_skipped`]).
fn decode_batch(
    set: &ImageSet,
    labels: &[i64],
    samples: &[(usize, RawSample)],
    epoch: usize,
    in_step: bool,
) -> Result<Batch> {
    let shard_of = |index: usize| -> String {
        let src = set.shards.as_ref().expect("a shard set");
        let i = src.starts.partition_point(|&s| s <= index).saturating_sub(1);
        src.shards[i].display().to_string()
    };
    let mut images = Vec::with_capacity(samples.len());
    let mut ys = Vec::with_capacity(samples.len());
    let mut erase = Vec::with_capacity(samples.len());
    let mut first_skipped = None;
    let mut skipped = 0usize;
    for (index, s) in samples {
        let name = format!("{} (sample '{}.{}')", shard_of(*index), s.key, s.suffix);
        let r = set.decode_transform(&s.image, &name, epoch, *index);
        match r {
            Ok((img, erased)) => {
                images.push(img);
                erase.push(erased);
                ys.push(labels.get(*index).copied().unwrap_or(s.label));
            }
            Err(e) if set.workers.skip_bad => {
                first_skipped.get_or_insert_with(|| e.to_string());
                skipped += 1;
            }
            Err(e) => return Err(e),
        }
    }
    Batch::collate(set, images, ys, erase, skipped, first_skipped, in_step)
}

// ------------------------------------------------------------------------------------------------------------
// Writing shards

/// What `pack` wrote.
#[derive(Debug, Clone)]
pub struct PackReport {
    pub shards: Vec<PathBuf>,
    pub samples: usize,
    pub bytes: u64,
    /// The `--data` pattern naming the shards.
    pub pattern: String,
    pub classes: PathBuf,
}

/// A size such as `1GB`, `500MB`, `64KiB` or `1000000` (bytes); decimal units as webdataset's `maxsize`.
pub fn parse_size(text: &str) -> Result<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = (&t[..split], t[split..].trim().to_ascii_lowercase());
    let mult: u64 = match unit.as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "t" | "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        _ => return Err(Error::config(format!("⟨shard_size⟩ {text}: give bytes or a size such as 500MB or 1GB"))),
    };
    let v: f64 = num.parse().map_err(|_| Error::config(format!("⟨shard_size⟩ {text}: give a size such as 1GB")))?;
    let bytes = (v * mult as f64) as u64;
    if bytes == 0 {
        return Err(Error::config(format!("⟨shard_size⟩ {text}: give a positive size such as 1GB")));
    }
    Ok(bytes)
}

fn tar_header(name: &str, size: u64) -> Result<[u8; 512]> {
    let mut h = [0u8; 512];
    if name.len() > 99 {
        return Err(Error::invalid(format!("tar member name '{name}' is longer than 99 bytes")));
    }
    h[..name.len()].copy_from_slice(name.as_bytes());
    let put = |h: &mut [u8; 512], at: usize, width: usize, v: u64| {
        let s = format!("{v:0w$o}\0", w = width - 1);
        h[at..at + width].copy_from_slice(s.as_bytes());
    };
    put(&mut h, 100, 8, 0o644);
    put(&mut h, 108, 8, 0);
    put(&mut h, 116, 8, 0);
    put(&mut h, 124, 12, size);
    put(&mut h, 136, 12, 0);
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u64 = h.iter().map(|&b| b as u64).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    Ok(h)
}

fn tar_member(w: &mut impl Write, name: &str, data: &[u8]) -> std::io::Result<u64> {
    let h = tar_header(name, data.len() as u64).map_err(std::io::Error::other)?;
    w.write_all(&h)?;
    w.write_all(data)?;
    let pad = (BLOCK - data.len() as u64 % BLOCK) % BLOCK;
    w.write_all(&vec![0u8; pad as usize])?;
    Ok(BLOCK + data.len() as u64 + pad)
}

/// One image of the folder, resized so that its longer side is at most `max_side`, as JPEG bytes (quality 90).
fn pack_image(path: &Path, max_side: u32) -> Result<Vec<u8>> {
    let bytes = super::files::read_all(path, MAX_ENTRY)?;
    let img = folder::decode_image(&bytes, &path.display().to_string())?;
    let (w, h) = (img.width(), img.height());
    let longer = w.max(h);
    let img = if longer > max_side {
        let scale = max_side as f64 / longer as f64;
        let (nw, nh) = (((w as f64 * scale).round() as u32).max(1), ((h as f64 * scale).round() as u32).max(1));
        img.resize_exact(nw.min(max_side), nh.min(max_side), image::imageops::FilterType::Triangle)
    } else {
        img
    };
    let mut out = Vec::new();
    let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90);
    let r = if img.color().has_color() {
        img.into_rgb8().write_with_encoder(encoder)
    } else {
        img.into_luma8().write_with_encoder(encoder)
    };
    r.map_err(|e| Error::data(path.display(), format!("cannot encode it as JPEG: {e}")))?;
    Ok(out)
}

/// Writes the image folder `dir` (ImageFolder order and class indices) as WebDataset shards
/// `OUT_PREFIX-000000.tar`, …: per image `NNNNNNNN.jpg` (resized so its longer side is at most `max_side`,
/// re-encoded as JPEG) and `NNNNNNNN.cls` (the class index), the key being the image's position in the folder's
/// index; a new shard starts before one would pass `shard_size` bytes. The class names go to
/// `OUT_PREFIX-classes.json`.
pub fn pack(dir: &Path, out_prefix: &str, max_side: u32, shard_size: u64) -> Result<PackReport> {
    if max_side == 0 {
        return Err(Error::config("⟨max_side⟩ 0: give the longest side to keep, e.g. 512"));
    }
    let index = folder::index(dir)?;
    let prefix = PathBuf::from(out_prefix);
    if let Some(parent) = prefix.parent().filter(|p| !p.as_os_str().is_empty()) {
        crate::util::create_dir_all(parent)?;
    }
    let shard_path = |i: usize| PathBuf::from(format!("{out_prefix}-{i:06}.tar"));
    let mut shards: Vec<PathBuf> = Vec::new();
    let mut writer: Option<std::io::BufWriter<std::fs::File>> = None;
    let (mut in_shard, mut shard_bytes, mut total) = (0usize, 0u64, 0u64);
    let finish = |w: std::io::BufWriter<std::fs::File>, path: &Path| -> Result<u64> {
        let mut w = w;
        w.write_all(&[0u8; 1024]).map_err(|e| Error::io(path, e))?;
        w.flush().map_err(|e| Error::io(path, e))?;
        Ok(1024)
    };
    for (i, (path, &label)) in index.paths.iter().zip(&index.labels).enumerate() {
        let jpeg = pack_image(path, max_side)?;
        let cls = label.to_string().into_bytes();
        let key = format!("{i:08}");
        let size = 2 * BLOCK + (jpeg.len() as u64).div_ceil(BLOCK) * BLOCK + BLOCK;
        if writer.is_some() && in_shard > 0 && shard_bytes + size + 1024 > shard_size {
            let p = shards.last().expect("open shard").clone();
            total += finish(writer.take().expect("open"), &p)?;
        }
        if writer.is_none() {
            let p = shard_path(shards.len());
            let f = std::fs::File::create(&p).map_err(|e| Error::io(&p, e))?;
            writer = Some(std::io::BufWriter::new(f));
            shards.push(p);
            (in_shard, shard_bytes) = (0, 0);
        }
        let w = writer.as_mut().expect("open");
        let p = shards.last().expect("open shard");
        let n = tar_member(w, &format!("{key}.jpg"), &jpeg).map_err(|e| Error::io(p, e))?
            + tar_member(w, &format!("{key}.cls"), &cls).map_err(|e| Error::io(p, e))?;
        shard_bytes += n;
        total += n;
        in_shard += 1;
    }
    if let Some(w) = writer.take() {
        let p = shards.last().expect("open shard").clone();
        total += finish(w, &p)?;
    }
    let classes = PathBuf::from(format!("{out_prefix}-classes.json"));
    let json = serde_json::to_string_pretty(&index.class_names).map_err(|e| Error::invalid(e.to_string()))?;
    crate::util::write_atomic(&classes, json.as_bytes())?;
    let last = shards.len() - 1;
    let pattern = if last == 0 {
        shard_path(0).display().to_string()
    } else {
        format!("{out_prefix}-{{{:06}..{last:06}}}.tar", 0)
    };
    Ok(PackReport { shards, samples: index.len(), bytes: total, pattern, classes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brace_expansion_follows_braceexpand() {
        assert_eq!(brace_expand("a-{000..002}.tar").unwrap(), ["a-000.tar", "a-001.tar", "a-002.tar"]);
        assert_eq!(brace_expand("{a,b}{1..2}").unwrap(), ["a1", "a2", "b1", "b2"]);
        assert_eq!(brace_expand("x{9..11}").unwrap(), ["x9", "x10", "x11"]);
        assert_eq!(brace_expand("x{0..4..2}").unwrap(), ["x0", "x2", "x4"]);
        assert_eq!(brace_expand("p{a,{b,c}}").unwrap(), ["pa", "pb", "pc"]);
        assert!(brace_expand("x{1..2").is_err());
    }

    #[test]
    fn keys_split_at_the_first_dot_of_the_name() {
        assert_eq!(key_suffix("d.x/k1.seg.png"), Some(("d.x/k1", "seg.png".to_string())));
        assert_eq!(key_suffix("k.JPG"), Some(("k", "jpg".to_string())));
        assert_eq!(key_suffix("noext"), None);
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("1GB").unwrap(), 1_000_000_000);
        assert_eq!(parse_size("64KiB").unwrap(), 65536);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert!(parse_size("1XB").is_err());
    }
}
