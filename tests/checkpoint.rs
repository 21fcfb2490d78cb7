//! Checkpoints against the real torch: `.pt` and `.safetensors` state dicts both ways (bit-exact per dtype),
//! MLP and LeNet-5 weights loading strict both ways with equal logits, the general training checkpoint handed
//! over mid-training in both directions, hostile and broken files, and the `convert`/`inspect` commands.
//! Fixtures: scripts/fixtures/checkpoint_fixtures.py; Python checks of what we write:
//! scripts/fixtures/checkpoint_verify.py.
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use tch::{Device, Kind, Tensor};
use tchzoo::checkpoint::{self, Object};
use tchzoo::models::{self, Model};
use tchzoo::nn::VarStore;
use tchzoo::optim::{parse_kind, Optimizer, OptimizerConfig};
use tchzoo::train::Loss;
use tchzoo::Error;

/// Logits from the same weights and inputs: libtorch here and torch in Python may pick different kernels.
const LOGITS_RTOL: f64 = 1e-6;

fn fx() -> PathBuf {
    common::fixtures("checkpoint_fixtures.py")
}

fn raw(t: &Tensor) -> Vec<u8> {
    let t = t.contiguous();
    let mut buf = vec![0u8; t.numel() * t.kind().elt_size_in_bytes()];
    t.copy_data_u8(&mut buf, t.numel());
    buf
}

fn assert_same(a: &Tensor, b: &Tensor, what: &str) {
    assert_eq!(a.kind(), b.kind(), "{what}: dtype");
    assert_eq!(a.size(), b.size(), "{what}: shape");
    assert!(raw(a) == raw(b), "{what}: values differ");
}

fn mlp(store: &VarStore) -> Box<dyn Model> {
    models::build("mlp:hidden=16x12,activation=tanh", store, 4, &[6]).unwrap()
}

fn lenet(store: &VarStore) -> Box<dyn Model> {
    models::build("lenet5", store, 10, &[1, 32, 32]).unwrap()
}

fn map(v: Vec<(String, Tensor)>) -> std::collections::HashMap<String, Tensor> {
    v.into_iter().collect()
}

/// Runs scripts/fixtures/checkpoint_verify.py and returns its JSON report.
fn verify(mode: &str, out: &Path) -> serde_json::Value {
    let script = common::root().join("scripts/fixtures/checkpoint_verify.py");
    let o = Command::new(common::python()).arg(script).arg(mode).arg(fx()).arg(out).output().unwrap();
    assert!(o.status.success(), "checkpoint_verify.py {mode} failed:\n{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn one_line_checkpoint_error(e: &Error, what: &str) -> String {
    let text = e.to_string();
    assert!(matches!(e, Error::Checkpoint { .. }), "{what}: not a checkpoint error: {text}");
    assert!(!text.contains('\n'), "{what}: error spans lines: {text}");
    text
}

#[test]
fn python_state_dict_reads_bit_exact_with_views_and_ties() {
    let dir = fx();
    let got = checkpoint::read_state_dict(&dir.join("dtypes.pt")).unwrap();
    let expected = checkpoint::read_state_dict(&dir.join("dtypes.safetensors")).unwrap();
    // The safetensors reader agrees with tch's own.
    let by_tch = map(Tensor::read_safetensors(dir.join("dtypes.safetensors")).unwrap());
    for (k, t) in &expected {
        assert_same(t, &by_tch[k], &format!("safetensors {k}"));
    }
    let names: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names[..3], ["f32", "f32_special", "f16"], "the OrderedDict's order is kept");
    let expected = map(expected);
    assert_eq!(got.len(), expected.len());
    for (k, t) in &got {
        assert_same(t, &expected[k], k);
    }
    let got = map(got);
    let kinds: Vec<Kind> =
        ["f32", "f16", "bf16", "f64", "i64", "i32", "i16", "i8", "u8", "bool"].iter().map(|k| got[*k].kind()).collect();
    assert_eq!(
        kinds,
        [
            Kind::Float,
            Kind::Half,
            Kind::BFloat16,
            Kind::Double,
            Kind::Int64,
            Kind::Int,
            Kind::Int16,
            Kind::Int8,
            Kind::Uint8,
            Kind::Bool
        ]
    );
    assert_eq!(got["scalar_i64"].size(), Vec::<i64>::new());
    assert_eq!(got["scalar_i64"].int64_value(&[]), 7);
    assert_eq!(got["transposed"].stride(), [1, 6], "strides are kept as Python's");
    assert_eq!(got["strided"].stride(), [3]);
    // Shared storage is shared here too: tied keys are one tensor, a view sits 3 floats into its base.
    assert_eq!(got["tied_a"].data_ptr(), got["tied_b"].data_ptr());
    assert_eq!(got["view_offset"].data_ptr() as usize, got["base"].data_ptr() as usize + 3 * 4);
    assert_eq!(got["empty"].size(), [0, 3]);
}

