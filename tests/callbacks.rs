//! Callbacks driven by scripted metric sequences, as Keras' own tests do: no training needed.
mod common;

use std::collections::BTreeMap;

use tch::{Device, Kind, Tensor};
use tchzoo::nn::VarStore;
use tchzoo::optim::{Optimizer, OptimizerConfig, OptimizerKind};
use tchzoo::train::callbacks::model_checkpoint::fill_template;
use tchzoo::train::callbacks::*;
use tchzoo::train::History;

/// A one-parameter "model" and its optimizer, enough for callbacks to read and write.
struct Rig {
    store: VarStore,
    opt: Optimizer,
    history: History,
    /// Where the callbacks' lines go (silent unless a test records them).
    output: tchzoo::report::Output,
}

impl Rig {
    fn new() -> Rig {
        let store = VarStore::new(Device::Cpu);
        let _ = store.root().sub("layer").param("weight", Tensor::zeros([3], (Kind::Float, Device::Cpu)));
        let mut c = OptimizerConfig::new(OptimizerKind::Sgd);
        c.hyper.lr = 1.0;
        let opt = Optimizer::new(c, store.parameters()).unwrap();
        Rig { store, opt, history: History::default(), output: tchzoo::report::Output::silent() }
    }
    /// A context as the trainer makes one (the chief's, with the run's output).
    fn context(&mut self) -> CallbackContext<'_> {
        let mut ctx = CallbackContext::new(&self.store, &mut self.opt, &self.history, true);
        ctx.output = self.output.clone();
        ctx
    }
    fn weight(&self) -> f64 {
        self.store.get("layer.weight").unwrap().double_value(&[0])
    }
    /// "Trains": sets the weight to `epoch`, then calls on_epoch_end with `logs`. Returns stop_training.
    fn epoch(&mut self, cb: &mut dyn Callback, epoch: usize, logs: &[(&str, f64)]) -> bool {
        let _ = tch::no_grad(|| self.store.get("layer.weight").unwrap().fill_(epoch as f64));
        let logs: BTreeMap<String, f64> = logs.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        self.history.push(epoch, &logs);
        let mut ctx = self.context();
        cb.on_epoch_end(epoch, &logs, &mut ctx).unwrap();
        ctx.apply_actions().unwrap();
        ctx.stop_training
    }
    fn begin(&mut self, cb: &mut dyn Callback) {
        let mut ctx = self.context();
        cb.on_train_begin(&mut ctx).unwrap();
        ctx.apply_actions().unwrap();
    }
    fn end(&mut self, cb: &mut dyn Callback) {
        let mut ctx = self.context();
        cb.on_train_end(&mut ctx).unwrap();
        ctx.apply_actions().unwrap();
    }
    /// Runs `values` of `monitor` through `cb`; returns the epoch at which it asked to stop.
    fn run(&mut self, cb: &mut dyn Callback, monitor: &str, values: &[f64]) -> Option<usize> {
        self.begin(cb);
        for (e, v) in values.iter().enumerate() {
            if self.epoch(cb, e, &[(monitor, *v), ("loss", 0.1)]) {
                self.end(cb);
                return Some(e);
            }
        }
        self.end(cb);
        None
    }
}

fn es(spec: &str) -> EarlyStopping {
    EarlyStopping::new(EarlyStoppingConfig::parse(spec).unwrap()).unwrap()
}

#[test]
fn early_stopping_counts_patience() {
    let mut rig = Rig::new();
    let losses = [0.5, 0.4, 0.45, 0.46, 0.47, 0.3];
    assert_eq!(rig.run(&mut es("monitor=val_loss,patience=2,verbose=false"), "val_loss", &losses), Some(3));
    assert_eq!(rig.run(&mut es("monitor=val_loss,patience=3,verbose=false"), "val_loss", &losses), Some(4));
    assert_eq!(rig.run(&mut es("monitor=val_loss,patience=4,verbose=false"), "val_loss", &losses), None);
    // patience 0: the first epoch without improvement stops (but never epoch 0).
    assert_eq!(rig.run(&mut es("monitor=val_loss,patience=0,verbose=false"), "val_loss", &[0.5, 0.6]), Some(1));
}

