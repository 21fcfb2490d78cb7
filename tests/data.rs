//! Data sources: generators, file formats (IDX, CIFAR-10, image folders, CSV, NPY/NPZ), the embedded digits and the
//! seeded loader. Files are written by the tests themselves; scikit-learn is the oracle for the digits and for the
//! noise-free moons and circles (one Python process for all of them).
mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use tch::{Kind, Tensor};
use tchzoo::data::{self, digits, files, generators, Dataset, Loader, Task};

fn opts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// The error's message, checked to be one line.
fn err(r: tchzoo::Result<Dataset>) -> String {
    let msg = r.expect_err("expected an error").to_string();
    assert!(!msg.contains('\n'), "error is not one line: {msg}");
    msg
}

fn f32s(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(&t.to_kind(Kind::Float).reshape([-1])).unwrap()
}
fn i64s(t: &Tensor) -> Vec<i64> {
    Vec::<i64>::try_from(&t.to_kind(Kind::Int64).reshape([-1])).unwrap()
}

/// scikit-learn's digits and noise-free, unshuffled moons/circles, written once per test run as raw binaries.
fn oracle() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        common::run_script("data_oracle.py", &[dir.to_str().unwrap()]);
        dir
    })
}

fn read_f64(path: &Path) -> Vec<f64> {
    std::fs::read(path).unwrap().chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect()
}
fn read_i64(path: &Path) -> Vec<i64> {
    std::fs::read(path).unwrap().chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap())).collect()
}

// ------------------------------------------------------------------------------------------------------------
// Generators

#[test]
fn moons_shape_balance_and_arcs() {
    let d = generators::generate("moons", &opts(&[("n_samples", "101")]), 0).unwrap();
    assert_eq!(d.xs.size(), [101, 2]);
    assert_eq!(d.xs.kind(), Kind::Float);
    assert_eq!(d.task, Task::Classification { n_classes: 2 });
    let (xs, ys) = (f32s(&d.xs), i64s(&d.ys));
    assert_eq!(ys.iter().filter(|&&y| y == 0).count(), 50, "n_out = n // 2");
    assert_eq!(ys.iter().filter(|&&y| y == 1).count(), 51);
    assert_ne!(ys[..50], [0; 50], "shuffled by default");
    for (p, &y) in xs.chunks(2).zip(&ys) {
        let (x, y_) = (p[0] as f64, p[1] as f64);
        if y == 0 {
            assert!((x * x + y_ * y_ - 1.0).abs() < 1e-6 && y_ >= -1e-7, "outer point off its arc: {p:?}");
        } else {
            let r = (x - 1.0).powi(2) + (y_ - 0.5).powi(2);
            assert!((r - 1.0).abs() < 1e-6 && y_ <= 0.5 + 1e-7, "inner point off its arc: {p:?}");
        }
    }
}

#[test]
fn moons_noise_is_gaussian_with_the_given_std() {
    let clean = generators::generate("moons", &opts(&[("n_samples", "20000"), ("shuffle", "false")]), 1).unwrap();
    let noisy =
        generators::generate("moons", &opts(&[("n_samples", "20000"), ("shuffle", "false"), ("noise", "0.1")]), 1)
            .unwrap();
    assert!(clean.ys.equal(&noisy.ys));
    let diff = &noisy.xs - &clean.xs;
    let mean = diff.mean(Kind::Double).double_value(&[]);
    let std = diff.std(true).double_value(&[]);
    assert!(mean.abs() < 0.005, "noise mean {mean}");
    assert!((std - 0.1).abs() < 0.003, "noise std {std}");
}

#[test]
fn generators_are_seeded() {
    for &name in generators::NAMES {
        let a = generators::generate(name, &opts(&[("n_samples", "50")]), 7).unwrap();
        let b = generators::generate(name, &opts(&[("n_samples", "50")]), 7).unwrap();
        let c = generators::generate(name, &opts(&[("n_samples", "50")]), 8).unwrap();
        let d = generators::generate(name, &opts(&[("n_samples", "50"), ("seed", "8")]), 7).unwrap();
        assert!(a.xs.equal(&b.xs) && a.ys.equal(&b.ys), "{name}: same seed, different data");
        assert!(!a.xs.equal(&c.xs), "{name}: different seeds, same data");
        assert!(c.xs.equal(&d.xs) && c.ys.equal(&d.ys), "{name}: option seed= does not override the argument");
    }
}

