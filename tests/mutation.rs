//! Every file reader against thousands of seeded mutations of a small valid file (bytes flipped, set to extremes,
//! cut, inserted, repeated): each read must end in `Ok` or `Err` — never a panic — and allocate a bounded amount on
//! the Rust side (a counting allocator measures each read's peak; libtorch's own allocations are outside it).
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use tch::{Kind, Tensor};
use tchzoo::data::files::{csv, idx, images, npy};

struct Counting;

thread_local! {
    static LIVE: Cell<i64> = const { Cell::new(0) };
    static PEAK: Cell<i64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = LIVE.try_with(|l| {
            let now = l.get() + layout.size() as i64;
            l.set(now);
            let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
        });
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let _ = LIVE.try_with(|l| l.set(l.get() - layout.size() as i64));
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// The most one read of a mutant of a file of `len` bytes may take on this thread, beyond what was live before.
fn allowed(len: usize) -> i64 {
    (64 << 20) + 2200 * len as i64
}

/// splitmix64: the seeded source of every mutation.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One mutation of `valid`: a few bytes changed (random, 0x00, 0xff, 0x7f, +-1), a cut, an insertion, a
/// repeated slice, or a 32-bit field set to an extreme.
fn mutate(valid: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut b = valid.to_vec();
    for _ in 0..1 + rng.below(3) {
        let len = b.len().max(1);
        match rng.below(7) {
            0 => {
                let i = rng.below(len);
                if i < b.len() {
                    b[i] = rng.next() as u8;
                }
            }
            1 => {
                let i = rng.below(len);
                if i < b.len() {
                    b[i] = [0x00, 0xff, 0x7f, 0x80][rng.below(4)];
                }
            }
            2 => {
                let i = rng.below(len);
                if i < b.len() {
                    b[i] = b[i].wrapping_add(if rng.below(2) == 0 { 1 } else { 255 });
                }
            }
            3 => b.truncate(rng.below(len)),
            4 => {
                let i = rng.below(len + 1).min(b.len());
                let n = 1 + rng.below(16);
                let extra: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                b.splice(i..i, extra);
            }
            5 => {
                let i = rng.below(len).min(b.len());
                let n = rng.below(64).min(b.len() - i);
                let chunk = b[i..i + n].to_vec();
                b.splice(i..i, chunk);
            }
            _ => {
                let i = rng.below(len);
                if i + 4 <= b.len() {
                    let v: u32 = [0, 1, u32::MAX, 0x7fff_ffff, 0x8000_0000][rng.below(5)];
                    let bytes = if rng.below(2) == 0 { v.to_le_bytes() } else { v.to_be_bytes() };
                    b[i..i + 4].copy_from_slice(&bytes);
                }
            }
        }
    }
    b
}

/// Runs `read` on `count` mutants of `valid` (each written to `path` first when the reader reads files).
/// Returns (oks, errs). Panics if a read panics or allocates beyond the bound.
fn torture(what: &str, valid: &[u8], count: usize, seed: u64, mut read: impl FnMut(&[u8]) -> bool) -> (usize, usize) {
    assert!(read(valid), "{what}: the valid file does not read");
    let mut rng = Rng(seed);
    let (mut oks, mut errs) = (0, 0);
    let started = std::time::Instant::now();
    for i in 0..count {
        let m = mutate(valid, &mut rng);
        let base = LIVE.with(|l| l.get());
        PEAK.with(|p| p.set(base));
        let got = tchzoo::util::catch_torch(|| read(&m));
        let peak = PEAK.with(|p| p.get()) - base;
        match got {
            Ok(true) => oks += 1,
            Ok(false) => errs += 1,
            Err(msg) => panic!("{what}: mutant {i} (seed {seed}) panicked: {msg}"),
        }
        assert!(
            peak <= allowed(m.len()),
            "{what}: mutant {i} (seed {seed}) allocated {peak} bytes for {} bytes",
            m.len()
        );
    }
    eprintln!("{what}: {count} mutants in {:.2}s: {oks} read, {errs} refused", started.elapsed().as_secs_f64());
    (oks, errs)
}

/// A scratch folder in memory where there is one (thousands of small writes to a disk take seconds).
fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(t) = tempfile::Builder::new().prefix("tchzoo-mutation").tempdir_in(shm) {
            return t;
        }
    }
    tempfile::tempdir().unwrap()
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
}

fn state_dict() -> Vec<(String, Tensor)> {
    vec![
        ("layer.weight".into(), Tensor::arange(12, (Kind::Float, tch::Device::Cpu)).reshape([3, 4])),
        ("layer.bias".into(), Tensor::from_slice(&[1.0f64, -2.0, 3.5])),
        ("bn.num_batches_tracked".into(), Tensor::from_slice(&[7i64])),
        ("mask".into(), Tensor::from_slice(&[true, false, true])),
    ]
}