fn rust_made_tensors() -> Vec<(String, Tensor)> {
    tch::manual_seed(11);
    let opts = (Kind::Float, Device::Cpu);
    let base = Tensor::randn([10], opts);
    vec![
        ("f32".into(), Tensor::randn([3, 4], opts)),
        ("f16".into(), Tensor::randn([5], opts).to_kind(Kind::Half)),
        ("bf16".into(), Tensor::randn([2, 3], opts).to_kind(Kind::BFloat16)),
        ("f64".into(), Tensor::randn([4], (Kind::Double, Device::Cpu))),
        ("i64".into(), Tensor::from_slice(&[i64::MIN, -1, 0, i64::MAX])),
        ("i32".into(), Tensor::from_slice(&[i32::MIN, 5, 7, i32::MAX]).reshape([2, 2])),
        ("i16".into(), Tensor::from_slice(&[-300i16, 300])),
        ("i8".into(), Tensor::from_slice(&[-128i8, 127, 3])),
        ("u8".into(), Tensor::from_slice(&[0u8, 17, 255])),
        ("bool".into(), Tensor::from_slice(&[true, false, true])),
        ("scalar_i64".into(), Tensor::from(7i64)),
        ("scalar_f32".into(), Tensor::from(1.5f32)),
        ("transposed".into(), Tensor::randn([4, 6], opts).tr()),
        ("strided".into(), Tensor::arange(20, opts).slice(0, 0, 20, 3)),
        ("view_offset".into(), base.narrow(0, 3, 4)),
        ("empty".into(), Tensor::zeros([0, 3], opts)),
    ]
}

/// Rust → Python → Rust, Python → Rust → Python, and models both ways, in one Python process.
#[test]
fn files_we_write_load_in_python_and_back() {
    tch::set_num_threads(1);
    let dir = fx();
    let out = common::tempdir();
    let o = out.path();
    // Python → Rust → Python: re-save Python's file.
    let dtypes = checkpoint::read_state_dict(&dir.join("dtypes.pt")).unwrap();
    checkpoint::write_state_dict(&o.join("dtypes_rt.pt"), &dtypes).unwrap();
    // Rust → Python → Rust.
    let made = rust_made_tensors();
    checkpoint::write_state_dict(&o.join("rust_made.pt"), &made).unwrap();
    checkpoint::write_state_dict(&o.join("rust_made.safetensors"), &made).unwrap();
    // Models initialised here.
    tch::manual_seed(42);
    let (s_mlp, s_lenet) = (VarStore::new(Device::Cpu), VarStore::new(Device::Cpu));
    let (m_mlp, m_lenet) = (mlp(&s_mlp), lenet(&s_lenet));
    checkpoint::save_weights(&s_mlp, &o.join("mlp_rs.pt")).unwrap();
    checkpoint::save_weights(&s_mlp, &o.join("mlp_rs.safetensors")).unwrap();
    checkpoint::save_weights(&s_lenet, &o.join("lenet5_rs.pt")).unwrap();

    let report = verify("state_dicts", o);
    eprintln!("python: {report}");
    assert_eq!(report["dtypes_round_trip"].as_u64().unwrap() as usize, dtypes.len());

    let back = map(checkpoint::read_state_dict(&o.join("rust_made_back.pt")).unwrap());
    assert_eq!(back.len(), made.len());
    for (k, t) in &made {
        assert_same(&back[k], t, &format!("rust_made_back {k}"));
    }

    let inputs = common::read_safetensors(&dir.join("logits.safetensors"));
    let py = common::read_safetensors(&o.join("py_logits.safetensors"));
    let ours_mlp = tch::no_grad(|| m_mlp.forward_t(&inputs["x_mlp"], false));
    let ours_lenet = tch::no_grad(|| m_lenet.forward_t(&inputs["x_lenet"], false));
    let (d_mlp, d_lenet) =
        (common::rel_diff(&ours_mlp, &py["logits_mlp"]), common::rel_diff(&ours_lenet, &py["logits_lenet"]));
    eprintln!("our weights in Python: logits differ by {d_mlp:e} (mlp), {d_lenet:e} (lenet5)");
    assert!(d_mlp <= LOGITS_RTOL && d_lenet <= LOGITS_RTOL);
}

