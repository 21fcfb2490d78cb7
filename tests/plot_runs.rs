//! Curves with the best epoch and the early-stopping epoch marked, chosen panels, and runs overlaid.
mod common;

use std::collections::BTreeMap;

use tchzoo::plot::{plot_runs, CurveMarks, CurveOptions};
use tchzoo::train::History;

fn history(losses: &[f64]) -> History {
    let mut h = History::default();
    for (e, l) in losses.iter().enumerate() {
        let logs: BTreeMap<String, f64> = [
            ("loss".to_string(), *l),
            ("val_loss".to_string(), l + 0.1),
            ("accuracy".to_string(), 1.0 - l),
            ("val_accuracy".to_string(), 0.9 - l),
        ]
        .into();
        h.push(e, &logs);
    }
    h
}

#[test]
fn marks_best_epoch_and_early_stop() {
    let dir = common::tempdir();
    let h = history(&[0.9, 0.5, 0.3, 0.35, 0.4]);
    let out = dir.path().join("c.svg");
    let marks = CurveMarks { monitor: Some(("val_loss".into(), false)), stopped_epoch: Some(4) };
    plot_runs(&[("", &h)], &out, &CurveOptions { metrics: None, marks }).unwrap();
    let svg = std::fs::read_to_string(&out).unwrap();
    assert!(svg.contains("best val_loss 0.4000 (epoch 3)"), "the best epoch is epoch 3 (0-based 2)");
    assert!(svg.contains("early stopping (epoch 5)"));
    // Maximised monitor: the best val_accuracy is the same epoch here.
    let marks = CurveMarks { monitor: Some(("val_accuracy".into(), true)), stopped_epoch: None };
    plot_runs(&[("", &h)], &out, &CurveOptions { metrics: Some(vec!["loss".into()]), marks }).unwrap();
    let svg = std::fs::read_to_string(&out).unwrap();
    assert!(svg.contains("best val_accuracy 0.6000 (epoch 3)"));
    assert!(!svg.contains(">accuracy<"), "only the loss panel was asked for");
    let e = plot_runs(&[("", &h)], &out, &CurveOptions { metrics: Some(vec!["los".into()]), ..Default::default() })
        .unwrap_err()
        .to_string();
    assert!(e.contains("los") && e.contains("did you mean"), "{e}");
}

#[test]
fn overlays_runs_and_redraws_a_run_folder() {
    let dir = common::tempdir();
    let (a, b) = (dir.path().join("first"), dir.path().join("second"));
    for (d, losses) in [(&a, [0.9, 0.5, 0.3]), (&b, [0.8, 0.6, 0.5])] {
        std::fs::create_dir_all(d).unwrap();
        history(&losses).save_json(&d.join("history.json")).unwrap();
    }
    let out = dir.path().join("cmp.svg");
    let status = common::tchzoo()
        .args(["plot", a.to_str().unwrap(), b.to_str().unwrap(), "--metrics", "loss", "-o", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let svg = std::fs::read_to_string(&out).unwrap();
    for label in ["first train", "first validation", "second train", "second validation"] {
        assert!(svg.contains(label), "legend has {label}");
    }
    let out = common::tchzoo().args(["plot", dir.path().join("nothing").to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
}