#[test]
fn early_stopping_min_delta_and_mode_auto() {
    let mut rig = Rig::new();
    // Improvements smaller than min_delta do not count.
    let slow = [1.0, 0.99, 0.98, 0.97];
    assert_eq!(
        rig.run(&mut es("monitor=val_loss,patience=1,min_delta=0.05,verbose=false"), "val_loss", &slow),
        Some(1)
    );
    assert_eq!(rig.run(&mut es("monitor=val_loss,patience=1,min_delta=0,verbose=false"), "val_loss", &slow), None);
    // auto: accuracy-like names are maximised.
    let acc = [0.5, 0.6, 0.55, 0.58, 0.7];
    assert_eq!(rig.run(&mut es("monitor=val_accuracy,patience=2,verbose=false"), "val_accuracy", &acc), Some(3));
    // the same numbers as a loss (minimised): epoch 0 is best, so it stops at 2.
    assert_eq!(rig.run(&mut es("monitor=val_loss,patience=2,verbose=false"), "val_loss", &acc), Some(2));
    assert_eq!(
        rig.run(&mut es("monitor=val_accuracy,mode=min,patience=2,verbose=false"), "val_accuracy", &acc),
        Some(2)
    );
}

#[test]
fn early_stopping_baseline_keeps_waiting_until_beaten() {
    let mut rig = Rig::new();
    let losses = [0.5, 0.45, 0.46, 0.47];
    // Improving but never below the baseline: the wait is never reset.
    assert_eq!(
        rig.run(&mut es("monitor=val_loss,patience=3,baseline=0.4,verbose=false"), "val_loss", &losses),
        Some(2)
    );
    assert_eq!(rig.run(&mut es("monitor=val_loss,patience=3,verbose=false"), "val_loss", &losses), None);
}

#[test]
fn early_stopping_restores_the_best_weights() {
    let mut rig = Rig::new();
    let mut cb = es("monitor=val_loss,patience=2,restore_best_weights=true,verbose=false");
    assert_eq!(rig.run(&mut cb, "val_loss", &[0.5, 0.3, 0.4, 0.45]), Some(3));
    assert_eq!(rig.weight(), 1.0, "weights of epoch 1 (the best) are back");
    assert_eq!(cb.best_epoch(), Some(1));
    let mut cb = es("monitor=val_loss,patience=2,restore_best_weights=false,verbose=false");
    rig.run(&mut cb, "val_loss", &[0.5, 0.3, 0.4, 0.45]);
    assert_eq!(rig.weight(), 3.0, "without restore the last weights stay");
}

#[test]
fn early_stopping_start_from_epoch_ignores_the_warm_up() {
    let mut rig = Rig::new();
    let losses = [0.1, 0.5, 0.6, 0.7, 0.4, 0.5, 0.6];
    // Without a warm-up, epoch 0's 0.1 is never beaten.
    assert_eq!(rig.run(&mut es("monitor=val_loss,patience=2,verbose=false"), "val_loss", &losses), Some(2));
    assert_eq!(
        rig.run(&mut es("monitor=val_loss,patience=2,start_from_epoch=3,verbose=false"), "val_loss", &losses),
        Some(6)
    );
}

#[test]
fn early_stopping_state_survives_a_resume() {
    let mut rig = Rig::new();
    let mut a = es("monitor=val_loss,patience=2,verbose=false");
    rig.begin(&mut a);
    rig.epoch(&mut a, 0, &[("val_loss", 0.5)]);
    rig.epoch(&mut a, 1, &[("val_loss", 0.6)]);
    let mut b = es("monitor=val_loss,patience=2,verbose=false");
    b.load_state(&a.state()).unwrap();
    rig.begin(&mut b);
    assert!(rig.epoch(&mut b, 2, &[("val_loss", 0.7)]), "the wait counter came back: stop at epoch 2");
}

#[test]
fn callback_options_are_checked_when_parsed() {
    let e = EarlyStoppingConfig::parse("monitor=val_loss,patiense=3").unwrap_err().to_string();
    assert!(e.contains("patiense") && e.contains("patience"), "{e}");
    assert!(EarlyStoppingConfig::parse("mode=maximum").is_err());
    assert!(EarlyStoppingConfig::parse("patience=-1").is_err());
    let e = ModelCheckpointConfig::parse("ckpt-{epoch:03d}-{val_loss:.4q}.pt").unwrap_err().to_string();
    assert!(e.contains(".4q"), "{e}");
    assert!(ModelCheckpointConfig::parse("ckpt-{epoch.pt").is_err());
    assert!(ReduceLrOnPlateauConfig::parse("factor=1.5").is_err());
}

