//! Parameter groups (`--no-decay-norm-bias`, `--lr-mult`) as torch.optim param groups, handed over mid-training in
//! general checkpoints both ways with plain torch: Python's next step from our checkpoint equals ours, and ours
//! from Python's equals Python's, to the bit. Fixtures and checks: scripts/fixtures/param_groups.py.
mod common;

use std::path::PathBuf;

use tch::{Device, Tensor};
use tchzoo::checkpoint::{self, Object};
use tchzoo::models::{self, Model};
use tchzoo::nn::VarStore;
use tchzoo::optim::{groups, parse_kind, GroupSpec, Optimizer, OptimizerConfig};
use tchzoo::train::Loss;

fn fx() -> PathBuf {
    common::fixtures("param_groups.py")
}

struct Case {
    name: String,
    config: OptimizerConfig,
    spec: GroupSpec,
    groups: usize,
}

fn cases() -> Vec<Case> {
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fx().join("cases.json")).unwrap()).unwrap();
    meta.as_object()
        .unwrap()
        .iter()
        .map(|(name, v)| {
            let mut c = OptimizerConfig::new(parse_kind(v["optimizer"].as_str().unwrap()).unwrap());
            let hp = &v["hp"];
            let f = |k: &str| hp.get(k).and_then(|v| v.as_f64());
            c.hyper.lr = f("lr").unwrap();
            c.hyper.momentum = f("momentum").unwrap_or(c.hyper.momentum);
            c.hyper.weight_decay = f("weight_decay").unwrap_or(c.hyper.weight_decay);
            c.hyper.nesterov = hp.get("nesterov").and_then(|v| v.as_bool()).unwrap_or(false);
            let lr_mult = v["lr_mult"].as_object().unwrap().iter().map(|(k, m)| format!("{k}={m}")).collect::<Vec<_>>();
            let spec = GroupSpec {
                no_decay_norm_bias: v["no_decay"].as_bool().unwrap(),
                lr_mult: if lr_mult.is_empty() { vec![] } else { groups::parse_lr_mult(&lr_mult.join(",")).unwrap() },
            };
            Case { name: name.clone(), config: c, spec, groups: v["groups"].as_u64().unwrap() as usize }
        })
        .collect()
}

fn lenet(store: &VarStore) -> Box<dyn Model> {
    models::build("lenet5", store, 5, &[1, 32, 32]).unwrap()
}

fn optimizer(case: &Case, store: &VarStore) -> Optimizer {
    let named = store.named_parameters();
    let g =
        groups::build(&named, &case.spec, case.config.hyper.lr, case.config.hyper.weight_decay, Some("classifier.4"))
            .unwrap();
    assert_eq!(g.len(), case.groups, "{}: as many groups as torch.optim has", case.name);
    Optimizer::with_groups(case.config.clone(), store.parameters(), g).unwrap()
}

fn step(model: &dyn Model, opt: &mut Optimizer, x: &Tensor, y: &Tensor) -> f64 {
    opt.zero_grad().unwrap();
    let loss = Loss::CrossEntropy.compute(&model.forward_t(x, true), y);
    loss.backward();
    opt.step().unwrap();
    loss.double_value(&[])
}

/// Python trained 3 steps with grouped torch.optim and saved; we load into an optimizer grouped by the same flags,
/// take step 4, and get Python's step 4 exactly.
#[test]
fn python_checkpoint_with_groups_continues_here_bit_exact() {
    tch::set_num_threads(1);
    let dir = fx();
    let inputs = common::read_safetensors(&dir.join("inputs.safetensors"));
    for case in cases() {
        let store = VarStore::new(Device::Cpu);
        let model = lenet(&store);
        let mut opt = optimizer(&case, &store);
        let info = checkpoint::load_checkpoint(&dir.join(format!("{}_py3.pt", case.name)), &store, &mut opt).unwrap();
        assert_eq!(info.epoch, Some(3));
        let groups = opt.groups();
        assert!(groups
            .iter()
            .any(|g| g.lr != case.config.hyper.lr || g.weight_decay != case.config.hyper.weight_decay));
        step(model.as_ref(), &mut opt, &inputs["x"], &inputs["y"]);
        let expected = common::read_safetensors(&dir.join(format!("{}_py4.safetensors", case.name)));
        for (k, t) in store.state_dict() {
            let d = common::rel_diff(&t, &expected[&k]);
            assert!(d == 0.0, "python→tchzoo {}: {k} differs from torch's step 4 by {d:e}", case.name);
        }
        eprintln!("python→tchzoo {}: {} groups, step 4 bit-exact", case.name, groups.len());
    }
}

