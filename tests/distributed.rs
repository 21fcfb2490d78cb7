//! Data-parallel training on libtorch's c10d with Gloo, two processes on loopback: the ranks stay identical after
//! every step (`--dist-check`) and match one process training on the union of their shards (the same global
//! batch); SyncBatchNorm matches it too; torchrun drives it; a dead rank, a wrong WORLD_SIZE and an unreachable
//! master are one-line errors within the timeout; a killed distributed run resumes to the uninterrupted result.
mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::tchzoo;

/// A port nobody listens on right now (the OS picks it).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn rank_command(rank: usize, world: usize, port: u16, args: &[&str]) -> Command {
    let mut c = tchzoo();
    c.arg("train").args(args).args(["--distributed", "--device", "cpu", "-q"]);
    if !args.contains(&"--dist-timeout") {
        // Every collective is bounded: a hang fails the test within a minute.
        c.args(["--dist-timeout", "60"]);
    }
    c.env("RANK", rank.to_string())
        .env("WORLD_SIZE", world.to_string())
        .env("LOCAL_RANK", rank.to_string())
        .env("MASTER_ADDR", "127.0.0.1")
        .env("MASTER_PORT", port.to_string())
        .env("OMP_NUM_THREADS", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// Starts `world` ranks with `args` and waits for all of them.
fn run_ranks(world: usize, args: &[&str]) -> Vec<Output> {
    let port = free_port();
    let children: Vec<Child> =
        (0..world).map(|r| rank_command(r, world, port, args).spawn().expect("start a rank")).collect();
    children.into_iter().map(|c| c.wait_with_output().unwrap()).collect()
}

fn single(args: &[&str]) -> Output {
    tchzoo().arg("train").args(args).args(["--device", "cpu", "-q"]).env("OMP_NUM_THREADS", "1").output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

fn assert_ok(outs: &[Output]) {
    for (r, o) in outs.iter().enumerate() {
        assert!(o.status.success(), "rank {r} failed: {}{}", text(&o.stdout), text(&o.stderr));
    }
}

fn weights(path: &Path) -> Vec<(String, tch::Tensor)> {
    tchzoo::checkpoint::read_state_dict(path).unwrap()
}

/// The largest |a − b| / max(1, |b|) over every tensor of two state dicts with the same names.
fn max_rel_gap(a: &Path, b: &Path) -> f64 {
    let (a, b) = (weights(a), weights(b));
    assert_eq!(a.iter().map(|(n, _)| n).collect::<Vec<_>>(), b.iter().map(|(n, _)| n).collect::<Vec<_>>());
    a.iter()
        .zip(&b)
        .map(|((_, x), (_, y))| {
            let (x, y) = (x.to_kind(tch::Kind::Double), y.to_kind(tch::Kind::Double));
            (&x - &y).abs().max().double_value(&[]) / y.abs().max().double_value(&[]).max(1.0)
        })
        .fold(0.0, f64::max)
}

/// The `history` map of a run's history.json (metric → value per epoch).
fn history(dir: &Path) -> serde_json::Value {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("history.json")).unwrap()).unwrap();
    v["history"].clone()
}

/// The largest gap between the two histories' values of `keys`, epoch by epoch.
fn history_gap(a: &Path, b: &Path, keys: &[&str]) -> f64 {
    let (ha, hb) = (history(a), history(b));
    let mut gap: f64 = 0.0;
    for k in keys {
        let (va, vb) = (ha[k].as_array().unwrap(), hb[k].as_array().unwrap());
        assert_eq!(va.len(), vb.len(), "{k}");
        for (x, y) in va.iter().zip(vb) {
            gap = gap.max((x.as_f64().unwrap() - y.as_f64().unwrap()).abs());
        }
    }
    gap
}

