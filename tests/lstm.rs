//! LSTM and GRU: parity with torch.nn.LSTM / torch.nn.GRU (names, order, outputs and final states at 1e-5; 1–2
//! layers, uni- and bidirectional, batch-first and time-major, with and without padding masks and initial states),
//! the text classifier against a PyTorch reference, padding that changes nothing, the forecaster against the
//! persistence baseline on real data, a text classifier on texts written here, stateful mode and online updates,
//! and get/set weights.
mod common;

use std::collections::HashMap;

use tch::{Device, Kind, Tensor};
use tchzoo::data::{self, sequences};
use tchzoo::models;
use tchzoo::nn::lstm::{CellKind, Rnn, RnnConfig, RnnState};
use tchzoo::nn::{weights, VarStore};
use tchzoo::optim::{Optimizer, OptimizerConfig, OptimizerKind};
use tchzoo::train::progress::Verbosity;
use tchzoo::train::{FitConfig, Loss, Metric, Trainer};

const TOL: f64 = 1e-5;

fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double)).abs().max().double_value(&[])
}

fn fixtures() -> (std::path::PathBuf, serde_json::Value) {
    let dir = common::fixtures("lstm_parity.py");
    let meta = serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    (dir, meta)
}

fn load_into(store: &VarStore, t: &HashMap<String, Tensor>, prefix: &str, case: &str) {
    let sd: Vec<(String, Tensor)> = t
        .iter()
        .filter_map(|(k, v)| k.strip_prefix("sd.").map(|n| (format!("{prefix}{n}"), v.shallow_clone())))
        .collect();
    store.load_state_dict(&sd, true, case).unwrap();
}

/// Mask `t < length` [B, T] for right padding.
fn right_mask(lengths: &Tensor, steps: i64) -> Tensor {
    Tensor::arange(steps, (Kind::Int64, Device::Cpu)).unsqueeze(0).lt_tensor(&lengths.unsqueeze(1))
}

