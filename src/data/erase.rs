//! `RandomErasing(p, scale=(0.02, 0.33), ratio=(0.3, 3.3), value=0)` of torchvision's classification presets
//! (`--random-erase P`): applied after `Normalize`, so the erased box is 0 in normalised units. The box is drawn
//! in the worker with the sample's generator (after the crop and flip), and erased once the batch is normalised.
use rand::Rng;
use tch::Tensor;

use super::transforms::CropBox;
use crate::error::{Error, Result};

/// RandomErasing's area range (of the image) and aspect-ratio range, torchvision's defaults.
pub const SCALE: (f64, f64) = (0.02, 0.33);
pub const RATIO: (f64, f64) = (0.3, 3.3);

/// Checks `--random-erase P` in one line.
pub fn check_probability(p: f64) -> Result<()> {
    if !(0.0..=1.0).contains(&p) {
        return Err(Error::config(format!("⟨random_erase⟩ {p}: give a probability in [0, 1], e.g. 0.25")));
    }
    Ok(())
}

/// torchvision's `RandomErasing`: applied with probability `p` (`rand >= p` skips), then ten tries at an area
/// and log-uniform aspect ratio (`h = round(√(area·ratio))`, `w = round(√(area/ratio))`, half to even) that fit
/// strictly inside; `None` when skipped or when no try fits (torchvision then leaves the image as it is).
pub fn random_erasing_params(rng: &mut impl Rng, p: f64, height: i64, width: i64) -> Option<CropBox> {
    if rng.gen::<f64>() >= p {
        return None;
    }
    let area = (height * width) as f64;
    let (lo, hi) = (RATIO.0.ln(), RATIO.1.ln());
    for _ in 0..10 {
        let erase_area = area * rng.gen_range(SCALE.0..SCALE.1);
        let aspect = rng.gen_range(lo..hi).exp();
        let h = (erase_area * aspect).sqrt().round_ties_even() as i64;
        let w = (erase_area / aspect).sqrt().round_ties_even() as i64;
        if !(h < height && w < width) {
            continue;
        }
        let top = rng.gen_range(0..=height - h);
        let left = rng.gen_range(0..=width - w);
        return Some(CropBox { top, left, height: h, width: w });
    }
    None
}

/// `F.erase(img, i, j, h, w, v=0)` in place on image `k` of a batch [N, C, H, W].
pub fn erase_in_batch(xs: &Tensor, k: i64, b: CropBox) {
    let _ = xs.get(k).narrow(1, b.top, b.height).narrow(2, b.left, b.width).fill_(0.0);
}

/// `--random-erase` needs the per-image pipeline of an image folder; other data are refused in one line.
pub fn check_applies(p: f64, image_folder: bool, data: &str) -> Result<()> {
    if p > 0.0 && !image_folder {
        return Err(Error::config(format!(
            "⟨random_erase⟩ applies to image folders (read by the workers with torchvision's transforms); {data} is \
             not one"
        )));
    }
    Ok(())
}