#[test]
fn python_models_load_strict_with_equal_logits() {
    tch::set_num_threads(1);
    let dir = fx();
    let inputs = common::read_safetensors(&dir.join("logits.safetensors"));
    for (name, file, x, logits) in
        [("mlp", "mlp.pt", "x_mlp", "logits_mlp"), ("lenet5", "lenet5.pt", "x_lenet", "logits_lenet")]
    {
        let store = VarStore::new(Device::Cpu);
        let model = if name == "mlp" { mlp(&store) } else { lenet(&store) };
        let report = checkpoint::load_weights(&store, &dir.join(file), true).unwrap();
        assert_eq!(report.loaded, store.len());
        let ours = tch::no_grad(|| model.forward_t(&inputs[x], false));
        let d = common::rel_diff(&ours, &inputs[logits]);
        eprintln!("{name}: Python's weights here, logits differ by {d:e}");
        assert!(d <= LOGITS_RTOL, "{name}: logits differ by {d:e}");
    }
}

struct Case {
    name: String,
    kind: String,
    hp: serde_json::Value,
    loss5: f64,
}

fn cases() -> Vec<Case> {
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fx().join("cases.json")).unwrap()).unwrap();
    meta.as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| Case {
            name: k.clone(),
            kind: v["optimizer"].as_str().unwrap().into(),
            hp: v["hp"].clone(),
            loss5: v["loss5"].as_f64().unwrap(),
        })
        .collect()
}

fn config(case: &Case) -> OptimizerConfig {
    let mut c = OptimizerConfig::new(parse_kind(&case.kind).unwrap());
    let hp = &case.hp;
    let f = |k: &str| hp.get(k).and_then(|v| v.as_f64());
    let b = |k: &str| hp.get(k).and_then(|v| v.as_bool()).unwrap_or(false);
    c.hyper.lr = f("lr").unwrap();
    c.hyper.momentum = f("momentum").unwrap_or(c.hyper.momentum);
    c.hyper.dampening = f("dampening").unwrap_or(c.hyper.dampening);
    c.hyper.weight_decay = f("weight_decay").unwrap_or(c.hyper.weight_decay);
    c.hyper.alpha = f("alpha").unwrap_or(c.hyper.alpha);
    c.hyper.eps = f("eps").unwrap_or(c.hyper.eps);
    if let Some(betas) = hp.get("betas").and_then(|v| v.as_array()) {
        c.hyper.betas = (betas[0].as_f64().unwrap(), betas[1].as_f64().unwrap());
    }
    c.hyper.amsgrad = b("amsgrad");
    c.hyper.centered = b("centered");
    c
}

fn train_step(model: &dyn Model, opt: &mut Optimizer, x: &Tensor, y: &Tensor) -> f64 {
    opt.zero_grad().unwrap();
    let loss = Loss::CrossEntropy.compute(&model.forward_t(x, true), y);
    loss.backward();
    opt.step().unwrap();
    loss.double_value(&[])
}

