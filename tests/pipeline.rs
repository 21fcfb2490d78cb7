//! The input pipeline of image folders: the lazy index (torchvision's ImageFolder order), memory that does not
//! grow with the folder, workers that do not change what the model sees, bad images, torchvision's transforms
//! (parity through `torchvision.transforms.v2.functional`), label smoothing, the stratified split and the
//! transforms a run records.
mod common;

use common::{picture, run_limited};

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use tch::{Kind, Tensor};
use tchzoo::data::transforms::{self, CropBox, Interpolation, Transforms};
use tchzoo::data::{folder, workers};

/// A folder of `classes` × `per_class` JPEGs (sizes vary with the index when `vary`).
fn jpeg_folder(root: &Path, classes: usize, per_class: usize, side: u32, vary: bool) {
    for c in 0..classes {
        let dir = root.join(format!("class{c:02}"));
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..per_class {
            let seed = (c * per_class + i) as u32;
            let (w, h) = if vary { (side + (seed * 7) % 17, side + (seed * 11) % 13) } else { (side, side) };
            picture(w, h, seed).save(dir.join(format!("img{i:05}.jpg"))).unwrap();
        }
    }
}

fn train_args(data: &Path, out: &Path) -> Vec<String> {
    [
        "train",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--device",
        "cpu",
        "--threads",
        "1",
        "--quiet",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

// ------------------------------------------------------------------------------------------------------------
// The index

#[test]
fn index_in_imagefolder_order() {
    let dir = common::tempdir();
    let root = dir.path();
    for (path, w) in [
        ("b/z.jpg", 5),
        ("b/A.JPEG", 5),
        ("b/sub/m.png", 4),
        ("b/a_sub/n.bmp", 4),
        ("a/x.png", 3),
        ("a/y.ppm", 3),
        ("c/q.pgm", 3),
    ] {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let img = picture(w, 4, 1);
        if path.ends_with(".pgm") {
            image::DynamicImage::ImageRgb8(img).to_luma8().save(&p).unwrap();
        } else {
            img.save(&p).unwrap();
        }
    }
    std::fs::write(root.join("a/notes.txt"), "not an image").unwrap();
    std::fs::write(root.join("readme.md"), "top-level file").unwrap();

    let index = folder::index(root).unwrap();
    let ours: Vec<String> = index
        .paths
        .iter()
        .zip(&index.labels)
        .map(|(p, l)| format!("{l} {}", p.strip_prefix(root).unwrap().display()))
        .collect();
    let out = common::run_script("imagefolder_samples.py", &[root.to_str().unwrap()]);
    let mut lines = out.lines();
    assert_eq!(lines.next().unwrap(), index.class_names.join(","));
    let theirs: Vec<String> = lines.map(String::from).collect();
    assert_eq!(ours, theirs, "the index lists ImageFolder's samples in its order");
    // Every indexed file decodes (BMP, PPM, PGM included).
    for p in &index.paths {
        assert_eq!(folder::decode(p, 3).unwrap().size()[0], 3, "{}", p.display());
    }

    std::fs::write(root.join("c/photo.webp"), b"RIFF").unwrap();
    let msg = folder::index(root).unwrap_err().to_string();
    assert!(msg.contains("photo.webp") && msg.contains("not supported"), "{msg}");
    std::fs::remove_file(root.join("c/photo.webp")).unwrap();
    std::fs::create_dir(root.join("d")).unwrap();
    let msg = folder::index(root).unwrap_err().to_string();
    assert!(msg.contains("'d'") && msg.contains("no images"), "{msg}");
}

// ------------------------------------------------------------------------------------------------------------
// Memory and speed at scale

/// The peak RSS (KiB) of a one-epoch run over `data`, measured by /usr/bin/time around the binary.
fn peak_rss_kib(data: &Path, out: &Path) -> u64 {
    let rss = out.with_extension("rss");
    let mut cmd = Command::new("/usr/bin/time");
    cmd.args(["-f", "%M", "-o", rss.to_str().unwrap(), env!("CARGO_BIN_EXE_tchzoo")]);
    cmd.args(train_args(data, out));
    cmd.args([
        "--model",
        "mlp:hidden=8",
        "--train-crop-size",
        "32",
        "--epochs",
        "1",
        "--batch-size",
        "256",
        "--no-validation",
        "--workers",
        "2",
    ]);
    let o = run_limited(cmd, Duration::from_secs(300));
    assert!(o.status.success(), "{}", text(&o.stderr));
    std::fs::read_to_string(&rss).unwrap().trim().lines().last().unwrap().parse().unwrap()
}

#[test]
fn ten_times_the_images_add_under_100_mb() {
    let small = common::tempdir();
    let large = common::tempdir();
    jpeg_folder(small.path(), 10, 200, 32, false);
    jpeg_folder(large.path(), 10, 2_000, 32, false);

    let started = Instant::now();
    let index = folder::index(large.path()).unwrap();
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(index.len(), 20_000);
    // 20,000 files in well under a second on any machine; 5 s leaves room for a slow disk.
    assert!(seconds < 5.0, "indexing 20,000 files took {seconds:.2}s");

    let out = common::tempdir();
    let a = peak_rss_kib(small.path(), &out.path().join("small"));
    let b = peak_rss_kib(large.path(), &out.path().join("large"));
    eprintln!(
        "peak RSS: 2,000 images {} MiB, 20,000 images {} MiB; index of 20,000 in {seconds:.3}s",
        a >> 10,
        b >> 10
    );
    // Held in memory as float32 the 18,000 more 32×32 images alone would take 221 MB.
    assert!(b < a + 100 * 1024, "20,000 images peak at {} MiB, 2,000 at {} MiB", b >> 10, a >> 10);
}

// ------------------------------------------------------------------------------------------------------------
// Workers

#[test]
fn workers_do_not_change_the_history() {
    let data = common::tempdir();
    jpeg_folder(data.path(), 3, 16, 36, true);
    let out = common::tempdir();
    let run = |name: &str, workers: &str, prefetch: &str| -> (String, Vec<u8>) {
        let dir = out.path().join(name);
        let mut cmd = common::tchzoo();
        cmd.args(train_args(data.path(), &dir));
        cmd.args(["--model", "lenet5", "--epochs", "2", "--batch-size", "5", "--workers", workers]);
        cmd.args(["--prefetch", prefetch, "--seed", "7"]);
        let o = run_limited(cmd, Duration::from_secs(120));
        assert!(o.status.success(), "{}", text(&o.stderr));
        (
            std::fs::read_to_string(dir.join("history.csv")).unwrap(),
            std::fs::read(dir.join("model.safetensors")).unwrap(),
        )
    };
    let (h1, w1) = run("one", "1", "2");
    let (h4, w4) = run("four", "4", "1");
    assert!(h1.lines().count() == 3 && h1.contains("val_accuracy"), "{h1}");
    // history.csv holds epoch_time, which differs; every other column is equal value for value.
    let strip = |h: &str| -> Vec<String> {
        let header: Vec<&str> = h.lines().next().unwrap().split(',').collect();
        let t = header.iter().position(|c| *c == "epoch_time").unwrap();
        h.lines()
            .map(|l| l.split(',').enumerate().filter(|(i, _)| *i != t).map(|(_, v)| v).collect::<Vec<_>>().join(","))
            .collect()
    };
    assert_eq!(strip(&h1), strip(&h4), "--workers 1 and --workers 4 train the same");
    assert_eq!(w1, w4, "and end with the same weights");

    // The same seed with another epoch order gives other batches: the test can fail.
    let (h_other, _) = {
        let dir = out.path().join("other");
        let mut cmd = common::tchzoo();
        cmd.args(train_args(data.path(), &dir));
        cmd.args(["--model", "lenet5", "--epochs", "2", "--batch-size", "5", "--workers", "2", "--seed", "8"]);
        let o = run_limited(cmd, Duration::from_secs(120));
        assert!(o.status.success(), "{}", text(&o.stderr));
        (std::fs::read_to_string(dir.join("history.csv")).unwrap(), ())
    };
    assert_ne!(strip(&h1), strip(&h_other));
}

#[test]
fn a_corrupt_image_ends_the_run_in_one_line_or_is_skipped() {
    let data = common::tempdir();
    jpeg_folder(data.path(), 2, 12, 24, true);
    let bad = data.path().join("class01/img00005_bad.jpg");
    let mut bytes = std::fs::read(data.path().join("class01/img00005.jpg")).unwrap();
    bytes.truncate(40);
    bytes.extend_from_slice(&[0x13; 200]);
    std::fs::write(&bad, bytes).unwrap();
    let out = common::tempdir();
    for workers in ["1", "3"] {
        let mut cmd = common::tchzoo();
        cmd.args(train_args(data.path(), &out.path().join(format!("fail{workers}"))));
        cmd.args(["--model", "lenet5", "--epochs", "2", "--batch-size", "4", "--workers", workers]);
        let o = run_limited(cmd, Duration::from_secs(120));
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(err.contains("img00005_bad.jpg") && err.contains("decode"), "{err}");
    }
    let mut cmd = common::tchzoo();
    cmd.args(train_args(data.path(), &out.path().join("skip")));
    cmd.args(["--model", "lenet5", "--epochs", "2", "--batch-size", "4", "--workers", "2", "--skip-bad-images"]);
    let o = run_limited(cmd, Duration::from_secs(120));
    let err = text(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("skipped 1 image") && err.contains("img00005_bad.jpg"), "{err}");
}

// ------------------------------------------------------------------------------------------------------------
// Transforms against torchvision

#[test]
fn transforms_match_torchvision_functional() {
    let dir = common::tempdir();
    let d = dir.path();
    let jpg = d.join("photo.jpg");
    picture(67, 45, 3).save(&jpg).unwrap();
    let img = folder::decode(&jpg, 3).unwrap();
    assert_eq!(img.size(), [3, 45, 67]);
    img.write_npy(d.join("img.npy")).unwrap();

    let mut cases = vec![];
    let mut ours: Vec<(String, Tensor)> = vec![];
    let mut rng = transforms::sample_rng(5, 1, 2);
    for (k, interp) in [Interpolation::Bilinear, Interpolation::Bicubic, Interpolation::Bilinear].iter().enumerate() {
        let b = transforms::random_resized_crop_params(&mut rng, 45, 67, (0.08, 1.0), (0.75, 4.0 / 3.0));
        // Down- and upscaling both.
        let size = [[24, 24], [50, 40], [31, 17]][k];
        let out = format!("rrc{k}.npy");
        cases.push(serde_json::json!({"op": "resized_crop", "input": "img.npy", "out": out, "top": b.top,
            "left": b.left, "height": b.height, "width": b.width, "size": size, "interpolation": interp.name()}));
        ours.push((out, transforms::resized_crop(&img, b, size, *interp).unwrap()));
    }
    let fixed = CropBox { top: 3, left: 10, height: 40, width: 30 };
    cases.push(serde_json::json!({"op": "resized_crop", "input": "img.npy", "out": "fixed.npy", "top": 3,
        "left": 10, "height": 40, "width": 30, "size": [20, 20], "interpolation": "bilinear"}));
    ours.push(("fixed.npy".into(), transforms::resized_crop(&img, fixed, [20, 20], Interpolation::Bilinear).unwrap()));
    cases.push(serde_json::json!({"op": "hflip", "input": "img.npy", "out": "flip.npy"}));
    ours.push(("flip.npy".into(), transforms::hflip(&img)));
    for (k, (size, interp)) in [(32, "bilinear"), (20, "bicubic"), (60, "bilinear")].iter().enumerate() {
        let out = format!("resize{k}.npy");
        cases.push(serde_json::json!({"op": "resize", "input": "img.npy", "out": out, "size": size,
            "interpolation": interp}));
        ours.push((out, transforms::resize_shorter(&img, *size, Interpolation::parse(interp).unwrap()).unwrap()));
    }
    for (k, (h, w)) in [(21, 33), (44, 66), (50, 70), (45, 20)].iter().enumerate() {
        let out = format!("center{k}.npy");
        cases.push(serde_json::json!({"op": "center_crop", "input": "img.npy", "out": out, "size": [h, w]}));
        ours.push((out, transforms::center_crop(&img, *h, *w)));
    }
    let batch = Tensor::stack(&[&img, &transforms::hflip(&img)], 0);
    batch.write_npy(d.join("batch.npy")).unwrap();
    let (mean, std) = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]);
    cases.push(serde_json::json!({"op": "normalize", "input": "batch.npy", "out": "norm.npy", "mean": mean,
        "std": std}));
    let norm = transforms::normalize(&batch, &mean, &std);
    // Label smoothing: the trainer's loss on logits against nn.CrossEntropyLoss(label_smoothing=0.1).
    let logits = Tensor::randn([6, 5], (Kind::Float, tch::Device::Cpu));
    let labels = Tensor::from_slice(&[0i64, 4, 2, 2, 1, 3]);
    logits.write_npy(d.join("logits.npy")).unwrap();
    labels.write_npy(d.join("labels.npy")).unwrap();
    cases.push(serde_json::json!({"op": "cross_entropy", "input": "logits.npy", "labels": "labels.npy",
        "out": "ce.npy", "smoothing": 0.1}));
    std::fs::write(d.join("cases.json"), serde_json::to_string(&cases).unwrap()).unwrap();
    let script = common::root().join("scripts/fixtures/pipeline_transforms.py");
    let o = Command::new(common::python()).arg(&script).arg(d).output().unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));

    for (name, ours) in &ours {
        let theirs = Tensor::read_npy(d.join(name)).unwrap();
        assert_eq!(ours.size(), theirs.size(), "{name}");
        assert_eq!(theirs.kind(), Kind::Uint8, "{name}");
        let diff = (ours.to_kind(Kind::Int64) - theirs.to_kind(Kind::Int64)).abs().max().int64_value(&[]);
        assert!(diff <= 1, "{name}: differs from torchvision by {diff} grey levels");
    }
    let theirs = Tensor::read_npy(d.join("norm.npy")).unwrap();
    let gap = (&norm - &theirs).abs().max().double_value(&[]);
    assert!(gap < 1e-5, "normalize differs by {gap}");
    let loss = tchzoo::train::trainer::smoothed_cross_entropy(&logits, &labels, 0.1).double_value(&[]);
    let theirs = Tensor::read_npy(d.join("ce.npy")).unwrap().double_value(&[0]);
    assert!((loss - theirs).abs() < 1e-6, "label smoothing: {loss} vs {theirs}");
    let plain = tchzoo::train::trainer::smoothed_cross_entropy(&logits, &labels, 0.0).double_value(&[]);
    assert!((plain - theirs).abs() > 1e-4, "smoothing changes the loss");
}

