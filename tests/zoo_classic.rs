//! torchvision's ResNet/ResNeXt/Wide ResNet, VGG and AlexNet, and our CIFAR ResNets, against PyTorch: the same
//! state-dict names in the same order and the same parameter count for every variant; for the cases with weights,
//! a strict load and the same eval-mode logits (max|Δ| ≤ 1e-4 · max(1, max|y|)); and one SGD step of resnet18 in
//! train mode giving torch.optim's loss and parameters (relative Δ ≤ 1e-4). Fixtures:
//! scripts/fixtures/zoo_classic.py (large tensors are stored as a tile, repeated here as there).
mod common;

use common::zoo::{build, state_dict};

use std::path::PathBuf;

use serde_json::Value;
use tch::{Device, Kind, Tensor};
use tchzoo::models;
use tchzoo::nn::VarStore;
use tchzoo::train::Loss;

fn fixtures() -> (PathBuf, Value) {
    common::zoo::fixtures("zoo_classic.py")
}

#[test]
fn torchvision_logits_parity() {
    let (dir, meta) = fixtures();
    eprintln!("{}", common::zoo::check_logits_parity(&dir, &meta, build).join("\n"));
}

#[test]
fn every_variant_has_torchvisions_names_order_and_parameter_count() {
    let (_, meta) = fixtures();
    // torchvision's documented counts (num_params in its weight metadata), as a check on the fixture itself.
    let documented = [
        ("resnet50", 25_557_032),
        ("vgg16", 138_357_544),
        ("vgg16_bn", 138_365_992),
        ("wide_resnet50_2", 68_883_240),
        ("wide_resnet101_2", 126_886_696),
        ("resnext50_32x4d", 25_028_904),
        ("alexnet", 61_100_840),
    ];
    let variants = meta["variants"].as_object().unwrap();
    for (name, count) in documented {
        assert_eq!(variants[name]["parameters"].as_i64().unwrap(), count, "{name}: fixture count");
    }
    common::zoo::check_variants(&meta);
}

#[test]
fn resnet18_sgd_step_matches_torch_optim() {
    let (dir, meta) = fixtures();
    let m = &meta["cases"]["resnet18"];
    let t = common::read_safetensors(&dir.join("resnet18.safetensors"));
    let store = VarStore::new(Device::Cpu);
    let model = build(m, &store);
    store.load_state_dict(&state_dict("resnet18", m, &t), true, "resnet18").unwrap();
    let (d, worst) = common::zoo::check_sgd_step("resnet18", &store, &t, (0.1, 0.9), None, false, || {
        Loss::CrossEntropy.compute(&model.forward_t(&t["x"], true), &t["train.y"])
    });
    eprintln!("resnet18 SGD step: loss relative Δ {d:.2e}; worst tensor {} at {:.2e}", worst.0, worst.1);
}

#[test]
fn reset_classifier_keeps_names_and_order() {
    for (spec, input, head) in [
        ("resnet18", [3, 32, 32], "fc"),
        ("resnet20", [3, 32, 32], "fc"),
        ("vgg11", [3, 32, 32], "classifier.6"),
        ("alexnet", [3, 63, 63], "classifier.6"),
    ] {
        let store = VarStore::new(Device::Cpu);
        let mut model = models::build(spec, &store, 10, &input).unwrap();
        let before: Vec<String> = store.state_dict().into_iter().map(|(k, _)| k).collect();
        model.reset_classifier(3);
        let after: Vec<String> = store.state_dict().into_iter().map(|(k, _)| k).collect();
        assert_eq!(before, after, "{spec}");
        assert_eq!(store.get(&format!("{head}.bias")).unwrap().size(), vec![3], "{spec}");
        let ys = tch::no_grad(|| {
            model.forward_t(&Tensor::zeros([2, input[0], input[1], input[2]], (Kind::Float, Device::Cpu)), false)
        });
        assert_eq!(ys.size(), vec![2, 3], "{spec}");
        assert_eq!(model.num_outputs(), 3);
    }
}

#[test]
fn bad_inputs_and_options_are_clear_errors() {
    let store = VarStore::new(Device::Cpu);
    let e = models::build("resnet20:shortcut=C", &store, 10, &[3, 32, 32]).err().unwrap().to_string();
    assert!(e.contains("shortcut=C") && e.contains("B"), "{e}");
    let e = models::build("vgg11", &store, 10, &[3, 16, 16]).err().unwrap().to_string();
    assert!(e.contains("vgg11") && e.contains("32"), "{e}");
    let e = models::build("alexnet", &store, 10, &[3, 32, 32]).err().unwrap().to_string();
    assert!(e.contains("alexnet") && e.contains("63"), "{e}");
    let e = models::build("resnet18", &store, 10, &[784]).err().unwrap().to_string();
    assert!(e.contains("resnet18"), "{e}");
    let e = models::build("resnet18:shortcut=A", &store, 10, &[3, 32, 32]).err().unwrap().to_string();
    assert!(e.contains("shortcut"), "{e}");
}