#[test]
fn parity_with_torch_lstm_and_gru() {
    tch::set_num_threads(1);
    let (dir, meta) = fixtures();
    let mut checked = 0;
    for (case, m) in meta.as_object().unwrap() {
        let Some(kind) = m.get("kind").and_then(|k| k.as_str()) else { continue };
        let t = common::read_safetensors(&dir.join(format!("{case}.safetensors")));
        let kind = if kind == "lstm" { CellKind::Lstm } else { CellKind::Gru };
        let cfg = RnnConfig {
            num_layers: m["num_layers"].as_i64().unwrap(),
            bidirectional: m["bidirectional"].as_bool().unwrap(),
            batch_first: m["batch_first"].as_bool().unwrap(),
            bias: m["bias"].as_bool().unwrap(),
            ..RnnConfig::new(m["input_size"].as_i64().unwrap(), m["hidden_size"].as_i64().unwrap())
        };
        let store = VarStore::new(Device::Cpu);
        let rnn = Rnn::new(&store.root(), kind, &cfg).unwrap();
        let ours: Vec<String> = store.state_dict().into_iter().map(|(k, _)| k).collect();
        let theirs: Vec<String> = m["keys"].as_array().unwrap().iter().map(|k| k.as_str().unwrap().into()).collect();
        assert_eq!(ours, theirs, "{case}: names and order");
        load_into(&store, &t, "", case);
        let state = t.get("h0").map(|h| RnnState { h: h.shallow_clone(), c: t.get("c0").map(Tensor::shallow_clone) });
        let x = &t["x"];
        let (batch, steps) = if cfg.batch_first { (x.size()[0], x.size()[1]) } else { (x.size()[1], x.size()[0]) };
        let masks: Vec<Option<Tensor>> = match t.get("lengths") {
            Some(l) => vec![Some(right_mask(l, steps))],
            // Without padding: the fused kernel, and the step loop under an all-true mask, must both agree.
            None => vec![None, Some(Tensor::ones([batch, steps], (Kind::Bool, Device::Cpu)))],
        };
        for mask in masks {
            let (out, st) = tch::no_grad(|| rnn.forward_state(x, state.as_ref(), mask.as_ref(), false));
            let path = if mask.is_some() { "step loop" } else { "fused" };
            let d = max_abs(&out, &t["out"]);
            assert!(d <= TOL, "{case} ({path}): outputs differ by {d:e}");
            let d = max_abs(&st.h, &t["h_n"]);
            assert!(d <= TOL, "{case} ({path}): h_n differs by {d:e}");
            if let Some(c) = t.get("c_n") {
                let d = max_abs(st.c.as_ref().unwrap(), c);
                assert!(d <= TOL, "{case} ({path}): c_n differs by {d:e}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} comparisons ran");
}

#[test]
fn left_padding_changes_nothing() {
    let (dir, _) = fixtures();
    let t = common::read_safetensors(&dir.join("prepad.safetensors"));
    let store = VarStore::new(Device::Cpu);
    let cfg = RnnConfig { num_layers: 2, bidirectional: true, batch_first: true, ..RnnConfig::new(3, 4) };
    let rnn = Rnn::new(&store.root(), CellKind::Lstm, &cfg).unwrap();
    load_into(&store, &t, "", "prepad");
    let steps = t["x"].size()[1];
    // Real steps are the last `length`: t ≥ steps − length.
    let first_real = -(&t["lengths"] - steps);
    let mask = Tensor::arange(steps, (Kind::Int64, Device::Cpu)).unsqueeze(0).ge_tensor(&first_real.unsqueeze(1));
    let (_, st) = tch::no_grad(|| rnn.forward_state(&t["x"], None, Some(&mask), false));
    assert!(max_abs(&st.h, &t["h_n"]) <= TOL, "h_n differs: {}", max_abs(&st.h, &t["h_n"]));
    assert!(max_abs(st.c.as_ref().unwrap(), &t["c_n"]) <= TOL);
    // And without the mask the padding does change the result: the test can fail.
    let (_, unmasked) = tch::no_grad(|| rnn.forward_state(&t["x"], None, None, false));
    assert!(max_abs(&unmasked.h, &t["h_n"]) > 1e-3);
}

#[test]
fn text_model_matches_pytorch_with_packed_padding() {
    let (dir, meta) = fixtures();
    let m = &meta["text_model"];
    let t = common::read_safetensors(&dir.join("text_model.safetensors"));
    let store = VarStore::new(Device::Cpu);
    let length = m["length"].as_i64().unwrap();
    let model = models::build(m["spec"].as_str().unwrap(), &store, m["outputs"].as_i64().unwrap(), &[length]).unwrap();
    let ours: Vec<String> = store.state_dict().into_iter().map(|(k, _)| k).collect();
    let theirs: Vec<String> = m["keys"].as_array().unwrap().iter().map(|k| k.as_str().unwrap().into()).collect();
    assert_eq!(ours, theirs);
    load_into(&store, &t, "", "text_model");
    let logits = tch::no_grad(|| model.forward_t(&t["x"], false));
    let d = max_abs(&logits, &t["logits"]);
    assert!(d <= TOL, "text model logits differ by {d:e}");
    // Padding on the other side, or more of it, changes nothing (mask_zero).
    let x = &t["x"];
    let n = x.size()[0];
    let extra = Tensor::zeros([n, 4], (Kind::Int64, Device::Cpu));
    let longer = Tensor::cat(&[x, &extra], 1);
    let d = max_abs(&tch::no_grad(|| model.forward_t(&longer, false)), &t["logits"]);
    assert!(d <= TOL, "extra trailing padding changed the logits by {d:e}");
    let lengths = x.ne(0).sum_dim_intlist(1, false, Kind::Int64);
    let pre = Tensor::zeros([n, length], (Kind::Int64, Device::Cpu));
    for b in 0..n {
        let l = lengths.int64_value(&[b]);
        let mut dst = pre.get(b).narrow(0, length - l, l);
        dst.copy_(&x.get(b).narrow(0, 0, l));
    }
    let d = max_abs(&tch::no_grad(|| model.forward_t(&pre, false)), &t["logits"]);
    assert!(d <= TOL, "left instead of right padding changed the logits by {d:e}");
}

#[test]
fn lstm_init_is_pytorchs_uniform() {
    tch::manual_seed(0);
    let store = VarStore::new(Device::Cpu);
    let cfg = RnnConfig { num_layers: 2, bidirectional: true, ..RnnConfig::new(7, 16) };
    Rnn::new(&store.root(), CellKind::Lstm, &cfg).unwrap();
    assert_eq!(store.state_dict().len(), 16);
    for (name, t) in store.state_dict() {
        let bound = 1.0 / 4.0;
        let (lo, hi) = (t.min().double_value(&[]), t.max().double_value(&[]));
        assert!(lo >= -bound && hi <= bound && hi - lo > bound, "{name}: [{lo}, {hi}]");
    }
    assert_eq!(store.get("weight_ih_l1_reverse").unwrap().size(), vec![64, 32]);
    let bad = RnnConfig { dropout: 1.5, ..RnnConfig::new(3, 4) };
    let e = Rnn::new(&VarStore::new(Device::Cpu).root(), CellKind::Gru, &bad).unwrap_err().to_string();
    assert!(e.contains("dropout 1.5"), "{e}");
    let rnn = Rnn::new(&VarStore::new(Device::Cpu).root(), CellKind::Gru, &RnnConfig::new(3, 4)).unwrap();
    let e = rnn.f_forward_state(&Tensor::zeros([2, 5, 4], (Kind::Float, Device::Cpu)), None, None, false);
    let e = e.unwrap_err().to_string();
    assert!(e.contains("[2, 5, 4]") && e.contains("3 features"), "{e}");
}

fn trainer(spec: &str, data: &data::Dataset, loss: Loss, lr: f64) -> Trainer {
    let store = VarStore::new(Device::Cpu);
    let model = models::build(spec, &store, loss.num_outputs(data.task), &data.sample_shape()).unwrap();
    let mut oc = OptimizerConfig::new(OptimizerKind::Adam);
    oc.hyper.lr = lr;
    let opt = Optimizer::new(oc, store.parameters()).unwrap();
    Trainer::new(model, store, opt, loss, Metric::defaults(loss))
}

fn rmse(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).square().mean(Kind::Double).sqrt().double_value(&[])
}

/// The seed's forecaster on real sequences: the digit rows, 5 given → 3 forecast, beats persistence.
#[test]
fn forecaster_beats_persistence_on_digit_rows() {
    tch::manual_seed(0);
    let all = data::load("digit_rows:n_seq=5,n_pred=3", 0).unwrap();
    assert_eq!(all.xs.size(), vec![1797, 5, 8]);
    assert_eq!(all.ys.size(), vec![1797, 24]);
    let (train, val) = all.split_validation(0.2).unwrap();
    let mut t = trainer("lstm:units=32", &train, Loss::Mse, 1e-2);
    let fit =
        FitConfig { epochs: 6, batch_size: 64, seed: 0, output: Verbosity::Silent.into(), ..FitConfig::default() };
    let history = t.fit(&train, Some(&val), &fit, &mut []).unwrap();
    let losses = history.get("val_loss").unwrap();
    assert!(losses.last().unwrap() < &losses[0], "val_loss did not fall: {losses:?}");
    let pred = t.predict(&val.xs, 256);
    let last_row = val.xs.select(1, 4).repeat([1, 3]);
    let (model_rmse, baseline) = (rmse(&pred, &val.ys), rmse(&last_row, &val.ys));
    eprintln!("digit rows: val_loss {losses:?}; RMSE {model_rmse:.4} vs persistence {baseline:.4}");
    assert!(model_rmse < 0.8 * baseline, "LSTM RMSE {model_rmse:.4} vs persistence {baseline:.4}");
}

#[test]
fn series_windows_scale_on_the_training_part_only() {
    let dir = common::tempdir();
    let path = dir.path().join("series.csv");
    let mut text = "year,value\n".to_string();
    for i in 0..20 {
        text.push_str(&format!("{},{}\n", 1900 + i, i * i));
    }
    std::fs::write(&path, text).unwrap();
    let p = path.display();
    let all = data::load(&format!("series:path={p},column=value,n_seq=3,n_pred=2,holdout=0.25"), 0).unwrap();
    // 20 steps → 16 windows; 4 held out; the 12 training windows cover steps 0..=15 (values 0..=225).
    assert_eq!(all.xs.size(), vec![16, 3, 1]);
    assert_eq!(all.ys.size(), vec![16, 2]);
    let first: Vec<f32> = Vec::try_from(all.xs.get(0).reshape([-1])).unwrap();
    assert_eq!(first, vec![0.0, 1.0 / 225.0, 4.0 / 225.0]);
    let last_target: Vec<f32> = Vec::try_from(all.ys.get(15)).unwrap();
    assert!((last_target[1] - 361.0 / 225.0).abs() < 1e-6, "{last_target:?}");
    let val = data::load(&format!("series:path={p},column=value,n_seq=3,n_pred=2,holdout=0.25,part=val"), 0).unwrap();
    assert_eq!(val.len(), 4);
    assert_eq!(Vec::<f32>::try_from(val.ys.get(3)).unwrap(), last_target);
    let e = data::load(&format!("series:path={p},column=valu"), 0).unwrap_err().to_string();
    assert!(e.contains("did you mean 'value'"), "{e}");
    let e = data::load(&format!("series:path={p},n_seq=19,n_pred=2"), 0).unwrap_err().to_string();
    assert!(e.contains("no window"), "{e}");
    let (xs, ys) = sequences::windows(&Tensor::arange(6, (Kind::Float, Device::Cpu)).unsqueeze(1), 2, 1).unwrap();
    assert_eq!(xs.size(), vec![4, 2, 1]);
    assert_eq!(Vec::<f32>::try_from(ys.reshape([-1])).unwrap(), vec![2.0, 3.0, 4.0, 5.0]);
}

/// Texts written here: the label is whether "good" or "bad" words dominate, with filler words and punctuation.
fn write_reviews(path: &std::path::Path, n: usize) {
    let good = ["good", "great", "excellent", "lovely", "fine"];
    let bad = ["bad", "awful", "terrible", "poor", "dull"];
    let filler = ["the", "film", "was", "a", "plot", "and", "story", "really", "quite", "acting"];
    let mut text = "review,sentiment\n".to_string();
    let mut state = 12345u64;
    let mut next = |m: usize| {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 33) as usize) % m
    };
    for _ in 0..n {
        let positive = next(2) == 0;
        let words = 3 + next(8);
        let mut w = vec![];
        for _ in 0..words {
            w.push(filler[next(filler.len())].to_string());
        }
        let sentiment = if positive { &good } else { &bad };
        for _ in 0..1 + next(2) {
            let at = next(w.len() + 1);
            w.insert(at, sentiment[next(5)].to_string());
        }
        let label = if positive { "pos" } else { "neg" };
        text.push_str(&format!("\"{}!\",{label}\n", w.join(" ").replacen(' ', ", ", 1)));
    }
    std::fs::write(path, text).unwrap();
}

