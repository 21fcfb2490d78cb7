//! timm's Xceptions (src/models/xception.rs: `legacy_xception`, aligned `xception41/65/71`) and pytorchcv's
//! PyramidNets (src/models/pyramidnet.rs: CIFAR 110-a48, 110-a270, 272-a200-bn; ImageNet 101-a360) against the
//! reference packages: the same state-dict names in the same order and the same parameter count for every
//! registered variant (at 1,000 classes; the CIFAR PyramidNets at their reference default of 10); for the cases with
//! weights, a strict load and the same eval-mode logits (max|Δ| ≤ 1e-4 · max(1, max|y|)), with random weights and
//! randomised BatchNorm statistics. Fixtures: scripts/fixtures/zoo_xception_pyramid.py (large tensors are stored as
//! a tile, repeated here as there).
mod common;

use common::zoo::build;

use std::path::PathBuf;

use serde_json::Value;
use tch::Device;
use tchzoo::models;
use tchzoo::models::pyramidnet::PyramidNetConfig;
use tchzoo::nn::VarStore;

fn fixtures() -> (PathBuf, Value) {
    common::zoo::fixtures("zoo_xception_pyramid.py")
}

const FAMILIES: [&str; 2] = ["xception", "pyramidnet"];

#[test]
fn xceptions_and_pyramidnets_logits_parity() {
    let (dir, meta) = fixtures();
    let cases = meta["cases"].as_object().unwrap();
    // Every registered model has a case with weights.
    for e in models::registry().unwrap().iter().filter(|e| FAMILIES.contains(&e.family)) {
        assert!(cases.contains_key(e.name), "fixture lacks the case {}", e.name);
    }
    eprintln!("{}", common::zoo::check_logits_parity(&dir, &meta, build).join("\n"));
    // The fixture's measured BatchNorm statistics keep the logits input-dependent: where a case has two inputs,
    // their logits differ by far more than the tolerance.
    for case in cases.keys() {
        let y = &common::read_safetensors(&dir.join(format!("{case}.safetensors")))["logits"];
        if y.size()[0] > 1 {
            let spread = (y.get(0) - y.get(1)).abs().max().double_value(&[]);
            let scale = y.abs().max().double_value(&[]).max(1.0);
            assert!(spread > 100.0 * common::zoo::LOGITS_TOLERANCE * scale, "{case}: logits barely depend on x");
        }
    }
}

#[test]
fn every_variant_has_the_references_names_order_and_parameter_count() {
    let (_, meta) = fixtures();
    // The counts the issue states (measured with timm 1.0.20 and pytorchcv 0.0.73), as a check on the fixture;
    // the CIFAR PyramidNets at their 10 classes.
    let documented = [
        ("legacy_xception", 22_855_952, 1000),
        ("xception41", 26_969_560, 1000),
        ("xception65", 39_916_312, 1000),
        ("xception71", 42_338_736, 1000),
        ("pyramidnet110_a48_cifar10", 1_772_706, 10),
        ("pyramidnet110_a270_cifar10", 28_485_477, 10),
        ("pyramidnet272_a200_bn_cifar10", 26_210_842, 10),
        ("pyramidnet101_a360", 42_455_070, 1000),
    ];
    let variants = meta["variants"].as_object().unwrap();
    for (name, count, classes) in documented {
        assert_eq!(variants[name]["parameters"].as_i64().unwrap(), count, "{name}: fixture count");
        assert_eq!(variants[name]["outputs"].as_i64().unwrap(), classes, "{name}: fixture classes");
        assert_eq!(models::find(name).unwrap().default_classes, classes, "{name}: default_classes");
    }
    let registered: Vec<_> =
        models::registry().unwrap().iter().filter(|e| FAMILIES.contains(&e.family)).map(|e| e.name).collect();
    assert_eq!(registered, documented.map(|d| d.0), "registered variants, in order");
    common::zoo::check_variants(&meta);
}

#[test]
fn pyramid_widths_are_pytorchcvs() {
    // pytorchcv's widths for 110-a48: 16 + j · 48/54 rounded, so a growth below 1 repeats 20 and 28.
    let channels = PyramidNetConfig::cifar(110, 48.0, false).channels();
    assert_eq!(channels[0], [17, 18, 19, 20, 20, 21, 22, 23, 24, 25, 26, 27, 28, 28, 29, 30, 31, 32]);
    assert_eq!(channels[2].last(), Some(&64));
    let bottleneck = PyramidNetConfig::cifar(272, 200.0, true).channels();
    assert!(bottleneck.iter().flatten().all(|c| c % 4 == 0));
}

#[test]
fn reset_classifier_keeps_names_and_order() {
    let cases = [
        ("legacy_xception", "fc", [3, 32, 32]),
        ("xception41", "head.fc", [3, 32, 32]),
        ("pyramidnet110_a48_cifar10", "output", [3, 32, 32]),
    ];
    for (spec, head, input) in cases {
        common::zoo::check_reset_classifier(spec, head, &input);
    }
}

#[test]
fn bad_inputs_are_clear_errors() {
    let store = VarStore::new(Device::Cpu);
    for name in ["legacy_xception", "xception41", "pyramidnet110_a48_cifar10", "pyramidnet101_a360"] {
        let e = models::build(name, &store, 10, &[784]).err().unwrap().to_string();
        assert!(e.contains(name) && e.contains("[C, H, W]"), "{e}");
    }
    // The two unpadded stem convs need 7×7.
    let e = models::build("legacy_xception", &store, 10, &[3, 6, 6]).err().unwrap().to_string();
    assert!(e.contains("legacy_xception") && e.contains("7×7") && e.contains("6"), "{e}");
    common::zoo::check_runs_at("legacy_xception", &[3, 7, 7]);
    // The CIFAR PyramidNets' 8×8 average pool: 28 → 7×7 and 33 → 9×9 do not fit.
    for side in [28, 33] {
        let e = models::build("pyramidnet110_a48_cifar10", &store, 10, &[3, side, side]).err().unwrap().to_string();
        assert!(e.contains("29 to 32") && e.contains(&side.to_string()), "{e}");
    }
    common::zoo::check_runs_at("pyramidnet110_a48_cifar10", &[1, 29, 32]);
}