#[test]
fn checkpoint_templates_follow_python_format() {
    let logs: BTreeMap<String, f64> = [("val_loss".to_string(), 0.123456), ("val_accuracy".to_string(), 0.9)].into();
    assert_eq!(fill_template("ckpt-{epoch:03d}-{val_loss:.4f}.pt", 6, &logs).unwrap(), "ckpt-007-0.1235.pt");
    assert_eq!(fill_template("m{epoch}_{val_accuracy:.2f}.pt", 0, &logs).unwrap(), "m1_0.90.pt");
    let e = fill_template("m-{loss:.2f}.pt", 0, &logs).unwrap_err().to_string();
    assert!(e.contains("loss") && e.contains("val_loss"), "{e}");
}

fn saved(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect();
    v.sort();
    v
}

fn mc(dir: &std::path::Path, spec: &str) -> ModelCheckpoint {
    let mut cb = ModelCheckpoint::new(ModelCheckpointConfig::parse(spec).unwrap()).unwrap();
    cb.base_dir = Some(dir.to_path_buf());
    cb
}

#[test]
fn model_checkpoint_best_only_threshold_and_frequency() {
    let acc = [0.5, 0.7, 0.6, 0.8];
    let run = |spec: &str| {
        let dir = common::tempdir();
        let mut rig = Rig::new();
        let mut cb = mc(dir.path(), spec);
        rig.run(&mut cb, "val_accuracy", &acc);
        saved(dir.path())
    };
    let t = "m-{epoch:02d}-{val_accuracy:.2f}.pt";
    assert_eq!(
        run(&format!("{t},monitor=val_accuracy,save_best_only=true,verbose=false")),
        ["m-01-0.50.pt", "m-02-0.70.pt", "m-04-0.80.pt"]
    );
    assert_eq!(
        run(&format!("{t},monitor=val_accuracy,save_best_only=true,initial_value_threshold=0.75,verbose=false")),
        ["m-04-0.80.pt"]
    );
    assert_eq!(run(&format!("{t},period=2,verbose=false")), ["m-02-0.70.pt", "m-04-0.80.pt"]);
    // mode=min on an accuracy: nothing after the first epoch is lower.
    assert_eq!(run(&format!("{t},monitor=val_accuracy,mode=min,save_best_only=true,verbose=false")), ["m-01-0.50.pt"]);
}

#[test]
fn model_checkpoint_files_load_and_skip_nan_epochs() {
    let dir = common::tempdir();
    let mut rig = Rig::new();
    let mut full = mc(dir.path(), "full.pt,monitor=val_loss,verbose=false");
    let mut weights = mc(dir.path(), "w.safetensors,save_weights_only=true,verbose=false");
    rig.begin(&mut full);
    rig.epoch(&mut full, 0, &[("val_loss", 0.5), ("loss", 0.4)]);
    rig.epoch(&mut weights, 0, &[("val_loss", 0.5), ("loss", 0.4)]);
    // A NaN epoch writes nothing: the good file from epoch 0 survives.
    rig.epoch(&mut full, 1, &[("val_loss", f64::NAN), ("loss", f64::NAN)]);
    let store = VarStore::new(Device::Cpu);
    let _ = store.root().sub("layer").param("weight", Tensor::ones([3], (Kind::Float, Device::Cpu)));
    let mut opt = Optimizer::new(OptimizerConfig::new(OptimizerKind::Sgd), store.parameters()).unwrap();
    let info = tchzoo::checkpoint::load_checkpoint(&dir.path().join("full.pt"), &store, &mut opt).unwrap();
    assert_eq!(info.epoch, Some(1));
    assert_eq!(store.get("layer.weight").unwrap().double_value(&[0]), 0.0, "epoch 0's weights, not epoch 1's");
    tchzoo::checkpoint::load_weights(&store, &dir.path().join("w.safetensors"), true).unwrap();
}