#[test]
fn torch_save_files() {
    let tmp = scratch();
    let valid_path = tmp.path().join("valid.pt");
    tchzoo::checkpoint::write_state_dict(&valid_path, &state_dict()).unwrap();
    let valid = std::fs::read(&valid_path).unwrap();
    let p = tmp.path().join("m.pt");
    let (_, errs) = torture("torch.save (.pt)", &valid, 3000, 1, |b| {
        write(&p, b);
        tchzoo::checkpoint::read_state_dict(&p).is_ok()
    });
    assert!(errs > 0, "no mutant was refused: the mutations do not reach the format");
}

#[test]
fn safetensors_files() {
    let tmp = scratch();
    let valid_path = tmp.path().join("valid.safetensors");
    tchzoo::checkpoint::write_state_dict(&valid_path, &state_dict()).unwrap();
    let valid = std::fs::read(&valid_path).unwrap();
    let p = tmp.path().join("m.safetensors");
    let (_, errs) = torture("safetensors", &valid, 3000, 2, |b| {
        write(&p, b);
        tchzoo::checkpoint::read_state_dict(&p).is_ok()
    });
    assert!(errs > 0);
}

fn npy_bytes(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (header.len() + 11) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

#[test]
fn npy_and_npz_files() {
    let tmp = scratch();
    let xs: Vec<u8> = (0..8).flat_map(|i| (i as f32 * 0.5).to_le_bytes()).collect();
    let valid = npy_bytes("<f4", "(4, 2)", &xs);
    let p = tmp.path().join("m.npy");
    let (_, errs) = torture("npy", &valid, 3000, 3, |b| {
        write(&p, b);
        npy::read_npy(&p).is_ok()
    });
    assert!(errs > 0);

    // An .npz: x deflated, y stored.
    let ys: Vec<u8> = [0i64, 1, 0, 1].iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut buf);
        let deflated = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        zip.start_file("x.npy", deflated).unwrap();
        zip.write_all(&valid).unwrap();
        zip.start_file("y.npy", stored).unwrap();
        zip.write_all(&npy_bytes("<i8", "(4,)", &ys)).unwrap();
        zip.finish().unwrap();
    }
    let valid = buf.into_inner();
    let p = tmp.path().join("m.npz");
    let (_, errs) = torture("npz", &valid, 3000, 4, |b| {
        write(&p, b);
        npy::read_npz(&p, &["x", "y"]).is_ok()
    });
    assert!(errs > 0);
}

#[test]
fn idx_files_raw_and_gzipped() {
    let images: Vec<u8> = (0..4 * 5 * 5).map(|i| (i * 7 % 256) as u8).collect();
    let raw = idx::encode(&[4, 5, 5], idx::IdxType::U8, &images);
    let (_, errs) = torture("idx", &raw, 3000, 5, |b| idx::decode_bytes(b, "m").and_then(|a| a.to_tensor()).is_ok());
    assert!(errs > 0);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&idx::encode(&[6], idx::IdxType::F32, &[0u8; 24])).unwrap();
    let gz = gz.finish().unwrap();
    let (_, errs) = torture("idx.gz", &gz, 3000, 6, |b| idx::decode_bytes(b, "m").and_then(|a| a.to_tensor()).is_ok());
    assert!(errs > 0);
}

#[test]
fn csv_files() {
    let tmp = scratch();
    let valid =
        b"x,y,\"note, quoted\",label\n1,2.5,a,cat\n-3,4e-3,\"b \"\"c\"\"\",dog\n5,6,d,cat\n7,8,e,dog\n".to_vec();
    let p = tmp.path().join("m.csv");
    let options = BTreeMap::new();
    let (_, errs) = torture("csv", &valid, 3000, 7, |b| {
        write(&p, b);
        csv::load(&p, &options).is_ok()
    });
    assert!(errs > 0);
}

#[test]
fn image_folders() {
    let tmp = scratch();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let img = image::RgbImage::from_fn(6, 5, |x, y| image::Rgb([(x * 40) as u8, (y * 50) as u8, 90]));
    img.save(src.join("a.png")).unwrap();
    img.save(src.join("a.jpg")).unwrap();
    let options = BTreeMap::new();
    for (ext, seed) in [("png", 8), ("jpg", 9)] {
        let valid = std::fs::read(src.join(format!("a.{ext}"))).unwrap();
        let folder = tmp.path().join(format!("set-{ext}"));
        std::fs::create_dir_all(folder.join("only")).unwrap();
        let p = folder.join("only").join(format!("m.{ext}"));
        let (_, errs) = torture(ext, &valid, 2000, seed, |b| {
            write(&p, b);
            images::load_folder(&folder, &options).is_ok()
        });
        assert!(errs > 0);
    }
}
