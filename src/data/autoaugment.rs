//! `--auto-augment ta_wide|ra`: torchvision's `TrivialAugmentWide` (one op a image, 31 magnitude bins) and
//! `RandAugment` (2 ops, magnitude 9 of 31), on uint8 images [C, H, W] after the crop and flip, as the reference
//! presets place them. The ops follow `torchvision.transforms.v2.functional` on tensors op for op (the same
//! libtorch calls: the affine grid and `grid_sample` of `F.affine`/`F.rotate` with nearest interpolation and fill
//! 0, the blends, the sharpness kernel, the equalisation LUT); the draws come from the sample's generator.
//! `augmix` (torchvision's `AugMix()`) composes the same ops; it lives in [`super::augmix`].
use rand::Rng;
use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};

/// The policy of `--auto-augment`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// `TrivialAugmentWide(num_magnitude_bins=31)`.
    TaWide,
    /// `RandAugment(num_ops=2, magnitude=9, num_magnitude_bins=31)`.
    Ra,
    /// `AugMix()` with torchvision's defaults (see [`super::augmix`]).
    #[serde(rename = "augmix")]
    AugMix,
}

impl Policy {
    pub fn parse(name: &str) -> Result<Self> {
        match name.trim() {
            "ta_wide" => Ok(Policy::TaWide),
            "ra" => Ok(Policy::Ra),
            "augmix" => Ok(Policy::AugMix),
            other => Err(Error::config(format!("⟨auto_augment⟩ '{other}' unknown; use ta_wide, ra or augmix"))),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Policy::TaWide => "ta_wide",
            Policy::Ra => "ra",
            Policy::AugMix => "augmix",
        }
    }

    /// Draws the ops for an image of `height` × `width` and applies them (nearest interpolation, fill 0; AugMix:
    /// bilinear, its own mixing).
    pub fn apply(self, img: &Tensor, rng: &mut impl Rng) -> Result<Tensor> {
        let (h, w) = hw(img);
        let mut out = img.shallow_clone();
        let (num_ops, fixed_bin) = match self {
            Policy::TaWide => (1, None),
            Policy::Ra => (2, Some(9)),
            Policy::AugMix => return super::augmix::AugMix::default().apply(img, rng),
        };
        for _ in 0..num_ops {
            let op = OPS[rng.gen_range(0..OPS.len())];
            let magnitude = match op.magnitudes(self, BINS, h, w) {
                None => 0.0,
                Some(bins) => {
                    let bin = fixed_bin.unwrap_or_else(|| rng.gen_range(0..BINS));
                    let m = bins[bin];
                    // torchvision: `if signed and torch.rand(()) <= 0.5: magnitude *= -1`.
                    if op.signed() && rng.gen::<f64>() <= 0.5 {
                        -m
                    } else {
                        m
                    }
                }
            };
            out = op.apply(&out, magnitude, Interp::Nearest)?;
        }
        Ok(out)
    }
}

/// `num_magnitude_bins` of both policies.
pub const BINS: usize = 31;

/// The ops of TrivialAugmentWide's and RandAugment's augmentation spaces, in their order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Identity,
    ShearX,
    ShearY,
    TranslateX,
    TranslateY,
    Rotate,
    Brightness,
    Color,
    Contrast,
    Sharpness,
    Posterize,
    Solarize,
    AutoContrast,
    Equalize,
}

pub const OPS: [Op; 14] = [
    Op::Identity,
    Op::ShearX,
    Op::ShearY,
    Op::TranslateX,
    Op::TranslateY,
    Op::Rotate,
    Op::Brightness,
    Op::Color,
    Op::Contrast,
    Op::Sharpness,
    Op::Posterize,
    Op::Solarize,
    Op::AutoContrast,
    Op::Equalize,
];

/// The interpolation of the geometric ops (torchvision's tensor kernels take nearest or bilinear).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interp {
    Nearest,
    Bilinear,
}

fn hw(img: &Tensor) -> (i64, i64) {
    let s = img.size();
    (s[s.len() - 2], s[s.len() - 1])
}