#[test]
fn circles_blobs_xor() {
    let d = generators::generate("circles", &opts(&[("n_samples", "100"), ("factor", "0.5")]), 0).unwrap();
    for (p, y) in f32s(&d.xs).chunks(2).zip(i64s(&d.ys)) {
        let r = ((p[0] * p[0] + p[1] * p[1]) as f64).sqrt();
        assert!((r - if y == 0 { 1.0 } else { 0.5 }).abs() < 1e-6, "radius {r} for label {y}");
    }
    let d = generators::generate("blobs", &opts(&[("n_samples", "103"), ("centers", "4"), ("n_features", "3")]), 0)
        .unwrap();
    assert_eq!(d.xs.size(), [103, 3]);
    assert_eq!(d.task, Task::Classification { n_classes: 4 });
    let ys = i64s(&d.ys);
    let counts: Vec<usize> = (0..4).map(|c| ys.iter().filter(|&&y| y == c).count()).collect();
    assert_eq!(counts, [26, 26, 26, 25]);
    let d = generators::generate("xor", &opts(&[("n_samples", "200")]), 3).unwrap();
    let ys = i64s(&d.ys);
    for (p, y) in f32s(&d.xs).chunks(2).zip(&ys) {
        assert!(p[0].abs() <= 1.0 && p[1].abs() <= 1.0);
        assert_eq!(*y, i64::from(p[0] * p[1] < 0.0), "xor label of {p:?}");
    }
    assert!(ys.iter().sum::<i64>() > 60 && ys.iter().sum::<i64>() < 140);
}

#[test]
fn moons_and_circles_match_sklearn_without_noise() {
    let dir = oracle();
    for (name, options) in [
        ("moons", opts(&[("n_samples", "101"), ("shuffle", "false")])),
        ("circles", opts(&[("n_samples", "101"), ("shuffle", "false"), ("factor", "0.5")])),
    ] {
        let d = generators::generate(name, &options, 0).unwrap();
        let want_x = read_f64(&dir.join(format!("{name}_x.bin")));
        let want_y = read_i64(&dir.join(format!("{name}_y.bin")));
        assert_eq!(i64s(&d.ys), want_y, "{name} labels");
        for (got, want) in f32s(&d.xs).iter().zip(&want_x) {
            assert_eq!(*got, *want as f32, "{name}: {got} vs sklearn {want}");
        }
    }
}

#[test]
fn generator_errors_are_one_clear_line() {
    let msg = err(generators::generate("moons", &opts(&[("nosie", "0.1")]), 0));
    assert!(msg.contains("nosie") && msg.contains("'noise'") && msg.contains("n_samples"), "{msg}");
    let msg = err(generators::generate("moons", &opts(&[("n_samples", "0")]), 0));
    assert!(msg.contains("n_samples=0"), "{msg}");
    let msg = err(generators::generate("moons", &opts(&[("n_samples", "lots")]), 0));
    assert!(msg.contains("n_samples=lots"), "{msg}");
    let msg = err(generators::generate("moons", &opts(&[("noise", "-1")]), 0));
    assert!(msg.contains("noise=-1"), "{msg}");
    let msg = err(generators::generate("circles", &opts(&[("factor", "1.5")]), 0));
    assert!(msg.contains("factor=1.5"), "{msg}");
    let msg = err(generators::generate("blobs", &opts(&[("center_box", "10..-10")]), 0));
    assert!(msg.contains("center_box"), "{msg}");
    let msg = err(data::load("moon", 0));
    assert!(msg.contains("'moons'"), "{msg}");
    let d = data::load("moons:n_samples=10,noise=0.1", 3).unwrap();
    assert_eq!(d.len(), 10);
}

// ------------------------------------------------------------------------------------------------------------
// IDX

fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

