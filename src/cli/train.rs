//! `tchzoo train`: flags on top of `--config run.json` on top of the defaults.
use std::path::PathBuf;

use clap::Args;

use crate::config::RunConfig;
use crate::error::{Error, Result};
use crate::train::progress::Verbosity;

#[derive(Debug, Args, Default)]
pub struct TrainArgs {
    /// A JSON run config; flags given here override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Model name with options, e.g. lenet5, mlp:hidden=64x64 (`tchzoo models` lists them).
    #[arg(long)]
    pub model: Option<String>,
    /// The activation of models that have an activation knob (relu, prelu, tanh, gelu, silu, …); same as the
    /// model option `activation=NAME`.
    #[arg(long)]
    pub activation: Option<String>,
    /// Data: digits, moons[:n_samples=..,noise=..], circles, blobs, xor, or a file/folder (IDX, CIFAR-10, CSV, NPY/NPZ, images).
    #[arg(long)]
    pub data: Option<String>,
    /// Explicit validation data (a data spec as --data).
    #[arg(long, alias = "validation_data")]
    pub validation_data: Option<String>,
    /// Hold out a fraction for validation [default: 0.2]: the last fraction (before shuffling) of data held in memory,
    /// as Keras; a seeded draw, stratified by class, from an image folder.
    #[arg(long, alias = "validation_split", allow_negative_numbers = true)]
    pub validation_split: Option<f64>,
    /// Train without validation data.
    #[arg(long, alias = "no_validation")]
    pub no_validation: bool,
    /// Epochs to train [default: 50].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Samples per batch [default: 32].
    #[arg(long, alias = "batch_size")]
    pub batch_size: Option<usize>,
    // A string parsed in `resolve`, so that a bad name fails in one line like every other config error.
    /// sgd, adam, adamw or rmsprop [default: adam].
    #[arg(long)]
    pub optimizer: Option<String>,
    // --lr, --momentum, … (`optim::hyper`).
    #[command(flatten)]
    pub hyper: crate::optim::HyperArgs,
    /// auto, cross_entropy, binary_crossentropy or mse.
    #[arg(long)]
    pub loss: Option<String>,
    /// Comma-separated: accuracy, top5_accuracy, mse, mae.
    #[arg(long, value_delimiter = ',')]
    pub metrics: Option<Vec<String>>,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long)]
    pub device: Option<String>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Do not shuffle the training data between epochs.
    #[arg(long, alias = "no_shuffle")]
    pub no_shuffle: bool,
    /// The run folder [default: runs/<model>-<data>-<time>].
    #[arg(long)]
    pub out: Option<String>,
    /// Intra-op CPU threads.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Initial weights (a state dict file) to load before training.
    #[arg(long)]
    pub weights: Option<String>,
    /// Learning-rate schedule: cosine, step:step_size=10,gamma=0.1, exponential:gamma=0.95, or none [default: none].
    #[arg(long, alias = "lr_schedule")]
    pub lr_schedule: Option<String>,
    /// EarlyStopping, e.g. monitor=val_loss,patience=200,min_delta=0,mode=min,baseline=0.4,restore_best_weights=true.
    #[arg(long, alias = "early_stopping")]
    pub early_stopping: Option<String>,
    /// ModelCheckpoint: path-template[,monitor=…,mode=…,save_best_only=true,save_weights_only=true,save_freq=N,
    /// save_top_k=K,save_last=true,every_n_train_steps=N,train_time_interval=MIN]
    /// (e.g. "ckpt-{epoch:03d}-{val_loss:.4f}.pt"; a relative path is inside the run folder).
    #[arg(long)]
    pub checkpoint: Option<String>,
    /// ReduceLROnPlateau, e.g. monitor=val_loss,factor=0.5,patience=5,cooldown=0,min_lr=1e-5.
    #[arg(long, alias = "reduce_lr_on_plateau")]
    pub reduce_lr_on_plateau: Option<String>,
    /// CSVLogger: write one row per epoch to this file (relative = inside the run folder).
    #[arg(long, alias = "csv_logger")]
    pub csv_logger: Option<String>,
    /// Keep training when the loss becomes NaN (TerminateOnNaN is on by default).
    #[arg(long, alias = "no_terminate_on_nan")]
    pub no_terminate_on_nan: bool,
    /// Continue the run in this folder from its last completed epoch (the run's config.json is used and other
    /// flags are ignored, but --epochs N continues a run, finished or not, to N epochs in all).
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Image augmentation during training: affine[:rotate=10,scale=0.1,shift=0.1], crop_flip[:pad=4,flip=true]
    /// (CIFAR's), or none [default: affine for image data, none for other data].
    #[arg(long)]
    pub augment: Option<String>,
    /// With --weights: `false` loads only the tensors whose names and shapes match (transfer learning).
    #[arg(long)]
    pub strict: Option<bool>,
    /// Transfer learning: load this state dict non-strictly (a classifier of another size is dropped) and report
    /// what was loaded, skipped and left new.
    #[arg(long)]
    pub pretrained: Option<String>,
    /// Keep parameters out of training (their BatchNorm in eval mode): `features` (all but the classifier) or
    /// comma-separated name prefixes, e.g. conv1,layer1.
    #[arg(long)]
    pub freeze: Option<String>,
    /// Train the frozen parameters too from this epoch on (1-based): two-stage fine-tuning.
    #[arg(long, alias = "unfreeze_at")]
    pub unfreeze_at: Option<usize>,
    /// channel_boost: the registered model whose feature maps are the auxiliary channels (frozen), e.g. resnet18.
    #[arg(long)]
    pub booster: Option<String>,
    /// channel_boost: the booster's pretrained weights (a state dict, loaded strictly).
    #[arg(long, alias = "booster_weights")]
    pub booster_weights: Option<String>,
    /// Print only the final summary line.
    #[arg(long, short)]
    pub quiet: bool,
    /// Data-parallel training: join the process group that torchrun's (RANK, WORLD_SIZE, MASTER_ADDR, …) or
    /// Slurm's (SLURM_PROCID, SLURM_NTASKS, …) variables describe; each rank trains on its shard of every epoch.
    #[arg(long)]
    pub distributed: bool,
    /// The process group's backend: auto (NCCL for CUDA, Gloo for the CPU), gloo or nccl.
    #[arg(long, alias = "dist_backend", default_value = "auto")]
    pub dist_backend: String,
    /// Seconds to wait for the other ranks (joining, and every collective) before failing.
    #[arg(long, alias = "dist_timeout", default_value_t = 300)]
    pub dist_timeout: u64,
    /// Synchronised batch normalisation over the ranks (PyTorch's SyncBatchNorm).
    #[arg(long, alias = "sync_bn")]
    pub sync_bn: bool,
    /// Mixed precision: fp32, bf16 (autocast to bfloat16) or fp16 (autocast to float16 with a gradient scaler).
    #[arg(long)]
    pub precision: Option<String>,
    /// Weights and inputs in channels-last memory format.
    #[arg(long, alias = "channels_last")]
    pub channels_last: bool,
    /// Capture each full training step (forward, loss, backward, SGD step) as one CUDA graph and replay it; CUDA
    /// only, --optimizer sgd, fp32 or bf16.
    #[arg(long)]
    pub cuda_graph: bool,
    /// Check after every step that all ranks hold the same parameters (costs an all-reduce of them a step).
    #[arg(long, alias = "dist_check")]
    pub dist_check: bool,
    /// Image folders: threads that decode and transform images [default: the number of cores].
    #[arg(long, short = 'j')]
    pub workers: Option<usize>,
    /// Image folders: batches in flight per worker [default: 2].
    #[arg(long)]
    pub prefetch: Option<usize>,
    /// Image folders: RandomResizedCrop's side for training [default: the model's input size].
    #[arg(long)]
    pub train_crop_size: Option<u32>,
    /// Image folders: the shorter side after Resize for evaluation [default: ⌊crop / 0.875⌋ or the model's].
    #[arg(long)]
    pub val_resize_size: Option<u32>,
    /// Image folders: the CenterCrop's side for evaluation [default: the training crop].
    #[arg(long)]
    pub val_crop_size: Option<u32>,
    /// Image folders: bilinear or bicubic [default: the model's].
    #[arg(long)]
    pub interpolation: Option<String>,
    /// Image folders: skip (and count) images that do not decode instead of stopping.
    #[arg(long)]
    pub skip_bad_images: bool,
    /// Cross-entropy's label smoothing, as nn.CrossEntropyLoss(label_smoothing=...).
    #[arg(long)]
    pub label_smoothing: Option<f64>,
    // Trainer features with Lightning's names (issue #17).
    /// Clip the gradients' global norm before every step: MAX[,norm_type=2|inf] (torch's clip_grad_norm_).
    #[arg(long, allow_negative_numbers = true)]
    pub clip_grad_norm: Option<String>,
    /// Clamp every gradient element to [-V, V] before every step (torch's clip_grad_value_).
    #[arg(long, allow_negative_numbers = true)]
    pub clip_grad_value: Option<f64>,
    /// One optimizer step every K batches, the loss divided by K.
    #[arg(long)]
    pub accumulate_grad_batches: Option<usize>,
    /// Moving average of the weights: decay=0.999[,warmup=true][,use_buffers=true]; validation uses it.
    #[arg(long)]
    pub ema: Option<String>,
    /// Stop training after this time: HH:MM:SS or DD:HH:MM:SS.
    #[arg(long)]
    pub max_time: Option<String>,
    /// Training batches per epoch: an integer (batches) or a float (fraction).
    #[arg(long, allow_negative_numbers = true)]
    pub limit_train_batches: Option<String>,
    /// Validation batches per evaluation: an integer (batches) or a float (fraction); 0 = no validation.
    #[arg(long, allow_negative_numbers = true)]
    pub limit_val_batches: Option<String>,
    /// A smoke test: N (default 1) training and validation batches, one epoch, no checkpoints or loggers.
    #[arg(long, num_args = 0..=1, default_missing_value = "1")]
    pub fast_dev_run: Option<usize>,
    /// Train (unshuffled) and validate on the first batches only: an integer (batches) or a float (fraction).
    #[arg(long, allow_negative_numbers = true)]
    pub overfit_batches: Option<String>,
    /// torch.use_deterministic_algorithms(True) and cuDNN's deterministic mode (an op without a deterministic
    /// kernel is an error).
    #[arg(long)]
    pub deterministic: bool,
    /// cuDNN's benchmark mode (torch.backends.cudnn.benchmark = True).
    #[arg(long)]
    pub cudnn_benchmark: bool,
    /// single (torch.optim's single-tensor loop), foreach (foreach=True: SGD, Adam, AdamW) or fused (fused=True:
    /// SGD, Adam, AdamW); default: PyTorch's for the device (single on the CPU, foreach on CUDA).
    #[arg(long)]
    pub optimizer_impl: Option<String>,
    /// Batch-level MixUp with λ ~ Beta(A, A), as torchvision's v2.MixUp (image classification data).
    #[arg(long, allow_negative_numbers = true)]
    pub mixup_alpha: Option<f64>,
    /// Batch-level CutMix with λ ~ Beta(A, A), as torchvision's v2.CutMix; with --mixup-alpha, one of the two per
    /// batch.
    #[arg(long, allow_negative_numbers = true)]
    pub cutmix_alpha: Option<f64>,
    /// Image folders: RandomErasing(p=P) after Normalize, as torchvision's reference presets [default: 0].
    #[arg(long, allow_negative_numbers = true)]
    pub random_erase: Option<f64>,
    /// Image folders: ta_wide (TrivialAugmentWide), ra (RandAugment, 2 ops, magnitude 9) or augmix (AugMix: 3
    /// chains of 1-3 ops, severity 3, alpha 1) after the crop and flip.
    #[arg(long)]
    pub auto_augment: Option<String>,
    /// Write TensorBoard event files into DIR [default: RUN/tensorboard; relative = inside the run folder].
    #[arg(long, value_name = "DIR", num_args = 0..=1, default_missing_value = crate::train::loggers::TENSORBOARD_DIR)]
    pub tensorboard: Option<String>,
    /// With --tensorboard: histograms of the weights every N epochs.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub tb_histograms: Option<i64>,
    /// A line of RUN/steps.jsonl (epoch, step, loss, lr, grad_norm, wall_time) every N optimizer steps.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub log_every_n_steps: Option<i64>,
    /// No weight decay on biases and normalisation weights (timm's rule: ndim ≤ 1 or a name ending in .bias).
    #[arg(long)]
    pub no_decay_norm_bias: bool,
    /// Layer-wise lr multipliers by parameter-name prefix, e.g. classifier=10,layer4=2 (classifier = the model's
    /// head, whatever it is called); each distinct combination is a torch.optim param group.
    #[arg(long)]
    pub lr_mult: Option<String>,
    /// Stochastic weight averaging: start=E,lr=LR[,anneal_epochs=10][,anneal_strategy=cos|linear] (E counted from
    /// 1); model.pt holds the averaged weights after update_bn.
    #[arg(long)]
    pub swa: Option<String>,
    /// Image folders and shards: decode a JPEG at 1/2, 1/4 or 1/8 of its size when the crop it gives is at least
    /// that much larger than the output (DCT-domain downscaling, as DALI and FFCV do); off = torchvision's full
    /// decode, bit for bit [default: off; faster only for images several times the crop, see the README].
    #[arg(long, value_name = "on|off")]
    pub decode_scaling: Option<String>,
}