#[test]
fn random_resized_crop_params_stay_inside_and_follow_the_key() {
    let a: Vec<CropBox> = (0..50)
        .map(|i| {
            transforms::random_resized_crop_params(
                &mut transforms::sample_rng(1, 0, i),
                30,
                90,
                (0.08, 1.0),
                (0.75, 1.33),
            )
        })
        .collect();
    for b in &a {
        assert!(b.top >= 0 && b.left >= 0 && b.top + b.height <= 30 && b.left + b.width <= 90, "{b:?}");
        assert!(b.height > 0 && b.width > 0);
    }
    let again =
        transforms::random_resized_crop_params(&mut transforms::sample_rng(1, 0, 7), 30, 90, (0.08, 1.0), (0.75, 1.33));
    assert_eq!(again, a[7], "the same key draws the same crop");
    let other =
        transforms::random_resized_crop_params(&mut transforms::sample_rng(1, 1, 7), 30, 90, (0.08, 1.0), (0.75, 1.33));
    assert_ne!(other, a[7], "another epoch draws another");
    // An impossible scale falls back to torchvision's central crop clamped to the ratio range.
    let b =
        transforms::random_resized_crop_params(&mut transforms::sample_rng(1, 0, 0), 10, 100, (5.0, 6.0), (0.75, 1.33));
    assert_eq!(b, CropBox { top: 0, left: 43, height: 10, width: 13 });
}

