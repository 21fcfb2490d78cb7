//! The run configuration: JSON (`--config run.json`) with CLI flags on top; the resolved form is written into
//! each run folder as `config.json`.
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::optim::{HyperConfig, OptimizerConfig, OptimizerKind};

mod resolve;
pub use resolve::{AugmentChoice, CallbackConfigs, Run};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    /// A registry name with options: `lenet5`, `mlp:hidden=64x64`.
    pub model: String,
    /// A data spec: `digits`, `moons:n_samples=500`, a file or folder.
    pub data: String,
    /// Explicit validation data (a data spec); takes precedence over `validation_split`.
    pub validation_data: Option<String>,
    /// Keras' `validation_split`: the last fraction, held out before shuffling. `null` = no validation.
    pub validation_split: Option<f64>,
    pub epochs: usize,
    pub batch_size: usize,
    pub shuffle: bool,
    pub optimizer: OptimizerKind,
    /// `lr`, `momentum`, … (`optim::hyper`), keys of this object.
    #[serde(flatten)]
    pub hyper: HyperConfig,
    /// `auto`, `cross_entropy`, `binary_crossentropy`, `mse`.
    pub loss: String,
    /// Empty = the loss's defaults (accuracy, or mae for regression).
    pub metrics: Vec<String>,
    /// `auto`, `cpu`, `cuda`, `cuda:N`.
    pub device: String,
    pub seed: u64,
    /// The run folder; `null` = `runs/<model>-<data>-<time>`.
    pub out: Option<String>,
    /// Intra-op threads; `null` = libtorch's default.
    pub threads: Option<usize>,
    /// Initial weights (a state dict, .pt or .safetensors, or a general checkpoint) to load before training.
    pub weights: Option<String>,
    /// Loading `weights` requires every name and shape to match; `false` loads what matches and reports the
    /// rest (transfer learning).
    pub strict: bool,
    /// Learning-rate schedule by epoch: `cosine`, `step:step_size=10,gamma=0.1`, `exponential:gamma=0.95`;
    /// `null` = constant.
    pub lr_schedule: Option<String>,
    /// EarlyStopping: `monitor=val_loss,patience=200,min_delta=0,mode=min,baseline=0.4,restore_best_weights=true`.
    pub early_stopping: Option<String>,
    /// ModelCheckpoint: `path-template[,monitor=…,save_best_only=true,…]`; a relative path is in the run folder.
    pub checkpoint: Option<String>,
    /// ReduceLROnPlateau: `monitor=val_loss,factor=0.1,patience=10,…`.
    pub reduce_lr_on_plateau: Option<String>,
    /// CSVLogger: a file path (relative = in the run folder).
    pub csv_logger: Option<String>,
    /// Stop at the end of an epoch whose loss is NaN or infinite.
    pub terminate_on_nan: bool,
    /// Training-time image augmentation: `affine[:rotate=10,scale=0.1,shift=0.1]` or `crop_flip[:pad=4,flip=true]`
    /// (CIFAR's); `null` = none; `auto` (the default) = `affine` for images ([C, H, W] samples), none otherwise,
    /// resolved when the data is read (the run's config.json records the result).
    pub augment: Option<String>,
    /// Pretrained weights loaded non-strictly before training (transfer learning): what matches loads, a
    /// classifier of another size is dropped, and the load is reported.
    pub pretrained: Option<String>,
    /// Parameters kept out of training: `features` (all but the classifier) or name prefixes `conv1,layer1`.
    pub freeze: Option<String>,
    /// The epoch (1-based) from which the frozen parameters train too (two-stage fine-tuning).
    pub unfreeze_at: Option<usize>,
    /// For `channel_boost`: the registered model that makes the auxiliary channels, and its weights.
    pub booster: Option<String>,
    pub booster_weights: Option<String>,
    /// In a distributed run, batch normalisation uses the statistics of the global batch (PyTorch's
    /// `SyncBatchNorm`); otherwise each rank normalises with its own batch (DDP's default).
    pub sync_bn: bool,
    /// Mixed precision: `fp32`, `bf16` (autocast to bfloat16) or `fp16` (autocast to float16 with a gradient scaler).
    pub precision: crate::train::amp::Precision,
    /// Weights and inputs in channels-last memory format (faster convolutions on recent GPUs).
    pub channels_last: bool,
    /// Capture each full training step as one CUDA graph and replay it (CUDA only; see `train::cuda_graph`).
    pub cuda_graph: bool,
    /// Image folders (torchvision's reference-script names): the training RandomResizedCrop's side; `null` = the
    /// model's. A run writes the values it used into its config.json.
    pub train_crop_size: Option<u32>,
    /// Evaluation: the shorter side after Resize; `null` = ⌊val_crop_size / crop fraction⌋ of the model.
    pub val_resize_size: Option<u32>,
    /// Evaluation: the side of the CenterCrop; `null` = the training crop.
    pub val_crop_size: Option<u32>,
    /// `bilinear` or `bicubic`; `null` = the model's.
    pub interpolation: Option<String>,
    /// Normalize's per-channel mean and std on [0, 1] pixels; `null` = the model's (ImageNet's, or 0 and 1).
    pub mean: Option<Vec<f64>>,
    pub std: Option<Vec<f64>>,
    /// Threads that decode and transform images; `null` = the number of cores.
    pub workers: Option<usize>,
    /// Batches in flight per worker; `null` = 2.
    pub prefetch: Option<usize>,
    /// Skip (and count) images that do not decode instead of stopping.
    pub skip_bad_images: bool,
    /// Cross-entropy's label smoothing (nn.CrossEntropyLoss(label_smoothing=...)), in [0, 1).
    pub label_smoothing: f64,
    // Trainer features with Lightning's names (issue #17; parsed and checked in `train::features`).
    /// `MAX[,norm_type=2|inf]`: `clip_grad_norm_` before every optimizer step; `grad_norm` is logged.
    pub clip_grad_norm: Option<String>,
    /// `clip_grad_value_`: every gradient element clamped to [−V, V] before every optimizer step.
    pub clip_grad_value: Option<f64>,
    /// One optimizer step every K batches, the loss divided by K (Lightning's `accumulate_grad_batches`).
    pub accumulate_grad_batches: usize,
    /// `decay=0.999[,warmup=true][,use_buffers=true]`: a moving average of the weights (`AveragedModel`);
    /// validation uses it and the run folder gets `model_ema.pt`.
    pub ema: Option<String>,
    /// `HH:MM:SS` or `DD:HH:MM:SS`: stop after the batch during which this much training time has passed.
    pub max_time: Option<String>,
    /// Training batches per epoch: an integer = batches, a float = fraction of them.
    pub limit_train_batches: Option<crate::train::features::Limit>,
    /// Validation batches per evaluation: an integer = batches, a float = fraction; 0 = no validation.
    pub limit_val_batches: Option<crate::train::features::Limit>,
    /// N training and N validation batches, one epoch, no checkpoint, early stopping or CSV logger.
    pub fast_dev_run: Option<usize>,
    /// Train (without shuffling) and validate on the first batches only: an integer = batches, a float = fraction.
    pub overfit_batches: Option<crate::train::features::Limit>,
    /// `torch.use_deterministic_algorithms(True)` and cuDNN's deterministic mode; a nondeterministic op is an error.
    pub deterministic: bool,
    /// cuDNN benchmarks its algorithms per shape and keeps the fastest (`torch.backends.cudnn.benchmark`).
    pub cudnn_benchmark: bool,
    /// Written by the run (read back and replaced on `--resume`): seed, libtorch and tchzoo versions, threads,
    /// device.
    pub environment: Option<serde_json::Value>,
    /// Batch-level MixUp's α (torchvision's `v2.MixUp`, λ ~ Beta(α, α)); `null` = off. Image classification data.
    pub mixup_alpha: Option<f64>,
    /// Batch-level CutMix's α (`v2.CutMix`); with `mixup_alpha` too, one of the two per batch (p = ½ each).
    pub cutmix_alpha: Option<f64>,
    /// Image folders: `RandomErasing(p)` after Normalize (scale (0.02, 0.33), ratio (0.3, 3.3), value 0); 0 = off.
    pub random_erase: f64,
    /// Image folders: `ta_wide` (TrivialAugmentWide), `ra` (RandAugment, 2 ops, magnitude 9) or `augmix` (AugMix
    /// with torchvision's defaults: 3 chains of 1–3 ops, severity 3, α = 1) after the crop and flip, on uint8 images;
    /// `null` = none.
    pub auto_augment: Option<String>,
    /// `--lr auto`: the learning-rate range test (Lightning's `lr_find` with its defaults, see `train::lr_find`)
    /// runs before training and `lr` records its suggestion; a resumed run keeps that `lr`.
    pub lr_auto: bool,
    // Loggers (issue #17 point 5; checked in `train::loggers`).
    /// A folder for TensorBoard event files (relative = inside the run folder; `--tensorboard` alone:
    /// `tensorboard`).
    pub tensorboard: Option<String>,
    /// With `tensorboard`: histograms of the weights after every N-th epoch.
    pub tb_histograms: Option<usize>,
    /// One line of `steps.jsonl` in the run folder every N optimizer steps.
    pub log_every_n_steps: Option<usize>,
    /// `single` (torch.optim's single-tensor loop), `foreach` (`foreach=True`) or `fused` (`fused=True`: SGD, Adam,
    /// AdamW); unset: PyTorch's default for the device (single on the CPU, foreach on CUDA).
    pub optimizer_impl: Option<crate::optim::OptimizerImpl>,
    /// No weight decay on biases and normalisation weights (timm's rule: ndim ≤ 1 or a name ending in `.bias`).
    pub no_decay_norm_bias: bool,
    /// Layer-wise lr multipliers by parameter-name prefix, `classifier=10,layer4=2` (`classifier` may name the
    /// model's head as the registry calls it, e.g. `fc`).
    pub lr_mult: Option<String>,
    /// `start=E,lr=LR[,anneal_epochs=10][,anneal_strategy=cos|linear]`: stochastic weight averaging from epoch E
    /// (counted from 1) with SWALR's learning rate, then `update_bn`; `model.pt` holds the SWA model
    /// (`train::swa`).
    pub swa: Option<String>,
    /// Image folders and shards: DCT-domain JPEG downscaling when the crop allows it (`data::draft`); `null` = off.
    pub decode_scaling: Option<bool>,
}

