//! Models from text diagrams: parsing, errors that point at the token, shapes from the data, `nn.Sequential` names,
//! state dicts both ways with Python (scripts/fixtures/diagram_parity.py), the summary, and the notes' claims
//! (a network without activations collapses to one linear map; an MLP with one learns XOR).
mod common;

use common::{fixtures, rel_diff, tchzoo};
use tch::{Device, Kind, Tensor};
use tchzoo::models::diagram::{Diagram, DiagramModel, LayerSpec};
use tchzoo::models::{self, Model};
use tchzoo::nn::VarStore;

/// Logits are compared in float32 with this relative tolerance (max |Δ| / max |expected|).
const RTOL: f64 = 1e-5;

fn cases() -> (std::path::PathBuf, serde_json::Value) {
    let dir = fixtures("diagram_parity.py");
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    (dir, meta)
}

fn build(diagram: &str, outputs: i64, input: &[i64]) -> (VarStore, Box<dyn Model>) {
    let store = VarStore::new(Device::Cpu);
    let model = models::build(diagram, &store, outputs, input).unwrap_or_else(|e| panic!("{diagram}: {e}"));
    (store, model)
}

fn shape_of(v: &serde_json::Value) -> Vec<i64> {
    v.as_array().unwrap().iter().map(|d| d.as_i64().unwrap()).collect()
}