#[test]
fn idx_folder_raw_and_gz() {
    let dir = tempfile::tempdir().unwrap();
    let pixels: Vec<u8> = (0..24).map(|i| i * 10).collect();
    std::fs::write(dir.path().join("train-images-idx3-ubyte"), idx(&[3, 2, 4], &pixels)).unwrap();
    std::fs::write(dir.path().join("train-labels-idx1-ubyte.gz"), gz(&idx(&[3], &[2, 0, 1]))).unwrap();
    std::fs::write(dir.path().join("t10k-images-idx3-ubyte.gz"), gz(&idx(&[1, 2, 4], &[255; 8]))).unwrap();
    std::fs::write(dir.path().join("t10k-labels-idx1-ubyte.gz"), gz(&idx(&[1], &[7]))).unwrap();

    let d = files::load_path(dir.path(), &opts(&[])).unwrap();
    assert_eq!(d.xs.size(), [3, 1, 2, 4]);
    let want: Vec<f32> = pixels.iter().map(|&p| p as f32 / 255.0).collect();
    assert_eq!(d.xs.kind(), Kind::Uint8, "pixels stay uint8 in memory");
    assert_eq!(f32s(&d.features()), want);
    assert_eq!(i64s(&d.ys), [2, 0, 1]);
    assert_eq!(d.task, Task::Classification { n_classes: 3 });

    let d = files::load_path(dir.path(), &opts(&[("split", "test"), ("classes", "10")])).unwrap();
    assert_eq!(d.xs.size(), [1, 1, 2, 4]);
    assert_eq!(f32s(&d.features()), [1.0; 8]);
    assert_eq!(d.task, Task::Classification { n_classes: 10 });

    let msg = err(files::load_path(dir.path(), &opts(&[("split", "valid")])));
    assert!(msg.contains("split=valid") && msg.contains("t10k") && msg.contains("train"), "{msg}");
    let msg = err(files::load_path(dir.path(), &opts(&[("split", "test"), ("classes", "5")])));
    assert!(msg.contains("label 7") && msg.contains("classes=5"), "{msg}");
}

#[test]
fn idx_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("train-images-idx3-ubyte");
    let labels = dir.path().join("train-labels-idx1-ubyte");
    std::fs::write(&labels, idx(&[3], &[0, 1, 2])).unwrap();

    // Truncated: the header says 3×2×2 but two bytes are missing.
    std::fs::write(&images, idx(&[3, 2, 2], &[0; 10])).unwrap();
    let msg = err(files::load_path(dir.path(), &opts(&[])));
    assert!(msg.contains(&images.display().to_string()) && msg.contains("truncated"), "{msg}");

    // A truncated gzip stream.
    std::fs::remove_file(&images).unwrap();
    let gz_path = dir.path().join("train-images-idx3-ubyte.gz");
    let full = gz(&idx(&[3, 2, 2], &[9; 12]));
    std::fs::write(&gz_path, &full[..full.len() - 12]).unwrap();
    let msg = err(files::load_path(dir.path(), &opts(&[])));
    assert!(msg.contains(&gz_path.display().to_string()), "{msg}");

    // Bad magic.
    let mut bad = idx(&[3, 2, 2], &[0; 12]);
    bad[0] = 0x50;
    std::fs::write(&gz_path, &bad).unwrap();
    let msg = err(files::load_path(dir.path(), &opts(&[])));
    assert!(msg.contains(&gz_path.display().to_string()) && msg.contains("magic"), "{msg}");

    // Absurd dimensions in a tiny file: an error, not an allocation.
    std::fs::write(&gz_path, idx(&[u32::MAX, u32::MAX, 16], &[0; 4])).unwrap();
    let msg = err(files::load_path(dir.path(), &opts(&[])));
    assert!(msg.contains(&gz_path.display().to_string()), "{msg}");

    // More images than labels.
    std::fs::write(&gz_path, gz(&idx(&[4, 2, 2], &[0; 16]))).unwrap();
    let msg = err(files::load_path(dir.path(), &opts(&[])));
    assert!(msg.contains("4 images but 3 labels"), "{msg}");

    // An empty labels file.
    std::fs::write(&gz_path, gz(&idx(&[3, 2, 2], &[0; 12]))).unwrap();
    std::fs::write(&labels, b"").unwrap();
    let msg = err(files::load_path(dir.path(), &opts(&[])));
    assert!(msg.contains(&labels.display().to_string()) && msg.contains("empty"), "{msg}");
}

