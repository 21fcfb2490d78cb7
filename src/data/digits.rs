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
pub fn load(options: &BTreeMap<String, String>) -> Result<Dataset> {
    const NAME: &str = "digits";
    check_options(NAME, options, &["size"])?;
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
    let mut data = Dataset::new(NAME, xs, ys, Task::Classification { n_classes: 10 })?;
    data.class_names = Some((0..10).map(|d| d.to_string()).collect());
    Ok(data)
}
