//! torchvision's GoogLeNet, Inception v3, DenseNet and MobileNet v2, and MobileNet v1 in timm's layout (Python
//! reference: scripts/reference_models.py), against PyTorch: the same state-dict names in the same order and the
//! same parameter count for every variant at 1,000 classes, with and without aux heads; a strict load and the same
//! eval-mode logits from the same weights (max|Δ| ≤ 1e-4 · max(1, max|y|)); one SGD step in train mode of
//! GoogLeNet and Inception v3 with their aux losses (weight 0.3) giving torch.optim's loss and parameters (relative
//! Δ ≤ 1e-4); and `torch.save` files both ways for resnet18 and googlenet. Fixtures: scripts/fixtures/zoo_googlenet_densenet_mobilenet.py
//! (large tensors are stored as a scaled tile, rebuilt here as there).
mod common;

use common::zoo::build_locked;
use common::zoo::{strings, tile};
use common::zoo::{LOGITS_TOLERANCE, TRAIN_SEED};

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use tch::{Device, Kind, Tensor};
use tchzoo::models::{self, googlenet::GoogLeNet};
use tchzoo::nn::{Module, VarStore};
use tchzoo::train::trainer::training_loss;
use tchzoo::train::{FitConfig, Loss};

fn fixtures() -> (PathBuf, Value) {
    common::zoo::fixtures("zoo_googlenet_densenet_mobilenet.py")
}

fn keys(store: &VarStore) -> Vec<String> {
    store.state_dict().into_iter().map(|(k, _)| k).collect()
}

