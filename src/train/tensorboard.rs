//! TensorBoard event files written by hand: TFRecord framing (length, masked CRC32C of the length, data, masked
//! CRC32C of the data) around `Event` protobufs (tensorflow/core/util/event.proto) holding `Summary` values: scalars
//! (`simple_value`), histograms (`HistogramProto`) and text (the text plugin's string `TensorProto`).
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), table-driven.
pub fn crc32c(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, entry) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 { (c >> 1) ^ 0x82F6_3B78 } else { c >> 1 };
            }
            *entry = c;
        }
        t
    });
    let mut crc = !0u32;
    for &b in data {
        crc = table[((crc ^ b as u32) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

/// TFRecord's masked CRC: rotated right by 15 bits plus a constant.
pub fn masked_crc32c(data: &[u8]) -> u32 {
    let crc = crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// One TFRecord: u64 length, masked CRC of the length, the data, masked CRC of the data (all little-endian).
pub fn tfrecord(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc32c(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc32c(data).to_le_bytes());
    out
}

/// A protobuf message being encoded: fields appended in field-number order.
#[derive(Default)]
struct Proto(Vec<u8>);

impl Proto {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }
    fn key(&mut self, field: u32, wire: u32) {
        self.varint(u64::from(field << 3 | wire));
    }
    fn uint(&mut self, field: u32, v: u64) {
        self.key(field, 0);
        self.varint(v);
    }
    fn double(&mut self, field: u32, v: f64) {
        self.key(field, 1);
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn float(&mut self, field: u32, v: f32) {
        self.key(field, 5);
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, field: u32, v: &[u8]) {
        self.key(field, 2);
        self.varint(v.len() as u64);
        self.0.extend_from_slice(v);
    }
    fn message(&mut self, field: u32, m: Proto) {
        self.bytes(field, &m.0);
    }
    fn packed_doubles(&mut self, field: u32, vs: &[f64]) {
        let bytes: Vec<u8> = vs.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.bytes(field, &bytes);
    }
}

/// `HistogramProto`'s fields: the values' count, sum and sum of squares, their range, and buckets (each bucket
/// counts the values up to its limit, above the previous limit).
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    pub min: f64,
    pub max: f64,
    pub num: f64,
    pub sum: f64,
    pub sum_squares: f64,
    pub bucket_limit: Vec<f64>,
    pub bucket: Vec<f64>,
}

impl Histogram {
    /// `bins` equal-width buckets over [min, max] (numpy's `histogram`, which PyTorch's `add_histogram` uses); one
    /// bucket when all values are equal.
    pub fn of(t: &tch::Tensor, bins: usize) -> Histogram {
        let v = t.detach().to_device(tch::Device::Cpu).to_kind(tch::Kind::Double).flatten(0, -1);
        let num = v.size()[0] as f64;
        if num == 0.0 {
            return Histogram {
                min: 0.0,
                max: 0.0,
                num,
                sum: 0.0,
                sum_squares: 0.0,
                bucket_limit: vec![],
                bucket: vec![],
            };
        }
        let (min, max) = (v.min().double_value(&[]), v.max().double_value(&[]));
        let sum = v.sum(tch::Kind::Double).double_value(&[]);
        let sum_squares = (&v * &v).sum(tch::Kind::Double).double_value(&[]);
        let (bucket_limit, bucket) = if max > min && bins > 1 {
            // Over the values' own range [min, max], as torch.histc with min = max = 0.
            let counts = Vec::<f64>::try_from(v.histc(bins as i64)).unwrap_or_default();
            let width = (max - min) / bins as f64;
            let limits = (1..=bins).map(|i| if i == bins { max } else { min + width * i as f64 }).collect();
            (limits, counts)
        } else {
            (vec![max], vec![num])
        };
        Histogram { min, max, num, sum, sum_squares, bucket_limit, bucket }
    }

    fn proto(&self) -> Proto {
        let mut p = Proto::default();
        p.double(1, self.min);
        p.double(2, self.max);
        p.double(3, self.num);
        p.double(4, self.sum);
        p.double(5, self.sum_squares);
        p.packed_doubles(6, &self.bucket_limit);
        p.packed_doubles(7, &self.bucket);
        p
    }
}

/// What one `Summary.Value` holds.
pub enum Value<'a> {
    Scalar(f32),
    Histogram(&'a Histogram),
    /// The text plugin's summary: a string tensor of shape [1], metadata plugin `text`.
    Text(&'a str),
}

fn summary_value(tag: &str, value: &Value) -> Proto {
    let mut v = Proto::default();
    v.bytes(1, tag.as_bytes());
    match value {
        Value::Scalar(x) => v.float(2, *x),
        Value::Histogram(h) => v.message(5, h.proto()),
        Value::Text(text) => {
            let mut tensor = Proto::default();
            tensor.uint(1, 7); // DT_STRING
            let mut dim = Proto::default();
            dim.uint(1, 1);
            let mut shape = Proto::default();
            shape.message(2, dim);
            tensor.message(2, shape);
            tensor.bytes(8, text.as_bytes());
            v.message(8, tensor);
            let mut plugin = Proto::default();
            plugin.bytes(1, b"text");
            let mut metadata = Proto::default();
            metadata.message(1, plugin);
            v.message(9, metadata);
        }
    }
    v
}

fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// One event file, `events.out.tfevents.<seconds>.<host>.<pid>.0`, opened with its `file_version` event.
pub struct EventWriter {
    path: PathBuf,
    file: std::io::BufWriter<std::fs::File>,
}

impl EventWriter {
    /// A new event file in `dir` (made if missing). Its name sorts after every event file already there, as
    /// TensorBoard reads a folder's files in name order.
    pub fn create(dir: &Path) -> Result<EventWriter> {
        crate::util::create_dir_all(dir)?;
        let mut secs = now() as u64;
        let existing = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
        for entry in existing.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if let Some(s) = name.strip_prefix("events.out.tfevents.").and_then(|r| r.split('.').next()) {
                if let Ok(s) = s.parse::<u64>() {
                    secs = secs.max(s + 1);
                }
            }
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().replace(['/', '\\'], "_"))
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into());
        let path = dir.join(format!("events.out.tfevents.{secs:010}.{host}.{}.0", std::process::id()));
        let file =
            std::fs::OpenOptions::new().create_new(true).write(true).open(&path).map_err(|e| Error::io(&path, e))?;
        let mut w = EventWriter { path, file: std::io::BufWriter::new(file) };
        let mut event = Proto::default();
        event.double(1, now());
        event.bytes(3, b"brain.Event:2");
        w.record(event)?;
        w.flush()?;
        Ok(w)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn record(&mut self, event: Proto) -> Result<()> {
        self.file.write_all(&tfrecord(&event.0)).map_err(|e| Error::io(&self.path, e))
    }

    fn event(&mut self, step: i64, field: u32, body: Proto) -> Result<()> {
        let mut event = Proto::default();
        event.double(1, now());
        event.uint(2, step as u64);
        event.message(field, body);
        self.record(event)
    }

    /// One `Summary` at `step` with these tagged values.
    pub fn summary(&mut self, step: i64, values: &[(&str, Value)]) -> Result<()> {
        let mut summary = Proto::default();
        for (tag, value) in values {
            summary.message(1, summary_value(tag, value));
        }
        self.event(step, 5, summary)
    }

    /// `SessionLog(status=START)` at `step`: TensorBoard then drops the events of the earlier files at this step
    /// and later (PyTorch's `SummaryWriter(purge_step=...)`), so a resumed run's repeated epochs show once.
    pub fn session_start(&mut self, step: i64) -> Result<()> {
        let mut log = Proto::default();
        log.uint(1, 1);
        self.event(step, 7, log)
    }

    pub fn flush(&mut self) -> Result<()> {
        self.file.flush().map_err(|e| Error::io(&self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_standard_check_values() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        // RFC 3720, B.4: 32 bytes of zeros, of 0xff, ascending.
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(&[0xffu8; 32]), 0x62A8_AB43);
        let ascending: Vec<u8> = (0..32).collect();
        assert_eq!(crc32c(&ascending), 0x46DD_794E);
    }

    #[test]
    fn varints_are_little_endian_groups_of_seven_bits() {
        let mut p = Proto::default();
        p.varint(300);
        assert_eq!(p.0, [0xAC, 0x02]);
        let mut p = Proto::default();
        p.uint(2, u64::MAX);
        assert_eq!(p.0.len(), 11);
    }
}
