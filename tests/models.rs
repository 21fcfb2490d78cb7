//! The registry, iterated: every model builds at a non-default class count, gives the right output shape, no
//! NaN, and a gradient on every parameter. Then parity with the Python reference definitions: the same names in
//! the same order, the same parameter count, and the same logits from the same weights.
mod common;

use tch::{Device, Kind, Tensor};
use tchzoo::models::{self, registry};
use tchzoo::nn::VarStore;

#[test]
fn registry_names_are_unique_and_findable() {
    // registry() applies check_unique_names to every entry, so an Ok registry has unique names; the check itself
    // must reject a name given twice.
    let reg = registry().unwrap();
    models::check_unique_names(reg.iter().map(|e| e.name)).unwrap();
    let twice = reg.iter().map(|e| e.name).chain([reg[reg.len() / 2].name]);
    let e = models::check_unique_names(twice).unwrap_err().to_string();
    assert!(e.contains(reg[reg.len() / 2].name) && e.contains("registered twice"), "{e}");
    for e in reg {
        assert_eq!(models::find(e.name).unwrap().name, e.name);
    }
    let err = models::find("lenet").unwrap_err().to_string();
    assert!(err.contains("did you mean") && err.contains("lenet5"), "{err}");
}

// The registry in halves, so that the two test threads share the work (the largest models take seconds each).
#[test]
fn every_model_trains_one_step_at_42_classes_first_half() {
    smoke_test_registry(0);
}

#[test]
fn every_model_trains_one_step_at_42_classes_second_half() {
    smoke_test_registry(1);
}

fn smoke_test_registry(half: usize) {
    tch::manual_seed(0);
    for e in registry().unwrap().iter().skip(half).step_by(2) {
        let store = VarStore::new(Device::Cpu);
        let model = models::build(e.name, &store, 42, e.default_input).unwrap();
        let mut shape = vec![3];
        shape.extend_from_slice(e.default_input);
        // Embedding models take integer indices; the others real values.
        let xs = match model.index_inputs() {
            Some(n) => Tensor::randint(n, shape.as_slice(), (Kind::Int64, Device::Cpu)),
            None => Tensor::randn(shape.as_slice(), (Kind::Float, Device::Cpu)),
        };
        // Auxiliary classifiers (GoogLeNet, Inception v3) train through `aux_outputs_t`; their logits join the loss.
        let (ys, aux) = model.aux_outputs_t(&xs).unwrap_or_else(|| (model.forward_t(&xs, true), vec![]));
        assert_eq!(ys.size(), vec![3, 42], "{}: output shape", e.name);
        assert!(!bool::try_from(ys.isnan().any()).unwrap(), "{}: NaN in the output", e.name);
        for a in &aux {
            assert_eq!(a.size(), vec![3, 42], "{}: aux output shape", e.name);
        }
        aux.iter().fold(ys.square().mean(Kind::Float), |loss, a| loss + a.square().mean(Kind::Float)).backward();
        for (name, p) in store.named_parameters() {
            // A channel-boosted model's booster is frozen by design (src/models/channel_boost.rs); nothing else is.
            if !p.requires_grad() {
                assert!(e.name == "channel_boost" && name.starts_with("booster."), "{}: {name} is frozen", e.name);
                assert!(!p.grad().defined(), "{}: frozen {name} has a gradient", e.name);
                continue;
            }
            let g = p.grad();
            assert!(g.defined(), "{}: no gradient for {name}", e.name);
            assert!(g.abs().sum(Kind::Double).double_value(&[]) > 0.0, "{}: zero gradient for {name}", e.name);
        }
        let eval = model.forward_t(&xs, false);
        assert_eq!(eval.size(), vec![3, 42], "{}: eval output shape", e.name);
        assert!(!e.first_layer.is_empty() && store.state_dict().iter().any(|(k, _)| k.starts_with(e.first_layer)));
        assert!(store.state_dict().iter().any(|(k, _)| k.starts_with(e.classifier)), "{}: classifier", e.name);
    }
}