// ------------------------------------------------------------------------------------------------------------
// Split and config

#[test]
fn validation_split_is_seeded_and_stratified() {
    let data = common::tempdir();
    jpeg_folder(data.path(), 3, 10, 8, false);
    let t = Transforms::preset(8, 0.875, vec![0.0; 3], vec![1.0; 3], Interpolation::Bilinear);
    let full = workers::folder_dataset(data.path(), t, true, workers::WorkerConfig::default(), 0).unwrap();
    let labels = |d: &tchzoo::data::Dataset| -> Vec<i64> { Vec::try_from(&d.ys).unwrap() };
    let samples = |d: &tchzoo::data::Dataset| -> Vec<u32> { d.images.as_ref().unwrap().samples.clone() };
    let (tr, va) = workers::split_stratified(&full, 0.2, 1).unwrap();
    assert_eq!(labels(&va), [0, 0, 1, 1, 2, 2], "two of each class's ten");
    assert_eq!(tr.len(), 24);
    let mut all = [samples(&tr), samples(&va)].concat();
    all.sort();
    assert_eq!(all, (0..30).collect::<Vec<u32>>(), "disjoint and complete");
    assert!(
        !va.images.as_ref().unwrap().train && tr.images.as_ref().unwrap().train,
        "validation takes the eval transform"
    );
    let (_, va2) = workers::split_stratified(&full, 0.2, 2).unwrap();
    assert_ne!(samples(&va), samples(&va2), "the seed draws the held-out images");
    let (_, va1) = workers::split_stratified(&full, 0.2, 1).unwrap();
    assert_eq!(samples(&va), samples(&va1));
}

