//! Activations: names, autograd derivatives against their closed forms on a grid (kinks included, with PyTorch's
//! choices), PReLU's learnable slope, the step function's zero gradient, the perceptron of the notes, and
//! `tchzoo plot activations`.
mod common;

use common::tchzoo;
use tch::{Device, Kind, Tensor};
use tchzoo::nn::{Activation, Module, PReLU, VarStore};
use tchzoo::plot::activations::{grid, plot_activations, sample, DEFAULT};

/// Autograd and the closed forms agree to this, in float64.
const ATOL: f64 = 1e-10;

/// −7 … 7 in steps of 0.05: holds 0, ±3 and 6 exactly (the kinks of ReLU, step, hard-sigmoid and ReLU6).
fn xs() -> Vec<f64> {
    (0..=280).map(|i| (i as f64 - 140.0) / 20.0).collect()
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Φ(x), through libtorch's erf in float64.
fn normal_cdf(x: f64) -> f64 {
    0.5 * (1.0 + Tensor::from(x / std::f64::consts::SQRT_2).erf().double_value(&[]))
}

/// The derivative of each elementwise activation, by hand; at kinks the value PyTorch's backward gives.
fn closed_form(act: Activation, x: f64) -> f64 {
    const SELU_ALPHA: f64 = 1.673_263_242_354_377_3;
    const SELU_SCALE: f64 = 1.050_700_987_355_480_5;
    let s = sigmoid(x);
    match act {
        Activation::Relu => f64::from(x > 0.0), // 0 at x = 0, as PyTorch
        Activation::Relu6 => f64::from((0.0..=6.0).contains(&x)), // a clamp: 1 at both ends
        Activation::LeakyRelu => {
            if x > 0.0 {
                1.0
            } else {
                0.01
            }
        }
        Activation::Elu => {
            if x > 0.0 {
                1.0
            } else {
                x.exp()
            }
        }
        Activation::Selu => SELU_SCALE * if x > 0.0 { 1.0 } else { SELU_ALPHA * x.exp() },
        Activation::Gelu => normal_cdf(x) + x * (-x * x / 2.0).exp() / (2.0 * std::f64::consts::PI).sqrt(),
        Activation::Silu => s * (1.0 + x * (1.0 - s)),
        Activation::Mish => {
            let sp = x.exp().ln_1p();
            sp.tanh() + x * s * (1.0 - sp.tanh().powi(2))
        }
        Activation::Tanh => 1.0 - x.tanh().powi(2),
        Activation::Sigmoid => s * (1.0 - s),
        Activation::HardSigmoid => {
            if -3.0 < x && x < 3.0 {
                1.0 / 6.0
            } else {
                0.0
            }
        }
        Activation::Softplus => s,
        Activation::Softsign => 1.0 / (1.0 + x.abs()).powi(2),
        Activation::Identity => 1.0,
        Activation::Prelu => {
            if x > 0.0 {
                1.0
            } else {
                Activation::PRELU_INIT
            }
        }
        Activation::Step => 0.0,
        Activation::Softmax => unreachable!("softmax is not elementwise"),
    }
}

fn autograd(act: Activation, xs: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let x = Tensor::from_slice(xs).set_requires_grad(true);
    let y = act.apply(&x);
    let g = Tensor::run_backward(&[y.sum(Kind::Double)], &[&x], false, false);
    (Vec::<f64>::try_from(&y.detach()).unwrap(), Vec::<f64>::try_from(&g[0]).unwrap())
}

#[test]
fn every_derivative_matches_its_closed_form_on_a_grid() {
    let xs = xs();
    for &act in Activation::ALL.iter().filter(|a| **a != Activation::Softmax) {
        let (_, grads) = autograd(act, &xs);
        for (&x, &g) in xs.iter().zip(&grads) {
            let want = closed_form(act, x);
            // libtorch's hard-sigmoid backward multiplies by 1/6 rounded to float32, even for float64 tensors.
            let tol = if act == Activation::HardSigmoid { 1e-7 } else { ATOL };
            assert!((g - want).abs() <= tol * want.abs().max(1.0), "{act}'({x}) = {g}, closed form {want}");
        }
    }
}

#[test]
fn kinks_follow_pytorch() {
    let at = |act: Activation, x: f64| autograd(act, &[x]).1[0];
    assert_eq!(at(Activation::Relu, 0.0), 0.0, "ReLU'(0) is 0, as PyTorch");
    assert_eq!(at(Activation::Relu, 1e-30), 1.0);
    assert_eq!(at(Activation::LeakyRelu, 0.0), 0.01);
    assert_eq!(at(Activation::Prelu, 0.0), 0.25);
    assert_eq!(at(Activation::HardSigmoid, 3.0), 0.0);
    assert_eq!(at(Activation::HardSigmoid, -3.0), 0.0);
}

#[test]
fn step_is_a_threshold_with_zero_gradient_everywhere() {
    let xs = [-1e30, -2.0, -1e-30, 0.0, 1e-30, 0.5, 3.0, 1e30, f64::INFINITY, f64::NEG_INFINITY];
    let (ys, grads) = autograd(Activation::Step, &xs);
    let want: Vec<f64> = xs.iter().map(|&x| f64::from(x > 0.0)).collect();
    assert_eq!(ys, want, "1 for x > 0, else 0 (step(0) = 0)");
    assert!(grads.iter().all(|&g| g == 0.0), "zero gradient, including at 0: {grads:?}");

    // Through a layer: backward runs, and the weights before a step get a zero gradient (nothing to learn from).
    let store = VarStore::new(Device::Cpu);
    let fc = tchzoo::nn::Linear::new(&store.root().sub("fc"), 3, 2);
    let x = Tensor::randn([5, 3], (Kind::Float, Device::Cpu));
    Activation::Step.apply(&fc.forward_t(&x, true)).sum(Kind::Float).backward();
    assert_eq!(fc.weight.grad().abs().sum(Kind::Double).double_value(&[]), 0.0);
}

/// softmax's Jacobian is s_i(δ_ij − s_j): the gradient of Σ w·softmax(x) is s ⊙ (w − Σ w s).
#[test]
fn softmax_gradient_matches_its_jacobian() {
    tch::manual_seed(0);
    let x = (Tensor::randn([6, 4], (Kind::Double, Device::Cpu)) * 3.0).set_requires_grad(true);
    let w = Tensor::randn([6, 4], (Kind::Double, Device::Cpu));
    let s = Activation::Softmax.apply(&x);
    let rows = s.sum_dim_intlist(1i64, false, Kind::Double);
    assert!((rows - 1.0).abs().max().double_value(&[]) < 1e-12, "softmax over dimension 1");
    let g = &Tensor::run_backward(&[(&s * &w).sum(Kind::Double)], &[&x], false, false)[0];
    let s = s.detach();
    let want = &s * (&w - (&w * &s).sum_dim_intlist(1i64, true, Kind::Double));
    assert!((g - want).abs().max().double_value(&[]) < ATOL);
}

#[test]
fn prelu_learns_its_slope_per_channel_or_shared() {
    let store = VarStore::new(Device::Cpu);
    let shared = PReLU::new(&store.root().sub("act"), 1);
    let per_channel = PReLU::new(&store.root().sub("act2"), 3);
    let meta: Vec<(String, Vec<i64>)> = store.entries_meta().into_iter().map(|e| (e.0, e.1)).collect();
    assert_eq!(meta, [("act.weight".to_string(), vec![1]), ("act2.weight".to_string(), vec![3])]);
    assert_eq!(Vec::<f32>::try_from(&shared.weight).unwrap(), [0.25]);
    assert_eq!(store.parameters().len(), 2, "the slopes are trainable parameters");

    let slopes = [0.1f32, 0.2, 0.3];
    tch::no_grad(|| per_channel.weight.shallow_clone().copy_(&Tensor::from_slice(&slopes)));
    tch::manual_seed(1);
    let x = Tensor::randn([2, 3, 4, 4], (Kind::Float, Device::Cpu));
    let _ = x.get(0).get(1).get(2).get(3).fill_(0.0); // x = 0: slope a, as PyTorch
    let x = x.set_requires_grad(true);
    let y = per_channel.forward_t(&x, true);
    y.sum(Kind::Float).backward();
    let dx = x.grad();
    let a = Tensor::from_slice(&slopes).reshape([1, 3, 1, 1]);
    let negative = x.le(0.0);
    let want_dx = a.expand_as(&x).where_self(&negative, &Tensor::ones_like(&x));
    assert!((dx - want_dx).abs().max().double_value(&[]) < 1e-7, "∂y/∂x = a for x ≤ 0, 1 for x > 0");
    let want_da = x.detach().clamp_max(0.0).sum_dim_intlist([0i64, 2, 3].as_slice(), false, Kind::Float);
    let da = per_channel.weight.grad();
    assert!((da - want_da).abs().max().double_value(&[]) < 1e-5, "∂L/∂a = Σ x over x < 0");

    // The shared slope against the bare function at its initial value.
    let x = Tensor::randn([8], (Kind::Float, Device::Cpu));
    let same = shared.forward_t(&x, false) - Activation::Prelu.apply(&x);
    assert_eq!(same.abs().max().double_value(&[]), 0.0);
}

#[test]
fn every_name_parses_and_unknown_ones_suggest() {
    for (i, &act) in Activation::ALL.iter().enumerate() {
        assert_eq!(act as usize, i);
        assert_eq!(act.name(), Activation::NAMES[i]);
        assert_eq!(act.name().parse::<Activation>().unwrap(), act);
        assert_eq!(act.name().to_uppercase().parse::<Activation>().unwrap(), act);
        assert_eq!(act.torch_name().parse::<Activation>().unwrap(), act, "{}", act.torch_name());
        assert_eq!(serde_json::to_string(&act).unwrap(), format!("\"{}\"", act.name()));
    }
    for (alias, act) in [
        ("swish", Activation::Silu),
        ("SiLU", Activation::Silu),
        ("leaky-relu", Activation::LeakyRelu),
        ("hard-sigmoid", Activation::HardSigmoid),
        ("threshold", Activation::Step),
        ("heaviside", Activation::Step),
        ("PReLU", Activation::Prelu),
        ("linear", Activation::Identity),
    ] {
        assert_eq!(alias.parse::<Activation>().unwrap(), act, "{alias}");
    }
    for (typo, hint) in [("relux", "'relu'"), ("sigmod", "'sigmoid'"), ("softmx", "'softmax'"), ("setp", "'step'")] {
        let e = typo.parse::<Activation>().unwrap_err().to_string();
        let suggested = e.split("did you mean").nth(1).and_then(|s| s.split('?').next()).unwrap_or("");
        assert!(suggested.contains(hint) && e.contains(typo), "{e}");
    }
    assert!(Activation::Prelu.has_parameters() && !Activation::Relu.has_parameters());
}

/// The notes' single-layer perceptron: step(w·x + b), trained by Rosenblatt's rule w ← w + η(y − ŷ)x.
fn perceptron(targets: [f32; 4], epochs: usize) -> (Tensor, Tensor, Vec<f32>) {
    let x = Tensor::from_slice(&[0f32, 0., 0., 1., 1., 0., 1., 1.]).reshape([4, 2]);
    let mut w = Tensor::zeros([2], (Kind::Float, Device::Cpu));
    let mut b = Tensor::zeros([], (Kind::Float, Device::Cpu));
    for _ in 0..epochs {
        for (i, &y) in targets.iter().enumerate() {
            let xi = x.get(i as i64);
            let y_hat = Activation::Step.apply(&((&w * &xi).sum(Kind::Float) + &b)).double_value(&[]);
            let err = f64::from(y) - y_hat;
            w += &xi * (0.1 * err);
            b += 0.1 * err;
        }
    }
    let out = Activation::Step.apply(&(x.matmul(&w) + &b));
    (w, b, Vec::<f32>::try_from(&out).unwrap())
}

#[test]
fn the_perceptron_learns_and_or_nand_but_not_xor() {
    for (gate, table) in [("AND", [0., 0., 0., 1.]), ("OR", [0., 1., 1., 1.]), ("NAND", [1., 1., 1., 0.])] {
        let (_, _, out) = perceptron(table, 20);
        assert_eq!(out, table, "{gate}");
    }
    // XOR is not linearly separable: no epoch count gets all four right.
    for epochs in [10, 100, 1000] {
        let (_, _, out) = perceptron([0., 1., 1., 0.], epochs);
        assert!(out.iter().zip([0., 1., 1., 0.]).any(|(a, b)| *a != b), "XOR after {epochs} epochs: {out:?}");
    }
}

#[test]
fn plotted_derivatives_are_autograd_ones() {
    let xs = grid(-4.0, 4.0, 401);
    assert_eq!(xs[200], 0.0);
    let (ys, dys) = sample(Activation::Relu, &xs).unwrap();
    assert_eq!((ys[200], dys[200], dys[201]), (0.0, 0.0, 1.0));
    let (ys, dys) = sample(Activation::Softmax, &xs).unwrap();
    for ((&x, &y), &d) in xs.iter().zip(&ys).zip(&dys) {
        assert!((y - sigmoid(x)).abs() < 1e-12 && (d - sigmoid(x) * (1.0 - sigmoid(x))).abs() < 1e-12);
    }
    let (_, dys) = sample(Activation::Step, &xs).unwrap();
    assert!(dys.iter().all(|&d| d == 0.0));
}

#[test]
fn plot_activations_writes_each_function_beside_its_derivative() {
    let dir = common::tempdir();
    let path = dir.path().join("act.png");
    plot_activations(DEFAULT, &path).unwrap();
    let img = image::open(&path).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (6 * 320, 5 * 230), "15 functions, 3 pairs a row");
    let count = |c: plotters::style::RGBColor| img.pixels().filter(|p| p.0 == [c.0, c.1, c.2]).count();
    assert!(count(tchzoo::plot::TRAIN_COLOR) > 2000 && count(tchzoo::plot::VAL_COLOR) > 2000);
    assert!(plot_activations(&[], &path).is_err());
    assert!(plot_activations(DEFAULT, &dir.path().join("act.jpg")).unwrap_err().to_string().contains(".png"));
}