/// The default `augment`: affine for image data, none for anything else.
pub const AUTO_AUGMENT: &str = "auto";

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            model: "lenet5".into(),
            data: "digits".into(),
            validation_data: None,
            validation_split: Some(0.2),
            epochs: 50,
            batch_size: 32,
            shuffle: true,
            optimizer: OptimizerKind::Adam,
            hyper: HyperConfig::default(),
            loss: "auto".into(),
            metrics: vec![],
            device: "auto".into(),
            seed: 42,
            out: None,
            threads: None,
            weights: None,
            strict: true,
            augment: Some(AUTO_AUGMENT.into()),
            early_stopping: None,
            checkpoint: None,
            reduce_lr_on_plateau: None,
            csv_logger: None,
            terminate_on_nan: true,
            lr_schedule: None,
            pretrained: None,
            freeze: None,
            unfreeze_at: None,
            booster: None,
            booster_weights: None,
            sync_bn: false,
            precision: crate::train::amp::Precision::Fp32,
            channels_last: false,
            cuda_graph: false,
            train_crop_size: None,
            val_resize_size: None,
            val_crop_size: None,
            interpolation: None,
            mean: None,
            std: None,
            workers: None,
            prefetch: None,
            skip_bad_images: false,
            label_smoothing: 0.0,
            clip_grad_norm: None,
            clip_grad_value: None,
            accumulate_grad_batches: 1,
            ema: None,
            max_time: None,
            limit_train_batches: None,
            limit_val_batches: None,
            fast_dev_run: None,
            overfit_batches: None,
            deterministic: false,
            cudnn_benchmark: false,
            environment: None,
            mixup_alpha: None,
            cutmix_alpha: None,
            random_erase: 0.0,
            auto_augment: None,
            lr_auto: false,
            tensorboard: None,
            tb_histograms: None,
            log_every_n_steps: None,
            optimizer_impl: None,
            no_decay_norm_bias: false,
            lr_mult: None,
            swa: None,
            decode_scaling: None,
        }
    }
}