#[test]
fn transforms_come_from_the_model_and_are_recorded() {
    let config = |model: &str| tchzoo::config::RunConfig { model: model.into(), ..Default::default() };
    let t = workers::resolve_transforms(&config("resnet18").resolve().unwrap(), None).unwrap();
    assert_eq!((t.train_crop_size, t.val_resize_size, t.val_crop_size), (224, 256, 224));
    assert_eq!(
        (t.interpolation, t.mean.clone(), t.std.clone()),
        (Interpolation::Bilinear, vec![0.485, 0.456, 0.406], vec![0.229, 0.224, 0.225])
    );
    let t = workers::resolve_transforms(&config("inception_v3").resolve().unwrap(), None).unwrap();
    assert_eq!((t.train_crop_size, t.val_resize_size, t.val_crop_size), (299, 342, 299));
    let t = workers::resolve_transforms(&config("lenet5").resolve().unwrap(), None).unwrap();
    assert_eq!((t.train_crop_size, t.channels, t.mean.clone()), (32, 1, vec![0.0]));
    let msg = tchzoo::cli::output::error_words(
        &workers::resolve_transforms(&config("mlp").resolve().unwrap(), None).unwrap_err(),
    );
    assert!(msg.contains("--train-crop-size"), "{msg}");

    // A run writes what it used; a separate --validation-data folder is read the same way.
    let data = common::tempdir();
    jpeg_folder(data.path(), 2, 6, 20, true);
    let out = common::tempdir();
    let dir = out.path().join("run");
    let mut cmd = common::tchzoo();
    cmd.args(train_args(data.path(), &dir));
    cmd.args(["--model", "lenet5", "--epochs", "1", "--batch-size", "4", "--train-crop-size", "28"]);
    cmd.args(["--interpolation", "bicubic", "--validation-data", data.path().to_str().unwrap(), "-j", "2"]);
    let o = run_limited(cmd, Duration::from_secs(120));
    assert!(o.status.success(), "{}", text(&o.stderr));
    let c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(c["train_crop_size"], 28);
    assert_eq!(c["val_crop_size"], 28);
    assert_eq!(c["val_resize_size"], 32);
    assert_eq!(c["interpolation"], "bicubic");
    assert_eq!(c["mean"], serde_json::json!([0.0]));
    assert_eq!(c["augment"], serde_json::Value::Null);
    // `evaluate --run` reads the run's validation folder through the same pipeline.
    let o = run_limited(
        {
            let mut e = common::tchzoo();
            e.args(["evaluate", "--run", dir.to_str().unwrap(), "--device", "cpu"]);
            e
        },
        Duration::from_secs(60),
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).starts_with("12 samples"), "{}", text(&o.stdout));
}