/// Loads the case's weights into `store`, strictly: from `<case>.pt` with our .pt reader, or from the stored
/// tensors and the scaled tiles.
fn load(case: &str, m: &Value, dir: &Path, t: &HashMap<String, Tensor>, store: &VarStore) {
    if m["weights"] == "pt" {
        let report = tchzoo::checkpoint::load_weights(store, &dir.join(format!("{case}.pt")), true).unwrap();
        assert_eq!(report.loaded, store.len(), "{case}: tensors loaded from {case}.pt");
        return;
    }
    let tiled = m["tiled"].as_object().unwrap();
    let sd: Vec<(String, Tensor)> = strings(&m["keys"])
        .into_iter()
        .map(|k| {
            let tensor = match tiled.get(&k) {
                None => t[&format!("sd.{k}")].shallow_clone(),
                Some(g) => {
                    let shape: Vec<i64> = g["shape"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
                    let tensor = tile(&t["tile"], &shape) * g["scale"].as_f64().unwrap();
                    let (ours, theirs) = (tensor.sum(Kind::Double).double_value(&[]), g["sum"].as_f64().unwrap());
                    let abs = tensor.abs().sum(Kind::Double).double_value(&[]);
                    assert!(
                        (ours - theirs).abs() <= 1e-9 * abs,
                        "{case}: {k} rebuilt sums to {ours}, torch's to {theirs}"
                    );
                    tensor
                }
            };
            (k, tensor)
        })
        .collect();
    store.load_state_dict(&sd, true, case).unwrap();
}

/// max|Δ| / max(1, max|y|).
fn logits_delta(ours: &Tensor, theirs: &Tensor) -> f64 {
    let delta = (ours - theirs).abs().max().double_value(&[]);
    delta / theirs.abs().max().double_value(&[]).max(1.0)
}

#[test]
fn torchvision_logits_parity() {
    let (dir, meta) = fixtures();
    let mut report = vec![];
    for (case, m) in meta["cases"].as_object().unwrap() {
        let t = common::read_safetensors(&dir.join(format!("{case}.safetensors")));
        let store = VarStore::new(Device::Cpu);
        let model = build_locked(m, &store);
        assert_eq!(keys(&store), strings(&m["keys"]), "{case}: state-dict names and order");
        assert_eq!(store.num_parameters(), m["parameters"].as_i64().unwrap(), "{case}: parameter count");
        load(case, m, &dir, &t, &store);
        let logits = tch::no_grad(|| model.forward_t(&t["x"], false));
        assert_eq!(logits.size(), t["logits"].size(), "{case}: logits shape");
        let d = logits_delta(&logits, &t["logits"]);
        assert!(d <= LOGITS_TOLERANCE, "{case}: logits differ from PyTorch's by {d:e} (relative to max(1, max|y|))");
        report.push(format!("{case}: max|Δ|/max(1, max|y|) {d:.2e}"));
    }
    eprintln!("{}", report.join("\n"));
}

#[test]
fn every_variant_has_torchvisions_names_order_and_parameter_count() {
    let (_, meta) = fixtures();
    // torchvision's documented counts (num_params in its weight metadata; googlenet's and inception_v3's
    // with aux heads are the models' own), and MobileNet v1's from the paper's table (4.2M).
    let documented = [
        ("googlenet", 13_004_888),
        ("googlenet_no_aux", 6_624_904),
        ("inception_v3", 27_161_264),
        ("inception_v3_no_aux", 23_834_568),
        ("densenet121", 7_978_856),
        ("densenet161", 28_681_000),
        ("densenet169", 14_149_480),
        ("densenet201", 20_013_928),
        ("mobilenet_v2", 3_504_872),
        ("mobilenetv1_100", 4_231_976),
    ];
    let variants = meta["variants"].as_object().unwrap();
    for (name, count) in documented {
        assert_eq!(variants[name]["parameters"].as_i64().unwrap(), count, "{name}: fixture count");
    }
    for (name, m) in variants {
        let store = VarStore::new(Device::Cpu);
        build_locked(m, &store);
        assert_eq!(keys(&store), strings(&m["keys"]), "{name}: state-dict names and order");
        assert_eq!(store.num_parameters(), m["parameters"].as_i64().unwrap(), "{name}: parameter count");
    }
}

#[test]
fn googlenet_and_inception_v3_sgd_step_with_aux_losses_matches_torch_optim() {
    let (dir, meta) = fixtures();
    for case in ["googlenet", "inception_v3"] {
        let m = &meta["cases"][case];
        let t = common::read_safetensors(&dir.join(format!("{case}.safetensors")));
        let store = VarStore::new(Device::Cpu);
        let model = build_locked(m, &store);
        load(case, m, &dir, &t, &store);
        let before: HashMap<String, Tensor> =
            store.state_dict().into_iter().map(|(k, v)| (k, v.detach().copy())).collect();
        let (d, worst) = common::zoo::check_sgd_step(case, &store, &t, (0.01, 0.0), Some(TRAIN_SEED), true, || {
            let aux_weight = FitConfig::default().aux_loss_weight;
            training_loss(model.as_ref(), Loss::CrossEntropy, &t["x"], &t["train.y"], aux_weight).0
        });
        let norms = m["update_norms"].as_object().unwrap();
        let mut worst_update = (String::new(), 0.0);
        for (k, v) in store.state_dict() {
            if let Some(theirs) = norms.get(&k).and_then(|n| n.as_f64()) {
                let ours = (v.to_kind(Kind::Double) - before[&k].to_kind(Kind::Double)).norm().double_value(&[]);
                let d = (ours - theirs).abs() / theirs.max(1e-30);
                assert!(
                    ours == theirs || d <= 1e-3,
                    "{case}: {k} moved by ‖Δ‖ = {ours:e} in one SGD step, in torch.optim by {theirs:e}"
                );
                if d > worst_update.1 {
                    worst_update = (k, d);
                }
            }
        }
        let describe =
            |(k, d): &(String, f64)| if *d == 0.0 { "0 (bit-identical)".to_string() } else { format!("{d:.2e} ({k})") };
        eprintln!(
            "{case} SGD step: loss relative Δ {d:.2e}; worst tensor {}; worst update norm {}",
            describe(&worst),
            describe(&worst_update)
        );
    }
}

#[test]
fn torch_save_files_load_both_ways() {
    let (dir, meta) = fixtures();
    let tmp = common::tempdir();
    for case in ["resnet18", "googlenet"] {
        let m = &meta["cases"][case];
        let t = common::read_safetensors(&dir.join(format!("{case}.safetensors")));
        let store = VarStore::new(Device::Cpu);
        let model = build_locked(m, &store);
        // torch.save(model.state_dict(), path), read by our .pt reader.
        tchzoo::checkpoint::load_weights(&store, &dir.join(format!("{case}.pt")), true).unwrap();
        let d = logits_delta(&tch::no_grad(|| model.forward_t(&t["x"], false)), &t["logits"]);
        assert!(d <= LOGITS_TOLERANCE, "{case}: logits after loading {case}.pt differ by {d:e}");
        // Moved away from the fixture, so that what Python reads back can only be what we wrote.
        {
            let _rng = common::zoo::rng_lock();
            tch::no_grad(|| {
                for (_, p) in store.named_parameters() {
                    let _ = p.shallow_clone().g_add_(&(p.randn_like() * 0.01));
                }
            });
        }
        let ours = tch::no_grad(|| model.forward_t(&t["x"], false));
        tchzoo::checkpoint::save_weights(&store, &tmp.path().join(format!("{case}.pt"))).unwrap();
        Tensor::write_safetensors(&[("x", &t["x"]), ("logits", &ours)], tmp.path().join(format!("{case}.safetensors")))
            .unwrap();
    }
    let out = common::run_script("torch_save_verify.py", &[tmp.path().to_str().unwrap()]);
    let deltas: HashMap<String, f64> = serde_json::from_str(out.trim()).unwrap();
    for case in ["resnet18", "googlenet"] {
        let d = deltas[case];
        assert!(d <= LOGITS_TOLERANCE, "{case}: torchvision's logits from our .pt differ from ours by {d:e}");
    }
    eprintln!("our .pt files in torchvision (strict load): {deltas:?}");
}

#[test]
fn googlenet_aux_heads_run_only_in_training() {
    // Dropout in training draws from the generator too.
    let _rng = common::zoo::rng_lock();
    let store = VarStore::new(Device::Cpu);
    let model = GoogLeNet::new(&store.root(), 3, 10, true, false);
    let xs = Tensor::zeros([2, 3, 32, 32], (Kind::Float, Device::Cpu));
    let (main, aux1, aux2) = tch::no_grad(|| model.forward_train_with_aux(&xs)).unwrap();
    for ys in [&main, &aux1, &aux2, &tch::no_grad(|| model.forward_t(&xs, true))] {
        assert_eq!(ys.size(), vec![2, 10]);
    }
    let store = VarStore::new(Device::Cpu);
    let model = models::build("googlenet:aux_logits=false", &store, 10, &[3, 32, 32]).unwrap();
    assert!(model.aux_outputs_t(&xs).is_none());
    assert!(!keys(&store).iter().any(|k| k.starts_with("aux")));
}

#[test]
fn reset_classifier_keeps_names_and_order() {
    for (spec, input, heads, run) in [
        ("googlenet", [3, 32, 32], &["fc", "aux1.fc2", "aux2.fc2"][..], true),
        ("inception_v3", [3, 299, 299], &["fc", "AuxLogits.fc"][..], false),
        ("inception_v3:aux_logits=false", [3, 75, 75], &["fc"][..], true),
        ("densenet121", [3, 32, 32], &["classifier"][..], true),
        ("mobilenet_v2", [3, 32, 32], &["classifier.1"][..], true),
        ("mobilenetv1_100:width=0.5", [3, 32, 32], &["classifier"][..], true),
    ] {
        let store = VarStore::new(Device::Cpu);
        let _rng = common::zoo::rng_lock();
        let mut model = models::build(spec, &store, 10, &input).unwrap();
        let before = keys(&store);
        model.reset_classifier(3);
        assert_eq!(before, keys(&store), "{spec}");
        for head in heads {
            assert_eq!(store.get(&format!("{head}.bias")).unwrap().size(), vec![3], "{spec}: {head}");
        }
        assert_eq!(model.num_outputs(), 3);
        if run {
            let xs = Tensor::zeros([2, input[0], input[1], input[2]], (Kind::Float, Device::Cpu));
            assert_eq!(tch::no_grad(|| model.forward_t(&xs, false)).size(), vec![2, 3], "{spec}");
            if let Some((_, aux)) = tch::no_grad(|| model.aux_outputs_t(&xs)) {
                assert!(aux.iter().all(|a| a.size() == vec![2, 3]), "{spec}: aux outputs");
            }
        }
    }
}

#[test]
fn bad_inputs_and_options_are_clear_errors() {
    let store = VarStore::new(Device::Cpu);
    let err = |spec: &str, input: &[i64]| models::build(spec, &store, 10, input).err().unwrap().to_string();
    let e = err("inception_v3", &[3, 75, 75]);
    assert!(e.contains("299") && e.contains("aux_logits=false"), "{e}");
    let e = err("inception_v3:aux_logits=false", &[3, 74, 74]);
    assert!(e.contains("75"), "{e}");
    let e = err("googlenet", &[3, 14, 14]);
    assert!(e.contains("googlenet") && e.contains("15"), "{e}");
    let e = err("densenet121", &[3, 28, 28]);
    assert!(e.contains("densenet121") && e.contains("29"), "{e}");
    let e = err("googlenet:transform_input=true", &[1, 32, 32]);
    assert!(e.contains("transform_input"), "{e}");
    let e = err("googlenet:aux_logits=maybe", &[3, 32, 32]);
    assert!(e.contains("aux_logits=maybe"), "{e}");
    let e = err("mobilenet_v2:width=0", &[3, 32, 32]);
    assert!(e.contains("width"), "{e}");
    let e = err("mobilenetv1_100:depth=2", &[3, 32, 32]);
    assert!(e.contains("depth") && e.contains("width"), "{e}");
    let e = err("densenet121", &[784]);
    assert!(e.contains("densenet121"), "{e}");
}

/// Our Python reference for `mobilenetv1_100` (which the Rust model matches bit for bit above) is timm's
/// `mobilenetv1_100`: the same keys in the same order, the same count, and the same outputs from the same weights.
#[test]
fn mobilenetv1_reference_is_timms() {
    let scripts = common::root().join("scripts");
    let out = common::run_script("mobilenetv1_timm.py", &[scripts.to_str().unwrap()]);
    let mut parts = out.split_whitespace();
    let delta: f64 = parts.next().unwrap().parse().unwrap();
    let count: i64 = parts.next().unwrap().parse().unwrap();
    assert_eq!(delta, 0.0, "outputs differ from timm's");
    assert_eq!(count, 4_231_976);
}