#[test]
fn text_classifier_learns_texts_written_here() {
    tch::manual_seed(0);
    let dir = common::tempdir();
    let path = dir.path().join("reviews.csv");
    write_reviews(&path, 400);
    let spec = format!("text:path={},vocab=20,length=12", path.display());
    let loaded = sequences::load_text_with_vocabulary(&data::DataSpec::parse(&spec, "data").unwrap().options).unwrap();
    let all = loaded.data;
    assert_eq!(all.xs.kind(), Kind::Int64);
    assert_eq!(all.xs.size(), vec![400, 12]);
    assert_eq!(all.class_names.as_deref(), Some(&["neg".to_string(), "pos".to_string()][..]));
    assert_eq!(loaded.vocabulary.words.len(), 20);
    assert_eq!(sequences::tokenize("The film, really: GOOD!"), vec!["the", "film", "really", "good"]);
    let enc = loaded.vocabulary.encode("the zebra");
    assert_eq!(enc[1], sequences::OOV);
    assert!(enc[0] >= 2);
    assert_eq!(sequences::pad_sequence(&[5, 6, 7], 5, sequences::Side::Pre, sequences::Side::Pre), vec![0, 0, 5, 6, 7]);
    assert_eq!(sequences::pad_sequence(&[5, 6, 7], 2, sequences::Side::Post, sequences::Side::Pre), vec![6, 7]);
    let (train, val) = all.split_validation(0.2).unwrap();
    let mut t = trainer("lstm_text:vocab=20,embed=8,units=16", &train, Loss::BinaryCrossEntropy, 1e-2);
    let fit =
        FitConfig { epochs: 12, batch_size: 32, seed: 0, output: Verbosity::Silent.into(), ..FitConfig::default() };
    let h = t.fit(&train, Some(&val), &fit, &mut []).unwrap();
    let acc = h.last("val_accuracy").unwrap();
    eprintln!("texts: validation accuracy {acc:.3}, {:?}", h.get("val_accuracy").unwrap());
    assert!(acc >= 0.9, "validation accuracy {acc}");
    // A vocabulary too small for the data is one clear error, before any step.
    let mut small = trainer("lstm_text:vocab=10,embed=8,units=16", &train, Loss::BinaryCrossEntropy, 1e-2);
    let e = small.fit(&train, None, &fit, &mut []).unwrap_err().to_string();
    assert!(e.contains("index") && e.contains("position") && e.contains("input_dim 12"), "{e}");
}

