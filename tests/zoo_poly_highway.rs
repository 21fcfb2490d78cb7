//! pytorchcv's PolyNet (src/models/polynet.rs), and our Highway Networks (src/models/highway.rs) and competitive-SE
//! ResNets (src/models/cmpe_se.rs) against their Python definitions (scripts/reference_models.py): the same
//! state-dict names in the same order and the same parameter count for every registered variant at 1,000 classes;
//! for the cases with weights, a strict load and the same eval-mode logits (max|Δ| ≤ 1e-4 · max(1, max|y|)), with
//! random weights and randomised BatchNorm statistics. Fixtures: scripts/fixtures/zoo_poly_highway.py. Then the
//! highway gate's initial bias (the short fits on the digits are in tests/zoo_learning.rs).
mod common;

use common::zoo::build;

use std::path::PathBuf;

use serde_json::Value;
use tch::{Device, Tensor};
use tchzoo::models;
use tchzoo::nn::VarStore;

const FAMILIES: [&str; 3] = ["polynet", "highway", "cmpe_se"];

fn fixtures() -> (PathBuf, Value) {
    common::zoo::fixtures("zoo_poly_highway.py")
}

#[test]
fn poly_highway_cmpe_logits_parity() {
    let (dir, meta) = fixtures();
    let cases = meta["cases"].as_object().unwrap();
    let required = ["polynet", "highway_mlp", "highway_cnn", "cmpe_se_resnet20", "cmpe_se_ii_resnet20"];
    for required in required {
        assert!(cases.contains_key(required), "fixture lacks the case {required}");
    }
    eprintln!("{}", common::zoo::check_logits_parity(&dir, &meta, build).join("\n"));
}

#[test]
fn every_variant_has_the_references_names_order_and_parameter_count() {
    let (_, meta) = fixtures();
    let variants = meta["variants"].as_object().unwrap();
    // The count the issue states (measured with pytorchcv 0.0.73), as a check on the fixture.
    assert_eq!(variants["polynet"]["parameters"].as_i64().unwrap(), 95_366_600, "polynet: fixture count");
    // Every registered model of these families is in the fixture.
    for e in models::registry().unwrap().iter().filter(|e| FAMILIES.contains(&e.family)) {
        assert!(variants.contains_key(e.name), "{}: registered but not in the fixture", e.name);
    }
    common::zoo::check_variants(&meta);
}

#[test]
fn reset_classifier_keeps_names_and_order() {
    let cases = [
        ("polynet", "output.fc", vec![3, 75, 75]),
        ("highway_mlp", "classifier", vec![1, 8, 8]),
        ("highway_cnn", "classifier", vec![1, 8, 8]),
        ("cmpe_se_resnet20", "fc", vec![3, 32, 32]),
        ("cmpe_se_ii_resnet20", "fc", vec![3, 32, 32]),
    ];
    for (spec, head, input) in cases {
        common::zoo::check_reset_classifier(spec, head, &input);
    }
}

#[test]
fn bad_inputs_are_clear_errors() {
    let store = VarStore::new(Device::Cpu);
    for name in ["polynet", "highway_cnn", "cmpe_se_resnet20", "cmpe_se_ii_resnet56"] {
        let e = models::build(name, &store, 10, &[784]).err().unwrap().to_string();
        assert!(e.contains(name) && e.contains("[C, H, W]"), "{e}");
    }
    // 74 → the last map would be 0×0.
    let e = models::build("polynet", &store, 10, &[3, 74, 90]).err().unwrap().to_string();
    assert!(e.contains("polynet") && e.contains("75×75") && e.contains("74"), "{e}");
    // Three stages pool twice: 4×4 at least.
    let e = models::build("highway_cnn", &store, 10, &[1, 3, 8]).err().unwrap().to_string();
    assert!(e.contains("highway_cnn") && e.contains("4×4"), "{e}");
    common::zoo::check_runs_at("highway_cnn:stages=2", &[1, 3, 8]);
    for (spec, words) in [
        ("highway_mlp:depth=0", ["depth=0", "at least 1"]),
        ("highway_mlp:gate_bias=nan", ["gate_bias=NaN", "finite"]),
        ("highway_mlp:activation=prelu", ["prelu", "relu"]),
        ("highway_mlp:stages=2", ["stages", "depth"]),
    ] {
        let e = models::build(spec, &store, 10, &[64]).err().unwrap().to_string();
        assert!(words.iter().all(|w| e.contains(w)), "{spec}: {e}");
    }
    let e = models::build("cmpe_se_resnet20:shortcut=C", &store, 10, &[3, 32, 32]).err().unwrap().to_string();
    assert!(e.contains("shortcut=C"), "{e}");
}

#[test]
fn highway_gates_start_at_the_gate_bias() {
    for (spec, bias) in
        [("highway_mlp", -2.0), ("highway_mlp:gate_bias=-3", -3.0), ("highway_cnn:gate_bias=-1.5", -1.5)]
    {
        let store = VarStore::new(Device::Cpu);
        models::build(spec, &store, 10, &[1, 8, 8]).unwrap();
        let gates: Vec<(String, Tensor)> =
            store.state_dict().into_iter().filter(|(k, _)| k.ends_with(".t.bias")).collect();
        let layers = if spec.starts_with("highway_mlp") { 10 } else { 6 };
        assert_eq!(gates.len(), layers, "{spec}: gate biases");
        for (k, b) in gates {
            assert!(b.eq(bias).all().int64_value(&[]) == 1, "{spec}: {k} is not {bias} everywhere");
        }
        // The transform H keeps PyTorch's default (uniform, not constant) bias.
        let h = store.get(if spec.starts_with("highway_mlp") { "layers.0.h.bias" } else { "stages.0.0.h.bias" });
        assert!(h.unwrap().std(true).double_value(&[]) > 0.0, "{spec}");
    }
}
