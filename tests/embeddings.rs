//! Embeddings: the layer against torch.nn.Embedding (name `weight`), Keras' initialisers, mask_zero, bad indices as
//! one clear error naming the index and its position; the entity-embedding model against a PyTorch reference; the
//! pair loader with negative sampling; and on networkx's real graphs, training from the example config,
//! `tchzoo similar` in the seed's listing format and `tchzoo plot --embeddings`.
mod common;

use std::path::{Path, PathBuf};

use tch::{Device, Kind, Tensor};
use tchzoo::data::{self, pairs};
use tchzoo::models::{self, embedding::nearest};
use tchzoo::nn::embedding::{Embedding, EmbeddingInit};
use tchzoo::nn::{Module, VarStore};
use tchzoo::optim::{Optimizer, OptimizerConfig, OptimizerKind};
use tchzoo::plot::embeddings::pca_2d;
use tchzoo::train::progress::Verbosity;
use tchzoo::train::{FitConfig, Loss, Metric, Trainer};

fn fixtures() -> (PathBuf, serde_json::Value) {
    let dir = common::fixtures("embeddings_parity.py");
    let meta = serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    (dir, meta)
}

fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double)).abs().max().double_value(&[])
}

#[test]
fn embedding_layer_matches_torch_and_keras_initialisers() {
    let (dir, _) = fixtures();
    let t = common::read_safetensors(&dir.join("embedding.safetensors"));
    let store = VarStore::new(Device::Cpu);
    let emb = Embedding::new(&store.root(), 10, 4, EmbeddingInit::Uniform, false);
    let names: Vec<String> = store.state_dict().into_iter().map(|(k, _)| k).collect();
    assert_eq!(names, vec!["weight"], "torch.nn.Embedding's state-dict name");
    store.load_state_dict(&[("weight".into(), t["sd.weight"].shallow_clone())], true, "fixture").unwrap();
    assert!(max_abs(&emb.forward_t(&t["x"], false), &t["out"]) == 0.0);
    // Keras' `uniform` is ±0.05; `normal` has σ 0.05; PyTorch's default N(0, 1).
    tch::manual_seed(0);
    let draw = |init: EmbeddingInit| init.tensor(&[400, 50]);
    let u = draw(EmbeddingInit::Uniform);
    assert!(u.abs().max().double_value(&[]) <= 0.05 && u.abs().max().double_value(&[]) > 0.049);
    let sd = |t: &Tensor| t.std(true).double_value(&[]);
    assert!((sd(&draw(EmbeddingInit::Normal)) - 0.05).abs() < 0.002);
    assert!((sd(&draw(EmbeddingInit::Torch)) - 1.0).abs() < 0.02);
    assert_eq!("pytorch".parse::<EmbeddingInit>().unwrap(), EmbeddingInit::Torch);
    let e = "unifrom".parse::<EmbeddingInit>().unwrap_err().to_string();
    assert!(e.contains("did you mean 'uniform'"), "{e}");
}

#[test]
fn bad_indices_are_one_clear_error_naming_index_and_position() {
    let store = VarStore::new(Device::Cpu);
    let emb = Embedding::new(&store.root().sub("tokens"), 10, 4, EmbeddingInit::Uniform, true);
    let xs = Tensor::from_slice(&[1i64, 2, 3, 4, 5, 10]).reshape([2, 3]);
    let e = emb.f_forward(&xs).unwrap_err().to_string();
    let want = "embedding 'tokens': index 10 at position [1, 2] is outside 0..10 (input_dim 10); \
                the data needs input_dim ≥ 11";
    assert_eq!(e, want);
    let e = emb.f_forward(&Tensor::from_slice(&[3i64, -1]).reshape([1, 2])).unwrap_err().to_string();
    assert!(e.contains("index -1 at position [0, 1]"), "{e}");
    let e = emb.f_forward(&Tensor::from_slice(&[1.0f32, 2.5])).unwrap_err().to_string();
    assert!(e.contains("2.5 at position [1]") && e.contains("not an integer"), "{e}");
    // Integral floats are accepted, as Keras casts them.
    assert_eq!(emb.f_forward(&Tensor::from_slice(&[1.0f32, 9.0])).unwrap().size(), vec![2, 4]);
    // The infallible forward skips the check (it would read a flag back from the device every batch; the trainer
    // checks whole datasets once): libtorch's own bounds check still refuses, never an out-of-bounds read.
    let msg = tchzoo::util::catch_torch(|| emb.forward_t(&xs, false)).unwrap_err();
    assert!(msg.contains("index out of range"), "{msg}");
    // mask_zero: index 0 is padding.
    let mask = emb.compute_mask(&Tensor::from_slice(&[0i64, 3, 0]).reshape([1, 3])).unwrap();
    assert_eq!(Vec::<bool>::try_from(mask.reshape([-1])).unwrap(), vec![false, true, false]);
    let store = VarStore::new(Device::Cpu);
    assert!(Embedding::new(&store.root(), 5, 2, EmbeddingInit::Uniform, false).compute_mask(&xs).is_none());

    // Through the trainer: a model whose table is smaller than the data fails before any step, in one line.
    let dir = common::tempdir();
    let csv = dir.path().join("pairs.csv");
    std::fs::write(&csv, "user,item\na,x\nb,y\nc,x\nd,z\n").unwrap();
    let data = data::load(&format!("pairs:path={}", csv.display()), 0).unwrap();
    let store = VarStore::new(Device::Cpu);
    let model = models::build("entity_embedding:entities=3,links=3,dim=4", &store, 1, &[2]).unwrap();
    let opt = Optimizer::new(OptimizerConfig::new(OptimizerKind::Adam), store.parameters()).unwrap();
    let mut t = Trainer::new(model, store, opt, Loss::BinaryCrossEntropy, vec![Metric::Accuracy]);
    let fit = FitConfig { output: Verbosity::Silent.into(), ..FitConfig::default() };
    let e = t.fit(&data, None, &fit, &mut []).unwrap_err().to_string();
    assert!(e.starts_with(&format!("data {}: entity index (column 0", csv.display())), "{e}");
    assert!(e.contains("index 3 at position [") && e.contains("outside 0..3") && !e.contains('\n'), "{e}");
    let e = t.predict_on_batch(&Tensor::from_slice(&[0i64, 7]).reshape([1, 2])).unwrap_err().to_string();
    assert!(e.contains("link index (column 1") && e.contains("index 7 at position [0]"), "{e}");
}