// ------------------------------------------------------------------------------------------------------------
// CIFAR-10

#[test]
fn cifar_folder() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = Vec::new();
    for (i, label) in [3u8, 0, 9].iter().enumerate() {
        bytes.push(*label);
        for c in 0..3u32 {
            for p in 0..1024u32 {
                bytes.push(((i as u32 * 50 + c * 80 + p) % 256) as u8);
            }
        }
    }
    std::fs::write(dir.path().join("data_batch_1.bin"), &bytes).unwrap();
    std::fs::write(dir.path().join("test_batch.bin"), &bytes[..3073]).unwrap();
    let names = "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n";
    std::fs::write(dir.path().join("batches.meta.txt"), names).unwrap();

    let d = files::load_path(dir.path(), &opts(&[])).unwrap();
    assert_eq!(d.xs.size(), [3, 3, 32, 32]);
    assert_eq!(i64s(&d.ys), [3, 0, 9]);
    assert_eq!(d.task, Task::Classification { n_classes: 10 });
    assert_eq!(d.class_names.as_ref().unwrap()[3], "cat");
    // Record 2, channel 2 (blue), row 1, column 3 = pixel 35 of the channel.
    let v = d.features().double_value(&[2, 2, 1, 3]);
    assert!((v - ((100 + 160 + 35) % 256) as f64 / 255.0).abs() < 1e-6, "{v}");
    let d = files::load_path(dir.path(), &opts(&[("split", "test")])).unwrap();
    assert_eq!(d.len(), 1);

    std::fs::write(dir.path().join("data_batch_1.bin"), &bytes[..bytes.len() - 1]).unwrap();
    let msg = err(files::load_path(dir.path(), &opts(&[])));
    assert!(msg.contains("data_batch_1.bin") && msg.contains("3073"), "{msg}");
}

// ------------------------------------------------------------------------------------------------------------
// Image folders

#[test]
fn image_folder() {
    let dir = tempfile::tempdir().unwrap();
    for class in ["dog", "cat"] {
        std::fs::create_dir(dir.path().join(class)).unwrap();
    }
    image::RgbImage::from_pixel(6, 4, image::Rgb([200, 10, 30])).save(dir.path().join("cat/b.png")).unwrap();
    image::RgbImage::from_pixel(6, 4, image::Rgb([0, 255, 0])).save(dir.path().join("cat/a.png")).unwrap();
    image::RgbImage::from_pixel(12, 8, image::Rgb([1, 2, 3])).save(dir.path().join("dog/x.png")).unwrap();
    std::fs::write(dir.path().join("dog/notes.txt"), "not an image").unwrap();

    // Sizes differ: the size is never taken silently from the first file.
    let msg = err(files::load_path(dir.path(), &opts(&[])));
    assert!(msg.contains("x.png") && msg.contains("size=4x6"), "{msg}");
    let d = files::load_path(dir.path(), &opts(&[("size", "4x6")])).unwrap();
    assert_eq!(d.xs.size(), [3, 3, 4, 6], "resized to size=4x6");
    assert_eq!(i64s(&d.ys), [0, 0, 1], "classes in sorted folder order, files sorted");
    assert_eq!(d.class_names.as_deref(), Some(&["cat".to_string(), "dog".to_string()][..]));
    // cat/a.png (pure green) comes first.
    assert_eq!(d.features().double_value(&[0, 1, 2, 3]), 1.0);
    assert!((d.features().double_value(&[1, 0, 0, 0]) - 200.0 / 255.0).abs() < 1e-6);
    let d = files::load_path(dir.path(), &opts(&[("size", "2x3")])).unwrap();
    assert_eq!(d.xs.size(), [3, 3, 2, 3]);

    let gray = tempfile::tempdir().unwrap();
    for (class, v) in [("0", 0u8), ("1", 255)] {
        std::fs::create_dir(gray.path().join(class)).unwrap();
        image::GrayImage::from_pixel(5, 5, image::Luma([v])).save(gray.path().join(class).join("p.png")).unwrap();
    }
    let d = files::load_path(gray.path(), &opts(&[])).unwrap();
    assert_eq!(d.xs.size(), [2, 1, 5, 5], "all grayscale: one channel");
    assert_eq!(f32s(&d.features().select(0, 1)), [1.0; 25]);

    std::fs::write(gray.path().join("1/broken.png"), b"not a png").unwrap();
    let msg = err(files::load_path(gray.path(), &opts(&[])));
    assert!(msg.contains("broken.png"), "{msg}");
    let empty = tempfile::tempdir().unwrap();
    let msg = err(files::load_path(empty.path(), &opts(&[])));
    assert!(msg.contains(&empty.path().display().to_string()) && msg.contains("sub-folder"), "{msg}");
}

