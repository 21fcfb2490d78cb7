//! torchvision's classification transforms (`references/classification/presets.py`) as plain functions of an
//! image and its parameters, with the random parameters drawn apart (torchvision's `get_params` split), so a test
//! can feed the same parameters to `torchvision.transforms.v2.functional` and compare.
//!
//! Images are uint8 tensors [C, H, W] on the CPU. Resizing calls libtorch's antialiased kernels
//! (`_upsample_bilinear2d_aa`, `_upsample_bicubic2d_aa`) on uint8, as torchvision's `resize` does on the CPU with
//! `antialias=True` (its default), so the two agree to the grey level; rounding, crop anchors and the resized
//! sizes follow torchvision's Python (banker's rounding, floors).
use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::{Kind, Tensor};

use crate::error::{Error, Result};

/// `--interpolation`: torchvision's `InterpolationMode` for the resizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Interpolation {
    Bilinear,
    Bicubic,
}

impl Interpolation {
    pub fn parse(name: &str) -> Result<Self> {
        match name.trim() {
            "bilinear" => Ok(Interpolation::Bilinear),
            "bicubic" => Ok(Interpolation::Bicubic),
            other => Err(Error::config(format!("interpolation '{other}' unknown; use bilinear or bicubic"))),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Interpolation::Bilinear => "bilinear",
            Interpolation::Bicubic => "bicubic",
        }
    }
}

/// The whole preset of a run: training `RandomResizedCrop` + `RandomHorizontalFlip`, evaluation `Resize` +
/// `CenterCrop`, both then `Normalize`. Written into the run's `config.json`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Transforms {
    pub train_crop_size: u32,
    pub val_resize_size: u32,
    pub val_crop_size: u32,
    pub interpolation: Interpolation,
    /// Per channel, on [0, 1] pixels.
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
    /// 3 (RGB) or 1 (grey).
    pub channels: u32,
    /// RandomResizedCrop's area range and aspect-ratio range.
    pub scale: (f64, f64),
    pub ratio: (f64, f64),
    pub hflip_prob: f64,
    /// `RandomErasing(p)` after Normalize (`--random-erase`); 0 = off.
    #[serde(default)]
    pub random_erase: f64,
    /// `--auto-augment`: TrivialAugmentWide, RandAugment or AugMix after the flip, on the uint8 crop.
    #[serde(default)]
    pub auto_augment: Option<super::autoaugment::Policy>,
    /// `--decode-scaling`: a JPEG whose crop allows it is decoded at 1/2, 1/4 or 1/8 (`data::draft`).
    #[serde(default)]
    pub decode_scaling: bool,
}

impl Transforms {
    /// torchvision's classification preset for a crop size: `Resize(⌊crop / crop_pct⌋)` for evaluation.
    pub fn preset(crop: u32, crop_pct: f64, mean: Vec<f64>, std: Vec<f64>, interpolation: Interpolation) -> Self {
        let channels = mean.len() as u32;
        Transforms {
            train_crop_size: crop,
            val_resize_size: (crop as f64 / crop_pct).floor() as u32,
            val_crop_size: crop,
            interpolation,
            mean,
            std,
            channels,
            scale: (0.08, 1.0),
            ratio: (3.0 / 4.0, 4.0 / 3.0),
            hflip_prob: 0.5,
            random_erase: 0.0,
            auto_augment: None,
            decode_scaling: false,
        }
    }