fn max_abs_diff(store: &VarStore, expected: &std::collections::HashMap<String, Tensor>) -> (f64, bool) {
    let mut worst = 0f64;
    let mut exact = true;
    for (k, t) in store.state_dict() {
        let e = &expected[&k];
        worst = worst.max((&t - e).abs().max().double_value(&[]));
        exact &= raw(&t) == raw(e);
    }
    (worst, exact)
}

/// Python trained 5 steps and saved; we load into a default-configured optimizer, take step 6, and compare with
/// Python's uninterrupted run.
#[test]
fn general_checkpoint_python_to_rust() {
    tch::set_num_threads(1);
    let dir = fx();
    let inputs = common::read_safetensors(&dir.join("inputs.safetensors"));
    for case in cases() {
        let store = VarStore::new(Device::Cpu);
        let model = mlp(&store);
        let mut opt =
            Optimizer::new(OptimizerConfig::new(parse_kind(&case.kind).unwrap()), store.parameters()).unwrap();
        let info = checkpoint::load_checkpoint(&dir.join(format!("{}_py5.pt", case.name)), &store, &mut opt).unwrap();
        assert_eq!(info.epoch, Some(5));
        assert_eq!(info.loss, Some(case.loss5));
        assert_eq!(opt.config, config(&case), "{}: hyper-parameters restored from param_groups", case.name);
        train_step(model.as_ref(), &mut opt, &inputs["x"], &inputs["y"]);
        let expected = common::read_safetensors(&dir.join(format!("{}_py6.safetensors", case.name)));
        let (d, exact) = max_abs_diff(&store, &expected);
        eprintln!("python→rust {}: step 6 max |Δ| = {d:e}, bit-exact {exact}", case.name);
        assert!(d <= 1e-6, "{}: step 6 differs from torch by {d:e}", case.name);
    }
}

/// We train 5 steps and save; Python loads into `torch.optim.X(model.parameters())`, takes step 6, and compares
/// with its own uninterrupted run. Our checkpoint also resumes here exactly.
#[test]
fn general_checkpoint_rust_to_python() {
    tch::set_num_threads(1);
    let dir = fx();
    let out = common::tempdir();
    let inputs = common::read_safetensors(&dir.join("inputs.safetensors"));
    let (x, y) = (&inputs["x"], &inputs["y"]);
    for case in cases() {
        let store = VarStore::new(Device::Cpu);
        let model = mlp(&store);
        checkpoint::load_weights(&store, &dir.join(format!("{}_init.pt", case.name)), true).unwrap();
        let mut opt = Optimizer::new(config(&case), store.parameters()).unwrap();
        let mut loss = 0.0;
        for _ in 0..5 {
            loss = train_step(model.as_ref(), &mut opt, x, y);
        }
        assert_eq!(loss, case.loss5, "{}: step-5 loss differs from torch", case.name);
        let path = out.path().join(format!("{}_rs5.pt", case.name));
        checkpoint::save_checkpoint(&path, 5, &store, &opt, loss).unwrap();

        // Resuming here from our own file gives the same step 6 as not stopping.
        let store2 = VarStore::new(Device::Cpu);
        let model2 = mlp(&store2);
        let mut opt2 = Optimizer::new(OptimizerConfig::new(opt.config.kind), store2.parameters()).unwrap();
        let info = checkpoint::load_checkpoint(&path, &store2, &mut opt2).unwrap();
        assert_eq!((info.epoch, info.loss), (Some(5), Some(loss)));
        train_step(model.as_ref(), &mut opt, x, y);
        train_step(model2.as_ref(), &mut opt2, x, y);
        for ((k, a), (_, b)) in store.state_dict().iter().zip(store2.state_dict()) {
            assert_same(a, &b, &format!("{} resumed {k}", case.name));
        }
    }
    let report = verify("handover", out.path());
    for case in cases() {
        let r = &report[&case.name];
        eprintln!("rust→python {}: {r}", case.name);
        let d = r["max_abs_diff"].as_f64().unwrap();
        assert!(d <= 1e-6, "{}: Python's step 6 from our checkpoint differs by {d:e}", case.name);
    }
}