// ------------------------------------------------------------------------------------------------------------
// CSV

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn csv_string_and_numeric_labels() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "iris.csv",
        "a,name,b,species\n1,\"Smith, J\",2,virginica\n3,x,4.5,setosa\r\n\n5,y,-6e-1,virginica\n",
    );
    let d = files::load_path(&p, &opts(&[])).unwrap();
    assert_eq!(d.xs.size(), [3, 2], "the text column is not a feature");
    assert_eq!(f32s(&d.xs), [1.0, 2.0, 3.0, 4.5, 5.0, -0.6]);
    assert_eq!(i64s(&d.ys), [1, 0, 1]);
    assert_eq!(d.class_names.as_deref(), Some(&["setosa".to_string(), "virginica".to_string()][..]));

    let p = write(dir.path(), "num.csv", "x1,y,x2\n0.5,2,1\n1.5,0,2\n2.5,1,3\n");
    let d = data::load(&format!("{}:label=y", p.display()), 0).unwrap();
    assert_eq!(f32s(&d.xs), [0.5, 1.0, 1.5, 2.0, 2.5, 3.0]);
    assert_eq!(i64s(&d.ys), [2, 0, 1]);
    assert_eq!(d.task, Task::Classification { n_classes: 3 });
    let d = files::load_path(&p, &opts(&[("label", "x1"), ("task", "regression")])).unwrap();
    assert_eq!(d.task, Task::Regression { n_outputs: 1 });
    assert_eq!(d.ys.size(), [3, 1]);
    assert_eq!(f32s(&d.ys), [0.5, 1.5, 2.5]);
    let msg = err(files::load_path(&p, &opts(&[("label", "x1")])));
    assert!(msg.contains("0.5") && msg.contains("task=regression"), "{msg}");
}

#[test]
fn csv_errors_name_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "bad.csv", "a,b,species\n1,2,x\n3,abc,y\n");
    let msg = err(files::load_path(&p, &opts(&[])));
    assert!(msg.contains("bad.csv") && msg.contains("line 3") && msg.contains("'b'") && msg.contains("abc"), "{msg}");
    let p = write(dir.path(), "gap.csv", "a,b,species\n1,,x\n3,4,y\n");
    let msg = err(files::load_path(&p, &opts(&[])));
    assert!(msg.contains("line 2") && msg.contains("'b'") && msg.contains("empty"), "{msg}");
    let p = write(dir.path(), "ok.csv", "a,b,species\n1,2,x\n3,4,y\n");
    let msg = err(files::load_path(&p, &opts(&[("label", "specis")])));
    assert!(msg.contains("specis") && msg.contains("did you mean 'species'"), "{msg}");
    let msg = err(files::load_path(&p, &opts(&[("lable", "species")])));
    assert!(msg.contains("lable") && msg.contains("'label'"), "{msg}");
    let p = write(dir.path(), "ragged.csv", "a,b,species\n1,2,x\n3,4\n");
    let msg = err(files::load_path(&p, &opts(&[])));
    assert!(msg.contains("line 3") && msg.contains("2 fields"), "{msg}");
    let p = write(dir.path(), "empty.csv", "");
    let msg = err(files::load_path(&p, &opts(&[])));
    assert!(msg.contains("empty.csv") && msg.contains("empty"), "{msg}");
    let p = write(dir.path(), "header.csv", "a,b,species\n");
    let msg = err(files::load_path(&p, &opts(&[])));
    assert!(msg.contains("no data rows"), "{msg}");
}