    /// Checks sizes and statistics; a bad value fails in one line.
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("⟨train_crop_size⟩", self.train_crop_size),
            ("⟨val_resize_size⟩", self.val_resize_size),
            ("⟨val_crop_size⟩", self.val_crop_size),
        ] {
            if v == 0 || v > 8192 {
                return Err(Error::config(format!("{name} {v}: give a side in pixels, 1 to 8192, e.g. 224")));
            }
        }
        if !(self.channels == 1 || self.channels == 3) {
            return Err(Error::config(format!("{} channels: images have 1 (grey) or 3 (RGB)", self.channels)));
        }
        let c = self.channels as usize;
        if self.mean.len() != c || self.std.len() != c {
            return Err(Error::config(format!(
                "mean {:?} and std {:?} need one value per channel ({c})",
                self.mean, self.std
            )));
        }
        if self.std.iter().any(|s| !s.is_finite() || *s <= 0.0) || self.mean.iter().any(|m| !m.is_finite()) {
            return Err(Error::config(format!("std {:?} must be positive and mean finite", self.std)));
        }
        Ok(())
    }

    /// The training transform of one decoded image with its drawn parameters.
    pub fn train(&self, img: &Tensor, rng: &mut impl Rng) -> Result<Tensor> {
        let (h, w) = hw(img);
        let (p, flip) = self.train_params(rng, h, w);
        self.train_apply(img, p, flip, rng)
    }

    /// The training transform's crop box and flip for an image of `height` × `width`, drawn from `rng` (the
    /// draws `train` makes first).
    pub fn train_params(&self, rng: &mut impl Rng, height: i64, width: i64) -> (CropBox, bool) {
        let p = random_resized_crop_params(rng, height, width, self.scale, self.ratio);
        (p, rng.gen::<f64>() < self.hflip_prob)
    }

    /// The training transform with its crop box and flip drawn: resized crop, flip, then auto-augment (which
    /// draws from `rng`).
    pub fn train_apply(&self, img: &Tensor, p: CropBox, flip: bool, rng: &mut impl Rng) -> Result<Tensor> {
        let size = self.train_crop_size as i64;
        let out = resized_crop(img, p, [size, size], self.interpolation)?;
        let out = if flip { hflip(&out) } else { out };
        match self.auto_augment {
            Some(policy) => policy.apply(&out, rng),
            None => Ok(out),
        }
    }

    /// The evaluation transform: resize the shorter side, then centre-crop.
    pub fn eval(&self, img: &Tensor) -> Result<Tensor> {
        let (h, w) = hw(img);
        self.eval_at(img, shorter_side_size(h, w, self.val_resize_size as i64))
    }

    /// The evaluation transform with the resized size given (`Resize` of an `h` × `w` image: [`shorter_side_size`]).
    pub fn eval_at(&self, img: &Tensor, size: [i64; 2]) -> Result<Tensor> {
        let resized = resize(img, size, self.interpolation)?;
        Ok(center_crop(&resized, self.val_crop_size as i64, self.val_crop_size as i64))
    }

    /// `Normalize(mean, std)` after `ToDtype(float32, scale=True)`, on a uint8 batch [N, C, H, W] (any device).
    pub fn normalize(&self, xs: &Tensor) -> Tensor {
        normalize(xs, &self.mean, &self.std)
    }
}

/// The generator of one sample's random transform: keyed by (seed, epoch, sample index) only, so neither the
/// worker count nor the timing changes what a sample gets.
pub fn sample_rng(seed: u64, epoch: usize, index: usize) -> ChaCha8Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&(epoch as u64).to_le_bytes());
    key[16..24].copy_from_slice(&(index as u64).to_le_bytes());
    key[24..].copy_from_slice(b"tchzoo:t");
    ChaCha8Rng::from_seed(key)
}

/// A crop box (torchvision's `top, left, height, width`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CropBox {
    pub top: i64,
    pub left: i64,
    pub height: i64,
    pub width: i64,
}

fn hw(img: &Tensor) -> (i64, i64) {
    let s = img.size();
    (s[s.len() - 2], s[s.len() - 1])
}

/// Python's `round` (half to even), as torchvision's `int(round(x))`.
fn round_py(x: f64) -> i64 {
    x.round_ties_even() as i64
}

/// `RandomResizedCrop.make_params` (torchvision v2): ten tries at a random area and log-uniform aspect ratio, else
/// the central crop clamped to the ratio range.
pub fn random_resized_crop_params(
    rng: &mut impl Rng,
    height: i64,
    width: i64,
    scale: (f64, f64),
    ratio: (f64, f64),
) -> CropBox {
    let area = (height * width) as f64;
    let (lo, hi) = (ratio.0.ln(), ratio.1.ln());
    for _ in 0..10 {
        let target_area = area * rng.gen_range(scale.0..=scale.1);
        let aspect = rng.gen_range(lo..=hi).exp();
        let w = round_py((target_area * aspect).sqrt());
        let h = round_py((target_area / aspect).sqrt());
        if 0 < w && w <= width && 0 < h && h <= height {
            let top = rng.gen_range(0..=height - h);
            let left = rng.gen_range(0..=width - w);
            return CropBox { top, left, height: h, width: w };
        }
    }
    let in_ratio = width as f64 / height as f64;
    let (min, max) = (ratio.0.min(ratio.1), ratio.0.max(ratio.1));
    let (h, w) = if in_ratio < min {
        (round_py(width as f64 / min), width)
    } else if in_ratio > max {
        (height, round_py(height as f64 * max))
    } else {
        (height, width)
    };
    CropBox { top: (height - h) / 2, left: (width - w) / 2, height: h, width: w }
}