#[test]
fn cli_plot_activations_and_run_curves() {
    let dir = common::tempdir();
    let png = dir.path().join("x.png");
    let out = tchzoo().args(["plot", "activations", "-o"]).arg(&png).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("wrote"));
    assert_eq!(image::open(&png).unwrap().to_rgb8().dimensions(), (1920, 1150));

    let out = tchzoo().args(["plot", "activations", "--names", "relu,step", "-o"]).arg(&png).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(image::open(&png).unwrap().to_rgb8().dimensions(), (4 * 320, 230));

    let out = tchzoo().args(["plot", "activations", "--names", "relu,sigmod", "-o"]).arg(&png).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("did you mean 'sigmoid'") && err.lines().count() == 1, "{err}");

    // A run's curves, redrawn from its history.json.
    let mut history = tchzoo::train::History::default();
    for (epoch, loss) in [0.9, 0.5, 0.3].into_iter().enumerate() {
        history.push(epoch, &[("loss".to_string(), loss)].into_iter().collect());
    }
    history.save_json(&dir.path().join("history.json")).unwrap();
    let out = tchzoo().arg("plot").arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(image::open(dir.path().join("curves.png")).is_ok());
    let out = tchzoo().args(["plot", "no/such/run"]).output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no such run folder"));
}