/// `torch.linspace(start, end, n)` (float32), read back as Python's `float(...)`.
fn linspace(start: f64, end: f64, n: usize) -> Vec<f64> {
    Vec::<f32>::try_from(Tensor::linspace(start, end, n as i64, (Kind::Float, Device::Cpu)))
        .unwrap_or_default()
        .into_iter()
        .map(f64::from)
        .collect()
}

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::Identity => "Identity",
            Op::ShearX => "ShearX",
            Op::ShearY => "ShearY",
            Op::TranslateX => "TranslateX",
            Op::TranslateY => "TranslateY",
            Op::Rotate => "Rotate",
            Op::Brightness => "Brightness",
            Op::Color => "Color",
            Op::Contrast => "Contrast",
            Op::Sharpness => "Sharpness",
            Op::Posterize => "Posterize",
            Op::Solarize => "Solarize",
            Op::AutoContrast => "AutoContrast",
            Op::Equalize => "Equalize",
        }
    }

    /// Whether the op's magnitude gets a random sign (the `signed` of torchvision's augmentation spaces).
    pub fn signed(self) -> bool {
        matches!(
            self,
            Op::ShearX
                | Op::ShearY
                | Op::TranslateX
                | Op::TranslateY
                | Op::Rotate
                | Op::Brightness
                | Op::Color
                | Op::Contrast
                | Op::Sharpness
        )
    }

    /// The policy's magnitude bins of this op for an image of `h` × `w` (`_AUGMENTATION_SPACE`); `None` for ops
    /// without a magnitude.
    pub fn magnitudes(self, policy: Policy, bins: usize, h: i64, w: i64) -> Option<Vec<f64>> {
        if policy == Policy::AugMix {
            return super::augmix::magnitudes(self, bins, h, w);
        }
        let wide = policy == Policy::TaWide;
        let (shear, rotate, color) = if wide { (0.99, 135.0, 0.99) } else { (0.3, 30.0, 0.9) };
        Some(match self {
            Op::Identity | Op::AutoContrast | Op::Equalize => return None,
            Op::ShearX | Op::ShearY => linspace(0.0, shear, bins),
            Op::TranslateX => linspace(0.0, if wide { 32.0 } else { 150.0 / 331.0 * w as f64 }, bins),
            Op::TranslateY => linspace(0.0, if wide { 32.0 } else { 150.0 / 331.0 * h as f64 }, bins),
            Op::Rotate => linspace(0.0, rotate, bins),
            Op::Brightness | Op::Color | Op::Contrast | Op::Sharpness => linspace(0.0, color, bins),
            Op::Posterize => {
                // (8 - (arange(bins) / ((bins - 1) / k))).round().int() in float32, k = 6 (wide) or 4.
                let d = ((bins - 1) as f64 / if wide { 6.0 } else { 4.0 }) as f32;
                (0..bins).map(|i| (8.0f32 - i as f32 / d).round_ties_even() as f64).collect()
            }
            Op::Solarize => linspace(1.0, 0.0, bins),
        })
    }

    /// `_apply_image_or_video_transform(image, op, magnitude, interpolation, fill=None)` on a uint8 [C, H, W].
    pub fn apply(self, img: &Tensor, magnitude: f64, interp: Interp) -> Result<Tensor> {
        let out = match self {
            Op::Identity => img.shallow_clone(),
            Op::ShearX => affine(img, 0.0, [0.0, 0.0], [magnitude.atan().to_degrees(), 0.0], Some([0.0, 0.0]), interp),
            Op::ShearY => affine(img, 0.0, [0.0, 0.0], [0.0, magnitude.atan().to_degrees()], Some([0.0, 0.0]), interp),
            Op::TranslateX => affine(img, 0.0, [magnitude.trunc(), 0.0], [0.0, 0.0], None, interp),
            Op::TranslateY => affine(img, 0.0, [0.0, magnitude.trunc()], [0.0, 0.0], None, interp),
            Op::Rotate => rotate(img, magnitude, interp),
            Op::Brightness => (img * (1.0 + magnitude)).clamp(0.0, 255.0).to_kind(Kind::Uint8),
            Op::Color => {
                if img.size()[0] == 1 {
                    img.shallow_clone()
                } else {
                    blend(img, &grayscale(img).floor(), 1.0 + magnitude)
                }
            }
            Op::Contrast => {
                let grey = if img.size()[0] == 3 { grayscale(img).floor() } else { img.to_kind(Kind::Float) };
                let mean = grey.mean_dim([-3i64, -2, -1].as_slice(), true, Kind::Float);
                blend(img, &mean, 1.0 + magnitude)
            }
            Op::Sharpness => sharpness(img, 1.0 + magnitude),
            Op::Posterize => {
                let bits = magnitude as i64;
                if bits >= 8 {
                    img.shallow_clone()
                } else {
                    img.bitwise_and(((1i64 << bits) - 1) << (8 - bits))
                }
            }
            Op::Solarize => {
                let threshold = 255.0 * magnitude;
                img.bitwise_not().where_self(&img.ge(threshold), img)
            }
            Op::AutoContrast => autocontrast(img),
            Op::Equalize => equalize(img)?,
        };
        Ok(out)
    }
}