// ------------------------------------------------------------------------------------------------------------
// NPY / NPZ

/// A version-1 .npy file, written by hand as numpy does.
fn npy(descr: &str, fortran: bool, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let shape_text = match shape {
        [n] => format!("({n},)"),
        _ => format!("({})", shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let order = if fortran { "True" } else { "False" };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': {order}, 'shape': {shape_text}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

fn le_f32(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn npy_label_column() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.npy");
    // [[0.5, 1, 2], [1.5, 2, 0], [2.5, 3, 1]]: label last.
    std::fs::write(&p, npy("<f4", false, &[3, 3], &le_f32(&[0.5, 1., 2., 1.5, 2., 0., 2.5, 3., 1.]))).unwrap();
    let d = files::load_path(&p, &opts(&[])).unwrap();
    assert_eq!(f32s(&d.xs), [0.5, 1., 1.5, 2., 2.5, 3.]);
    assert_eq!(i64s(&d.ys), [2, 0, 1]);
    let d = files::load_path(&p, &opts(&[("label", "0"), ("task", "regression")])).unwrap();
    assert_eq!(f32s(&d.ys), [0.5, 1.5, 2.5]);
    let msg = err(files::load_path(&p, &opts(&[("label", "0")])));
    assert!(msg.contains("non-integer") && msg.contains("task=regression"), "{msg}");

    // The same array as big-endian float64 in Fortran order.
    let cols = [0.5f64, 1.5, 2.5, 1., 2., 3., 2., 0., 1.];
    let bytes: Vec<u8> = cols.iter().flat_map(|x| x.to_be_bytes()).collect();
    std::fs::write(&p, npy(">f8", true, &[3, 3], &bytes)).unwrap();
    let d = files::load_path(&p, &opts(&[])).unwrap();
    assert_eq!(f32s(&d.xs), [0.5, 1., 1.5, 2., 2.5, 3.]);
    assert_eq!(i64s(&d.ys), [2, 0, 1]);

    // Int64 labels written by tch (numpy's own layout).
    let q = dir.path().join("i.npy");
    Tensor::from_slice(&[1i64, 10, 0, 20, 1, 30]).reshape([3, 2]).write_npy(&q).unwrap();
    let d = files::load_path(&q, &opts(&[("label", "0")])).unwrap();
    assert_eq!(i64s(&d.ys), [1, 0, 1]);
    assert_eq!(f32s(&d.xs), [10., 20., 30.]);

    // Truncated data, a 1-D array, garbage.
    let full = npy("<f4", false, &[3, 3], &le_f32(&[0.0; 9]));
    std::fs::write(&p, &full[..full.len() - 4]).unwrap();
    let msg = err(files::load_path(&p, &opts(&[])));
    assert!(msg.contains("t.npy") && msg.contains("truncated"), "{msg}");
    std::fs::write(&p, npy("<f4", false, &[3], &le_f32(&[0.0; 3]))).unwrap();
    let msg = err(files::load_path(&p, &opts(&[])));
    assert!(msg.contains("2-D"), "{msg}");
    std::fs::write(&p, b"\x93NUMPY\x01\x00\xff\xff{").unwrap();
    let msg = err(files::load_path(&p, &opts(&[])));
    assert!(msg.contains("t.npy"), "{msg}");
}

#[test]
fn npz_arrays() {
    let dir = tempfile::tempdir().unwrap();
    // Keras-style mnist.npz: uint8 images [N, H, W], compressed as numpy.savez_compressed does.
    let p = dir.path().join("m.npz");
    {
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&p).unwrap());
        let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        zip.start_file("x_train.npy", options).unwrap();
        zip.write_all(&npy("|u1", false, &[2, 2, 3], &[0, 51, 102, 153, 204, 255, 0, 0, 0, 0, 0, 255])).unwrap();
        zip.start_file("y_train.npy", options).unwrap();
        zip.write_all(&npy("<i8", false, &[2], &[4i64, 1].iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<_>>()))
            .unwrap();
        zip.finish().unwrap();
    }
    let d = files::load_path(&p, &opts(&[])).unwrap();
    assert_eq!(d.xs.size(), [2, 1, 2, 3]);
    assert_eq!(f32s(&d.features().select(0, 0)), [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
    assert_eq!(i64s(&d.ys), [4, 1]);
    assert_eq!(d.task, Task::Classification { n_classes: 5 });

    // x/y written by tch.
    let q = dir.path().join("xy.npz");
    let xs = Tensor::from_slice(&[1.0f32, 2., 3., 4., 5., 6.]).reshape([3, 2]);
    let ys = Tensor::from_slice(&[0i64, 1, 1]);
    Tensor::write_npz(&[("x", &xs), ("y", &ys)], &q).unwrap();
    let d = files::load_path(&q, &opts(&[])).unwrap();
    assert!(d.xs.equal(&xs) && d.ys.equal(&ys));

    let msg = err(files::load_path(&q, &opts(&[("split", "test")])));
    assert!(msg.contains("x_test/y_test") && msg.contains("x, y"), "{msg}");
    let msg = err(files::load_path(&q, &opts(&[("x", "x"), ("y", "labels")])));
    assert!(msg.contains("'labels'"), "{msg}");
    std::fs::write(&q, b"PK\x03\x04garbage").unwrap();
    let msg = err(files::load_path(&q, &opts(&[])));
    assert!(msg.contains("xy.npz"), "{msg}");
}

#[test]
fn unknown_format() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "x.dat", "hello");
    let msg = err(files::load_path(&p, &opts(&[])));
    assert!(msg.contains("x.dat") && msg.contains("unknown file format"), "{msg}");
    let msg = err(data::load(&dir.path().join("missing.csv").display().to_string(), 0));
    assert!(msg.contains("missing.csv"), "{msg}");
}

// ------------------------------------------------------------------------------------------------------------
// Digits

#[test]
fn digits_embedded() {
    let d = digits::load(&opts(&[])).unwrap();
    assert_eq!(d.xs.size(), [1797, 1, 32, 32]);
    assert_eq!(d.xs.kind(), Kind::Float);
    assert_eq!(d.task, Task::Classification { n_classes: 10 });
    assert_eq!(d.name, "digits");
    assert!(d.xs.min().double_value(&[]) >= 0.0 && d.xs.max().double_value(&[]) <= 1.0);
    assert!(d.xs.max().double_value(&[]) > 0.99);
    let counts = d.ys.bincount::<Tensor>(None, 10);
    assert!(i64s(&counts).iter().all(|&c| c > 170), "{counts:?}");
    let msg = err(digits::load(&opts(&[("size", "4")])));
    assert!(msg.contains("size=4"), "{msg}");
    let msg = err(digits::load(&opts(&[("sise", "8")])));
    assert!(msg.contains("'size'"), "{msg}");
    assert_eq!(data::load("digits:size=16", 0).unwrap().xs.size(), [1797, 1, 16, 16]);
}

#[test]
fn digits_equal_sklearn() {
    let dir = oracle();
    let want_x = std::fs::read(dir.join("digits_x.bin")).unwrap();
    let want_y = std::fs::read(dir.join("digits_y.bin")).unwrap();
    let d = digits::load(&opts(&[("size", "8")])).unwrap();
    assert_eq!(d.xs.size(), [1797, 1, 8, 8]);
    let got: Vec<f32> = f32s(&(&d.xs * 16.0));
    assert_eq!(got.len(), want_x.len());
    for (i, (g, w)) in got.iter().zip(&want_x).enumerate() {
        assert_eq!(*g, *w as f32, "pixel {i}");
    }
    assert_eq!(i64s(&d.ys), want_y.iter().map(|&y| y as i64).collect::<Vec<_>>());
}

// ------------------------------------------------------------------------------------------------------------
// Loader

#[test]
fn loader_batches() {
    let xs = Tensor::arange(10, (Kind::Float, tch::Device::Cpu)).reshape([10, 1]);
    let ys = Tensor::arange(10, (Kind::Int64, tch::Device::Cpu)) * 2;
    let loader = Loader::new(&xs, &ys, 4, true, 42);
    assert_eq!(loader.len(), 3);
    let batches: Vec<(Tensor, Tensor)> = loader.batches(0).collect();
    assert_eq!(batches.iter().map(|(x, _)| x.size()[0]).collect::<Vec<_>>(), [4, 4, 2], "last partial batch kept");
    let mut seen: Vec<i64> = Vec::new();
    for (x, y) in &batches {
        let x = i64s(x);
        assert_eq!(i64s(y), x.iter().map(|v| v * 2).collect::<Vec<_>>(), "pairs stay together");
        seen.extend(x);
    }
    let order0 = seen.clone();
    seen.sort();
    assert_eq!(seen, (0..10).collect::<Vec<_>>());
    assert_ne!(order0, (0..10).collect::<Vec<_>>());

    // The order of an epoch depends only on (seed, epoch): a fresh loader (a resumed run) repeats it.
    let again = Loader::new(&xs, &ys, 4, true, 42);
    let order = |l: &Loader, e| l.batches(e).flat_map(|(x, _)| i64s(&x)).collect::<Vec<_>>();
    assert_eq!(order(&again, 0), order0);
    assert_eq!(order(&again, 5), order(&loader, 5));
    assert_ne!(order(&loader, 1), order0, "epochs differ");
    assert_ne!(order(&Loader::new(&xs, &ys, 4, true, 43), 0), order0, "seeds differ");
    assert_eq!(order(&Loader::new(&xs, &ys, 3, false, 42), 7), (0..10).collect::<Vec<_>>());
    assert_eq!(Loader::new(&xs, &ys, 3, false, 0).batches(0).len(), 4);

    assert!(Loader::try_new(&xs, &ys, 0, true, 0).is_err());
    assert!(Loader::try_new(&xs, &ys.narrow(0, 0, 5), 2, true, 0).is_err());
    let d = generators::generate("moons", &opts(&[]), 0).unwrap();
    assert_eq!(Loader::from_dataset(&d, 32, true, 0).unwrap().len(), 4);
}

/// DistributedSampler's semantics: one seeded permutation on every rank, every `world`-th sample from the rank on;
/// padded (training) every rank has ⌈n/world⌉ samples, the extra ones repeating the permutation's start; unpadded
/// (evaluation) each sample is on exactly one rank.
#[test]
fn loader_shards() {
    let xs = Tensor::arange(10, (Kind::Float, tch::Device::Cpu)).reshape([10, 1]);
    let ys = Tensor::arange(10, (Kind::Int64, tch::Device::Cpu));
    let whole = Loader::new(&xs, &ys, 4, true, 7).order(3);
    let order = |l: &Loader, e| l.batches(e).flat_map(|(x, _)| i64s(&x)).collect::<Vec<_>>();
    let padded: Vec<Vec<i64>> =
        (0..3).map(|r| order(&Loader::new(&xs, &ys, 2, true, 7).shard(r, 3, true), 3)).collect();
    for (r, shard) in padded.iter().enumerate() {
        assert_eq!(shard.len(), 4, "rank {r}: ⌈10/3⌉ samples");
        assert_eq!(Loader::new(&xs, &ys, 2, true, 7).shard(r, 3, true).len(), 2, "the same number of batches");
        let expected: Vec<i64> = (0..4).map(|i| whole[(r + 3 * i) % 10]).collect();
        assert_eq!(shard, &expected, "rank {r} takes every third sample of the shared permutation");
    }
    let mut all: Vec<i64> = padded.concat();
    all.sort();
    let mut expected: Vec<i64> = (0..10).chain([whole[0], whole[1]]).collect();
    expected.sort();
    assert_eq!(all, expected, "padding repeats the permutation's first samples");
    let mut once: Vec<i64> =
        (0..3).flat_map(|r| order(&Loader::new(&xs, &ys, 3, false, 0).shard(r, 3, false), 0)).collect();
    assert_eq!(
        (0..3).map(|r| Loader::new(&xs, &ys, 3, false, 0).shard(r, 3, false).len()).collect::<Vec<_>>(),
        [2, 1, 1]
    );
    once.sort();
    assert_eq!(once, (0..10).collect::<Vec<_>>(), "unpadded, every sample once");
    // A world of one is the plain loader.
    assert_eq!(order(&Loader::new(&xs, &ys, 4, true, 7).shard(0, 1, true), 3), whole);
}