/// Two ranks with a per-rank batch of `b` against one process with `2b`: the same samples make each global batch
/// (the shards interleave one permutation), so the averaged gradients are the union's.
fn check_equal_to_one_process(model: &str, data: &str, b: usize, extra: &[&str]) {
    let dir = common::tempdir();
    let (dist, one) = (dir.path().join("dist"), dir.path().join("one"));
    let base = [&["--model", model, "--data", data, "--augment", "none"][..], extra].concat();
    let per_rank = b.to_string();
    let outs = run_ranks(
        2,
        &[&base[..], &["--batch-size", &per_rank, "--dist-check", "--out", dist.to_str().unwrap()]].concat(),
    );
    assert_ok(&outs);
    // Rank 0 alone prints the summary and writes the folder.
    assert!(text(&outs[0].stdout).contains(model), "{}", text(&outs[0].stdout));
    assert!(text(&outs[1].stdout).trim().is_empty(), "rank 1 printed: {}", text(&outs[1].stdout));
    let global = (2 * b).to_string();
    let o = single(&[&base[..], &["--batch-size", &global, "--out", one.to_str().unwrap()]].concat());
    assert_ok(&[o]);
    let gap = max_rel_gap(&dist.join("model.pt"), &one.join("model.pt"));
    println!("{model}: 2 ranks × batch {b} vs 1 process × batch {}: max relative weight gap {gap:.2e}", 2 * b);
    assert!(gap <= 1e-5, "{model}: the 2-rank weights differ from the single process's by {gap:e}");
    let epochs = history(&dist)["loss"].as_array().unwrap().len();
    println!("{model}: {epochs} epochs");
    let hgap = history_gap(&dist, &one, &["loss", "accuracy", "val_loss", "val_accuracy"]);
    println!("{model}: largest gap between the histories {hgap:.2e}");
    assert!(hgap <= 1e-5, "{model}: the global metrics differ from the single process's by {hgap:e}");
}

#[test]
fn two_ranks_train_an_mlp_as_one_process_on_the_union() {
    // moons: 100 samples, 80 for training, 40 a rank; batches 16+16+8 a rank = 32+32+16 for one process; Adam.
    // Early stopping on the global val_loss stops both ranks after the same epoch as the single process (the
    // histories have the same length), and the best-only checkpoint is written once.
    let es = "monitor=val_loss,patience=1,min_delta=0.01,verbose=false";
    check_equal_to_one_process("mlp", "moons", 16, &["--epochs", "40", "--lr", "0.01", "--early-stopping", es]);
}

#[test]
fn two_ranks_train_lenet5_as_one_process_on_the_union() {
    // 500 digits, 400 for training, 200 a rank: 8 steps an epoch; SGD with momentum and weight decay.
    check_equal_to_one_process(
        "lenet5",
        "digits:per_class=50",
        25,
        &["--epochs", "2", "--optimizer", "sgd", "--lr", "0.05", "--momentum", "0.9", "--weight-decay", "1e-4"],
    );
}

/// `classes` × `per_class` small JPEGs (sizes around 36 px) packed as tar shards of at most `shard_size` with
/// `tchzoo pack`; the `--data` pattern it printed.
fn packed_shards(root: &Path, name: &str, classes: usize, per_class: usize, shard_size: &str) -> String {
    let folder = root.join(format!("{name}-folder"));
    for c in 0..classes {
        let dir = folder.join(format!("class{c}"));
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..per_class {
            let seed = (c * per_class + i) as u32;
            let (w, h) = (36 + (seed * 7) % 13, 36 + (seed * 11) % 9);
            common::picture(w, h, seed).save(dir.join(format!("img{i:03}.jpg"))).unwrap();
        }
    }
    let prefix = root.join("shards").join(name);
    let mut cmd = tchzoo();
    cmd.args(["pack", folder.to_str().unwrap(), prefix.to_str().unwrap(), "--shard-size", shard_size]);
    let o = common::run_limited(cmd, Duration::from_secs(60));
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let line = out.lines().find_map(|l| l.strip_prefix("--data ")).unwrap_or_else(|| panic!("no pattern in {out}"));
    line.trim_matches('"').to_string()
}

#[test]
fn two_ranks_train_on_tar_shards_as_one_process_on_the_stream() {
    // 24 training images in three shards, read as a stream: the shard order and the shuffle buffer are drawn
    // from (seed, epoch) alike on every rank, and rank r takes every second sample of it, so two ranks with batch
    // 5 (5 + 5 + 2 a rank) see the single process's batches of 10 (10 + 10 + 4) interleaved. The random crops
    // are keyed by the sample's index, not by the rank. The 9 validation images are split 5 + 4 (no padding) and
    // the metrics gathered.
    let dir = common::tempdir();
    let train = packed_shards(dir.path(), "train", 3, 8, "20KB");
    let n_shards = tchzoo::data::shards::expand(&train).unwrap().len();
    assert!(n_shards >= 3, "{train}: {n_shards} shard(s)");
    let val = packed_shards(dir.path(), "val", 3, 3, "1GB");
    let data = format!("{train}:shuffle=8");
    let extra = ["--validation-data", &val, "--epochs", "3", "--workers", "2", "--optimizer", "sgd", "--lr", "0.05"];
    check_equal_to_one_process("lenet5", &data, 5, &[&extra[..], &["--momentum", "0.9"]].concat());
}