impl TrainArgs {
    /// The defaults, then the config file, then the flags.
    pub fn resolve(&self) -> Result<RunConfig> {
        let mut c = match &self.config {
            Some(p) => RunConfig::from_user_file(p)?,
            None => RunConfig::default(),
        };
        macro_rules! set {
            ($field:ident) => {
                if let Some(v) = &self.$field {
                    c.$field = v.clone();
                }
            };
            ($field:ident, opt) => {
                if let Some(v) = &self.$field {
                    c.$field = Some(v.clone());
                }
            };
        }
        set!(model);
        if let Some(act) = &self.activation {
            c.model = crate::models::diagram::with_activation(&c.model, act)?;
        }
        set!(data);
        set!(validation_data, opt);
        set!(validation_split, opt);
        set!(epochs);
        set!(batch_size);
        if let Some(v) = &self.hyper.lr {
            crate::train::lr_find::set_lr_flag(&mut c, v)?;
        }
        if let Some(name) = &self.optimizer {
            c.optimizer = crate::optim::parse_kind(name)?;
        }
        self.hyper.apply(&mut c.hyper);
        set!(loss);
        set!(metrics);
        set!(device);
        set!(seed);
        set!(out, opt);
        set!(threads, opt);
        set!(weights, opt);
        set!(augment, opt);
        set!(early_stopping, opt);
        set!(strict);
        set!(checkpoint, opt);
        set!(reduce_lr_on_plateau, opt);
        set!(csv_logger, opt);
        set!(pretrained, opt);
        set!(freeze, opt);
        set!(unfreeze_at, opt);
        set!(booster, opt);
        set!(booster_weights, opt);
        set!(workers, opt);
        set!(prefetch, opt);
        set!(train_crop_size, opt);
        set!(val_resize_size, opt);
        set!(val_crop_size, opt);
        set!(interpolation, opt);
        set!(label_smoothing);
        c.skip_bad_images |= self.skip_bad_images;
        // ReduceLROnPlateau owns the learning rate: a schedule from a config file gives way unless one is asked for.
        if self.reduce_lr_on_plateau.is_some() && self.lr_schedule.is_none() {
            c.lr_schedule = None;
        }
        if self.no_terminate_on_nan {
            c.terminate_on_nan = false;
        }
        set!(lr_schedule, opt);
        for field in [&mut c.augment, &mut c.lr_schedule] {
            if field.as_deref() == Some("none") {
                *field = None;
            }
        }
        c.sync_bn |= self.sync_bn;
        c.channels_last |= self.channels_last;
        c.cuda_graph |= self.cuda_graph;
        if let Some(p) = &self.precision {
            c.precision = crate::train::amp::Precision::parse(p)?;
        }
        if self.no_shuffle {
            c.shuffle = false;
        }
        set!(clip_grad_norm, opt);
        set!(clip_grad_value, opt);
        set!(accumulate_grad_batches);
        set!(ema, opt);
        set!(max_time, opt);
        set!(fast_dev_run, opt);
        c.deterministic |= self.deterministic;
        c.cudnn_benchmark |= self.cudnn_benchmark;
        if let Some(i) = &self.optimizer_impl {
            c.optimizer_impl = Some(crate::optim::OptimizerImpl::parse(i)?);
        }
        c.no_decay_norm_bias |= self.no_decay_norm_bias;
        if let Some(m) = &self.lr_mult {
            c.lr_mult = Some(m.clone());
        }
        set!(tensorboard, opt);
        for (flag, v, field) in [
            ("tb-histograms", self.tb_histograms, &mut c.tb_histograms),
            ("log-every-n-steps", self.log_every_n_steps, &mut c.log_every_n_steps),
        ] {
            if let Some(n) = v {
                *field = Some(crate::train::loggers::positive(flag, n)?);
            }
        }
        use crate::train::features::Limit;
        for (flag, text, field) in [
            ("limit-train-batches", &self.limit_train_batches, &mut c.limit_train_batches),
            ("limit-val-batches", &self.limit_val_batches, &mut c.limit_val_batches),
            ("overfit-batches", &self.overfit_batches, &mut c.overfit_batches),
        ] {
            if let Some(t) = text {
                *field = Some(Limit::parse(t, flag)?);
            }
        }
        set!(mixup_alpha, opt);
        set!(cutmix_alpha, opt);
        set!(random_erase);
        set!(auto_augment, opt);
        if c.auto_augment.as_deref() == Some("none") {
            c.auto_augment = None;
        }
        if let Some(v) = &self.decode_scaling {
            c.decode_scaling = Some(match v.trim() {
                "on" => true,
                "off" => false,
                other => return Err(Error::config(format!("--decode-scaling {other}: give on or off"))),
            });
        }
        if self.no_validation {
            c.validation_split = None;
            c.validation_data = None;
        }
        set!(swa, opt);
        Ok(c)
    }
}