#[test]
fn hostile_and_broken_files_fail_in_one_line() {
    let bad = fx().join("bad");
    let expectations = [
        ("evil_system.pt", "posix.system"),
        ("evil_eval.pt", "builtins.eval"),
        ("evil_nested.pt", "posix.system"),
        ("truncated.pt", "not a torch.save file"),
        ("random.pt", "not a torch.save file"),
        ("empty.pt", "not a torch.save file"),
        ("no_data_pkl.pt", "no archive/data.pkl"),
        ("big_endian.pt", "big-endian"),
        ("short_storage.pt", "needs 4000 bytes"),
        ("out_of_bounds.pt", "reaches past the storage"),
        ("offset_out_of_bounds.pt", "reaches past the storage"),
        ("absurd_shape.pt", "overflows"),
        ("absurd_numel.pt", "absurdly large"),
        ("negative_size.pt", "negative"),
        ("missing_record.pt", "archive/data/7 is missing"),
        ("truncated_pickle.pt", "truncated"),
        ("cycle.pt", "nested more than"),
        ("deep_tuple.pt", "nested more than"),
        ("deep_list.pt", "nested more than"),
        ("laughs.pt", "expand to more objects"),
        ("legacy.pt", "legacy torch.save format"),
    ];
    for (file, needle) in expectations {
        let e = checkpoint::read_pt(&bad.join(file)).unwrap_err();
        let text = one_line_checkpoint_error(&e, file);
        assert!(text.contains(needle), "{file}: expected '{needle}' in: {text}");
        eprintln!("{file}: {text}");
        let e = checkpoint::read_state_dict(&bad.join(file)).unwrap_err();
        one_line_checkpoint_error(&e, file);
    }
    assert!(!Path::new("/tmp/tchzoo_pwned").exists(), "a payload ran");

    // Every truncation and many single-byte corruptions of a good file: an error or a load, never a panic.
    let good = std::fs::read(fx().join("mlp.pt")).unwrap();
    let tmp = common::tempdir();
    let p = tmp.path().join("cut.pt");
    let mut failures = 0;
    for cut in (0..good.len()).step_by(7) {
        std::fs::write(&p, &good[..cut]).unwrap();
        one_line_checkpoint_error(&checkpoint::read_pt(&p).unwrap_err(), &format!("cut at {cut}"));
        failures += 1;
    }
    let mut loaded = 0;
    for at in (0..good.len()).step_by(5) {
        let mut b = good.clone();
        b[at] ^= 0xa5;
        std::fs::write(&p, &b).unwrap();
        match checkpoint::read_pt(&p) {
            Ok(_) => loaded += 1,
            Err(e) => {
                one_line_checkpoint_error(&e, &format!("flip at {at}"));
            }
        }
    }
    eprintln!("{failures} truncations refused; {loaded} of {} corrupted copies still loaded", good.len() / 5 + 1);

    for (path, needle) in
        [(tmp.path().join("missing.pt"), "no such file"), (tmp.path().to_path_buf(), "unknown extension")]
    {
        let e = checkpoint::read_state_dict(&path).unwrap_err();
        assert!(one_line_checkpoint_error(&e, "path").contains(needle));
    }
}

#[test]
fn strict_loading_lists_every_problem_and_non_strict_loads_the_rest() {
    let dir = fx();
    let mut tensors = checkpoint::read_state_dict(&dir.join("mlp.pt")).unwrap();
    let dropped = tensors.remove(0).0;
    tensors.push(("extra.weight".into(), Tensor::zeros([2], (Kind::Float, Device::Cpu))));
    let last = tensors.len() - 2;
    tensors[last].1 = Tensor::zeros([3, 3], (Kind::Float, Device::Cpu));
    let mismatched = tensors[last].0.clone();
    let tmp = common::tempdir();
    let path = tmp.path().join("odd.pt");
    checkpoint::write_state_dict(&path, &tensors).unwrap();

    let store = VarStore::new(Device::Cpu);
    let _model = mlp(&store);
    let e = checkpoint::load_weights(&store, &path, true).unwrap_err();
    let text = one_line_checkpoint_error(&e, "strict");
    for needle in ["missing keys", &dropped, "unexpected keys", "extra.weight", "shape mismatches", &mismatched] {
        assert!(text.contains(needle), "'{needle}' not in: {text}");
    }
    let before = store.get(&dropped).unwrap().copy();
    let report = checkpoint::load_weights(&store, &path, false).unwrap();
    assert_eq!(report.loaded, store.len() - 2);
    assert_eq!((report.missing.len(), report.unexpected.len(), report.mismatched.len()), (1, 1, 1));
    assert_same(&store.get(&dropped).unwrap(), &before, "the missing key keeps its value");
    let loaded = map(tensors);
    let name = &store.state_dict()[1].0;
    assert_same(&store.get(name).unwrap(), &loaded[name], "a matching key loads");
}