// ------------------------------------------------------------------------------------------------------------
// Sharding and in-memory pixels

#[test]
fn a_rank_reads_its_shard_of_the_lazy_index() {
    let data = common::tempdir();
    jpeg_folder(data.path(), 3, 5, 10, true);
    let t = Transforms::preset(8, 0.875, vec![0.0; 3], vec![1.0; 3], Interpolation::Bilinear);
    let cfg = workers::WorkerConfig { workers: 2, prefetch: 1, skip_bad: false };
    let d = workers::folder_dataset(data.path(), t, true, cfg, 0).unwrap();
    let labels = |b: Vec<(Tensor, Tensor)>| -> Vec<i64> {
        b.iter().flat_map(|(_, y)| Vec::<i64>::try_from(y).unwrap()).collect()
    };
    let mut seen = 0;
    for rank in 0..2 {
        let lazy = tchzoo::data::DataLoader::new(&d, 4, true, 3).shard(rank, 2, true);
        let batches: Vec<(Tensor, Tensor)> = lazy.epoch(1).map(|b| b.unwrap()).collect();
        assert_eq!(batches[0].0.size(), [4, 3, 8, 8]);
        assert_eq!(batches[0].0.kind(), Kind::Float);
        // The in-memory loader's shard of the same labels (DistributedSampler's, padded).
        let memory = tchzoo::data::Loader::new(&d.ys, &d.ys, 4, true, 3).shard(rank, 2, true);
        let want: Vec<(Tensor, Tensor)> = memory.batches(1).collect();
        assert_eq!(labels(batches), labels(want), "rank {rank}");
        seen += lazy.len();
    }
    assert_eq!(seen, 4, "8 samples a rank (15 padded to 16), in batches of 4");
}