/// The most intra-op threads a run may ask for (more only exhausts memory in OpenMP's thread pool).
pub const MAX_THREADS: usize = 1024;

impl RunConfig {
    /// A user's config file: as `from_json_file`, with the input paths it names (`data`, `validation_data`,
    /// `weights`, `pretrained`, `booster_weights`) found beside the file first, then in the current folder.
    pub fn from_user_file(path: &Path) -> Result<Self> {
        let mut c = Self::from_json_file(path)?;
        let base = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        c.data = resolve_spec_paths(&c.data, base);
        c.validation_data = c.validation_data.map(|d| resolve_spec_paths(&d, base));
        for p in [&mut c.weights, &mut c.pretrained, &mut c.booster_weights].into_iter().flatten() {
            *p = resolve_path(p, base);
        }
        Ok(c)
    }

    pub fn from_json_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        serde_json::from_str(&text).map_err(|e| Error::config(format!("{}: {}", path.display(), explain(&text, e))))
    }
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self).map_err(|e| Error::config(format!("the run config does not serialise: {e}")))
    }

    /// The optimizer's hyper-parameters: `torch.optim`'s defaults where the config leaves them unset (Keras'
    /// learning rates).
    pub fn optimizer_config(&self) -> Result<OptimizerConfig> {
        let c = OptimizerConfig {
            kind: self.optimizer,
            hyper: self.hyper.resolve(self.optimizer),
            implementation: self.optimizer_impl.unwrap_or_default(),
        };
        c.validate()?;
        Ok(c)
    }

    /// Checks what can be checked before any data is read (as [`RunConfig::resolve`], keeping nothing).
    pub fn validate(&self) -> Result<()> {
        self.resolve().map(|_| ())
    }
}

