//! Batch-level MixUp and CutMix as torchvision's `v2.MixUp` / `v2.CutMix` and the classification reference
//! script (`references/classification/train.py`): with both alphas given, `RandomChoice([MixUp, CutMix])` picks
//! one per batch (p = ½ each); λ ~ Beta(α, α); the batch is paired with itself rolled by one; CutMix pastes a box
//! of the rolled batch (torchvision's box, λ corrected by its area); the targets become one-hot rows mixed with the
//! same λ. The loss is then cross-entropy with probability targets (`nn.CrossEntropyLoss`, label smoothing
//! included, as the reference script's criterion).
//!
//! The draw of each batch comes from a generator keyed by (seed, epoch, batch index, rank), so runs repeat and a
//! resumed run draws what the uninterrupted one drew.
use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Beta, Distribution};
use tch::{Kind, Tensor};

use crate::error::{Error, Result};

/// What one batch gets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MixDraw {
    /// `MixUp`: images and targets mixed as λ·x + (1 − λ)·roll(x).
    MixUp { lam: f64 },
    /// `CutMix`: the box `[x1, x2) × [y1, y2)` of the rolled batch pasted in; `lam` is the drawn λ and
    /// (`cx`, `cy`) the drawn centre; the targets use 1 − box area / image area.
    CutMix { lam: f64, cx: i64, cy: i64, x1: i64, y1: i64, x2: i64, y2: i64 },
}

impl MixDraw {
    /// The weight of the batch's own targets (CutMix: λ corrected by the box's area, as torchvision's
    /// `lam_adjusted`).
    pub fn target_lambda(&self, height: i64, width: i64) -> f64 {
        match *self {
            MixDraw::MixUp { lam } => lam,
            MixDraw::CutMix { x1, y1, x2, y2, .. } => 1.0 - ((x2 - x1) * (y2 - y1)) as f64 / (width * height) as f64,
        }
    }
}

/// `--mixup-alpha` and `--cutmix-alpha` of a run.
#[derive(Debug, Clone)]
pub struct BatchMix {
    mixup: Option<Beta<f64>>,
    cutmix: Option<Beta<f64>>,
    pub mixup_alpha: Option<f64>,
    pub cutmix_alpha: Option<f64>,
    /// The width of the one-hot targets (the model's outputs).
    pub n_classes: i64,
    pub seed: u64,
}

/// Checks an alpha in one line: a positive finite number.
pub fn check_alpha(flag: &str, alpha: Option<f64>) -> Result<()> {
    match alpha {
        Some(a) if !(a.is_finite() && a > 0.0) => {
            Err(Error::config(format!("{flag} {a}: Beta(α, α) needs α > 0; use e.g. 0.2 (MixUp) or 1.0 (CutMix)")))
        }
        _ => Ok(()),
    }
}

impl BatchMix {
    /// `None` when neither alpha is given.
    pub fn new(mixup_alpha: Option<f64>, cutmix_alpha: Option<f64>, n_classes: i64, seed: u64) -> Result<Option<Self>> {
        check_alpha("⟨mixup_alpha⟩", mixup_alpha)?;
        check_alpha("⟨cutmix_alpha⟩", cutmix_alpha)?;
        if mixup_alpha.is_none() && cutmix_alpha.is_none() {
            return Ok(None);
        }
        let beta = |a: Option<f64>| -> Result<Option<Beta<f64>>> {
            a.map(|a| Beta::new(a, a).map_err(|e| Error::config(format!("Beta({a}, {a}): {e}")))).transpose()
        };
        Ok(Some(BatchMix {
            mixup: beta(mixup_alpha)?,
            cutmix: beta(cutmix_alpha)?,
            mixup_alpha,
            cutmix_alpha,
            n_classes,
            seed,
        }))
    }

    /// The draw of batch `batch` of `epoch` on `rank`, for images of `height` × `width`: the choice between MixUp
    /// and CutMix (when both are on), λ, and CutMix's centre as torchvision's `CutMix.make_params`.
    pub fn draw(&self, epoch: usize, batch: usize, rank: usize, height: i64, width: i64) -> MixDraw {
        let mut rng = batch_rng(self.seed, epoch, batch, rank);
        let use_cutmix = match (&self.mixup, &self.cutmix) {
            (Some(_), Some(_)) => rng.gen_range(0..2) == 1,
            (None, Some(_)) => true,
            _ => false,
        };
        if !use_cutmix {
            let lam = self.mixup.as_ref().map_or(1.0, |b| b.sample(&mut rng));
            return MixDraw::MixUp { lam };
        }
        let lam = self.cutmix.as_ref().map_or(1.0, |b| b.sample(&mut rng));
        let r_x = rng.gen_range(0..width);
        let r_y = rng.gen_range(0..height);
        cutmix_box(lam, r_x, r_y, height, width)
    }

