//! Mixed precision against PyTorch's own on the CPU: LeNet-5 trained for a few SGD steps under autocast to
//! bfloat16, and to float16 with the gradient scaler (also from a scale so large that the first steps overflow and
//! are skipped), from the same weights and batches as `torch.autocast` + `torch.amp.GradScaler`
//! (scripts/fixtures/amp_step.py); channels-last gives the same outputs as the default layout.
mod common;

use tch::{Device, Kind, Tensor};
use tchzoo::config::RunConfig;
use tchzoo::optim::HyperConfig;
use tchzoo::train::amp::{GradScaler, Precision};

const STEPS: i64 = 6;
const BATCH: i64 = 32;

fn trainer(precision: Precision) -> (tchzoo::train::Trainer, Tensor, Tensor) {
    let config = RunConfig {
        model: "lenet5".into(),
        data: "digits".into(),
        validation_split: None,
        augment: None,
        lr_schedule: None,
        optimizer: tchzoo::optim::OptimizerKind::Sgd,
        hyper: HyperConfig { lr: Some(0.05), momentum: 0.9, ..Default::default() },
        device: "cpu".into(),
        precision,
        ..RunConfig::default()
    };
    let p = tchzoo::run::prepare(&config).unwrap();
    let xs = p.train.xs.narrow(0, 0, STEPS * BATCH).reshape([STEPS, BATCH, 1, 32, 32]);
    let ys = p.train.ys.narrow(0, 0, STEPS * BATCH).reshape([STEPS, BATCH]);
    (p.trainer, xs, ys)
}

/// Trains `STEPS` batches here and in PyTorch; returns (max relative weight gap, max loss gap, our scales,
/// PyTorch's scales).
fn compare(precision: Precision, init_scale: Option<f64>) -> (f64, f64, Vec<f64>, Vec<f64>) {
    let (mut t, xs, ys) = trainer(precision);
    if let Some(s) = init_scale {
        t.scaler = Some(GradScaler::new(Device::Cpu, s));
    }
    let dir = common::tempdir();
    let (inp, out) = (dir.path().join("in.safetensors"), dir.path().join("out.safetensors"));
    let mut tensors: Vec<(String, Tensor)> =
        t.store.state_dict().into_iter().map(|(k, v)| (format!("w.{k}"), v.detach().copy())).collect();
    tensors.push(("xs".into(), xs.copy()));
    tensors.push(("ys".into(), ys.copy()));
    tchzoo::checkpoint::write_state_dict(&inp, &tensors).unwrap();
    let (mut losses, mut scales) = (vec![], vec![]);
    for k in 0..STEPS {
        let logs = t.train_on_batch(&xs.get(k), &ys.get(k)).unwrap();
        losses.push(logs["loss"]);
        if let Some(s) = &t.scaler {
            scales.push(s.state().scale);
        }
    }
    let name = match precision {
        Precision::Bf16 => "bf16",
        _ => "fp16",
    };
    let init = init_scale.unwrap_or(65536.0).to_string();
    let script = common::root().join("scripts/fixtures/amp_step.py");
    let o = std::process::Command::new(common::python())
        .args([script.to_str().unwrap(), inp.to_str().unwrap(), name, &init, out.to_str().unwrap()])
        .env("OMP_NUM_THREADS", "1")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let expected = common::read_safetensors(&out);
    let mut gap: f64 = 0.0;
    for (k, v) in t.store.state_dict() {
        gap = gap.max(common::rel_diff(&v, &expected[&format!("w.{k}")]));
    }
    let py_losses = Vec::<f64>::try_from(&expected["losses"]).unwrap();
    let loss_gap = losses.iter().zip(&py_losses).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    let py_scales = Vec::<f64>::try_from(&expected["scales"]).unwrap();
    (gap, loss_gap, scales, py_scales)
}

#[test]
fn bf16_autocast_trains_as_pytorch() {
    let (gap, loss_gap, _, _) = compare(Precision::Bf16, None);
    println!("bf16, {STEPS} SGD steps: weights max rel gap {gap:.2e}, losses max gap {loss_gap:.2e}");
    assert!(gap <= 2e-3 && loss_gap <= 2e-3, "bf16: weights {gap:e}, losses {loss_gap:e}");
}

