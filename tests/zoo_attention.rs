//! timm's SE-ResNets/SE-ResNeXt/SENet-154 (src/models/senet.rs), pytorchcv's CBAM-/BAM-ResNets
//! (src/models/cbam.rs) and Residual Attention Networks (src/models/attention.rs) against the reference packages: the same state-dict names in the same order and the same parameter count for
//! every registered variant at 1,000 classes; for the cases with weights, a strict load and the same eval-mode
//! logits (max|Δ| ≤ 1e-4 · max(1, max|y|)), with random weights and randomised BatchNorm statistics. Fixtures:
//! scripts/fixtures/zoo_attention.py (large tensors are stored as a tile, repeated here as there).
mod common;

use common::zoo::build;

use std::path::PathBuf;

use serde_json::Value;
use tch::Device;
use tchzoo::models;
use tchzoo::nn::VarStore;

fn fixtures() -> (PathBuf, Value) {
    common::zoo::fixtures("zoo_attention.py")
}

#[test]
fn attention_resnets_logits_parity() {
    let (dir, meta) = fixtures();
    let cases = meta["cases"].as_object().unwrap();
    let required =
        ["seresnet18", "seresnet50", "seresnext50_32x4d", "cbam_resnet18_224", "bam_resnet18", "resattnet56"];
    for required in required {
        assert!(cases.contains_key(required), "fixture lacks the case {required}");
    }
    eprintln!("{}", common::zoo::check_logits_parity(&dir, &meta, build).join("\n"));
}

#[test]
fn every_variant_has_the_references_names_order_and_parameter_count() {
    let (_, meta) = fixtures();
    // The counts the issue states (measured with timm 1.0.20 and pytorchcv 0.0.73), as a check on the fixture.
    let documented = [
        ("seresnet50", 28_088_024),
        ("cbam_resnet50", 28_089_624),
        ("bam_resnet50", 25_915_099),
        ("resattnet56", 31_810_728),
        ("resattnet92", 52_466_344),
    ];
    let variants = meta["variants"].as_object().unwrap();
    for (name, count) in documented {
        assert_eq!(variants[name]["parameters"].as_i64().unwrap(), count, "{name}: fixture count");
    }
    // Every registered model of these families is in the fixture.
    for e in models::registry().unwrap().iter().filter(|e| ["senet", "cbam", "attention"].contains(&e.family)) {
        assert!(variants.contains_key(e.name), "{}: registered but not in the fixture", e.name);
    }
    common::zoo::check_variants(&meta);
}

#[test]
fn reset_classifier_keeps_names_and_order() {
    let cases =
        [("seresnet18", "fc"), ("cbam_resnet18", "output"), ("bam_resnet18", "output"), ("resattnet56", "output")];
    for (spec, head) in cases {
        common::zoo::check_reset_classifier(spec, head, &[3, 32, 32]);
    }
}

#[test]
fn bad_inputs_are_clear_errors() {
    let store = VarStore::new(Device::Cpu);
    for name in ["seresnet18", "cbam_resnet18", "bam_resnet18", "resattnet56"] {
        let e = models::build(name, &store, 10, &[784]).err().unwrap().to_string();
        assert!(e.contains(name) && e.contains("[C, H, W]"), "{e}");
    }
    // 40 → 10 at stage 1: its depth-3 hourglass would pool to 5, 3, 2 and not meet again.
    let e = models::build("resattnet56", &store, 10, &[3, 40, 40]).err().unwrap().to_string();
    assert!(e.contains("resattnet56") && e.contains("multiple of 32") && e.contains("40"), "{e}");
    common::zoo::check_runs_at("resattnet56", &[3, 64, 96]);
}
