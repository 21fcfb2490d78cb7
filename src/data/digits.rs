//! scikit-learn's `load_digits`: 1797 real 8×8 handwritten digits (pixels 0..16, labels 0..9), embedded in the
//! binary as MNIST IDX files (`assets/digits/`, written by `scripts/export_data.py --embedded`), in sklearn's order.
use std::collections::BTreeMap;

use tch::Kind;

use super::files::{bad_opt, check_options, idx, parse_opt, torch_err};
use super::{Dataset, Task};
use crate::error::{Error, Result};

const IMAGES_GZ: &[u8] = include_bytes!("../../assets/digits/digits-images-idx3-ubyte.gz");
const LABELS_GZ: &[u8] = include_bytes!("../../assets/digits/digits-labels-idx1-ubyte.gz");
pub const N_SAMPLES: usize = 1797;
/// The side of the stored images.
pub const ORIGINAL_SIZE: usize = 8;
/// The side `load` resizes to by default, so that LeNet-style models take it as they take MNIST.
pub const DEFAULT_SIZE: usize = 32;

/// The digits as float32 [1797, 1, S, S] in [0, 1] (pixels / 16), S = option `size` (default 32, bilinear with
/// align_corners=false; `size=8` keeps the original pixels), labels 0..9.
///
/// Two options make other tasks of it (transfer learning): `classes=A-B` keeps the digits A to B, labelled
/// 0..=B−A in that order (class names stay the digits); `per_class=N` keeps the first N samples of each class, in
/// sklearn's order.
pub fn load(options: &BTreeMap<String, String>) -> Result<Dataset> {
    const NAME: &str = "digits";
    check_options(NAME, options, &["size", "classes", "per_class"])?;
    let classes_expected = "a range of digits, e.g. classes=0-4";
    let (lo, hi) = match options.get("classes") {
        None => (0, 9),
        Some(v) => {
            let bad = || bad_opt(NAME, "classes", v, classes_expected);
            let (a, b) = v.trim().split_once('-').ok_or_else(bad)?;
            let (a, b): (i64, i64) = (a.trim().parse().map_err(|_| bad())?, b.trim().parse().map_err(|_| bad())?);
            if !(0..=9).contains(&a) || !(a..=9).contains(&b) {
                return Err(bad());
            }
            (a, b)
        }
    };
    let per_class: Option<usize> = match options.get("per_class") {
        None => None,
        Some(_) => Some(parse_opt(NAME, options, "per_class", 0, "a count of samples per class, e.g. per_class=20")?),
    };
    if per_class == Some(0) {
        return Err(bad_opt(NAME, "per_class", "0", "at least 1 sample per class"));
    }
    let expected = "a side in pixels, 8 (the original) to 512, e.g. size=32";
    let size = parse_opt(NAME, options, "size", DEFAULT_SIZE, expected)?;
    if !(ORIGINAL_SIZE..=512).contains(&size) {
        return Err(bad_opt(NAME, "size", &size.to_string(), expected));
    }
    let images = idx::decode_bytes(IMAGES_GZ, "digits (embedded images)")?;
    let labels = idx::decode_bytes(LABELS_GZ, "digits (embedded labels)")?;
    let side = ORIGINAL_SIZE as i64;
    if images.dims != [N_SAMPLES, ORIGINAL_SIZE, ORIGINAL_SIZE] || labels.dims != [N_SAMPLES] {
        return Err(Error::data(NAME, "the embedded copy has the wrong shape; run scripts/export_data.py --embedded"));
    }
    let xs = images.to_tensor()?.reshape([N_SAMPLES as i64, 1, side, side]).to_kind(Kind::Float) / 16.0;
    let xs = if size == ORIGINAL_SIZE {
        xs
    } else {
        let s = size as i64;
        xs.f_upsample_bilinear2d([s, s], false, None, None).map_err(torch_err(NAME))?
    };
    let ys = labels.to_tensor()?.to_kind(Kind::Int64);
    if (lo, hi) == (0, 9) && per_class.is_none() {
        let mut data = Dataset::new(NAME, xs, ys, Task::Classification { n_classes: 10 })?;
        data.class_names = Some((0..10).map(|d| d.to_string()).collect());
        return Ok(data);
    }
    let labels: Vec<i64> = Vec::try_from(&ys).map_err(torch_err(NAME))?;
    let mut seen = [0usize; 10];
    let keep: Vec<i64> = (0..labels.len() as i64)
        .filter(|&i| {
            let d = labels[i as usize];
            let take = (lo..=hi).contains(&d) && per_class.is_none_or(|n| seen[d as usize] < n);
            if take {
                seen[d as usize] += 1;
            }
            take
        })
        .collect();
    let keep = tch::Tensor::from_slice(&keep);
    let xs = xs.index_select(0, &keep);
    let ys = ys.index_select(0, &keep) - lo;
    let mut data = Dataset::new(NAME, xs, ys, Task::Classification { n_classes: (hi - lo + 1) as usize })?;
    data.class_names = Some((lo..=hi).map(|d| d.to_string()).collect());
    Ok(data)
}