#[test]
fn writes_are_atomic_and_leave_no_temporary_files() {
    let tmp = common::tempdir();
    let path = tmp.path().join("w.pt");
    let store = VarStore::new(Device::Cpu);
    let _model = mlp(&store);
    checkpoint::save_weights(&store, &path).unwrap();
    checkpoint::save_weights(&store, &tmp.path().join("w.safetensors")).unwrap();
    let good = std::fs::read(&path).unwrap();
    // A failed write (a dtype .pt cannot hold) leaves the good file as it was.
    let odd = vec![("x".to_string(), Tensor::zeros([2], (Kind::ComplexHalf, Device::Cpu)))];
    let e = checkpoint::write_state_dict(&path, &odd).unwrap_err();
    one_line_checkpoint_error(&e, "complex32");
    assert_eq!(std::fs::read(&path).unwrap(), good);
    // A name given twice is refused before anything is written.
    let twice = vec![("a".to_string(), Tensor::from(1f32)), ("a".to_string(), Tensor::from(2f32))];
    assert!(checkpoint::write_state_dict(&path, &twice).is_err());
    let mut names: Vec<String> =
        std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
    names.sort();
    assert_eq!(names, ["w.pt", "w.safetensors"]);
    // Writing over a directory fails cleanly.
    std::fs::create_dir(tmp.path().join("d.pt")).unwrap();
    assert!(checkpoint::save_weights(&store, &tmp.path().join("d.pt")).is_err());
}

#[test]
fn general_checkpoint_mismatches_are_refused_before_anything_changes() {
    let dir = fx();
    let store = VarStore::new(Device::Cpu);
    let _model = mlp(&store);
    let before: Vec<Vec<u8>> = store.state_dict().iter().map(|(_, t)| raw(t)).collect();
    let mut sgd = Optimizer::new(OptimizerConfig::new(parse_kind("sgd").unwrap()), store.parameters()).unwrap();
    let e = checkpoint::load_checkpoint(&dir.join("adam_py5.pt"), &store, &mut sgd).unwrap_err();
    assert!(one_line_checkpoint_error(&e, "kind").contains("Adam state, this optimizer is SGD"));
    let after: Vec<Vec<u8>> = store.state_dict().iter().map(|(_, t)| raw(t)).collect();
    assert!(before == after, "the model changed although the load failed");
    // A plain state dict is not a training checkpoint.
    let mut adam = Optimizer::new(OptimizerConfig::new(parse_kind("adam").unwrap()), store.parameters()).unwrap();
    let e = checkpoint::load_checkpoint(&dir.join("mlp.pt"), &store, &mut adam).unwrap_err();
    assert!(one_line_checkpoint_error(&e, "plain").contains("no 'model_state_dict'"));
    // The general checkpoint's model weights also load as a state dict.
    checkpoint::load_weights(&store, &dir.join("adam_py5.pt"), true).unwrap();
    // Objects other than state dicts round-trip too.
    let obj = Object::dict(vec![
        ("list", Object::List(vec![Object::Int(-5), Object::Int(1 << 40), Object::Float(0.5), Object::None])),
        ("tuple", Object::Tuple(vec![Object::Bool(true), Object::Str("é".into())])),
        ("bytes", Object::Bytes(vec![0, 200, 255])),
    ]);
    let tmp = common::tempdir();
    let p = tmp.path().join("obj.pt");
    checkpoint::write_pt(&p, &obj).unwrap();
    assert_eq!(format!("{:?}", checkpoint::read_pt(&p).unwrap()), format!("{obj:?}"));
}