#[test]
fn reduce_lr_on_plateau_with_cooldown() {
    let mut rig = Rig::new();
    let cfg =
        ReduceLrOnPlateauConfig::parse("monitor=val_loss,patience=2,factor=0.5,cooldown=1,verbose=false").unwrap();
    let mut cb = ReduceLrOnPlateau::new(cfg).unwrap();
    rig.begin(&mut cb);
    let mut lrs = vec![];
    for (e, v) in [1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5].iter().enumerate() {
        rig.epoch(&mut cb, e, &[("val_loss", *v)]);
        lrs.push(rig.opt.lr());
    }
    assert_eq!(lrs, [1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.25]);
    let cfg = ReduceLrOnPlateauConfig::parse("patience=1,factor=0.1,min_lr=0.05,verbose=false").unwrap();
    let mut cb = ReduceLrOnPlateau::new(cfg).unwrap();
    rig.begin(&mut cb);
    for e in 0..5 {
        rig.epoch(&mut cb, e, &[("val_loss", 1.0)]);
    }
    assert_eq!(rig.opt.lr(), 0.05, "never below min_lr");
}

#[test]
fn terminate_on_nan_and_csv_logger() {
    let mut rig = Rig::new();
    let mut t = TerminateOnNaN::default();
    assert!(!rig.epoch(&mut t, 0, &[("loss", 0.3)]));
    assert!(rig.epoch(&mut t, 1, &[("loss", f64::NAN)]));
    assert!(rig.epoch(&mut t, 2, &[("loss", f64::INFINITY)]));
    let dir = common::tempdir();
    let path = dir.path().join("log.csv");
    let mut csv = CsvLogger::new(&path, false);
    rig.begin(&mut csv);
    rig.epoch(&mut csv, 0, &[("loss", 0.5), ("accuracy", 0.25)]);
    rig.epoch(&mut csv, 1, &[("loss", 0.25), ("accuracy", 0.5)]);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "epoch,accuracy,loss\n0,0.25,0.5\n1,0.5,0.25\n");
}

#[test]
fn learning_rate_scheduler_closure_and_schedules() {
    let mut rig = Rig::new();
    let mut cb = LearningRateScheduler::new(|epoch, lr| lr / (1 + epoch) as f64);
    rig.begin(&mut cb);
    let mut ctx = rig.context();
    cb.on_epoch_begin(3, &mut ctx).unwrap();
    assert_eq!(rig.opt.lr(), 0.25);
    let s = LearningRateScheduler::parse("step:step_size=2,gamma=0.5", 10).unwrap();
    assert_eq!((0..5).map(|e| s.lr_at(1.0, e)).collect::<Vec<_>>(), [1.0, 1.0, 0.5, 0.5, 0.25]);
    let s = LearningRateScheduler::parse("cosine", 10).unwrap();
    assert!((s.lr_at(1.0, 5) - 0.5).abs() < 1e-12 && s.lr_at(1.0, 10).abs() < 1e-12);
    let s = LearningRateScheduler::parse("exponential:gamma=0.9", 10).unwrap();
    assert!((s.lr_at(1.0, 2) - 0.81).abs() < 1e-12);
    assert!(LearningRateScheduler::parse("cosine:tmax=3", 10).is_err());
}

#[test]
fn model_checkpoint_asks_for_its_files_and_writes_none_itself() {
    let dir = common::tempdir();
    let mut rig = Rig::new();
    let mut cb = mc(dir.path(), "m-{epoch:02d}.pt,monitor=val_loss,save_best_only=true,save_top_k=1,verbose=false");
    rig.begin(&mut cb);
    let mut ctx = CallbackContext::new(&rig.store, &mut rig.opt, &rig.history, true);
    let loss = Tensor::from(1.0f32);
    // One optimizer step an epoch (Lightning saves at most once a step).
    let step =
        |epoch| StepInfo { epoch, batch: 0, stepped: true, last_batch: true, loss: &loss, lr: 1.0, grad_norm: None };
    cb.on_train_batch_end(&step(0), &mut ctx).unwrap();
    let logs: BTreeMap<String, f64> = [("val_loss".to_string(), 0.5), ("loss".to_string(), 0.4)].into();
    cb.on_epoch_end(0, &logs, &mut ctx).unwrap();
    let first = dir.path().join("m-01.pt");
    assert_eq!(ctx.actions, [Action::Save { path: first.clone(), what: Saved::Checkpoint { epoch: 1, loss: 0.4 } }]);
    assert!(saved(dir.path()).is_empty(), "the callback wrote a file itself");
    ctx.apply_actions().unwrap();
    assert_eq!(saved(dir.path()), ["m-01.pt"]);
    // A better epoch: the new file is saved and the previous top-1 removed, in that order.
    let logs: BTreeMap<String, f64> = [("val_loss".to_string(), 0.3), ("loss".to_string(), 0.2)].into();
    cb.on_train_batch_end(&step(1), &mut ctx).unwrap();
    cb.on_epoch_end(1, &logs, &mut ctx).unwrap();
    let second = dir.path().join("m-02.pt");
    assert_eq!(
        ctx.actions,
        [
            Action::Save { path: second, what: Saved::Checkpoint { epoch: 2, loss: 0.2 } },
            Action::Remove { path: first }
        ]
    );
    assert_eq!(saved(dir.path()), ["m-01.pt"]);
    // A process that is not the chief writes nothing.
    ctx.is_chief = false;
    ctx.apply_actions().unwrap();
    assert!(ctx.actions.is_empty());
    assert_eq!(saved(dir.path()), ["m-01.pt"]);
}