/// `_rgb_to_grayscale_image(preserve_dtype=False)`: 0.2989 R + 0.587 G + 0.114 B in float32, [1, H, W].
fn grayscale(img: &Tensor) -> Tensor {
    let (r, g, b) = (img.get(0), img.get(1), img.get(2));
    let l = r * 0.2989 + g.to_kind(Kind::Float) * 0.587 + b.to_kind(Kind::Float) * 0.114;
    l.unsqueeze(0)
}

/// `_blend(image1, image2, ratio)` for uint8 `image1`: `image1·ratio + image2·(1 − ratio)`, clamped, truncated.
fn blend(img: &Tensor, other: &Tensor, ratio: f64) -> Tensor {
    (img * ratio + other * (1.0 - ratio)).clamp(0.0, 255.0).to_kind(Kind::Uint8)
}

/// `adjust_sharpness_image`: the 3×3 smoothing kernel (1s around a 5, over 13), rounded, blended inside the
/// border.
fn sharpness(img: &Tensor, factor: f64) -> Tensor {
    let (h, w) = hw(img);
    if h <= 2 || w <= 2 {
        return img.shallow_clone();
    }
    let c = img.size()[0];
    let (a, b) = (1.0f32 / 13.0, 5.0f32 / 13.0);
    let kernel = Tensor::from_slice(&[a, a, a, a, b, a, a, a, a]).view([1, 1, 3, 3]).expand([c, 1, 3, 3], false);
    let output = img.to_kind(Kind::Float);
    let blurred = output.unsqueeze(0).conv2d(&kernel, None::<Tensor>, [1, 1], [0, 0], [1, 1], c).squeeze_dim(0).round();
    let mut view = output.narrow(1, 1, h - 2).narrow(2, 1, w - 2);
    let delta = (&blurred - &view) * (1.0 - factor);
    let _ = view.g_add_(&delta);
    output.clamp(0.0, 255.0).to_kind(Kind::Uint8)
}

/// `autocontrast_image`: each channel stretched from its [min, max] to [0, 255] (a flat channel unchanged).
fn autocontrast(img: &Tensor) -> Tensor {
    let x = img.to_kind(Kind::Float);
    let min = x.amin([-2i64, -1].as_slice(), true);
    let max = x.amax([-2i64, -1].as_slice(), true);
    let flat = max.eq_tensor(&min);
    let inv_scale = (&max - &min) * (1.0 / 255.0);
    let min = min.masked_fill(&flat, 0.0);
    let inv_scale = inv_scale.masked_fill(&flat, 1.0);
    ((x - min) / inv_scale).clamp(0.0, 255.0).to_kind(Kind::Uint8)
}

/// `equalize_image`: PIL's histogram-equalisation LUT per channel, in integers.
fn equalize(img: &Tensor) -> Result<Tensor> {
    let size = img.size();
    let data: Vec<u8> =
        Vec::try_from(img.contiguous().view([-1])).map_err(|e| Error::invalid(format!("equalize: {e}")))?;
    let plane = (size[1] * size[2]) as usize;
    let mut out = data.clone();
    for (src, dst) in data.chunks(plane).zip(out.chunks_mut(plane)) {
        let mut hist = [0i64; 256];
        for &v in src {
            hist[v as usize] += 1;
        }
        let mut cum = [0i64; 256];
        let mut total = 0;
        for (k, n) in hist.iter().enumerate() {
            total += n;
            cum[k] = total;
        }
        // The last non-empty bin: the first index of the cumulative maximum.
        let last = cum.iter().position(|&c| c == total).unwrap_or(255);
        let step = (plane as i64 - hist[last]) / 255;
        if step == 0 {
            continue;
        }
        let mut lut = [0u8; 256];
        for k in 1..256 {
            lut[k] = ((cum[k - 1] + step / 2) / step).clamp(0, 255) as u8;
        }
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = lut[s as usize];
        }
    }
    Ok(Tensor::from_slice(&out).view(size.as_slice()))
}