    /// Mixes a batch (`xs` [N, C, H, W] float, `ys` class labels [N]) for batch `batch` of `epoch`: the mixed
    /// images and the probability targets [N, n_classes].
    pub fn apply(&self, xs: &Tensor, ys: &Tensor, epoch: usize, batch: usize, rank: usize) -> Result<(Tensor, Tensor)> {
        let size = xs.size();
        if size.len() != 4 {
            return Err(Error::invalid(format!("MixUp/CutMix take image batches [N, C, H, W], not {size:?}")));
        }
        let draw = self.draw(epoch, batch, rank, size[2], size[3]);
        Ok(mix_batch(xs, ys, draw, self.n_classes))
    }
}

/// CutMix's box from λ and its centre (`r_x`, `r_y`), as torchvision: half-sides ⌊½√(1 − λ)·W⌋ and
/// ⌊½√(1 − λ)·H⌋, clamped to the image.
pub fn cutmix_box(lam: f64, r_x: i64, r_y: i64, height: i64, width: i64) -> MixDraw {
    let r = 0.5 * (1.0 - lam).sqrt();
    let r_w_half = (r * width as f64) as i64;
    let r_h_half = (r * height as f64) as i64;
    MixDraw::CutMix {
        lam,
        cx: r_x,
        cy: r_y,
        x1: (r_x - r_w_half).max(0),
        y1: (r_y - r_h_half).max(0),
        x2: (r_x + r_w_half).min(width),
        y2: (r_y + r_h_half).min(height),
    }
}

/// The generator of one batch's draw: keyed by (seed, epoch, batch index, rank) only.
pub fn batch_rng(seed: u64, epoch: usize, batch: usize, rank: usize) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&(epoch as u64).to_le_bytes());
    key[16..24].copy_from_slice(&(batch as u64).to_le_bytes());
    key[24..28].copy_from_slice(&(rank as u32).to_le_bytes());
    key[28..].copy_from_slice(b"mix!");
    ChaCha8Rng::from_seed(key)
}

/// torchvision's `_mixup_label`: one-hot rows (or probability rows already), mixed with the batch rolled by one:
/// `roll(t)·(1 − λ) + t·λ`.
pub fn mix_targets(ys: &Tensor, lam: f64, n_classes: i64) -> Tensor {
    let t =
        if ys.dim() == 1 { ys.to_kind(Kind::Int64).onehot(n_classes).to_kind(Kind::Float) } else { ys.shallow_clone() };
    t.roll([1], [0]) * (1.0 - lam) + t * lam
}

/// The mixed images and probability targets of one draw (torchvision's `MixUp.transform` / `CutMix.transform`).
pub fn mix_batch(xs: &Tensor, ys: &Tensor, draw: MixDraw, n_classes: i64) -> (Tensor, Tensor) {
    let size = xs.size();
    let (h, w) = (size[size.len() - 2], size[size.len() - 1]);
    let rolled = xs.roll([1], [0]);
    let images =
        match draw {
            MixDraw::MixUp { lam } => rolled * (1.0 - lam) + xs * lam,
            MixDraw::CutMix { x1, y1, x2, y2, .. } => {
                let out = xs.copy();
                let d = xs.dim() as i64;
                out.narrow(d - 2, y1, y2 - y1)
                    .narrow(d - 1, x1, x2 - x1)
                    .copy_(&rolled.narrow(d - 2, y1, y2 - y1).narrow(d - 1, x1, x2 - x1));
                out
            }
        };
    (images, mix_targets(ys, draw.target_lambda(h, w), n_classes))
}

/// The class each probability row weighs most (torchvision's reference `utils.accuracy` with mixed targets), for
/// the training metrics.
pub fn hard_labels(targets: &Tensor) -> Tensor {
    if targets.dim() == 2 {
        targets.argmax(1, false)
    } else {
        targets.shallow_clone()
    }
}

/// A run's MixUp / CutMix, checked against its data: image classification data (samples [C, H, W]) with the
/// cross-entropy loss; other data, another loss or `--cuda-graph` is refused in one line.
pub fn for_run(
    config: &crate::config::RunConfig,
    train: &super::Dataset,
    loss: crate::train::metrics::Loss,
    n_outputs: i64,
) -> Result<Option<BatchMix>> {
    if config.mixup_alpha.is_none() && config.cutmix_alpha.is_none() {
        return Ok(None);
    }
    let shape = train.sample_shape();
    let is_image = shape.len() == 3 && matches!(train.task, super::Task::Classification { .. });
    if !is_image {
        return Err(Error::config(format!(
            "⟨mixup_alpha⟩ and ⟨cutmix_alpha⟩ apply to image classification data (samples [C, H, W]); {} has \
             samples {shape:?}",
            train.name
        )));
    }
    if loss != crate::train::metrics::Loss::CrossEntropy {
        return Err(Error::config(
            "⟨mixup_alpha⟩ and ⟨cutmix_alpha⟩ mix one-hot targets: they need ⟨loss⟩ cross_entropy",
        ));
    }
    if config.cuda_graph {
        return Err(Error::config("⟨cuda_graph⟩ does not yet combine with ⟨mixup_alpha⟩ or ⟨cutmix_alpha⟩"));
    }
    BatchMix::new(config.mixup_alpha, config.cutmix_alpha, n_outputs, config.seed)
}