#[test]
fn curve_marks_come_from_the_callbacks_state() {
    let mut rig = Rig::new();
    let mut stop = es("monitor=val_accuracy,patience=1,verbose=false");
    assert_eq!(rig.run(&mut stop, "val_accuracy", &[0.5, 0.4, 0.3]), Some(1));
    let ckpt = ModelCheckpoint::new(ModelCheckpointConfig::parse("b.pt,monitor=val_loss,save_best_only=true").unwrap());
    let every = ModelCheckpoint::new(ModelCheckpointConfig::parse("e.pt,monitor=loss").unwrap());
    let fallback = ("loss".to_string(), false);
    // Early stopping's monitor wins over a best-only checkpoint's whatever the order; its stopped epoch is marked.
    let all: Vec<Box<dyn Callback>> = vec![Box::new(ckpt.unwrap()), Box::new(stop)];
    let marks = curve_marks(&all, fallback.clone());
    assert_eq!(marks.monitor, Some(("val_accuracy".to_string(), true)));
    assert_eq!(marks.stopped_epoch, Some(1));
    // Without early stopping, the best-only checkpoint's; a checkpoint of every epoch marks nothing.
    let all: Vec<Box<dyn Callback>> = vec![Box::new(every.unwrap()), all.into_iter().next().unwrap()];
    let marks = curve_marks(&all, fallback.clone());
    assert_eq!((marks.monitor, marks.stopped_epoch), (Some(("val_loss".to_string(), false)), None));
    assert_eq!(curve_marks(&all[..1], fallback.clone()).monitor, Some(fallback));
    assert_eq!(state_key(3, all[0].as_ref()), "3.model_checkpoint");
}

/// A callback's Keras-style lines are messages to the run's output, said in order with its files, only when its
/// `verbose` is on; a silent output (`-q`) drops them.
#[test]
fn callbacks_say_their_lines_through_the_output() {
    use std::sync::Arc;
    use tchzoo::report::{Message, Output, Recorder, Verbosity};
    let said = |verbose: bool, verbosity: Verbosity| {
        let recorder = Arc::new(Recorder::default());
        let mut rig = Rig::new();
        rig.output = Output::new(verbosity, recorder.clone());
        let config = EarlyStoppingConfig { patience: 1, verbose, ..EarlyStoppingConfig::default() };
        let mut cb = EarlyStopping::new(config).unwrap();
        let stopped = rig.run(&mut cb, "val_loss", &[1.0, 2.0, 3.0]);
        (stopped, recorder.messages())
    };
    let (stopped, lines) = said(true, Verbosity::Lines);
    assert_eq!(stopped, Some(1));
    assert_eq!(lines, [Message::Callback("Epoch 00002: early stopping".into())]);
    assert_eq!(said(false, Verbosity::Lines).1, []);
    assert_eq!(said(true, Verbosity::Silent).1, []);
    // A quiet output keeps the warnings only.
    let recorder = Arc::new(Recorder::default());
    let quiet = Output::new(Verbosity::Silent, recorder.clone());
    quiet.say(Message::Note("loaded".into()));
    quiet.say(Message::SkippedImages { count: 2, first: "a.jpg".into() });
    assert_eq!(recorder.messages(), [Message::SkippedImages { count: 2, first: "a.jpg".into() }]);
}