#[test]
fn skip_bad_images_on_two_ranks_skips_within_a_batch_and_refuses_to_drop_a_whole_one() {
    // 12 images, class1/img0002.jpg cut after 40 bytes and padded with junk; written as shards by webdataset.
    let dir = common::tempdir();
    let folder = dir.path().join("folder");
    for c in 0..2 {
        std::fs::create_dir_all(folder.join(format!("class{c}"))).unwrap();
        for i in 0..6 {
            let path = folder.join(format!("class{c}/img{i:04}.jpg"));
            common::picture(30 + i, 28 + c, c * 6 + i).save(path).unwrap();
        }
    }
    let bad = folder.join("class1/img0002.jpg");
    let mut bytes = std::fs::read(&bad).unwrap();
    bytes.truncate(40);
    bytes.extend_from_slice(&[0x13; 200]);
    std::fs::write(&bad, bytes).unwrap();
    let shards = dir.path().join("shards");
    std::fs::create_dir_all(&shards).unwrap();
    common::run_script(
        "shards_write.py",
        &[folder.to_str().unwrap(), shards.join("w-%06d.tar").to_str().unwrap(), "5"],
    );
    let pattern = shards.join("w-{000000..000002}.tar").display().to_string();
    let run = |data: &str, batch: &str, name: &str| {
        let out = dir.path().join(name).display().to_string();
        let args = ["--model", "lenet5", "--data", data, "--validation-data", data, "--epochs", "1", "--out", &out];
        let extra = ["--batch-size", batch, "--workers", "2", "--skip-bad-images", "--dist-timeout", "20"];
        run_ranks(2, &[&args[..], &extra[..]].concat())
    };

    // Batches of 4 a rank: the bad image is left out of its batch, the ranks stay in step.
    let outs = run(&pattern, "4", "skip");
    assert_ok(&outs);
    let err: String = outs.iter().map(|o| text(&o.stderr)).collect();
    assert!(err.contains("skipped") && err.contains("class1_img0002"), "{err}");

    // Batches of 1: the bad image is a whole batch of one rank. Dropping it would leave that rank a step behind
    // (a collective mismatch that aborted it); the run ends in one line a rank instead, on shards and on a folder.
    for (data, name) in [
        (pattern.as_str(), "w-000001.tar (sample 'class1_img0002.jpg')"),
        (folder.to_str().unwrap(), "class1/img0002.jpg"),
    ] {
        let outs = run(data, "1", "whole");
        let mut said = 0;
        for (r, o) in outs.iter().enumerate() {
            let err = text(&o.stderr);
            println!("{data}, rank {r}: {}", err.trim());
            assert_eq!(o.status.code(), Some(2), "rank {r}: {err}");
            assert!(!err.contains("terminate called") && !err.contains("panicked"), "rank {r}: {err}");
            let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
            assert_eq!(lines.len(), 1, "rank {r}: {err}");
            if lines[0].contains(name) {
                assert!(lines[0].contains("cannot skip a whole batch"), "{err}");
                said += 1;
            } else {
                assert!(lines[0].contains("another rank probably stopped"), "rank {r}: {err}");
            }
        }
        assert_eq!(said, 1, "one rank names the image");
    }
}

