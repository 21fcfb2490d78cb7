//! The parity harness of the zoo tests: fixture folders with `cases.json`, models built per case, state dicts
//! rebuilt from the fixture (large tensors are stored as one tile, repeated).
use std::collections::HashMap;
use std::path::PathBuf;

use serde_json::Value;
use tch::{Kind, Tensor};
use tchzoo::models;
use tchzoo::nn::VarStore;

/// Runs (or reuses) `scripts/fixtures/<script>` and reads its `cases.json`. One libtorch thread, as the script:
/// the same reduction order in every kernel.
pub fn fixtures(script: &str) -> (PathBuf, Value) {
    tch::set_num_threads(1);
    let dir = super::fixtures(script);
    let meta = serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    (dir, meta)
}

pub fn strings(v: &Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect()
}

pub fn build(m: &Value, store: &VarStore) -> Box<dyn models::Model> {
    let input: Vec<i64> = m["input"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
    models::build(m["spec"].as_str().unwrap(), store, m["outputs"].as_i64().unwrap(), &input).unwrap()
}

/// The case's state dict in torch's key order: stored tensors, and the large ones tiled as the fixture made them.
pub fn state_dict(case: &str, m: &Value, t: &HashMap<String, Tensor>) -> Vec<(String, Tensor)> {
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

/// scripts/fixtures/zoo_classic.py `tiled`: the tile repeated over the flat tensor, cut to its size.
pub fn tile(tile: &Tensor, shape: &[i64]) -> Tensor {
    let n: i64 = shape.iter().product();
    let len = tile.size()[0];
    tile.repeat([(n + len - 1) / len]).narrow(0, 0, n).reshape(shape)
}
