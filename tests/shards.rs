//! WebDataset tar shards: shards written by Python's `webdataset` read as written, `tchzoo pack` read back by
//! `webdataset`, training on shards (seeded, independent of the worker count), and bad shards in one line.
mod common;

use common::{picture, run_limited};

use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use tchzoo::data::transforms::{Interpolation, Transforms};
use tchzoo::data::{folder, shards, workers, DataLoader};

/// `classes` × `per_class` images of varied sizes around `side`; every fourth a PNG, the rest JPEGs.
fn image_folder(root: &Path, classes: usize, per_class: usize, side: u32) {
    for c in 0..classes {
        let dir = root.join(format!("class{c:02}"));
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..per_class {
            let seed = (c * per_class + i) as u32;
            let (w, h) = (side + (seed * 7) % 23, side + (seed * 11) % 19);
            let ext = if i % 4 == 3 { "png" } else { "jpg" };
            picture(w, h, seed).save(dir.join(format!("img{i:04}.{ext}"))).unwrap();
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

/// Runs `tchzoo pack` and returns the `--data` pattern it printed.
fn pack(dir: &Path, prefix: &Path, extra: &[&str]) -> String {
    let mut cmd = common::tchzoo();
    cmd.args(["pack", dir.to_str().unwrap(), prefix.to_str().unwrap()]).args(extra);
    let o = run_limited(cmd, Duration::from_secs(120));
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let line = out.lines().find_map(|l| l.strip_prefix("--data ")).unwrap_or_else(|| panic!("no pattern in {out}"));
    line.trim_matches('"').to_string()
}

fn eval_transforms() -> Transforms {
    Transforms::preset(16, 0.875, vec![0.0; 3], vec![1.0; 3], Interpolation::Bilinear)
}

#[test]
fn shards_written_by_webdataset_are_read_as_written() {
    let tmp = common::tempdir();
    let (src, out) = (tmp.path().join("folder"), tmp.path().join("shards"));
    image_folder(&src, 3, 7, 20);
    std::fs::create_dir_all(&out).unwrap();
    let printed =
        common::run_script("shards_write.py", &[src.to_str().unwrap(), out.join("py-%06d.tar").to_str().unwrap(), "8"]);
    let written: Vec<(String, i64)> = serde_json::from_str(printed.trim()).unwrap();
    assert_eq!(written.len(), 21);
    let pattern = out.join("py-{000000..000002}.tar").display().to_string();

    // What the stream reads, in order (three shards of 8, 8 and 5 samples; .json members ignored).
    let seen = shards::list(&pattern).unwrap();
    let seen_pairs: Vec<(String, i64)> = seen.iter().map(|(_, k, c)| (k.clone(), *c)).collect();
    assert_eq!(seen_pairs, written);
    assert!(seen[8].0.ends_with("py-000001.tar") && seen[20].0.ends_with("py-000002.tar"), "{:?}", seen[20]);

    // Through the pipeline (no shuffling, evaluation transform, 2 workers): the same labels in the same order,
    // and each image equal to the folder pipeline's decode of the same file.
    let config = workers::WorkerConfig { workers: 2, prefetch: 2, skip_bad: false };
    let data = shards::shard_dataset(&pattern, 0, eval_transforms(), false, config, 0).unwrap();
    assert_eq!(data.len(), 21);
    assert_eq!(data.class_names.as_deref().unwrap(), ["0", "1", "2"]);
    let loader = DataLoader::new(&data, 4, false, 0);
    assert_eq!(loader.len(), 6);
    let (mut ys, mut xs) = (Vec::new(), Vec::new());
    for batch in loader.epoch(0) {
        let (x, y) = batch.unwrap();
        ys.extend(Vec::<i64>::try_from(y).unwrap());
        xs.push(x);
    }
    let labels: Vec<i64> = written.iter().map(|(_, c)| *c).collect();
    assert_eq!(ys, labels);
    let xs = tch::Tensor::cat(&xs, 0);
    let index = folder::index(&src).unwrap();
    for (k, path) in index.paths.iter().enumerate() {
        let img = folder::decode(path, 3).unwrap();
        let expected = eval_transforms().normalize(&eval_transforms().eval(&img).unwrap().unsqueeze(0));
        assert!(xs.get(k as i64).unsqueeze(0).equal(&expected), "sample {k} ({})", path.display());
    }
}

#[test]
fn packed_shards_read_back_with_webdataset() {
    let tmp = common::tempdir();
    let src = tmp.path().join("folder");
    image_folder(&src, 3, 6, 40);
    // A grey image and one much larger than --max-side.
    image::GrayImage::from_fn(30, 90, |x, y| image::Luma([(x * 3 + y) as u8]))
        .save(src.join("class01/grey.png"))
        .unwrap();
    picture(300, 120, 5).save(src.join("class02/big.jpg")).unwrap();
    let prefix = tmp.path().join("out/train");
    let pattern = pack(&src, &prefix, &["--max-side", "48", "--shard-size", "16KB"]);
    assert!(pattern.contains("{000000.."), "{pattern}");
    let n_shards = shards::expand(&pattern).unwrap().len();
    assert!(n_shards > 1, "16 KB shards of 20 images: {n_shards}");
    for s in shards::expand(&pattern).unwrap() {
        assert!(std::fs::metadata(&s).unwrap().len() <= 16_000, "{} over 16 KB", s.display());
    }

    let printed = common::run_script("shards_read.py", &[&pattern]);
    let read: Vec<(String, i64, u32, u32, String)> = serde_json::from_str(printed.trim()).unwrap();
    let index = folder::index(&src).unwrap();
    assert_eq!(read.len(), index.len());
    let keys: std::collections::BTreeSet<&str> = read.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(keys.len(), read.len(), "keys are unique");
    for (k, (key, cls, w, h, _)) in read.iter().enumerate() {
        assert_eq!(*cls, index.labels[k] as i64, "sample {k} ({key})");
        assert!(*w.max(h) <= 48, "{key}: {w}x{h}");
        let (ow, oh) = image::image_dimensions(&index.paths[k]).unwrap();
        if ow.max(oh) <= 48 {
            assert_eq!((*w, *h), (ow, oh), "{key} kept its size");
        } else {
            let expected = (ow as f64 / oh as f64, *w as f64 / *h as f64);
            assert!((expected.0 - expected.1).abs() < 0.1 * expected.0, "{key}: aspect {expected:?}");
        }
    }
    let classes: Vec<String> =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("out/train-classes.json")).unwrap()).unwrap();
    assert_eq!(classes, index.class_names);
    // And tchzoo sees the class names it wrote.
    let data = shards::shard_dataset(&pattern, 0, eval_transforms(), false, Default::default(), 0).unwrap();
    assert_eq!(data.class_names.as_ref().unwrap(), &index.class_names);
    assert!(Arc::strong_count(data.images.as_ref().unwrap()) >= 1);
}

fn train(data: &str, val: &str, out: &Path, workers: &str, seed: &str) -> Output {
    let mut cmd = common::tchzoo();
    cmd.args(["train", "--data", data, "--validation-data", val, "--out", out.to_str().unwrap()]);
    cmd.args(["--device", "cpu", "--threads", "1", "--quiet", "--model", "lenet5", "--epochs", "2"]);
    cmd.args(["--batch-size", "5", "--workers", workers, "--seed", seed]);
    run_limited(cmd, Duration::from_secs(120))
}

/// history.csv without its epoch_time column (which differs between runs).
fn history(dir: &Path) -> Vec<String> {
    let h = std::fs::read_to_string(dir.join("history.csv")).unwrap();
    let header: Vec<&str> = h.lines().next().unwrap().split(',').collect();
    let t = header.iter().position(|c| *c == "epoch_time").unwrap();
    h.lines()
        .map(|l| l.split(',').enumerate().filter(|(i, _)| *i != t).map(|(_, v)| v).collect::<Vec<_>>().join(","))
        .collect()
}

#[test]
fn training_on_shards_is_seeded_and_independent_of_the_workers() {
    let tmp = common::tempdir();
    let (src, val) = (tmp.path().join("train"), tmp.path().join("val"));
    image_folder(&src, 3, 12, 36);
    image_folder(&val, 3, 3, 36);
    let pattern = pack(&src, &tmp.path().join("s/train"), &["--shard-size", "40KB"]);
    let val_pattern = pack(&val, &tmp.path().join("s/val"), &[]);
    assert!(shards::expand(&pattern).unwrap().len() > 2, "{pattern}");
    let data = format!("{pattern}:shuffle=10");
    let out = tmp.path().join("runs");
    let mut histories = Vec::new();
    for (name, workers, seed) in [("a", "1", "3"), ("b", "1", "3"), ("c", "3", "3"), ("d", "2", "4")] {
        let o = train(&data, &val_pattern, &out.join(name), workers, seed);
        assert!(o.status.success(), "{}", text(&o.stderr));
        histories.push(history(&out.join(name)));
    }
    assert_eq!(histories[0].len(), 3, "{:?}", histories[0]);
    assert!(histories[0][0].contains("val_accuracy"), "{:?}", histories[0]);
    assert_eq!(histories[0], histories[1], "the same seed gives the same history");
    assert_eq!(histories[0], histories[2], "--workers 1 and --workers 3 give the same history");
    assert_ne!(histories[0], histories[3], "another seed gives another");
    let classes = std::fs::read_to_string(out.join("a/classes.json")).unwrap();
    assert!(classes.contains("class02"), "{classes}");
}

#[test]
fn the_shuffle_buffer_keeps_every_sample_once_an_epoch() {
    let tmp = common::tempdir();
    let src = tmp.path().join("train");
    image_folder(&src, 2, 15, 20);
    let pattern = pack(&src, &tmp.path().join("s/train"), &["--shard-size", "10KB"]);
    let config = workers::WorkerConfig { workers: 2, prefetch: 1, skip_bad: false };
    let mut t = eval_transforms();
    t.train_crop_size = 8;
    let data = shards::shard_dataset(&pattern, 8, t, true, config, 5).unwrap();
    let loader = DataLoader::new(&data, 7, true, 5);
    let epoch = |e: usize| -> Vec<i64> {
        loader.epoch(e).flat_map(|b| Vec::<i64>::try_from(b.unwrap().1).unwrap()).collect::<Vec<i64>>()
    };
    let (e0, e1, again) = (epoch(0), epoch(1), epoch(0));
    assert_eq!(e0.len(), 30);
    let mut sorted = e0.clone();
    sorted.sort();
    assert_eq!(sorted, [vec![0; 15], vec![1; 15]].concat(), "each sample once");
    assert_eq!(e0, again, "an epoch's order is a function of (seed, epoch)");
    assert_ne!(e0, e1, "and changes with the epoch");
    assert_ne!(e0, [vec![0; 15], vec![1; 15]].concat(), "and is shuffled");
}

#[test]
fn distributed_ranks_split_the_stream_as_distributed_sampler() {
    // One image a class, so a label names its sample: 11 samples in several shards, an odd count for two ranks.
    let tmp = common::tempdir();
    let src = tmp.path().join("train");
    image_folder(&src, 11, 1, 20);
    let pattern = pack(&src, &tmp.path().join("s/train"), &["--shard-size", "4KB"]);
    assert!(shards::expand(&pattern).unwrap().len() >= 3, "{pattern}");
    let config = workers::WorkerConfig { workers: 2, prefetch: 1, skip_bad: false };
    let mut t = eval_transforms();
    t.train_crop_size = 8;
    let data = shards::shard_dataset(&pattern, 4, t, true, config, 7).unwrap();
    let labels = |loader: &DataLoader, e: usize| -> Vec<i64> {
        loader.epoch(e).flat_map(|b| Vec::<i64>::try_from(b.unwrap().1).unwrap()).collect()
    };
    for e in 0..2 {
        let whole = labels(&DataLoader::new(&data, 3, true, 7), e);
        let mut sorted = whole.clone();
        sorted.sort();
        assert_eq!(sorted, (0..11).collect::<Vec<i64>>(), "epoch {e}: each sample once");
        // Training (padded): the stream extended by its own start to 12, rank r taking every second sample from
        // r on; each rank 6 samples in batches of 3 + 3.
        println!("epoch {e}: {whole:?}");
        let padded = [&whole[..], &whole[..1]].concat();
        // Evaluation (not padded): the stream itself, 6 + 5.
        for (pad, stream) in [(true, &padded), (false, &whole)] {
            let mut union = Vec::new();
            for rank in 0..2 {
                let loader = DataLoader::new(&data, 3, true, 7).shard(rank, 2, pad);
                let mine = labels(&loader, e);
                let expected: Vec<i64> = stream.iter().copied().skip(rank).step_by(2).collect();
                assert_eq!(mine, expected, "epoch {e}, rank {rank}, padded {pad}: stream {whole:?}");
                assert_eq!(loader.len(), mine.len().div_ceil(3), "epoch {e}, rank {rank}: batches");
                union.extend(mine);
            }
            union.sort();
            let mut all = stream.clone();
            all.sort();
            assert_eq!(union, all, "epoch {e}, padded {pad}: the ranks together see the stream");
        }
    }
}

fn fails_in_one_line(o: &Output, names: &[&str]) {
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    for n in names {
        assert!(err.contains(n), "{n} not in: {err}");
    }
}

#[test]
fn bad_shards_fail_in_one_line() {
    let tmp = common::tempdir();
    let src = tmp.path().join("train");
    image_folder(&src, 2, 6, 20);
    let pattern = pack(&src, &tmp.path().join("s/train"), &["--shard-size", "8KB"]);
    let n = shards::expand(&pattern).unwrap().len();
    assert!(n >= 3, "{pattern}");
    let out = tmp.path().join("runs");
    let run = |data: &str, extra: &[&str]| {
        let mut cmd = common::tchzoo();
        cmd.args(["train", "--data", data, "--out", out.join("r").to_str().unwrap(), "--device", "cpu"]);
        cmd.args(["--model", "lenet5", "--epochs", "1", "--quiet"]).args(extra);
        run_limited(cmd, Duration::from_secs(60))
    };
    // A missing shard.
    let missing = pattern.replace(&format!("{:06}}}", n - 1), &format!("{:06}}}", n));
    fails_in_one_line(&run(&missing, &[]), &[&format!("train-{n:06}.tar"), "no such shard"]);
    // A stream cannot be split.
    fails_in_one_line(&run(&pattern, &["--validation-split", "0.3"]), &["cannot be split", "--validation-data"]);
    // A corrupt header and a truncated shard.
    let second = tmp.path().join("s/train-000001.tar");
    let good = std::fs::read(&second).unwrap();
    let mut bad = good.clone();
    bad[10] ^= 0x55;
    std::fs::write(&second, &bad).unwrap();
    fails_in_one_line(&run(&pattern, &[]), &["train-000001.tar", "checksum"]);
    std::fs::write(&second, &good[..good.len() / 2]).unwrap();
    fails_in_one_line(&run(&pattern, &[]), &["train-000001.tar", "truncated"]);
    std::fs::write(&second, &good).unwrap();

    // A sample without .cls, written by webdataset.
    let py = tmp.path().join("py");
    std::fs::create_dir_all(&py).unwrap();
    common::run_script(
        "shards_write.py",
        &[src.to_str().unwrap(), py.join("w-%06d.tar").to_str().unwrap(), "100", "--without-cls", "class01_img0002"],
    );
    let o = run(py.join("w-000000.tar").to_str().unwrap(), &[]);
    fails_in_one_line(&o, &["w-000000.tar", "class01_img0002", ".cls"]);

    // `pack` of a folder that is not there, or of a file.
    for (dir, what) in [(tmp.path().join("nope"), "no such folder"), (second.clone(), "is not a folder")] {
        let mut cmd = common::tchzoo();
        cmd.args(["pack", dir.to_str().unwrap(), tmp.path().join("p/x").to_str().unwrap()]);
        fails_in_one_line(&run_limited(cmd, Duration::from_secs(60)), &[dir.to_str().unwrap(), what, "sub-folder"]);
    }
}

#[test]
fn a_corrupt_image_in_a_shard_ends_the_run_in_one_line_or_is_skipped() {
    // Shards written by webdataset from a folder whose class01/img0002.jpg is cut after 40 bytes and padded with
    // junk: 12 samples in shards of 5, 5 and 2, the bad one (key class01_img0002) the 9th, in the second shard.
    let tmp = common::tempdir();
    let src = tmp.path().join("train");
    image_folder(&src, 2, 6, 20);
    let bad = src.join("class01/img0002.jpg");
    let mut bytes = std::fs::read(&bad).unwrap();
    bytes.truncate(40);
    bytes.extend_from_slice(&[0x13; 200]);
    std::fs::write(&bad, bytes).unwrap();
    let py = tmp.path().join("py");
    std::fs::create_dir_all(&py).unwrap();
    common::run_script("shards_write.py", &[src.to_str().unwrap(), py.join("w-%06d.tar").to_str().unwrap(), "5"]);
    let pattern = py.join("w-{000000..000002}.tar").display().to_string();
    assert_eq!(shards::list(&pattern).unwrap()[8].1, "class01_img0002");
    let out = tmp.path().join("runs");
    let run = |name: &str, workers: &str, extra: &[&str]| {
        let mut cmd = common::tchzoo();
        cmd.args(["train", "--data", &pattern, "--out", out.join(name).to_str().unwrap(), "--device", "cpu"]);
        cmd.args(["--model", "lenet5", "--epochs", "2", "--batch-size", "4", "--workers", workers, "--quiet"]);
        cmd.args(extra);
        run_limited(cmd, Duration::from_secs(60))
    };
    for workers in ["1", "3"] {
        let o = run(&format!("fail{workers}"), workers, &[]);
        println!("--workers {workers}: {}", text(&o.stderr).trim());
        fails_in_one_line(&o, &["w-000001.tar", "class01_img0002"]);
    }
    let o = run("skip", "2", &["--skip-bad-images"]);
    let err = text(&o.stderr);
    println!("--skip-bad-images: {}", err.trim());
    assert!(o.status.success(), "{err}");
    // Said once an epoch, naming the sample.
    let said: Vec<&str> = err.lines().filter(|l| l.contains("skipped")).collect();
    assert_eq!(said.len(), 2, "{err}");
    assert!(said.iter().all(|l| l.contains("w-000001.tar") && l.contains("class01_img0002")), "{err}");
    assert_eq!(history(&out.join("skip")).len(), 3, "two epochs trained");
}
