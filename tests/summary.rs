//! `tchzoo summary` against the reference: for torchvision models, the layers with parameters appear in the
//! order PyTorch runs them, with the same names, types, output shapes and parameter counts (forward hooks on the
//! reference's leaf modules, scripts/fixtures/summary_parity.py), and the same total.
mod common;

use tch::Device;
use tchzoo::models;
use tchzoo::nn::VarStore;

#[test]
fn summaries_match_the_references_layers() {
    tch::set_num_threads(1);
    let dir = common::fixtures("summary_parity.py");
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summaries.json")).unwrap()).unwrap();
    for (name, case) in meta.as_object().unwrap() {
        let input: Vec<i64> = case["input"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
        let store = VarStore::new(Device::Cpu);
        let model = models::build(name, &store, 1000, &input).unwrap();
        let rows = models::trace(model.as_ref(), &store, &input).unwrap();
        let ours: Vec<(String, String, Vec<i64>, i64)> =
            rows.into_iter().filter(|r| r.params > 0).map(|r| (r.name, r.kind, r.output_shape, r.params)).collect();
        let theirs: Vec<(String, String, Vec<i64>, i64)> = case["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let shape = r[2].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
                (r[0].as_str().unwrap().to_string(), r[1].as_str().unwrap().to_string(), shape, r[3].as_i64().unwrap())
            })
            .collect();
        assert_eq!(ours.len(), theirs.len(), "{name}: number of layers with parameters");
        for (a, b) in ours.iter().zip(&theirs) {
            assert_eq!(a, b, "{name}: summary row");
        }
        assert_eq!(store.num_parameters(), case["total"].as_i64().unwrap(), "{name}: total");
    }
    // The CLI prints the same table with the total.
    let out = common::tchzoo().args(["summary", "resnet50", "--input", "3x64x64"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("layer4.2.conv3 (Conv2d)") && text.contains("Total params: 25,557,032"), "{text}");
}