#[test]
fn stateful_mode_carries_state_until_reset() {
    tch::manual_seed(0);
    let store = VarStore::new(Device::Cpu);
    let model = models::build("lstm:units=8,stateful=true", &store, 2, &[4, 3]).unwrap();
    let xs = Tensor::randn([5, 4, 3], (Kind::Float, Device::Cpu));
    let first = tch::no_grad(|| model.forward_t(&xs, false));
    let second = tch::no_grad(|| model.forward_t(&xs, false));
    assert!(max_abs(&first, &second) > 1e-4, "the state was not carried");
    model.reset_states();
    let again = tch::no_grad(|| model.forward_t(&xs, false));
    assert!(max_abs(&first, &again) < 1e-7);
    // A batch of another size starts from zeros.
    let part = tch::no_grad(|| model.forward_t(&xs.narrow(0, 0, 2), false));
    assert!(max_abs(&part, &first.narrow(0, 0, 2)) < 1e-6);
    // Not stateful: the same input, the same output.
    let store = VarStore::new(Device::Cpu);
    let plain = models::build("lstm:units=8", &store, 2, &[4, 3]).unwrap();
    let a = tch::no_grad(|| plain.forward_t(&xs, false));
    assert!(max_abs(&a, &tch::no_grad(|| plain.forward_t(&xs, false))) < 1e-7);
}

