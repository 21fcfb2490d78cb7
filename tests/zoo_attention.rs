//! timm's SE-ResNets/SE-ResNeXt/SENet-154 (src/models/senet.rs), pytorchcv's CBAM-/BAM-ResNets
//! (src/models/cbam.rs) and Residual Attention Networks (src/models/attention.rs) against the reference packages: the same state-dict names in the same order and the same parameter count for
//! every registered variant at 1,000 classes; for the cases with weights, a strict load and the same eval-mode
//! logits (max|Δ| ≤ 1e-4 · max(1, max|y|)), with random weights and randomised BatchNorm statistics. Fixtures:
//! scripts/fixtures/zoo_attention.py (large tensors are stored as a tile, repeated here as there).
mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use serde_json::Value;
use tch::{Device, Kind, Tensor};
use tchzoo::models;
use tchzoo::nn::VarStore;

const LOGITS_TOLERANCE: f64 = 1e-4;

fn fixtures() -> (PathBuf, Value) {
    // One thread, as the fixture script: the same reduction order in every kernel.
    tch::set_num_threads(1);
    let dir = common::fixtures("zoo_attention.py");
    let meta = serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    (dir, meta)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
}

fn build(m: &Value, store: &VarStore) -> Box<dyn models::Model> {
    let input: Vec<i64> = m["input"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
    models::build(m["spec"].as_str().unwrap(), store, m["outputs"].as_i64().unwrap(), &input).unwrap()
}

/// The case's state dict in torch's key order: stored tensors, and the large ones tiled as the fixture made them.
fn state_dict(case: &str, m: &Value, t: &HashMap<String, Tensor>) -> Vec<(String, Tensor)> {
    let tiled = m["tiled"].as_object().unwrap();
    strings(&m["keys"])
        .into_iter()
        .map(|k| {
            let tensor = match tiled.get(&k) {
                None => t[&format!("sd.{k}")].shallow_clone(),
                Some(g) => {
                    let shape: Vec<i64> = g["shape"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
                    let tensor = tile(&t[&format!("tile.{k}")], &shape);
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
        .collect()
}

/// scripts/fixtures/zoo_attention.py `tiled`: the tile repeated over the flat tensor, cut to its size.
fn tile(tile: &Tensor, shape: &[i64]) -> Tensor {
    let n: i64 = shape.iter().product();
    let len = tile.size()[0];
    tile.repeat([(n + len - 1) / len]).narrow(0, 0, n).reshape(shape)
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
    let mut report = vec![];
    for (case, m) in cases {
        let t = common::read_safetensors(&dir.join(format!("{case}.safetensors")));
        let store = VarStore::new(Device::Cpu);
        let model = build(m, &store);
        let ours: Vec<String> = store.state_dict().into_iter().map(|(k, _)| k).collect();
        assert_eq!(ours, strings(&m["keys"]), "{case}: state-dict names and order");
        assert_eq!(store.num_parameters(), m["parameters"].as_i64().unwrap(), "{case}: parameter count");
        store.load_state_dict(&state_dict(case, m, &t), true, case).unwrap();
        let logits = tch::no_grad(|| model.forward_t(&t["x"], false));
        let expected = &t["logits"];
        assert_eq!(logits.size(), expected.size(), "{case}: logits shape");
        let delta = (&logits - expected).abs().max().double_value(&[]);
        let scale = expected.abs().max().double_value(&[]);
        assert!(
            delta <= LOGITS_TOLERANCE * scale.max(1.0),
            "{case}: logits differ from the reference's by {delta:e} (max|y| = {scale})"
        );
        report.push(format!("{case}: max|Δ| {delta:.2e}, relative {:.2e}", delta / scale));
    }
    eprintln!("{}", report.join("\n"));
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
    for (name, m) in variants {
        let store = VarStore::new(Device::Cpu);
        build(m, &store);
        let ours: Vec<String> = store.state_dict().into_iter().map(|(k, _)| k).collect();
        assert_eq!(ours, strings(&m["keys"]), "{name}: state-dict names and order");
        assert_eq!(store.num_parameters(), m["parameters"].as_i64().unwrap(), "{name}: parameter count");
    }
}

#[test]
fn reset_classifier_keeps_names_and_order() {
    let cases =
        [("seresnet18", "fc"), ("cbam_resnet18", "output"), ("bam_resnet18", "output"), ("resattnet56", "output")];
    for (spec, head) in cases {
        let store = VarStore::new(Device::Cpu);
        let mut model = models::build(spec, &store, 10, &[3, 32, 32]).unwrap();
        let before: Vec<String> = store.state_dict().into_iter().map(|(k, _)| k).collect();
        model.reset_classifier(3);
        let after: Vec<String> = store.state_dict().into_iter().map(|(k, _)| k).collect();
        assert_eq!(before, after, "{spec}");
        assert_eq!(store.get(&format!("{head}.bias")).unwrap().size(), vec![3], "{spec}");
        let ys = tch::no_grad(|| model.forward_t(&Tensor::zeros([2, 3, 32, 32], (Kind::Float, Device::Cpu)), false));
        assert_eq!(ys.size(), vec![2, 3], "{spec}");
        assert_eq!(model.num_outputs(), 3);
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
    assert!(models::build("resattnet56", &store, 10, &[3, 64, 96]).is_ok());
}