#[test]
fn lenet5_has_the_papers_parameter_count() {
    let store = VarStore::new(Device::Cpu);
    models::build("lenet5", &store, 10, &[1, 32, 32]).unwrap();
    assert_eq!(store.num_parameters(), 61_706);
    let store = VarStore::new(Device::Cpu);
    models::build("lenet5", &store, 10, &[3, 32, 32]).unwrap();
    assert_eq!(store.num_parameters(), 61_706 + 2 * 6 * 25);
}

#[test]
fn reset_classifier_keeps_names_and_order() {
    let store = VarStore::new(Device::Cpu);
    let mut model = models::build("lenet5", &store, 10, &[1, 32, 32]).unwrap();
    let before: Vec<String> = store.state_dict().into_iter().map(|(k, _)| k).collect();
    model.reset_classifier(3);
    let after: Vec<String> = store.state_dict().into_iter().map(|(k, _)| k).collect();
    assert_eq!(before, after);
    assert_eq!(store.get("classifier.4.weight").unwrap().size(), vec![3, 84]);
    let ys = model.forward_t(&Tensor::zeros([2, 1, 32, 32], (Kind::Float, Device::Cpu)), false);
    assert_eq!(ys.size(), vec![2, 3]);
    assert_eq!(model.num_outputs(), 3);
    // The optimizer sees the new classifier's tensors, in order.
    let params = store.parameters();
    assert_eq!(params.last().unwrap().size(), vec![3]);
}

#[test]
fn bad_model_options_are_clear_errors() {
    let store = VarStore::new(Device::Cpu);
    let e = models::build("mlp:hiden=3", &store, 2, &[2]).err().unwrap().to_string();
    assert!(e.contains("hiden") && e.contains("hidden"), "{e}");
    let e = models::build("lenet5", &store, 10, &[2]).err().unwrap().to_string();
    assert!(e.contains("lenet5"), "{e}");
    let e = models::build("mlp:activation=relux", &store, 2, &[2]).err().unwrap().to_string();
    assert!(e.contains("relux") && e.contains("relu"), "{e}");
}

/// Names, order, parameter count and eval-mode logits against scripts/reference_models.py.
#[test]
fn reference_parity() {
    tch::set_num_threads(1);
    let dir = common::fixtures("models_parity.py");
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    for (case, m) in meta.as_object().unwrap() {
        let t = common::read_safetensors(&dir.join(format!("{case}.safetensors")));
        let input: Vec<i64> = m["input"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
        let store = VarStore::new(Device::Cpu);
        let model = models::build(m["spec"].as_str().unwrap(), &store, m["outputs"].as_i64().unwrap(), &input).unwrap();
        let ours: Vec<String> = store.state_dict().into_iter().map(|(k, _)| k).collect();
        let theirs: Vec<String> =
            m["keys"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
        assert_eq!(ours, theirs, "{case}: state-dict names and order");
        assert_eq!(store.num_parameters(), m["parameters"].as_i64().unwrap(), "{case}: parameter count");
        let sd: Vec<(String, Tensor)> =
            theirs.iter().map(|k| (k.clone(), t[&format!("sd.{k}")].shallow_clone())).collect();
        store.load_state_dict(&sd, true, case).unwrap();
        for (k, v) in store.state_dict() {
            assert_eq!(v.kind(), t[&format!("sd.{k}")].kind(), "{case}: dtype of {k}");
        }
        let logits = tch::no_grad(|| model.forward_t(&t["x"], false));
        let d = common::rel_diff(&logits, &t["logits"]);
        assert!(d <= 1e-5, "{case}: logits differ from the reference by {d:e}");
    }
}

/// A model's build receives values and reads no file: a part's weights (a channel-boosted model's booster) are
/// read and loaded by the library's pretrained path (src/train/transfer.rs). No source file under src/models
/// reads a state dict or touches the file system.
#[test]
fn no_model_reads_a_file() {
    let dir = common::root().join("src/models");
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        assert!(path.is_file(), "{path:?}: a folder under src/models (scan it too)");
        let text = std::fs::read_to_string(&path).unwrap();
        for (i, line) in text.lines().enumerate() {
            for pattern in ["read_state_dict", "std::fs", "File::", "fs::read", "checkpoint::"] {
                assert!(!line.contains(pattern), "{}:{}: {pattern}: {line}", path.display(), i + 1);
            }
        }
        files += 1;
    }
    assert!(files > 20, "only {files} files under {dir:?}");
}