/// A config file's error in words: an unknown key with the known ones ([`with_keys`]), and a value of the wrong
/// type with the key that holds it (serde reports only a line and column) and the type in words.
fn explain(text: &str, e: serde_json::Error) -> String {
    let key = match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(text) {
        Ok(map) if e.is_data() => map.into_iter().find_map(|(k, v)| {
            let one = serde_json::Value::Object([(k.clone(), v)].into_iter().collect());
            serde_json::from_value::<RunConfig>(one).is_err().then_some(k)
        }),
        _ => None,
    };
    let mut words = with_keys(e);
    for (rust, plain) in [
        ("expected usize", "expected a whole number ≥ 0"),
        ("expected u64", "expected a whole number ≥ 0"),
        ("expected u32", "expected a whole number ≥ 0"),
        ("expected i64", "expected a whole number"),
        ("expected f64", "expected a number"),
        ("expected f32", "expected a number"),
        ("expected struct RunConfig", "expected a JSON object of settings (`tchzoo train --help` lists them)"),
    ] {
        words = words.replace(rust, plain);
    }
    match key {
        Some(k) if !words.starts_with("unknown field") => format!("`{k}`: {words}"),
        _ => words,
    }
}

/// A JSON error, an unknown key's with the known ones as serde words it (`#[serde(flatten)]`, which takes in the
/// hyper-parameters, leaves them out).
fn with_keys(e: serde_json::Error) -> String {
    let text = e.to_string();
    // The keys in their order: the top level of the pretty JSON, indented by two spaces.
    let keys = RunConfig::default().to_json().ok().map(|json| {
        let top = json.lines().filter_map(|l| l.strip_prefix("  \"")?.split_once("\":").map(|(k, _)| format!("`{k}`")));
        top.collect::<Vec<_>>().join(", ")
    });
    match (text.strip_prefix("unknown field `").and_then(|r| r.split_once('`')), keys) {
        (Some((field, rest)), Some(keys)) => format!("unknown field `{field}`, expected one of {keys}{rest}"),
        _ => text,
    }
}