#[test]
fn entity_model_matches_pytorch_reference() {
    let (dir, meta) = fixtures();
    for case in ["entity_cosine_head", "entity_dot_no_head"] {
        let m = &meta[case];
        let t = common::read_safetensors(&dir.join(format!("{case}.safetensors")));
        let store = VarStore::new(Device::Cpu);
        let model = models::build(m["spec"].as_str().unwrap(), &store, 1, &[2]).unwrap();
        let ours: Vec<String> = store.state_dict().into_iter().map(|(k, _)| k).collect();
        let theirs: Vec<String> = m["keys"].as_array().unwrap().iter().map(|k| k.as_str().unwrap().into()).collect();
        assert_eq!(ours, theirs, "{case}");
        let sd: Vec<(String, Tensor)> =
            theirs.iter().map(|k| (k.clone(), t[&format!("sd.{k}")].shallow_clone())).collect();
        store.load_state_dict(&sd, true, case).unwrap();
        let out = tch::no_grad(|| model.forward_t(&t["x"], false));
        let d = max_abs(&out, &t["out"]);
        assert!(d <= 1e-6, "{case}: outputs differ by {d:e}");
    }
    let e = models::build("entity_embedding:head=false", &VarStore::new(Device::Cpu), 3, &[2]).err().unwrap();
    assert!(e.to_string().contains("head=false"), "{e}");
}

