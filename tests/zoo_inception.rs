//! timm's Inception v4 and Inception-ResNet v2 (src/models/inception4.rs) and pytorchcv's BN-Inception and
//! Inception-ResNet v1 (src/models/bninception.rs) against the reference packages: the same state-dict names in the
//! same order and the same parameter count for every registered variant at 1,000 classes; for the cases with
//! weights, a strict load and the same eval-mode logits (max|Δ| ≤ 1e-4 · max(1, max|y|)), with random weights and
//! randomised BatchNorm statistics, each at its smallest input. Fixtures: scripts/fixtures/zoo_inception.py.
mod common;

use common::zoo::build;

use std::path::PathBuf;

use serde_json::Value;
use tch::Device;
use tchzoo::models;
use tchzoo::nn::VarStore;

const FAMILIES: [&str; 2] = ["inception", "inception_resnet"];

fn fixtures() -> (PathBuf, Value) {
    common::zoo::fixtures("zoo_inception.py")
}

#[test]
fn inception_logits_parity() {
    let (dir, meta) = fixtures();
    let cases = meta["cases"].as_object().unwrap();
    for required in ["inception_v4", "inception_resnet_v2", "bninception", "bninception_224", "inceptionresnetv1"] {
        assert!(cases.contains_key(required), "fixture lacks the case {required}");
    }
    eprintln!("{}", common::zoo::check_logits_parity(&dir, &meta, build).join("\n"));
}

#[test]
fn every_variant_has_the_references_names_order_and_parameter_count() {
    let (_, meta) = fixtures();
    // The counts the issue states (timm 1.0.20, pytorchcv 0.0.73), as a check on the fixture.
    let documented = [
        ("inception_v4", 42_679_816),
        ("inception_resnet_v2", 55_843_464),
        ("bninception", 11_295_240),
        ("inceptionresnetv1", 23_995_624),
    ];
    let variants = meta["variants"].as_object().unwrap();
    for (name, count) in documented {
        assert_eq!(variants[name]["parameters"].as_i64().unwrap(), count, "{name}: fixture count");
    }
    // Every registered model of these families, but torchvision's inception_v3 (tests/zoo_classic.rs), is here.
    for e in models::registry().unwrap().iter().filter(|e| FAMILIES.contains(&e.family) && e.name != "inception_v3") {
        assert!(variants.contains_key(e.name), "{}: registered but not in the fixture", e.name);
    }
    common::zoo::check_variants(&meta);
}

#[test]
fn reset_classifier_keeps_names_and_order() {
    for name in ["inception_v4", "inception_resnet_v2", "bninception", "inceptionresnetv1"] {
        let entry = models::find(name).unwrap();
        common::zoo::check_reset_classifier(name, entry.classifier, entry.default_input);
    }
}

#[test]
fn bad_inputs_are_clear_errors() {
    let store = VarStore::new(Device::Cpu);
    for name in ["inception_v4", "inception_resnet_v2"] {
        let e = models::build(name, &store, 10, &[784]).err().unwrap().to_string();
        assert!(e.contains(name) && e.contains("[C, H, W]"), "{e}");
        let e = models::build(name, &store, 10, &[3, 74, 299]).err().unwrap().to_string();
        assert!(e.contains(name) && e.contains("75×75") && e.contains("74"), "{e}");
    }
    let e = models::build("bninception", &store, 10, &[784]).err().unwrap().to_string();
    assert!(e.contains("bninception") && e.contains("[C, H, W]"), "{e}");
    let e = models::build("inceptionresnetv1", &store, 10, &[3, 299, 74]).err().unwrap().to_string();
    assert!(e.contains("inceptionresnetv1") && e.contains("75×75") && e.contains("74"), "{e}");
}

#[test]
fn bninception_takes_the_sizes_pytorchcv_takes() {
    // pytorchcv 0.0.73 runs BN-Inception's features on sides 31-38, 63-70, 95-102, …, 223-230, 255-262: a 3×3/2
    // conv (padding 1) and a ceil-mode 3×3/2 max pool meet in each reduction block and must agree.
    let fits = |side: i64| side >= 31 && [31, 0, 1, 2, 3, 4, 5, 6].contains(&(side % 32));
    // Every side that does not fit, and the ends of some bands that do (a build costs 11M parameters).
    let sampled = [31, 38, 63, 70, 223, 230, 262];
    for side in (1..=262).filter(|s| !fits(*s) || sampled.contains(s)) {
        let store = VarStore::new(Device::Cpu);
        let built = models::build("bninception", &store, 10, &[3, side, 31]);
        assert_eq!(built.is_ok(), fits(side), "side {side}");
        if let Err(e) = built {
            assert!(e.to_string().contains("31 to 38 plus a multiple of 32"), "{e}");
        }
    }
}