#[test]
fn in_memory_pixels_stay_uint8_and_batches_are_float() {
    let dir = common::tempdir();
    for class in ["a", "b"] {
        std::fs::create_dir(dir.path().join(class)).unwrap();
        for i in 0..3 {
            picture(6, 5, i).save(dir.path().join(class).join(format!("{i}.png"))).unwrap();
        }
    }
    let d = tchzoo::data::files::load_path(dir.path(), &Default::default()).unwrap();
    assert_eq!((d.xs.kind(), d.xs.size()), (Kind::Uint8, vec![6, 3, 5, 6]));
    let loader = tchzoo::data::DataLoader::new(&d, 4, false, 0);
    let (xs, _) = loader.epoch(0).next().unwrap().unwrap();
    assert_eq!(xs.kind(), Kind::Float);
    let want = d.xs.narrow(0, 0, 4).to_kind(Kind::Float) / 255.0;
    assert_eq!(xs.sum(Kind::Double).double_value(&[]), want.sum(Kind::Double).double_value(&[]));
    assert!(xs.max().double_value(&[]) <= 1.0 && xs.max().double_value(&[]) > 0.1);
}

// ------------------------------------------------------------------------------------------------------------
// DCT-domain JPEG downscaling (`--decode-scaling`)

/// A photo-like picture: smooth colour waves, an edge, and mild noise (a hash of the position).
fn photo(w: u32, h: u32) -> image::RgbImage {
    image::RgbImage::from_fn(w, h, |x, y| {
        let (fx, fy) = (x as f64, y as f64);
        let noise = ((x.wrapping_mul(73_856_093) ^ y.wrapping_mul(19_349_663)) % 17) as f64 - 8.0;
        let edge = if fx + 0.5 * fy > w as f64 * 0.6 { 40.0 } else { 0.0 };
        let px = |k: f64| {
            (128.0 + 80.0 * (fx / (23.0 + 5.0 * k)).sin() * (fy / (31.0 + 3.0 * k)).cos() + edge + noise)
                .clamp(0.0, 255.0) as u8
        };
        image::Rgb([px(0.0), px(1.0), px(2.0)])
    })
}