#[test]
fn fp16_with_the_gradient_scaler_trains_as_pytorch() {
    let (gap, loss_gap, scales, py) = compare(Precision::Fp16, None);
    println!("fp16, {STEPS} steps from scale 2^16: weights {gap:.2e}, losses {loss_gap:.2e}, scales {scales:?}");
    assert_eq!(scales, py, "the scale after every step");
    assert!(gap <= 2e-3 && loss_gap <= 2e-3, "fp16: weights {gap:e}, losses {loss_gap:e}");
    // From 2^20 a float16 gradient overflows: that step is skipped and the scale halves, as PyTorch's.
    let (gap, loss_gap, scales, py) = compare(Precision::Fp16, Some(2f64.powi(20)));
    println!("fp16 from scale 2^20: scales {scales:?}; weights {gap:.2e}, losses {loss_gap:.2e}");
    assert_eq!(scales, py, "skipped steps and backoff");
    assert!(scales.windows(2).any(|w| w[1] < w[0]), "a step overflowed, was skipped and the scale halved");
    assert!(scales.windows(2).any(|w| w[1] == w[0]), "the other steps were taken");
    assert!(gap <= 2e-3 && loss_gap <= 2e-3);
}

#[test]
fn channels_last_changes_the_layout_not_the_numbers() {
    let (mut a, xs, ys) = trainer(Precision::Fp32);
    let (mut b, _, _) = trainer(Precision::Fp32);
    b.store.load_state_dict(&a.store.state_dict(), true, "a").unwrap();
    b.set_channels_last().unwrap();
    let w = b.store.get("features.3.weight").unwrap();
    assert_eq!(w.stride()[1], 1, "conv weights are NHWC in memory (stride of C is 1): {:?}", w.stride());
    for k in 0..2 {
        a.train_on_batch(&xs.get(k), &ys.get(k)).unwrap();
        b.train_on_batch(&xs.get(k), &ys.get(k)).unwrap();
    }
    let ya = a.predict(&xs.get(2), BATCH as usize);
    let yb = b.predict(&xs.get(2), BATCH as usize);
    let gap = common::rel_diff(&yb, &ya);
    println!("channels-last vs contiguous after 2 steps: logits rel gap {gap:.2e}");
    assert!(gap <= 1e-4, "{gap:e}");
    assert_eq!(ya.kind(), Kind::Float);
}

#[test]
fn the_loss_scale_survives_a_resume() {
    use tchzoo::train::progress::Verbosity;
    let dir = common::tempdir();
    let config = RunConfig {
        model: "mlp".into(),
        data: "moons:n_samples=400".into(),
        epochs: 4,
        batch_size: 32,
        augment: None,
        device: "cpu".into(),
        precision: Precision::Fp16,
        out: Some(dir.path().join("run").display().to_string()),
        ..RunConfig::default()
    };
    let run = dir.path().join("run");
    let err = tchzoo::run::train(&config, Verbosity::Silent, vec![Box::new(common::StopAt(1))]).unwrap_err();
    assert!(matches!(err, tchzoo::Error::Interrupted(_)), "{err}");
    let saved = tchzoo::train::resume::read(&run).unwrap().grad_scaler.expect("the scaler's state is saved");
    // 320 training samples, batch 32: 10 good steps an epoch, counted towards the next doubling.
    assert_eq!((saved.scale, saved.growth_tracker), (65536.0, 20));
    tchzoo::run::resume(&run, Verbosity::Silent, vec![]).unwrap();
    let end = tchzoo::train::resume::read(&run).unwrap().grad_scaler.unwrap();
    assert_eq!(end.growth_tracker, 40, "the count continued from the saved state");
}

/// Autocast is on inside `autocast` and off again after it, also when the closure panics (the RAII guard), so a
/// panicking step cannot leave later float32 work running in bfloat16.
#[test]
fn autocast_is_switched_off_after_a_panic() {
    use tchzoo::train::amp::{autocast, autocast_enabled};
    assert!(!autocast_enabled(Device::Cpu));
    let inside = autocast(Precision::Bf16, Device::Cpu, || autocast_enabled(Device::Cpu)).unwrap();
    assert!(inside, "autocast was not on inside the region");
    assert!(!autocast_enabled(Device::Cpu), "autocast still on after a region that returned");
    let panicked =
        std::panic::catch_unwind(|| autocast::<()>(Precision::Bf16, Device::Cpu, || panic!("a step that fails")));
    assert!(panicked.is_err());
    assert!(!autocast_enabled(Device::Cpu), "autocast still on after a region that panicked");
    let ys = tch::no_grad(|| {
        Tensor::ones([2, 2], (Kind::Float, Device::Cpu)).matmul(&Tensor::ones([2, 2], (Kind::Float, Device::Cpu)))
    });
    assert_eq!(ys.kind(), Kind::Float, "a float32 matmul after the panic ran under autocast");
}