#[test]
fn sync_bn_normalises_over_the_global_batch() {
    let dir = common::tempdir();
    let out = |name: &str| dir.path().join(name).display().to_string();
    let base = [
        "--model",
        "mlp:batch_norm=true",
        "--data",
        "moons",
        "--epochs",
        "3",
        "--optimizer",
        "sgd",
        "--lr",
        "0.1",
        "--momentum",
        "0.9",
    ];
    let synced = run_ranks(
        2,
        &[&base[..], &["--batch-size", "16", "--sync-bn", "--dist-check", "--out", &out("sync")]].concat(),
    );
    assert_ok(&synced);
    let per_rank = run_ranks(2, &[&base[..], &["--batch-size", "16", "--out", &out("local")]].concat());
    assert_ok(&per_rank);
    assert_ok(&[single(&[&base[..], &["--batch-size", "32", "--out", &out("one")]].concat())]);
    let one = dir.path().join("one/model.pt");
    let sync_gap = max_rel_gap(&dir.path().join("sync/model.pt"), &one);
    let local_gap = max_rel_gap(&dir.path().join("local/model.pt"), &one);
    println!(
        "--sync-bn vs one process: {sync_gap:.2e}; per-rank batch norm (DDP's default) vs one process: {local_gap:.2e}"
    );
    // Running statistics included: with --sync-bn they are the global batch's.
    assert!(sync_gap <= 1e-5, "SyncBatchNorm differs from the global batch's statistics by {sync_gap:e}");
    assert!(local_gap > 1e-3, "per-rank batch norm should differ from the global batch ({local_gap:e})");
}

#[test]
fn torchrun_launches_the_ranks() {
    let dir = common::tempdir();
    let (dist, one) = (dir.path().join("torchrun"), dir.path().join("one"));
    let port = free_port().to_string();
    let base = ["--model", "mlp", "--data", "moons", "--epochs", "2", "--augment", "none"];
    let o = Command::new(common::python())
        .args(["-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1"])
        .args(["--master-port", &port, "--no-python", env!("CARGO_BIN_EXE_tchzoo"), "train"])
        .args(base)
        .args(["--batch-size", "16", "--distributed", "--dist-check", "--device", "cpu", "-q"])
        .args(["--out", dist.to_str().unwrap()])
        .env("OMP_NUM_THREADS", "1")
        .output()
        .unwrap();
    assert!(o.status.success(), "torchrun failed: {}{}", text(&o.stdout), text(&o.stderr));
    assert_ok(&[single(&[&base[..], &["--batch-size", "32", "--out", one.to_str().unwrap()]].concat())]);
    let gap = max_rel_gap(&dist.join("model.pt"), &one.join("model.pt"));
    println!("torchrun, 2 ranks vs one process: {gap:.2e}");
    assert!(gap <= 1e-5, "{gap:e}");
}