fn run_cli(args: &[&std::ffi::OsStr]) -> (i32, String, String) {
    let o = common::tchzoo().args(args).output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

#[test]
fn convert_and_inspect_through_the_binary() {
    let dir = fx();
    let tmp = common::tempdir();
    let st = tmp.path().join("mlp.safetensors");
    let back = tmp.path().join("mlp_back.pt");
    let (code, stdout, stderr) = run_cli(&["convert".as_ref(), dir.join("mlp.pt").as_os_str(), st.as_os_str()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("wrote 6 tensors"), "{stdout}");
    let (code, _, stderr) = run_cli(&["convert".as_ref(), st.as_os_str(), back.as_os_str()]);
    assert_eq!(code, 0, "{stderr}");
    let original = map(checkpoint::read_state_dict(&dir.join("mlp.pt")).unwrap());
    for file in [&st, &back] {
        let got = checkpoint::read_state_dict(file).unwrap();
        assert_eq!(got.len(), original.len());
        for (k, t) in &got {
            assert_same(t, &original[k], &format!("{} {k}", file.display()));
        }
    }

    let (code, stdout, stderr) = run_cli(&["inspect".as_ref(), dir.join("mlp.pt").as_os_str()]);
    assert_eq!(code, 0, "{stderr}");
    eprintln!("{stdout}");
    assert!(stdout.contains("features.1.weight") && stdout.contains("[16, 6]") && stdout.contains("float32"));
    // 16·6 + 16 + 12·16 + 12 + 4·12 + 4
    assert!(stdout.contains("Total parameters: 368 in 6 tensors"), "{stdout}");
    let (code, stdout, _) = run_cli(&["inspect".as_ref(), dir.join("adam_py5.pt").as_os_str()]);
    assert_eq!(code, 0);
    eprintln!("{stdout}");
    assert!(stdout.contains("general checkpoint: epoch 5") && stdout.contains("classifier.bias"), "{stdout}");
    let (code, stdout, _) = run_cli(&["inspect".as_ref(), dir.join("dtypes.pt").as_os_str()]);
    assert_eq!(code, 0);
    let scalar = stdout.lines().find(|l| l.starts_with("scalar_i64 ")).unwrap_or_default();
    assert!(scalar.contains(" [] ") && scalar.ends_with("int64"), "{stdout}");
    assert!(stdout.contains("bfloat16") && stdout.contains("Total parameters: 21,131 in 22 tensors"), "{stdout}");
    let (code, stdout, _) = run_cli(&["inspect".as_ref(), st.as_os_str()]);
    assert_eq!(code, 0);
    assert!(stdout.contains("Total parameters: 368"), "{stdout}");

    // Bad input: exit code 2, one line on stderr, and no output file.
    let out = tmp.path().join("never.safetensors");
    let bad = dir.join("bad");
    for args in [
        vec!["inspect".into(), bad.join("evil_system.pt").into_os_string()],
        vec!["inspect".into(), bad.join("truncated.pt").into_os_string()],
        vec!["convert".into(), bad.join("big_endian.pt").into_os_string(), out.clone().into_os_string()],
        vec!["convert".into(), dir.join("mlp.pt").into_os_string(), tmp.path().join("x.txt").into_os_string()],
        vec!["inspect".into(), tmp.path().join("missing.pt").into_os_string()],
    ] {
        let args: Vec<std::ffi::OsString> = args;
        let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        let (code, _, stderr) = run_cli(&args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("error: checkpoint "), "{stderr}");
    }
    assert!(!out.exists());
    // A failed convert over a good file leaves it intact.
    let good = std::fs::read(&st).unwrap();
    let (code, _, _) = run_cli(&["convert".as_ref(), bad.join("short_storage.pt").as_os_str(), st.as_os_str()]);
    assert_eq!(code, 2);
    assert_eq!(std::fs::read(&st).unwrap(), good);
}