/// `p` beside `base` when it is relative and exists there; otherwise `p` as given (the current folder's).
fn resolve_path(p: &str, base: &Path) -> String {
    let path = Path::new(p);
    if path.is_relative() && !p.is_empty() && base.join(path).exists() {
        base.join(path).display().to_string()
    } else {
        p.to_string()
    }
}

/// A data spec with its file paths (`DIR`, `FILE:opts`, `cifar10:DIR`, `path=FILE`) resolved by `resolve_path`.
fn resolve_spec_paths(spec: &str, base: &Path) -> String {
    for prefix in ["cifar10:", "mnist:", "fashion_mnist:"] {
        if let Some(rest) = spec.strip_prefix(prefix) {
            let (dir, opts) = rest.split_once(',').map_or((rest, None), |(d, o)| (d, Some(o)));
            let dir = resolve_path(dir, base);
            return format!("{prefix}{dir}{}", opts.map(|o| format!(",{o}")).unwrap_or_default());
        }
    }
    let (source, opts) = spec.split_once(':').map_or((spec, None), |(s, o)| (s, Some(o)));
    let source = resolve_path(source, base);
    let opts = opts.map(|o| {
        o.split(',')
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) if k.trim() == "path" => format!("{k}={}", resolve_path(v.trim(), base)),
                _ => kv.to_string(),
            })
            .collect::<Vec<_>>()
            .join(",")
    });
    match opts {
        Some(o) => format!("{source}:{o}"),
        None => source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hyper-parameters are `RunConfig`'s own keys (`#[serde(flatten)]`): read and written at the top level,
    /// and an unknown key is refused with every known key, in order, as before the flattening.
    #[test]
    fn hyper_parameters_are_top_level_keys() {
        let c: RunConfig =
            serde_json::from_str(r#"{"optimizer": "sgd", "lr": 0.5, "momentum": 0.9, "betas": [0.8, 0.9]}"#).unwrap();
        assert_eq!((c.hyper.lr, c.hyper.momentum, c.hyper.betas), (Some(0.5), 0.9, (0.8, 0.9)));
        assert_eq!(c.hyper.eps, None);
        let json: serde_json::Value = serde_json::from_str(&c.to_json().unwrap()).unwrap();
        assert_eq!((json["lr"].as_f64(), json.get("hyper")), (Some(0.5), None));
        let e = serde_json::from_str::<RunConfig>(r#"{"momentun": 0.9}"#).map_err(with_keys).unwrap_err();
        assert!(e.starts_with("unknown field `momentun`, expected one of `model`, `data`, "), "{e}");
        assert!(
            e.contains("`optimizer`, `lr`, `momentum`, `dampening`, ") && e.contains("`decode_scaling` at line 1"),
            "{e}"
        );
    }

    #[test]
    fn a_value_of_the_wrong_type_is_named_by_its_key() {
        let explain = |text: &str| super::explain(text, serde_json::from_str::<RunConfig>(text).unwrap_err());
        let e = explain(r#"{"model": "mlp", "epochs": "3"}"#);
        assert!(e.starts_with(r#"`epochs`: invalid type: string "3", expected a whole number ≥ 0"#), "{e}");
        let e = explain(r#"{"lr": "fast"}"#);
        assert!(e.starts_with(r#"`lr`: invalid type: string "fast", expected a number"#), "{e}");
        let e = explain("[1, 2]");
        assert!(e.starts_with("invalid type: sequence, expected a JSON object of settings"), "{e}");
        assert!(explain(r#"{"momentun": 0.9}"#).starts_with("unknown field `momentun`"));
    }
}