#[test]
fn python_state_dict_names_order_and_logits() {
    let (dir, meta) = cases();
    for (case, m) in meta.as_object().unwrap() {
        let (store, model) =
            build(m["diagram"].as_str().unwrap(), m["outputs"].as_i64().unwrap(), &shape_of(&m["input"]));
        let ours: Vec<(String, Vec<i64>)> = store.state_dict().iter().map(|(k, t)| (k.clone(), t.size())).collect();
        let theirs: Vec<(String, Vec<i64>)> = m["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|kv| (kv[0].as_str().unwrap().to_string(), shape_of(&kv[1])))
            .collect();
        assert_eq!(ours, theirs, "{case}: state-dict names, order and shapes");

        let file = common::read_safetensors(&dir.join(format!("{case}.safetensors")));
        let sd: Vec<(String, Tensor)> = file
            .iter()
            .filter_map(|(k, t)| k.strip_prefix("sd.").map(|k| (k.to_string(), t.shallow_clone())))
            .collect();
        let report = store.load_state_dict(&sd, true, case).unwrap();
        assert_eq!(report.loaded, theirs.len(), "{case}");
        let logits = tch::no_grad(|| model.forward_t(&file["x"], false));
        let d = rel_diff(&logits, &file["logits"]);
        assert!(d <= RTOL, "{case}: logits differ from PyTorch's by {d:e} (rtol {RTOL:e})");
    }
}

/// The other direction: our state dict (random weights, randomised BN statistics) loads with strict=True into the
/// hand-written Python nn.Sequential, which then gives our logits.
#[test]
fn rust_state_dict_loads_into_python_sequential() {
    let (_, meta) = cases();
    let tmp = common::tempdir();
    let mut names = vec![];
    for (i, (case, m)) in meta.as_object().unwrap().iter().enumerate() {
        tch::manual_seed(7 + i as i64);
        let input = shape_of(&m["input"]);
        let (store, model) = build(m["diagram"].as_str().unwrap(), m["outputs"].as_i64().unwrap(), &input);
        tch::no_grad(|| {
            for (name, mut t) in store.state_dict() {
                if name.ends_with("running_mean") || name.ends_with("bias") {
                    let _ = t.uniform_(-0.5, 0.5);
                } else if name.ends_with("running_var") {
                    let _ = t.uniform_(0.5, 2.0);
                } else if name.ends_with("num_batches_tracked") {
                    let _ = t.fill_(3);
                } else if t.dim() == 1 {
                    let _ = t.uniform_(0.05, 1.5); // BN weights and PReLU slopes
                }
            }
        });
        let mut shape = vec![3];
        shape.extend_from_slice(&input);
        let x = Tensor::randn(shape.as_slice(), (Kind::Float, Device::Cpu));
        let logits = tch::no_grad(|| model.forward_t(&x, false));
        let mut tensors: Vec<(String, Tensor)> =
            store.state_dict().into_iter().map(|(k, t)| (format!("sd.{k}"), t.detach())).collect();
        tensors.push(("x".into(), x));
        tensors.push(("logits".into(), logits));
        Tensor::write_safetensors(&tensors, tmp.path().join(format!("{case}.safetensors"))).unwrap();
        names.push(case.clone());
    }
    let fixtures_dir = common::root().join("scripts/fixtures");
    let mut args = vec![fixtures_dir.to_str().unwrap(), tmp.path().to_str().unwrap()];
    args.extend(names.iter().map(String::as_str));
    let out = common::run_script("diagram_verify.py", &args);
    assert_eq!(out.lines().count(), names.len(), "{out}");
    for line in out.lines() {
        let (case, rel) = line.split_once(' ').unwrap();
        let rel: f64 = rel.parse().unwrap();
        assert!(rel <= RTOL, "{case}: PyTorch's logits with our state dict differ by {rel:e}");
    }
}

#[test]
fn layers_and_shapes_from_the_data() {
    let d: Diagram =
        "INPUT => CONV(32,3) => BN => RELU => POOL(2) => DROPOUT(0.25) => FC(128) => PRELU => FC(10) => SOFTMAX"
            .parse()
            .unwrap();
    assert_eq!(d.layers.len(), 8, "INPUT and the output SOFTMAX are not layers");
    assert!(d.output_softmax.is_some());
    assert_eq!(d.output_size(), Some(10));
    assert!(matches!(d.layers[0].0, LayerSpec::Conv { c_out: 32, kernel: 3, stride: 1, .. }));

    let store = VarStore::new(Device::Cpu);
    let c = models::ModelConfig::new(10, &[1, 28, 28]);
    let model = DiagramModel::new(&store.root(), &d, &c).unwrap();
    assert_eq!(model.len(), 9, "the implied Flatten takes an index");
    assert_eq!(model.classifier_name(), "8");
    let x = Tensor::randn([2, 1, 28, 28], (Kind::Float, Device::Cpu));
    let features = model.forward_features(&x, false);
    assert_eq!(features.size(), vec![2, 128]);
    assert_eq!(model.forward_head(&features, false).size(), vec![2, 10]);

    // The same diagram on 3×32×32 data: only the shapes inferred from the data change.
    let (store, _) = build(&d.text, 10, &[3, 32, 32]);
    assert_eq!(store.get("0.weight").unwrap().size(), vec![32, 3, 3, 3]);
    assert_eq!(store.get("6.weight").unwrap().size(), vec![128, 32 * 15 * 15]);
    assert_eq!(store.get("7.weight").unwrap().size(), vec![1]);
    assert_eq!(store.get("7.weight").unwrap().double_value(&[0]), 0.25);

    // Vector data needs no Flatten; the output FC may take its size from the data.
    let (store, model) = build("FC(16) => TANH => FC", 3, &[5]);
    let names: Vec<String> = store.state_dict().into_iter().map(|(k, _)| k).collect();
    assert_eq!(names, ["0.weight", "0.bias", "2.weight", "2.bias"]);
    assert_eq!(model.num_outputs(), 3);
}

#[test]
fn logits_in_forward_softmax_in_predict() {
    let (store, model) = build("FC(6) => RELU => FC(4) => SOFTMAX", 4, &[3]);
    let x = Tensor::randn([5, 3], (Kind::Float, Device::Cpu));
    let logits = model.forward_t(&x, false);
    let w = |n: &str| store.get(n).unwrap();
    let expected = x.linear(&w("0.weight"), Some(&w("0.bias"))).relu().linear(&w("2.weight"), Some(&w("2.bias")));
    assert!(rel_diff(&logits, &expected) < 1e-6, "forward gives logits, without the output softmax");
    let rows = models::trace(model.as_ref(), &store, &[3]).unwrap();
    let last = rows.last().unwrap();
    assert_eq!(last.name, "3", "the output softmax is listed at the index nn.Sequential would give it");
    assert!(last.kind.starts_with("Softmax"));

    // A SOFTMAX that is not last is an ordinary layer.
    let (_, model) = build("FC(6) => SOFTMAX => FC(4)", 4, &[3]);
    let (_, rows) = tchzoo::nn::trace::capture(|| model.forward_t(&x, false));
    assert_eq!(rows.iter().map(|r| r.kind.as_str()).collect::<Vec<_>>(), ["Linear", "Softmax", "Linear"]);
}

#[test]
fn act_token_follows_the_activation_option_and_every_name_parses() {
    let (store, model) = build("FC(8) => ACT => FC(8) => ACT(sigmoid) => FC:activation=tanh", 2, &[4]);
    let (_, rows) =
        tchzoo::nn::trace::capture(|| model.forward_t(&Tensor::zeros([1, 4], (Kind::Float, Device::Cpu)), false));
    let kinds: Vec<&str> = rows.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(kinds, ["Linear", "Tanh", "Linear", "Sigmoid", "Linear"]);
    assert_eq!(store.len(), 6);
    let (store, _) = build("FC(8) => ACT => FC:activation=prelu", 2, &[4]);
    assert_eq!(store.get("1.weight").unwrap().size(), vec![1], "ACT as PReLU is a learnable layer");

    for name in tchzoo::nn::Activation::NAMES {
        let text = format!("FC(4) => {} => FC", name.to_uppercase());
        build(&text, 2, &[3]);
        build(&format!("FC(4) => {name} => fc"), 2, &[3]);
    }
    assert!(models::build("FC(4) => ACT => FC:activaton=tanh", &VarStore::new(Device::Cpu), 2, &[3])
        .err()
        .unwrap()
        .to_string()
        .contains("did you mean 'activation'"));
}

fn error(diagram: &str, outputs: i64, input: &[i64]) -> String {
    match models::build(diagram, &VarStore::new(Device::Cpu), outputs, input) {
        Ok(_) => panic!("{diagram} should not build"),
        // As the CLI prints it (settings worded as its flags).
        Err(e) => tchzoo::cli::output::error_words(&e),
    }
}

#[test]
fn errors_point_at_the_offending_token() {
    let e = error("CONV(32,3) => RELUU", 10, &[1, 28, 28]);
    assert!(e.contains("'RELUU'") && e.contains("token 2") && e.contains("column 15"), "{e}");
    assert!(e.contains("did you mean 'RELU'"), "{e}");
    assert!(e.contains(">>RELUU<<"), "{e}");
    assert_eq!(e.lines().count(), 1, "{e}");
    // The same check through `find`, which the config validation uses.
    assert!(models::find("CONV(32,3) => RELUU").unwrap_err().to_string().contains("RELUU"));

    let cases: &[(&str, &[i64], &str, &str)] = &[
        ("CONV(32,3 => FC(10)", &[1, 8, 8], "CONV(32,3", "parentheses"),
        ("CONV(8) => FC(10)", &[1, 8, 8], "token 1", "CONV takes (filters, kernel"),
        ("CONV(8,x) => FC(10)", &[1, 8, 8], "token 1", "'x' must be a positive whole number"),
        ("CONV(8,3) =>  => FC(10)", &[1, 8, 8], "token 2", "empty layer"),
        ("CONV(8,3) => RELU", &[1, 8, 8], "no FC layer", "FC(10)"),
        ("FC => RELU => FC(10)", &[4], "token 1", "hidden FC needs its size"),
        ("FC(10) => BN", &[4], "token 2 'BN'", "only activations and DROPOUT may follow"),
        ("FC(64) => CONV(8,3) => FC(10)", &[1, 8, 8], "token 2 'CONV(8,3)'", "needs image data"),
        ("CONV(8,3) => FC(10)", &[4], "token 1", "--input"),
        ("CONV(8,9) => FC(10)", &[1, 8, 8], "token 1", "does not fit the 8×8 image"),
        ("CONV(8,3) => POOL(2) => POOL(4) => FC(10)", &[1, 8, 8], "token 3 'POOL(4)'", "3×3"),
        ("CONV(8,3) => FC(10)", &[1, 8, 8], "token 2 'FC(10)'", "data needs 3"),
        ("FC(8) => DROPOUT(1.5) => FC", &[4], "token 2", "[0, 1]"),
        ("FC(8) => RELU(2) => FC", &[4], "token 2", "RELU takes no arguments"),
        ("FC(8) => PRELU(5) => FC", &[4], "token 2", "one per channel (8)"),
        ("FC(8) => INPUT => FC", &[4], "token 2", "INPUT may only open"),
        ("FC(8) => ACT(sigmod) => FC", &[4], "token 2", "did you mean 'sigmoid'"),
        ("POOL(2,max,avg) => FC", &[1, 8, 8], "token 1", "POOL"),
    ];
    for (diagram, input, at, what) in cases {
        let e = error(diagram, 3, input);
        assert!(e.contains(at) && e.contains(what), "{diagram}: {e}");
        assert_eq!(e.lines().count(), 1, "{e}");
    }
}

#[test]
fn reset_classifier_keeps_the_name_and_place() {
    let (store, mut model) = build("CONV(4,3) => RELU => FC(8) => RELU => FC(5) => SOFTMAX", 5, &[1, 6, 6]);
    let before: Vec<String> = store.state_dict().into_iter().map(|(k, _)| k).collect();
    model.reset_classifier(3);
    let after: Vec<String> = store.state_dict().into_iter().map(|(k, _)| k).collect();
    assert_eq!(before, after);
    assert_eq!(store.get("5.weight").unwrap().size(), vec![3, 8]);
    assert_eq!(model.forward_t(&Tensor::zeros([2, 1, 6, 6], (Kind::Float, Device::Cpu)), false).size(), vec![2, 3]);
    assert_eq!(model.num_outputs(), 3);
}

#[test]
fn every_parameter_gets_a_gradient() {
    let (store, model) = build(
        "CONV(4,3,padding=same) => BN => PRELU(C) => POOL(2,avg) => FC(8) => BN => GELU => DO(0.1) => FC",
        42,
        &[2, 8, 8],
    );
    let x = Tensor::randn([4, 2, 8, 8], (Kind::Float, Device::Cpu));
    let y = model.forward_t(&x, true);
    assert_eq!(y.size(), vec![4, 42]);
    assert!(!bool::try_from(y.isnan().any()).unwrap());
    y.square().mean(Kind::Float).backward();
    for (name, p) in store.named_parameters() {
        let g = p.grad();
        assert!(g.defined() && g.abs().sum(Kind::Double).double_value(&[]) > 0.0, "{name} has no gradient");
    }
    assert_eq!(store.get("1.num_batches_tracked").unwrap().int64_value(&[]), 1);
}

#[test]
fn summary_lists_the_diagram_layers() {
    let out =
        tchzoo().args(["summary", "CONV(8,3) => RELU => POOL(2) => FC(10)", "--input", "1x28x28"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}{}", text, String::from_utf8_lossy(&out.stderr));
    for row in
        ["0 (Conv2d)", "(1, 8, 26, 26)", "1 (ReLU)", "2 (MaxPool2d)", "(1, 8, 13, 13)", "3 (Flatten)", "(1, 1352)"]
    {
        assert!(text.contains(row), "missing {row}:\n{text}");
    }
    assert!(text.contains("4 (Linear)") && text.contains("(1, 10)") && text.contains("13,530"), "{text}");

    let out = tchzoo().args(["summary", "CONV(8,3) => RELUU => FC(10)"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("RELUU") && err.contains("token 2"), "{err}");
}

/// The notes: "a neural network with no activation functions is equivalent to a linear regression model".
#[test]
fn without_activations_the_network_is_one_linear_map() {
    tch::manual_seed(0);
    let (store, model) = build("FC(16) => FC(16) => DROPOUT(0.5) => FC(3)", 3, &[5]);
    let w = |n: &str| store.get(n).unwrap().detach().to_kind(Kind::Double);
    let (w1, w2, w3) = (w("0.weight"), w("1.weight"), w("3.weight"));
    let (b1, b2, b3) = (w("0.bias"), w("1.bias"), w("3.bias"));
    let weight = w3.matmul(&w2).matmul(&w1);
    let bias = w3.matmul(&(w2.matmul(&b1) + b2)) + b3;
    let x = Tensor::randn([64, 5], (Kind::Float, Device::Cpu));
    let ys = tch::no_grad(|| model.forward_t(&x, false)).to_kind(Kind::Double);
    let collapsed = x.to_kind(Kind::Double).linear(&weight, Some(&bias));
    let d = (&ys - &collapsed).abs().max().double_value(&[]);
    assert!(d <= 1e-6, "max |Δ| {d:e}");

    // With a ReLU in between it is not one linear map.
    let (store, model) = build("FC(16) => RELU => FC(16) => RELU => FC(3)", 3, &[5]);
    let w = |n: &str| store.get(n).unwrap().detach().to_kind(Kind::Double);
    let weight = w("4.weight").matmul(&w("2.weight")).matmul(&w("0.weight"));
    let bias = w("4.weight").matmul(&(w("2.weight").matmul(&w("0.bias")) + w("2.bias"))) + w("4.bias");
    let ys = tch::no_grad(|| model.forward_t(&x, false)).to_kind(Kind::Double);
    let d = (&ys - x.to_kind(Kind::Double).linear(&weight, Some(&bias))).abs().max().double_value(&[]);
    assert!(d > 1e-2, "max |Δ| {d:e}");
}

/// The notes: a network with a non-linearity learns XOR.
#[test]
fn a_two_layer_mlp_learns_xor() {
    tch::manual_seed(1);
    let x = Tensor::from_slice(&[0f32, 0., 0., 1., 1., 0., 1., 1.]).reshape([4, 2]);
    let y = Tensor::from_slice(&[0i64, 1, 1, 0]);
    let (store, model) = build("FC(8) => TANH => FC", 2, &[2]);
    let mut config = tchzoo::optim::OptimizerConfig::new(tchzoo::optim::OptimizerKind::Adam);
    config.hyper.lr = 0.05;
    let mut opt = tchzoo::optim::Optimizer::new(config, store.parameters()).unwrap();
    for _ in 0..300 {
        opt.zero_grad().unwrap();
        model.forward_t(&x, true).cross_entropy_for_logits(&y).backward();
        opt.step().unwrap();
    }
    let predicted = tch::no_grad(|| model.forward_t(&x, false)).argmax(1, false);
    assert_eq!(Vec::<i64>::try_from(&predicted).unwrap(), [0, 1, 1, 0]);
}

#[test]
fn the_activation_flag_sets_the_knob() {
    use tchzoo::models::diagram::with_activation;
    assert_eq!(with_activation("mlp:hidden=8", "Swish").unwrap(), "mlp:hidden=8,activation=silu");
    assert_eq!(with_activation("lenet5", "tanh").unwrap(), "lenet5:activation=tanh");
    assert_eq!(with_activation("mlp:activation=tanh", "tanh").unwrap(), "mlp:activation=tanh");
    let spec = with_activation("FC(8) => ACT => FC", "sigmoid").unwrap();
    let (_, model) = build(&spec, 2, &[3]);
    let (_, rows) =
        tchzoo::nn::trace::capture(|| model.forward_t(&Tensor::zeros([1, 3], (Kind::Float, Device::Cpu)), false));
    assert_eq!(rows[1].kind, "Sigmoid");
    assert!(with_activation("mlp", "relux").unwrap_err().to_string().contains("did you mean 'relu'"));
    assert!(with_activation("perceptron", "tanh").unwrap_err().to_string().contains("no activation knob"));
    assert!(with_activation("mlp:activation=relu", "tanh").unwrap_err().to_string().contains("contradicts"));
}
