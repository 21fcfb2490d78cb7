//! `scripts/bench --quick`'s table: every workload runs on both sides (tchzoo's fit and the Python PyTorch loop)
//! and the JSON has every row with positive figures (image_pipeline: the input pipeline alone; resnet18_folder:
//! ResNet-18 trained on the image folder; `_fused`: the fused optimizer on both sides). A smoke test: it times
//! nothing.
mod common;

use std::process::Command;

#[test]
fn bench_quick_writes_every_row() {
    let json = tempfile::NamedTempFile::new().unwrap();
    let out = Command::new(common::python())
        .current_dir(common::root())
        .arg("scripts/bench.py")
        .args(["--compare", env!("CARGO_BIN_EXE_tchzoo-bench"), "--quick", "--repeats", "1", "--threads", "1"])
        .arg("--json")
        .arg(json.path())
        .output()
        .expect("run scripts/bench.py");
    assert!(out.status.success(), "bench failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("| workload |"), "no table in:\n{table}");
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&std::fs::read(json.path()).unwrap()).unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "moons_mlp",
            "lenet5_digits",
            "resnet18_cifar",
            "lstm_forecaster",
            "entity_embedding",
            "image_pipeline",
            "resnet18_folder",
            "moons_mlp_fused",
            "lenet5_digits_fused"
        ]
    );
    for row in &rows {
        for key in ["tchzoo_steps_per_s", "python_steps_per_s", "ratio", "tchzoo_peak_rss_mb", "python_peak_rss_mb"] {
            let v = row[key].as_f64().unwrap_or_else(|| panic!("{key} missing in {row}"));
            assert!(v > 0.0 && v.is_finite(), "{key} = {v} in {row}");
        }
    }
}