#[test]
fn pair_loader_samples_true_negatives_deterministically() {
    let dir = common::tempdir();
    let csv = dir.path().join("books.csv");
    let rows = "book,link\nWar and Peace,Tolstoy\nAnna Karenina,Tolstoy\n\"Dead Souls\",Gogol\n";
    std::fs::write(&csv, format!("{rows}Anna Karenina,Russia\nWar and Peace,Russia\n")).unwrap();
    let p = pairs::Pairs::read(&csv, None, None).unwrap();
    assert_eq!(p.entities, vec!["Anna Karenina", "Dead Souls", "War and Peace"]);
    assert_eq!(p.links, vec!["Gogol", "Russia", "Tolstoy"]);
    assert_eq!(p.pairs[0], (2, 2));
    assert_eq!((p.entity_column.as_str(), p.link_column.as_str()), ("book", "link"));
    let spec = format!("pairs:path={},negatives=2", csv.display());
    let d = data::load(&spec, 7).unwrap();
    assert_eq!(d.xs.kind(), Kind::Int64);
    assert_eq!(d.xs.size(), vec![15, 2]);
    assert_eq!(d.task, data::Task::Classification { n_classes: 2 });
    let rows: Vec<i64> = Vec::try_from(d.xs.reshape([-1])).unwrap();
    let ys: Vec<i64> = Vec::try_from(&d.ys).unwrap();
    assert_eq!(ys.iter().sum::<i64>(), 5);
    for (pair, y) in rows.chunks(2).zip(&ys) {
        assert_eq!(p.pairs.contains(&(pair[0], pair[1])), *y == 1, "pair {pair:?} labelled {y}");
    }
    // The same seed gives the same data; another seed other negatives.
    assert!(max_abs(&d.xs, &data::load(&spec, 7).unwrap().xs) == 0.0);
    assert!(max_abs(&d.xs, &data::load(&spec, 8).unwrap().xs) > 0.0);
    let r = data::load(&format!("{spec},task=regression"), 7).unwrap();
    let targets: Vec<f32> = Vec::try_from(r.ys.reshape([-1])).unwrap();
    assert!(targets.iter().all(|v| *v == 1.0 || *v == -1.0) && targets.iter().filter(|v| **v > 0.0).count() == 5);
    // Errors: one line, naming the fix.
    let e = data::load(&format!("pairs:path={},link=lnk", csv.display()), 0).unwrap_err().to_string();
    assert!(e.contains("no column 'lnk'") && e.contains("did you mean 'link'"), "{e}");
    let e = data::load("pairs:negatives=2", 0).unwrap_err().to_string();
    assert!(e.contains("path=FILE"), "{e}");
    let e = data::load(&format!("pairs:path={},negative=2", csv.display()), 0).unwrap_err().to_string();
    assert!(e.contains("did you mean 'negatives'"), "{e}");
    let e = data::load(&format!("pairs:path={},negatives=101", csv.display()), 0).unwrap_err().to_string();
    assert!(e.contains("at most 100"), "{e}");
    let e = p.entity_index("Anna Karenin").unwrap_err().to_string();
    assert!(e.contains("did you mean 'Anna Karenina'"), "{e}");
    assert_eq!(p.entity_index("dead souls").unwrap(), 1);
    let e = pairs::sample_negatives(&[(0, 0)], 1, 1, 1, 0).unwrap_err().to_string();
    assert!(e.contains("no negative"), "{e}");
}

#[test]
fn nearest_and_pca_on_known_vectors() {
    let table = Tensor::from_slice(&[1.0f32, 0.0, 0.9, 0.1, 0.0, 1.0, -1.0, 0.0]).reshape([4, 2]);
    let near = nearest(&table, 0, 3, false).unwrap();
    assert_eq!(near.iter().map(|r| r.0).collect::<Vec<_>>(), vec![0, 1, 2]);
    assert!((near[0].1 - 1.0).abs() < 1e-6);
    let far = nearest(&table, 0, 2, true).unwrap();
    assert_eq!(far[0].0, 3);
    assert!((far[0].1 + 1.0).abs() < 1e-6);
    // Points on a line in 3-D: one axis holds all the variance, and the projection keeps the distances.
    let t = Tensor::arange(5, (Kind::Float, Device::Cpu)).unsqueeze(1) * Tensor::from_slice(&[1.0f32, 2.0, 2.0]);
    let p = pca_2d(&t).unwrap();
    let (points, variance) = (p.points, p.variance);
    assert!((variance[0] - 1.0).abs() < 1e-9 && variance[1].abs() < 1e-9, "{variance:?}");
    assert!((points[4].0 - points[0].0 - 12.0).abs() < 1e-9, "{points:?}");
    assert!(points[4].0 > points[0].0, "sign convention: the largest loading is positive");
}

fn write_config(dir: &Path, csv: &Path, example: &str, epochs: usize) -> PathBuf {
    let example = common::root().join("examples/entity_embeddings").join(example);
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&example).unwrap()).unwrap();
    // The example names its data beside the repository root's data/, relative to its own folder.
    let data = config["data"].as_str().unwrap().replace("../../data/les_miserables.csv", csv.to_str().unwrap());
    let data = data.replace("../../data/davis_southern_women.csv", csv.to_str().unwrap());
    config["data"] = data.into();
    config["epochs"] = epochs.into();
    config["device"] = "cpu".into();
    let path = dir.join("config.json");
    std::fs::write(&path, config.to_string()).unwrap();
    path
}