/// The seed's online pattern: predict_on_batch, a hand update of the LSTM layer's weights via get/set_weights,
/// train_on_batch, reset_states, batch after batch.
#[test]
fn online_updates_with_get_set_weights() {
    tch::manual_seed(0);
    let all = data::load("digit_rows:n_seq=5,n_pred=3", 0).unwrap();
    let mut t = trainer("lstm:units=16,stateful=true", &all, Loss::Mse, 1e-2);
    let before = t.predict_on_batch(&all.xs.narrow(0, 0, 256)).unwrap();
    let rmse_before = rmse(&before, &all.ys.narrow(0, 0, 256));
    for i in 0..40 {
        let xs = all.xs.narrow(0, (i % 7) * 32, 32);
        let ys = all.ys.narrow(0, (i % 7) * 32, 32);
        let y_pred = t.predict_on_batch(&xs).unwrap();
        let score = rmse(&y_pred, &ys);
        let mut w = weights::get_layer_weights(&t.store, "lstm").unwrap();
        for x in w.iter_mut() {
            *x = &*x - &*x * (0.001 * score);
        }
        weights::set_layer_weights(&t.store, "lstm", &w).unwrap();
        let logs = t.train_on_batch(&xs, &ys).unwrap();
        assert!(logs["loss"].is_finite() && logs.contains_key("mae"));
        t.model.reset_states();
    }
    let after = t.predict_on_batch(&all.xs.narrow(0, 0, 256)).unwrap();
    let rmse_after = rmse(&after, &all.ys.narrow(0, 0, 256));
    assert!(rmse_after < 0.7 * rmse_before, "RMSE {rmse_before:.4} → {rmse_after:.4}");
    let e = t.train_on_batch(&all.xs.narrow(0, 0, 4), &all.ys.narrow(0, 0, 3)).unwrap_err().to_string();
    assert!(e.contains("[4, 5, 8]") && e.contains("[3, 24]"), "{e}");
}