/// We train 3 steps with groups and save; Python builds the same groups with plain torch, loads model and
/// optimizer state, takes step 4: equal to ours.
#[test]
fn our_checkpoint_with_groups_continues_in_torch_bit_exact() {
    tch::set_num_threads(1);
    let dir = fx();
    let out = common::tempdir();
    let inputs = common::read_safetensors(&dir.join("inputs.safetensors"));
    let (x, y) = (&inputs["x"], &inputs["y"]);
    for case in cases() {
        let store = VarStore::new(Device::Cpu);
        let model = lenet(&store);
        let init: Vec<(String, Tensor)> =
            common::read_safetensors(&dir.join(format!("{}_init.safetensors", case.name))).into_iter().collect();
        store.load_state_dict(&init, true, "fixture").unwrap();
        let mut opt = optimizer(&case, &store);
        let mut loss = 0.0;
        for _ in 0..3 {
            loss = step(model.as_ref(), &mut opt, x, y);
        }
        let path = out.path().join(format!("{}_rs3.pt", case.name));
        checkpoint::save_checkpoint(&path, 3, &store, &opt, loss).unwrap();
        // The layout: one param_groups entry per group, params numbered consecutively over the groups.
        let obj = checkpoint::read_pt(&path).unwrap();
        let Some(Object::List(pg)) = obj.get("optimizer_state_dict").and_then(|o| o.get("param_groups")) else {
            panic!("no param_groups list")
        };
        assert_eq!(pg.len(), case.groups);
        let ids: Vec<i64> = pg
            .iter()
            .flat_map(|g| match g.get("params") {
                Some(Object::List(v)) => v.iter().map(|x| x.as_i64().unwrap()).collect::<Vec<_>>(),
                _ => panic!("a group without params"),
            })
            .collect();
        assert_eq!(ids, (0..store.parameters().len() as i64).collect::<Vec<_>>());
        step(model.as_ref(), &mut opt, x, y);
        checkpoint::write_state_dict(&out.path().join(format!("{}_rs4.safetensors", case.name)), &store.state_dict())
            .unwrap();
    }
    let text = common::run_script("param_groups.py", &["verify", dir.to_str().unwrap(), out.path().to_str().unwrap()]);
    let report: serde_json::Value = serde_json::from_str(&text).unwrap();
    for case in cases() {
        let r = &report[&case.name];
        eprintln!("tchzoo→python {}: {r}", case.name);
        assert_eq!(r["exact"], true, "{}: torch's step 4 from our checkpoint differs: {r}", case.name);
    }
}

/// A one-group checkpoint does not load into a grouped optimizer (and says why), and a plain optimizer still
/// loads its own old-layout files.
#[test]
fn group_count_mismatch_is_one_line() {
    tch::set_num_threads(1);
    let dir = fx();
    let case = cases().into_iter().find(|c| c.name == "adam_no_decay").unwrap();
    let store = VarStore::new(Device::Cpu);
    let _model = lenet(&store);
    let mut plain = Optimizer::new(case.config.clone(), store.parameters()).unwrap();
    let e = checkpoint::load_checkpoint(&dir.join("adam_no_decay_py3.pt"), &store, &mut plain).unwrap_err().to_string();
    assert!(e.contains("2 parameter groups, this optimizer has 1") && !e.contains('\n'), "{e}");
}

#[test]
fn unknown_lr_mult_prefix_exits_2_naming_real_prefixes() {
    let out = common::tempdir();
    let o = common::tchzoo()
        .args(["train", "--model", "mlp:hidden=8", "--data", "moons:n_samples=40", "--epochs", "1", "-q"])
        .args(["--lr-mult", "layer4=2", "--out"])
        .arg(out.path().join("run"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("'layer4' matches no parameter") && stderr.contains("classifier"), "{stderr}");
    assert!(!out.path().join("run/history.json").exists());
}

/// The flags and config keys reach the run: its checkpoint holds the groups with their lr and weight decay.
#[test]
fn cli_and_config_keys_make_groups_in_the_run_checkpoint() {
    let out = common::tempdir();
    let cfg = out.path().join("c.json");
    std::fs::write(&cfg, r#"{"lr_mult": "classifier=10", "no_decay_norm_bias": true}"#).unwrap();
    for (how, args) in [
        ("flags", vec!["--lr-mult", "classifier=10", "--no-decay-norm-bias"]),
        ("config", vec!["--config", cfg.to_str().unwrap()]),
        ("foreach", vec!["--lr-mult", "classifier=10", "--no-decay-norm-bias", "--optimizer-impl", "foreach"]),
    ] {
        let run = out.path().join(how);
        let o = common::tchzoo()
            .args(["train", "--model", "mlp:hidden=8", "--data", "moons:n_samples=40", "--epochs", "1", "-q"])
            .args(["--optimizer", "sgd", "--lr", "0.1", "--weight-decay", "0.01"])
            .args(&args)
            .arg("--out")
            .arg(&run)
            .output()
            .unwrap();
        assert!(o.status.success(), "{how}: {}", String::from_utf8_lossy(&o.stderr));
        let ckpt = checkpoint::read_pt(&run.join("resume/epoch-00001/checkpoint.pt")).unwrap();
        let Some(Object::List(pg)) = ckpt.get("optimizer_state_dict").and_then(|o| o.get("param_groups")) else {
            panic!("{how}: no param_groups")
        };
        let lr_wd: Vec<(f64, f64)> = pg
            .iter()
            .map(|g| (g.get("lr").unwrap().as_f64().unwrap(), g.get("weight_decay").unwrap().as_f64().unwrap()))
            .collect();
        // features.1.weight (decay), features.1.bias (none), classifier.weight (×10, decay), classifier.bias.
        assert_eq!(lr_wd, vec![(0.1, 0.01), (0.1, 0.0), (0.1 * 10.0, 0.01), (0.1 * 10.0, 0.0)], "{how}");
        // The implementation as torch records it: the CPU's default is foreach=False, fused None.
        for g in pg {
            let foreach = matches!(g.get("foreach"), Some(Object::Bool(true)));
            assert_eq!(foreach, how == "foreach", "{how}: foreach key");
            assert!(matches!(g.get("fused"), Some(Object::None)), "{how}: fused key");
        }
    }
}