/// The seed's book project on networkx's Les Misérables graph: the example config trains from the CLI, then
/// `similar` lists the nearest characters in the seed's format and `plot --embeddings` draws them.
#[test]
fn les_miserables_from_the_cli_similar_and_plot() {
    let (fx, _) = fixtures();
    let dir = common::tempdir();
    let config = write_config(dir.path(), &fx.join("les_miserables.csv"), "les_miserables.json", 20);
    let run = dir.path().join("run");
    let out = common::tchzoo()
        .args(["train", "--config", config.to_str().unwrap(), "--out", run.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let history: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("history.json")).unwrap()).unwrap();
    let text = history.to_string();
    assert!(text.contains("val_accuracy"), "{text}");
    let sd = common::read_safetensors(&run.join("model.safetensors"));
    assert_eq!(sd["entity.weight"].size(), vec![77, 50]);

    let similar = |args: &[&str]| common::tchzoo().arg("similar").arg(&run).args(args).output().unwrap();
    let out = similar(&["--query", "Valjean", "-k", "5"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listing = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(lines.len(), 6, "{listing}");
    assert_eq!(lines[0], "Closest to Valjean by cosine similarity (character embeddings):");
    assert!(lines[1].starts_with("Character: Valjean   ") && lines[1].ends_with("Similarity: 1.0"), "{listing}");
    let sims: Vec<f64> = lines[1..].iter().map(|l| l.rsplit("Similarity: ").next().unwrap().parse().unwrap()).collect();
    assert!(sims.windows(2).all(|w| w[0] >= w[1]), "{listing}");
    // The columns line up, as in the seed's listing.
    let at: Vec<usize> = lines[1..].iter().map(|l| l.find("Similarity").unwrap()).collect();
    assert!(at.windows(2).all(|w| w[0] == w[1]), "{listing}");

    let out = similar(&["--query", "Valjean", "-k", "3", "--least"]);
    let least = String::from_utf8(out.stdout).unwrap();
    assert!(least.starts_with("Least similar to Valjean"), "{least}");
    assert!(!least.contains("Character: Valjean "), "{least}");

    let out = similar(&["--query", "Valjaen"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("no character 'Valjaen'") && err.contains("did you mean 'Valjean'"), "{err}");

    let png = dir.path().join("embeddings.png");
    let out = common::tchzoo()
        .args(["plot", run.to_str().unwrap(), "--embeddings", "--query", "Javert", "-o", png.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let bytes = std::fs::read(&png).unwrap();
    assert!(bytes.starts_with(b"\x89PNG") && bytes.len() > 20_000, "{} bytes", bytes.len());
}

/// A table too small for the data: the CLI fails in one line that names the index, its position and the size needed.
#[test]
fn cli_out_of_range_index_is_one_line() {
    let (fx, _) = fixtures();
    let dir = common::tempdir();
    let data = format!("pairs:path={}", fx.join("les_miserables.csv").display());
    let out = common::tchzoo()
        .args(["train", "--model", "entity_embedding:entities=50,links=77", "--data", &data, "--epochs", "1"])
        .args(["--device", "cpu", "--out", dir.path().join("run").to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("entity index (column 0") && err.contains("at position [") && err.contains("input_dim ≥ 77"),
        "{err}"
    );
}

/// Davis Southern Women, the bipartite shape of book → wikilink: the regression task (±1, MSE) of the seed and
/// the link table (events) through the library.
#[test]
fn davis_women_regression_and_event_table() {
    let (fx, _) = fixtures();
    tch::manual_seed(0);
    let spec = format!("pairs:path={},negatives=1,task=regression", fx.join("davis_southern_women.csv").display());
    let all = data::load(&spec, 0).unwrap();
    assert_eq!(all.xs.size(), vec![178, 2]);
    let store = VarStore::new(Device::Cpu);
    let model = models::build("entity_embedding:entities=18,links=14,dim=8,head=false", &store, 1, &[2]).unwrap();
    let mut oc = OptimizerConfig::new(OptimizerKind::Adam);
    oc.hyper.lr = 0.05;
    let opt = Optimizer::new(oc, store.parameters()).unwrap();
    let mut t = Trainer::new(model, store, opt, Loss::Mse, vec![Metric::Mae]);
    let fit = FitConfig { epochs: 60, batch_size: 32, output: Verbosity::Silent.into(), ..FitConfig::default() };
    let h = t.fit(&all, None, &fit, &mut []).unwrap();
    let (first, last) = (h.get("loss").unwrap()[0], h.last("loss").unwrap());
    eprintln!("davis: loss {first:.4} → {last:.4}");
    // The loss falls by a factor (1.097 → 0.256 here), a margin any machine meets.
    assert!(last < first / 3.0, "loss {first} → {last}");
    // Outputs are cosines in [-1, 1] that separate attended (+1) from not attended (−1).
    let out = t.predict(&all.xs, 256).reshape([-1]);
    let y = all.ys.reshape([-1]);
    let right = out.sign().eq_tensor(&y).to_kind(Kind::Float).mean(Kind::Float).double_value(&[]);
    eprintln!("davis: sign accuracy {right:.3}");
    assert!(right > 0.9, "sign accuracy {right}");
    assert!(out.abs().max().double_value(&[]) <= 1.0 + 1e-5);
    let p = pairs::Pairs::read(&fx.join("davis_southern_women.csv"), None, None).unwrap();
    assert_eq!((p.entities.len(), p.links.len(), p.pairs.len()), (18, 14, 89));
    let events = t.store.get("link.weight").unwrap();
    let e1 = p.link_index("E1").unwrap();
    let near = nearest(&events, e1 as i64, 3, false).unwrap();
    assert_eq!(near[0].0, e1);
}