/// `_get_inverse_affine_matrix(center, angle, translate, scale=1, shear)`.
fn inverse_affine_matrix(center: [f64; 2], angle: f64, translate: [f64; 2], shear: [f64; 2]) -> [f64; 6] {
    let rot = angle.to_radians();
    let (sx, sy) = (shear[0].to_radians(), shear[1].to_radians());
    let (cx, cy) = (center[0], center[1]);
    let (tx, ty) = (translate[0], translate[1]);
    let cos_sy = sy.cos();
    let tan_sx = sx.tan();
    let rot_minus_sy = rot - sy;
    let (cx_plus_tx, cy_plus_ty) = (cx + tx, cy + ty);
    let a = rot_minus_sy.cos() / cos_sy;
    let b = -(a * tan_sx + rot.sin());
    let c = rot_minus_sy.sin() / cos_sy;
    let d = rot.cos() - c * tan_sx;
    let scale = 1.0;
    let mut m = [d / scale, -b / scale, 0.0, -c / scale, a / scale, 0.0];
    m[2] += cx - m[0] * cx_plus_tx - m[1] * cy_plus_ty;
    m[5] += cy - m[3] * cx_plus_tx - m[4] * cy_plus_ty;
    m
}

/// `_affine_grid(theta, w, h, ow=w, oh=h)`.
fn affine_grid(matrix: [f64; 6], w: i64, h: i64) -> Tensor {
    let opts = (Kind::Float, Device::Cpu);
    let theta = Tensor::from_slice(&matrix).to_kind(Kind::Float).reshape([1, 2, 3]);
    let x = Tensor::linspace((1.0 - w as f64) * 0.5, (w as f64 - 1.0) * 0.5, w, opts);
    let y = Tensor::linspace((1.0 - h as f64) * 0.5, (h as f64 - 1.0) * 0.5, h, opts);
    let base = Tensor::stack(
        &[x.view([1, w]).expand([h, w], false), y.view([h, 1]).expand([h, w], false), Tensor::ones([h, w], opts)],
        -1,
    )
    .unsqueeze(0)
    .contiguous();
    let scale = Tensor::from_slice(&[0.5 * w as f64, 0.5 * h as f64]).to_kind(Kind::Float);
    let mut rescaled = theta.transpose(1, 2);
    let _ = rescaled.g_div_(&scale);
    base.view([1, h * w, 3]).bmm(&rescaled).view([1, h, w, 2])
}

/// `_apply_grid_transform(img, grid, mode, fill=None)` for a uint8 image: grid_sample with zero padding, rounded.
fn apply_grid(img: &Tensor, grid: &Tensor, interp: Interp) -> Tensor {
    let mode = match interp {
        Interp::Bilinear => 0,
        Interp::Nearest => 1,
    };
    let x = img.unsqueeze(0).to_kind(Kind::Float);
    x.grid_sampler(grid, mode, 0, false).round().to_kind(Kind::Uint8).squeeze_dim(0)
}

/// `affine_image(img, angle, translate, scale=1, shear, interpolation, fill=None, center)`.
fn affine(
    img: &Tensor,
    angle: f64,
    translate: [f64; 2],
    shear: [f64; 2],
    center: Option<[f64; 2]>,
    interp: Interp,
) -> Tensor {
    let (h, w) = hw(img);
    let center_f = center.map_or([0.0, 0.0], |c| [c[0] - w as f64 * 0.5, c[1] - h as f64 * 0.5]);
    let matrix = inverse_affine_matrix(center_f, angle, translate, shear);
    apply_grid(img, &affine_grid(matrix, w, h), interp)
}

/// `rotate_image(img, angle, interpolation, expand=False, center=None, fill=None)` with its fast paths.
fn rotate(img: &Tensor, angle: f64, interp: Interp) -> Tensor {
    let angle = angle.rem_euclid(360.0);
    let (h, w) = hw(img);
    if angle == 0.0 {
        return img.copy();
    }
    if angle == 180.0 {
        return img.rot90(2, [-2, -1]);
    }
    if h == w && angle == 90.0 {
        return img.rot90(1, [-2, -1]);
    }
    if h == w && angle == 270.0 {
        return img.rot90(3, [-2, -1]);
    }
    let matrix = inverse_affine_matrix([0.0, 0.0], -angle, [0.0, 0.0], [0.0, 0.0]);
    apply_grid(img, &affine_grid(matrix, w, h), interp)
}

/// `--auto-augment` needs the per-image pipeline of an image folder; other data are refused in one line.
pub fn check_applies(policy: Option<Policy>, image_folder: bool, data: &str) -> Result<()> {
    if policy.is_some() && !image_folder {
        return Err(Error::config(format!(
            "⟨auto_augment⟩ applies to image folders (read by the workers with torchvision's transforms); {data} is \
             not one"
        )));
    }
    Ok(())
}