/// Waits for `child` at most `limit`; kills it and fails when it takes longer.
fn wait_within(mut child: Child, limit: Duration) -> (Output, Duration) {
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return (child.wait_with_output().unwrap(), started.elapsed());
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("the process still ran after {limit:?}: it hangs");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The one line a failed rank prints: `error: distributed: …`, no panic, no C++ backtrace.
fn one_line_error(o: &Output) -> String {
    let err = text(&o.stderr);
    assert!(!o.status.success());
    assert!(!err.contains("panicked") && !err.contains("frame #"), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line expected: {err}");
    assert!(lines[0].starts_with("error: distributed: "), "{err}");
    lines[0].to_string()
}

fn wait_for_file(path: &Path, limit: Duration) {
    let started = Instant::now();
    while !path.exists() {
        assert!(started.elapsed() < limit, "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_dead_rank_fails_the_other_quickly() {
    let dir = common::tempdir();
    let run = dir.path().join("run");
    let args = [
        "--model",
        "lenet5",
        "--data",
        "digits:per_class=50",
        "--augment",
        "none",
        "--epochs",
        "200",
        "--batch-size",
        "8",
        "--dist-timeout",
        "30",
        "--out",
        run.to_str().unwrap(),
    ];
    let port = free_port();
    let r0 = rank_command(0, 2, port, &args).spawn().unwrap();
    let mut r1 = rank_command(1, 2, port, &args).spawn().unwrap();
    // After the first epoch is saved, rank 1 dies mid-training.
    wait_for_file(&run.join("resume.json"), Duration::from_secs(120));
    r1.kill().unwrap();
    let _ = r1.wait();
    let (o, took) = wait_within(r0, Duration::from_secs(60));
    let line = one_line_error(&o);
    println!("rank 0 stopped {took:?} after rank 1 was killed: {line}");
    assert!(line.contains("rank 0 of 2") && line.contains("another rank probably stopped"), "{line}");
    // The saved epoch is intact: the folder still resumes (its resume state loads).
    assert!(tchzoo::train::resume::read(&run).is_ok());
}

#[test]
fn a_wrong_world_size_is_a_clear_error_within_the_timeout() {
    // Two processes started where WORLD_SIZE says three.
    let port = free_port();
    let args = ["--model", "mlp", "--data", "moons", "--epochs", "1", "--dist-timeout", "3"];
    let dir = common::tempdir();
    let out = dir.path().join("run").display().to_string();
    let args = [&args[..], &["--out", &out]].concat();
    let children: Vec<Child> = (0..2).map(|r| rank_command(r, 3, port, &args).spawn().unwrap()).collect();
    let outs: Vec<(Output, Duration)> = children.into_iter().map(|c| wait_within(c, Duration::from_secs(40))).collect();
    let l0 = one_line_error(&outs[0].0);
    let l1 = one_line_error(&outs[1].0);
    println!("rank 0 after {:?}: {l0}\nrank 1 after {:?}: {l1}", outs[0].1, outs[1].1);
    assert!(l0.contains("WORLD_SIZE=3"), "{l0}");
    assert!(l1.contains("WORLD_SIZE=3"), "{l1}");
    // A rank outside the world fails at once.
    let o = rank_command(2, 2, port, &args).output().unwrap();
    assert!(one_line_error(&o).contains("RANK=2 is not below WORLD_SIZE=2"));
}

#[test]
fn an_unreachable_master_is_a_clear_error_within_the_timeout() {
    let args = ["--model", "mlp", "--data", "moons", "--epochs", "1", "--dist-timeout", "3"];
    // Nobody serves the store on this port.
    let child = rank_command(1, 2, free_port(), &args).spawn().unwrap();
    let (o, took) = wait_within(child, Duration::from_secs(40));
    let line = one_line_error(&o);
    println!("after {took:?}: {line}");
    assert!(line.contains("could not join the group at 127.0.0.1:") && line.contains("MASTER_ADDR"), "{line}");
    // Without the launcher's variables at all.
    let o = tchzoo()
        .args(["train", "--model", "mlp", "--data", "moons", "--distributed"])
        .env_remove("RANK")
        .env_remove("WORLD_SIZE")
        .env_remove("SLURM_PROCID")
        .env_remove("SLURM_NTASKS")
        .output()
        .unwrap();
    assert!(one_line_error(&o).contains("torchrun"));
}

#[test]
fn a_killed_distributed_run_resumes_to_the_uninterrupted_result() {
    let dir = common::tempdir();
    let (full, killed) = (dir.path().join("full"), dir.path().join("killed"));
    let args = |out: &Path| -> Vec<String> {
        ["--model", "lenet5", "--data", "digits:per_class=50", "--augment", "none", "--epochs", "6"]
            .iter()
            .map(|s| s.to_string())
            .chain(["--batch-size".into(), "8".into(), "--out".into(), out.display().to_string()])
            .collect()
    };
    let a_full = args(&full);
    let a_full: Vec<&str> = a_full.iter().map(String::as_str).collect();
    assert_ok(&run_ranks(2, &a_full));
    // Both ranks killed once two epochs are saved.
    let a_killed = args(&killed);
    let a_killed: Vec<&str> = a_killed.iter().map(String::as_str).collect();
    let port = free_port();
    let mut ranks: Vec<Child> = (0..2).map(|r| rank_command(r, 2, port, &a_killed).spawn().unwrap()).collect();
    let started = Instant::now();
    loop {
        let saved = tchzoo::train::resume::read(&killed).map(|s| s.epoch).unwrap_or(0);
        if saved >= 2 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "no epoch was saved");
        std::thread::sleep(Duration::from_millis(20));
    }
    for r in &mut ranks {
        let _ = r.kill();
        let _ = r.wait();
    }
    let state = tchzoo::train::resume::read(&killed).unwrap();
    assert!(!state.finished, "the run finished before it was killed; the test needs a longer run");
    let dir_arg = killed.display().to_string();
    assert_ok(&run_ranks(2, &["--resume", &dir_arg]));
    let gap = max_rel_gap(&killed.join("model.pt"), &full.join("model.pt"));
    println!("killed after epoch {} and resumed on 2 ranks vs uninterrupted: {gap:.2e}", state.epoch);
    assert!(gap <= 1e-6, "{gap:e}");
    assert_eq!(history(&killed)["loss"].as_array().unwrap().len(), 6);
    assert!(history_gap(&killed, &full, &["loss", "val_loss", "val_accuracy"]) <= 1e-6);
}