pub fn run(args: TrainArgs) -> Result<()> {
    let verbosity = if args.quiet { Verbosity::Silent } else { Verbosity::Auto };
    let start = match &args.resume {
        Some(dir) => crate::run::Start::Resume { dir: dir.clone(), epochs: args.epochs },
        None => crate::run::Start::New(Box::new(args.resolve()?)),
    };
    let dist = if args.distributed {
        Some(crate::run::DistOptions {
            backend: args.dist_backend.clone(),
            timeout_s: args.dist_timeout,
            check: args.dist_check,
        })
    } else if args.sync_bn || args.dist_check {
        return Err(crate::error::Error::config("--sync-bn and --dist-check are for a --distributed run"));
    } else {
        None
    };
    super::install_signal_handler();
    let weights = args.weights.clone();
    let (outcome, chief) = crate::run::launch(start, super::output::printer(verbosity), dist).map_err(|e| match e {
        // The library reports what did not match; the flag that loads only what does is the CLI's to name (not for
        // a file that does not read at all: loading less of it would not help).
        crate::error::Error::Checkpoint { path, msg }
            if weights.as_deref() == Some(path.as_str())
                && ["missing keys", "unexpected keys", "shape mismatches"].iter().any(|k| msg.starts_with(k)) =>
        {
            crate::error::Error::Checkpoint {
                path,
                msg: format!("{msg}; use --strict false to load only what matches"),
            }
        }
        e => e,
    })?;
    if chief {
        println!("{}", outcome.summary_line(&outcome.config));
    }
    Ok(())
}