/// `F.crop` inside the image (the boxes drawn here always are).
pub fn crop(img: &Tensor, b: CropBox) -> Tensor {
    let n = img.dim() as i64;
    img.narrow(n - 2, b.top, b.height).narrow(n - 1, b.left, b.width)
}

/// `F.resize(img, [h, w], interpolation, antialias=True)` on a uint8 [C, H, W] image.
pub fn resize(img: &Tensor, size: [i64; 2], interpolation: Interpolation) -> Result<Tensor> {
    let (h, w) = hw(img);
    if (h, w) == (size[0], size[1]) {
        return Ok(img.shallow_clone());
    }
    let x = img.unsqueeze(0);
    let out = match interpolation {
        Interpolation::Bilinear => x.f_internal_upsample_bilinear2d_aa(size, false, None, None),
        Interpolation::Bicubic => x.f_internal_upsample_bicubic2d_aa(size, false, None, None),
    }
    .map_err(|e| Error::invalid(format!("resize to {size:?}: {e}")))?;
    Ok(out.squeeze_dim(0))
}

/// `F.resize(img, size)` with one int: the shorter side becomes `size`, the longer ⌊size · long / short⌋.
pub fn resize_shorter(img: &Tensor, size: i64, interpolation: Interpolation) -> Result<Tensor> {
    let (h, w) = hw(img);
    resize(img, shorter_side_size(h, w, size), interpolation)
}

/// The [height, width] `F.resize(img, size)` with one int gives an `h` × `w` image.
pub fn shorter_side_size(h: i64, w: i64, size: i64) -> [i64; 2] {
    let (short, long) = if w <= h { (w, h) } else { (h, w) };
    let new_long = (size as f64 * long as f64 / short as f64) as i64;
    if w <= h {
        [new_long, size]
    } else {
        [size, new_long]
    }
}

/// `F.resized_crop(img, top, left, height, width, size, interpolation, antialias=True)`.
pub fn resized_crop(img: &Tensor, b: CropBox, size: [i64; 2], interpolation: Interpolation) -> Result<Tensor> {
    resize(&crop(img, b), size, interpolation)
}

/// `F.horizontal_flip`.
pub fn hflip(img: &Tensor) -> Tensor {
    img.flip([-1])
}

/// `F.center_crop(img, [h, w])`: the anchor rounds half to even; an image smaller than the crop is padded with
/// zeros first, as torchvision does.
pub fn center_crop(img: &Tensor, ch: i64, cw: i64) -> Tensor {
    let (h, w) = hw(img);
    let mut img = img.shallow_clone();
    let (mut h2, mut w2) = (h, w);
    if ch > h || cw > w {
        let (l, t) = (if cw > w { (cw - w) / 2 } else { 0 }, if ch > h { (ch - h) / 2 } else { 0 });
        let (r, b) = (if cw > w { (cw - w + 1) / 2 } else { 0 }, if ch > h { (ch - h + 1) / 2 } else { 0 });
        img = img.constant_pad_nd([l, r, t, b]);
        (h2, w2) = hw(&img);
        if (h2, w2) == (ch, cw) {
            return img;
        }
    }
    let top = round_py((h2 - ch) as f64 / 2.0);
    let left = round_py((w2 - cw) as f64 / 2.0);
    crop(&img, CropBox { top, left, height: ch, width: cw })
}

/// `ToDtype(float32, scale=True)` then `Normalize(mean, std)` on a uint8 batch [N, C, H, W].
pub fn normalize(xs: &Tensor, mean: &[f64], std: &[f64]) -> Tensor {
    let device = xs.device();
    let c = mean.len() as i64;
    let m = Tensor::from_slice(mean).to_kind(Kind::Float).view([1, c, 1, 1]).to_device(device);
    let s = Tensor::from_slice(std).to_kind(Kind::Float).view([1, c, 1, 1]).to_device(device);
    // In place on the one float copy: the same operations in the same order as out of place, a quarter of the
    // memory traffic (a batch of 64 at 224 is 38 MB a copy).
    // (`to_kind` of a float batch would be the batch itself: copied, so the caller's is never changed.)
    let mut x = if xs.kind() == Kind::Float { xs.copy() } else { xs.to_kind(Kind::Float) };
    let _ = x.g_div_scalar_(255.0);
    let _ = x.g_sub_(&m);
    let _ = x.g_div_(&s);
    x
}