#[test]
fn decode_scaling_approximates_the_full_decode_and_is_off_bit_exact() {
    use tchzoo::data::draft;
    let dir = common::tempdir();
    let path = dir.path().join("photo.jpg");
    image::DynamicImage::ImageRgb8(photo(480, 400)).save(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(draft::jpeg_size(&bytes), Some([400, 480]));
    let name = path.display().to_string();
    let mean = vec![0.5; 3];
    let mut on = Transforms::preset(112, 0.875, mean.clone(), mean.clone(), Interpolation::Bilinear);
    on.decode_scaling = true;
    let off = Transforms { decode_scaling: false, ..on.clone() };
    let full = folder::decode_bytes(&bytes, &name, 3).unwrap();
    let mad = |a: &Tensor, b: &Tensor| (a.to_kind(Kind::Float) - b.to_kind(Kind::Float)).abs().mean(Kind::Float);

    // Evaluation: Resize(128) of a 400-px short side decodes at 1/2 (and 1/4 is too small).
    assert_eq!(draft::reduction(400, 128), 2);
    let none = None::<&mut rand_chacha::ChaCha8Rng>;
    let scaled = draft::decode_transform(&bytes, &name, &on, none).unwrap();
    let exact = draft::decode_transform(&bytes, &name, &off, None::<&mut rand_chacha::ChaCha8Rng>).unwrap();
    assert_eq!(scaled.size(), [3, 112, 112]);
    assert!(
        exact.equal(&off.eval(&full).unwrap()),
        "off: the full decode and torchvision's Resize + CenterCrop, exactly"
    );
    let d = mad(&scaled, &exact).double_value(&[]);
    assert!(d < 3.0, "evaluation: mean absolute difference {d} grey levels");

    // Training: the same draws either way; boxes at least twice the output are decoded reduced.
    let (mut reduced, mut worst) = (0, 0.0f64);
    for key in 0..24 {
        let mut rng = transforms::sample_rng(7, 0, key);
        let (b, _) = on.train_params(&mut rng, 400, 480);
        reduced += (draft::reduction(b.height.min(b.width), 112) > 1) as usize;
        let mut r1 = transforms::sample_rng(7, 0, key);
        let mut r2 = transforms::sample_rng(7, 0, key);
        let mut r3 = transforms::sample_rng(7, 0, key);
        let a = draft::decode_transform(&bytes, &name, &on, Some(&mut r1)).unwrap();
        let b = draft::decode_transform(&bytes, &name, &off, Some(&mut r2)).unwrap();
        assert!(b.equal(&off.train(&full, &mut r3).unwrap()), "off: bit for bit the full decode's transform");
        let d = mad(&a, &b).double_value(&[]);
        worst = worst.max(d);
    }
    assert!(reduced >= 6, "only {reduced} of 24 crops were decoded reduced");
    assert!(worst < 4.0, "training: worst mean absolute difference {worst} grey levels");
    eprintln!("decode scaling: evaluation {d:.3}, training worst {worst:.3} grey levels; {reduced} of 24 reduced");

    // Damaged JPEGs through the reduced decoder: an error or an image, never a panic out of it.
    let (mut rng, mut errors) = (transforms::sample_rng(1, 0, 0), 0);
    for _ in 0..200 {
        let mut damaged = bytes.clone();
        for _ in 0..4 {
            let at = rand::Rng::gen_range(&mut rng, 2..damaged.len());
            damaged[at] = rand::Rng::gen(&mut rng);
        }
        let none = None::<&mut rand_chacha::ChaCha8Rng>;
        errors += draft::decode_transform(&damaged, &name, &on, none).is_err() as usize;
    }
    assert!(errors < 200, "a few flipped bytes do not make every JPEG undecodable");
}

#[test]
fn decode_scaling_flag_is_recorded_and_checked() {
    let data = common::tempdir();
    jpeg_folder(data.path(), 2, 4, 80, true);
    let out = common::tempdir();
    let dir = out.path().join("run");
    let train = |value: &str| {
        let mut cmd = common::tchzoo();
        cmd.args(train_args(data.path(), &dir));
        cmd.args(["--model", "mlp:hidden=4", "--epochs", "1", "--batch-size", "4", "--train-crop-size", "8"]);
        cmd.args(["--no-validation", "-j", "2", "--decode-scaling", value]);
        run_limited(cmd, Duration::from_secs(120))
    };
    let o = train("sometimes");
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(err.trim().lines().count() == 1 && err.contains("--decode-scaling"), "{err}");
    // On: 80-pixel images cropped to 8 take the reduced decoder, in training and in `evaluate --run`.
    let o = train("on");
    assert!(o.status.success(), "{}", text(&o.stderr));
    let c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(c["decode_scaling"], true);
    let mut e = common::tchzoo();
    e.args(["evaluate", "--run", dir.to_str().unwrap(), "--device", "cpu"]);
    let o = run_limited(e, Duration::from_secs(60));
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).starts_with("8 samples"), "{}", text(&o.stdout));
}