/// The progress within an epoch is a message too (the CLI draws its bar from them): sent only to a reporter that
/// shows it, at `Auto`; the batches done count up to the epoch's, the running loss is finite, the epoch line
/// follows; an epoch left by an error is said to be abandoned. The library draws nothing itself.
#[test]
fn progress_within_an_epoch_goes_to_a_reporter_that_wants_it() {
    use std::sync::Arc;
    use tchzoo::report::{Message, Output, Recorder, Verbosity};
    /// Fails in the second epoch's third batch.
    struct FailAt(usize);
    impl Callback for FailAt {
        fn on_epoch_begin(&mut self, epoch: usize, _ctx: &mut CallbackContext) -> tchzoo::Result<()> {
            self.0 = epoch;
            Ok(())
        }
        fn on_batch_end(&mut self, batch: usize, _ctx: &mut CallbackContext) -> tchzoo::Result<()> {
            if self.0 == 1 && batch == 2 {
                return Err(tchzoo::Error::invalid("failed on purpose"));
            }
            Ok(())
        }
    }
    let dir = common::tempdir();
    let run = |recorder: Recorder, verbosity: Verbosity, name: &str, fail: bool| {
        let recorder = Arc::new(recorder);
        let config = tchzoo::config::RunConfig {
            model: "mlp:hidden=8".into(),
            data: "moons:n_samples=200".into(),
            epochs: 2,
            batch_size: 16,
            threads: Some(1),
            out: Some(dir.path().join(name).display().to_string()),
            ..Default::default()
        };
        let callbacks: Vec<Box<dyn Callback>> = if fail { vec![Box::new(FailAt(0))] } else { vec![] };
        let result = tchzoo::run::train(&config, Output::new(verbosity, recorder.clone()), callbacks);
        assert_eq!(result.is_err(), fail);
        recorder.messages()
    };
    let is_progress =
        |m: &Message| matches!(m, Message::EpochBegin { .. } | Message::Batch { .. } | Message::EpochAbandoned);

    let said = run(Recorder::with_progress(), Verbosity::Auto, "bar", false);
    let epochs: Vec<usize> =
        said.iter().enumerate().filter(|(_, m)| matches!(m, Message::Epoch(_))).map(|(i, _)| i).collect();
    assert_eq!(epochs.len(), 2, "{said:#?}");
    let Some(Message::EpochBegin { epoch: 0, epochs: 2, batches }) = said.iter().find(|m| is_progress(m)).cloned()
    else {
        panic!("no EpochBegin first: {said:#?}")
    };
    // 160 training samples (a fifth validates) in batches of 16.
    assert_eq!(batches, 10);
    let first_epoch: Vec<&Message> = said[..epochs[0]].iter().filter(|m| matches!(m, Message::Batch { .. })).collect();
    assert!(!first_epoch.is_empty(), "{said:#?}");
    let mut last = 0;
    for m in first_epoch {
        let Message::Batch { done, loss, lr, .. } = m else { unreachable!() };
        assert!(*done > last && *done <= batches && loss.is_finite() && lr.is_some(), "{m:?}");
        last = *done;
    }
    assert!(said[epochs[0] + 1..].iter().any(|m| matches!(m, Message::EpochBegin { epoch: 1, .. })), "{said:#?}");
    assert!(!said.iter().any(|m| matches!(m, Message::EpochAbandoned)), "{said:#?}");

    // A reporter that does not show progress, or a run at `Lines`, gets the epoch lines only.
    for (recorder, verbosity, name) in
        [(Recorder::default(), Verbosity::Auto, "plain"), (Recorder::with_progress(), Verbosity::Lines, "lines")]
    {
        let said = run(recorder, verbosity, name, false);
        assert!(!said.iter().any(is_progress), "{said:#?}");
        assert_eq!(said.iter().filter(|m| matches!(m, Message::Epoch(_))).count(), 2, "{said:#?}");
    }

    // An epoch left by an error is abandoned once, after its beginning, and no epoch line follows it.
    let said = run(Recorder::with_progress(), Verbosity::Auto, "failed", true);
    let begun = said.iter().rposition(|m| matches!(m, Message::EpochBegin { epoch: 1, .. })).expect("second epoch");
    assert_eq!(said.iter().filter(|m| matches!(m, Message::EpochAbandoned)).count(), 1, "{said:#?}");
    assert_eq!(said.last(), Some(&Message::EpochAbandoned), "{said:#?}");
    assert!(said[begun..].iter().all(|m| !matches!(m, Message::Epoch(_))), "{said:#?}");
}
