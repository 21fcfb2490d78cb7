//! pytorchcv's ZFNet, ZFNet-b and LRN AlexNet (`alexnet_lrn`) and CIFAR Wide ResNets against PyTorch: the same
//! state-dict names in the same order and the same parameter count for every variant; for the cases with weights,
//! a strict load and the same eval-mode logits (max|Δ| ≤ 1e-4 · max(1, max|y|)); and one SGD step (lr 0.01,
//! momentum 0.9) of torchvision's densenet121 and vgg11_bn in train mode giving torch.optim's loss and parameters
//! (relative Δ ≤ 1e-4; vgg11_bn's dropout masks are the fixture's: both draw them from libtorch's generator
//! seeded with TRAIN_SEED). Fixtures: scripts/fixtures/zoo_zfnet_wrn.py.
mod common;

use common::zoo::build_locked;
use common::zoo::state_dict;
use common::zoo::TRAIN_SEED;

use std::path::PathBuf;

use serde_json::Value;
use tch::{Device, Kind, Tensor};
use tchzoo::models;
use tchzoo::nn::VarStore;
use tchzoo::train::Loss;

fn fixtures() -> (PathBuf, Value) {
    common::zoo::fixtures("zoo_zfnet_wrn.py")
}

#[test]
fn pytorchcv_logits_parity() {
    let (dir, meta) = fixtures();
    eprintln!("{}", common::zoo::check_logits_parity(&dir, &meta, build_locked).join("\n"));
}

#[test]
fn every_variant_has_pytorchcvs_names_order_and_parameter_count() {
    let (_, meta) = fixtures();
    // pytorchcv's published counts, as a check on the fixture itself.
    let documented =
        [("zfnet", 62_357_608), ("zfnetb", 107_627_624), ("alexnet_lrn", 62_378_344), ("wrn28_10_cifar10", 36_479_194)];
    let variants = meta["variants"].as_object().unwrap();
    for (name, count) in documented {
        assert_eq!(variants[name]["parameters"].as_i64().unwrap(), count, "{name}: fixture count");
    }
    // Every registered model of these families is in the fixture.
    for e in models::registry().unwrap().iter().filter(|e| ["zfnet", "wrn"].contains(&e.family)) {
        assert!(variants.contains_key(e.name), "{}: registered but not in the fixture", e.name);
    }
    common::zoo::check_variants(&meta);
}

#[test]
fn densenet121_and_vgg11_bn_sgd_step_matches_torch_optim() {
    let (dir, meta) = fixtures();
    for case in ["densenet121", "vgg11_bn"] {
        let m = &meta["cases"][case];
        let t = common::read_safetensors(&dir.join(format!("{case}.safetensors")));
        let store = VarStore::new(Device::Cpu);
        let model = build_locked(m, &store);
        store.load_state_dict(&state_dict(case, m, &t), true, case).unwrap();
        let (d, worst) = common::zoo::check_sgd_step(case, &store, &t, (0.01, 0.9), Some(TRAIN_SEED), true, || {
            Loss::CrossEntropy.compute(&model.forward_t(&t["x"], true), &t["train.y"])
        });
        eprintln!("{case} SGD step: loss relative Δ {d:.2e}; worst tensor {} at {:.2e}", worst.0, worst.1);
    }
}

#[test]
fn reset_classifier_keeps_names_and_order() {
    for (spec, input, head) in [
        ("zfnet", [3, 207, 207], "output.fc3"),
        ("alexnet_lrn", [3, 199, 199], "output.fc3"),
        ("wrn16_10_cifar10", [3, 32, 32], "output"),
    ] {
        let store = VarStore::new(Device::Cpu);
        let mut model = {
            let _rng = common::zoo::rng_lock();
            models::build(spec, &store, 10, &input).unwrap()
        };
        let before: Vec<String> = store.state_dict().into_iter().map(|(k, _)| k).collect();
        model.reset_classifier(3);
        let after: Vec<String> = store.state_dict().into_iter().map(|(k, _)| k).collect();
        assert_eq!(before, after, "{spec}");
        assert_eq!(store.get(&format!("{head}.bias")).unwrap().size(), vec![3], "{spec}");
        let ys = tch::no_grad(|| {
            model.forward_t(&Tensor::zeros([1, input[0], input[1], input[2]], (Kind::Float, Device::Cpu)), false)
        });
        assert_eq!(ys.size(), vec![1, 3], "{spec}");
    }
}

#[test]
fn bad_inputs_are_clear_errors() {
    let store = VarStore::new(Device::Cpu);
    let e = models::build("zfnet", &store, 10, &[3, 64, 64]).err().unwrap().to_string();
    assert!(e.contains("zfnet") && e.contains("207") && e.contains("238"), "{e}");
    let e = models::build("alexnet_lrn", &store, 10, &[3, 231, 231]).err().unwrap().to_string();
    assert!(e.contains("alexnet_lrn") && e.contains("199") && e.contains("230"), "{e}");
    let e = models::build("wrn28_10_cifar10", &store, 10, &[784]).err().unwrap().to_string();
    assert!(e.contains("wrn28_10_cifar10"), "{e}");
}