#[test]
fn get_and_set_weights_check_shapes_and_name_the_layer() {
    let store = VarStore::new(Device::Cpu);
    let _model = models::build("lstm:units=4", &store, 2, &[6, 3]).unwrap();
    assert_eq!(weights::layer_names(&store), vec!["lstm", "classifier"]);
    let all = weights::get_weights(&store);
    assert_eq!(all.len(), 6);
    let lstm = weights::get_layer_weights(&store, "lstm").unwrap();
    assert_eq!(lstm.iter().map(|t| t.size()).collect::<Vec<_>>(), vec![vec![16, 3], vec![16, 4], vec![16], vec![16]]);
    // The seed's `set_weights(a + 1)`: every weight moves by one, and get_weights returned copies.
    let plus: Vec<Tensor> = all.iter().map(|t| t + 1.0).collect();
    weights::set_weights(&store, &plus).unwrap();
    for (a, b) in weights::get_weights(&store).iter().zip(&all) {
        assert!((a - b - 1.0).abs().max().double_value(&[]) < 1e-6);
    }
    let mut wrong: Vec<Tensor> = lstm.iter().map(Tensor::shallow_clone).collect();
    wrong[1] = Tensor::zeros([16, 5], (Kind::Float, Device::Cpu));
    let e = weights::set_layer_weights(&store, "lstm", &wrong).unwrap_err().to_string();
    assert!(e.contains("layer 'lstm'") && e.contains("weight_hh_l0") && e.contains("[16, 4]"), "{e}");
    let e = weights::set_layer_weights(&store, "lstm", &lstm[..3]).unwrap_err().to_string();
    assert!(e.contains("4 tensors") && e.contains("got 3"), "{e}");
    let mut wrong_all: Vec<Tensor> = plus.iter().map(Tensor::shallow_clone).collect();
    wrong_all[5] = Tensor::zeros([3], (Kind::Float, Device::Cpu));
    let e = weights::set_weights(&store, &wrong_all).unwrap_err().to_string();
    assert!(e.contains("layer 'classifier'") && e.contains("classifier.bias"), "{e}");
    // Nothing was copied by the failed calls.
    assert!(max_abs(&weights::get_weights(&store)[0], &plus[0]) < 1e-7);
    let e = weights::get_layer_weights(&store, "lstn").unwrap_err().to_string();
    assert!(e.contains("did you mean 'lstm'"), "{e}");
}

#[test]
fn gru_trains_from_the_cli() {
    let dir = common::tempdir();
    let out = dir.path().join("run");
    let status = common::tchzoo()
        .args(["train", "--model", "gru:units=16", "--data", "digit_rows:n_seq=5,n_pred=3", "--epochs", "2"])
        .args(["--batch-size", "128", "--device", "cpu", "--out", out.to_str().unwrap(), "--lr-schedule", "none"])
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let sd = common::read_safetensors(&out.join("model.safetensors"));
    assert_eq!(sd["gru.weight_ih_l0"].size(), vec![48, 8]);
    assert_eq!(sd["classifier.weight"].size(), vec![24, 16]);
}
