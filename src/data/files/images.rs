//! An image folder as torchvision's `ImageFolder` reads it: one sub-folder per class, class index = the sorted
//! order of the sub-folder names, files in `sorted(os.walk(...))` order with sorted names (the walker and the
//! decoder are the lazy pipeline's, `data::folder`).
use std::collections::BTreeMap;
use std::path::Path;

use image::imageops::FilterType;
use tch::{Kind, Tensor};

use super::{check_options, parse_size, torch_err};
use crate::data::{Dataset, Task};
use crate::error::{Error, Result};

/// The most memory the decoded set may take (float32 tensor plus the byte buffer).
const MAX_MEMORY: u64 = 32 << 30;

/// Loads one sub-folder of images per class into memory. All images must have one size, or option `size=HxW`
/// gives the size they are resized (bilinear) to; 3 channels (RGB, alpha dropped) unless every image is grayscale, or option `channels=1|3`.
pub fn load_folder(dir: &Path, options: &BTreeMap<String, String>) -> Result<Dataset> {
    let name = dir.display().to_string();
    check_options(&name, options, &["size", "channels"])?;
    let size = parse_size(&name, options)?;
    let channels = match options.get("channels").map(|s| s.trim()) {
        None => None,
        Some("1") => Some(1usize),
        Some("3") => Some(3),
        Some(v) => return Err(super::bad_opt(&name, "channels", v, "1 (grayscale) or 3 (RGB)")),
    };

    // The one walker: ImageFolder's order and class indices, the one list of extensions.
    let index = crate::data::folder::index(dir)?;
    let samples: Vec<(&Path, i64)> =
        index.paths.iter().map(|p| &**p).zip(index.labels.iter().map(|&l| l as i64)).collect();
    let n = samples.len();
    let mut ys: Vec<i64> = Vec::with_capacity(n);
    let mut buf: Vec<u8> = Vec::new();
    let given = size.is_some();
    let mut target: Option<(u32, u32)> = size.map(|(h, w)| (w as u32, h as u32));
    let mut first: Option<&Path> = None;
    let mut all_gray = true;
    let mut stride = 0usize;
    for &(path, label) in &samples {
        let img = decode(path)?;
        let (w, h) = *target.get_or_insert((img.width(), img.height()));
        let first = *first.get_or_insert(path);
        if !given && (img.width(), img.height()) != (w, h) {
            // A size is never taken silently from one file.
            return Err(Error::data(
                path.display(),
                format!(
                    "the image is {}x{} but {} is {h}x{w}; give the size all images become, e.g. {name}:size={h}x{w}, \
                     or train with the lazy pipeline (⟨train_crop_size⟩)",
                    img.height(),
                    img.width(),
                    first.display()
                ),
            ));
        }
        if w == 0 || h == 0 {
            return Err(Error::data(path.display(), "the image is 0 pixels wide or high; remove it"));
        }
        if buf.is_empty() {
            stride = w as usize * h as usize * channels.unwrap_or(3);
            let need = n as u64 * stride as u64 * 2;
            if need > MAX_MEMORY.min(crate::util::memory_available()) {
                return Err(Error::data(
                    &name,
                    format!("{n} images of {h}x{w} would take {} GiB in memory; pass a smaller size=HxW", need >> 30),
                ));
            }
            buf.reserve_exact(n * stride);
        }
        all_gray &= !img.color().has_color();
        let img =
            if (img.width(), img.height()) == (w, h) { img } else { img.resize_exact(w, h, FilterType::Triangle) };
        match channels {
            Some(1) => buf.extend_from_slice(img.to_luma8().as_raw()),
            _ => buf.extend_from_slice(img.to_rgb8().as_raw()),
        }
        ys.push(label);
    }
    let (w, h) = target.unwrap_or((0, 0));
    let c = channels.unwrap_or(3) as i64;
    debug_assert_eq!(buf.len(), n * stride);
    let hwc =
        Tensor::f_from_data_size(&buf, &[n as i64, h as i64, w as i64, c], Kind::Uint8).map_err(torch_err(&name))?;
    drop(buf);
    let mut xs = hwc.permute([0, 3, 1, 2]);
    if channels.is_none() && all_gray {
        xs = xs.narrow(1, 0, 1);
    }
    // uint8 in memory; batches become float32 in [0, 1].
    let xs = xs.contiguous();
    let ys = Tensor::from_slice(&ys);
    let mut data = Dataset::new(&name, xs, ys, Task::Classification { n_classes: index.class_names.len() })?;
    data.class_names = Some(index.class_names);
    Ok(data)
}

fn decode(path: &Path) -> Result<image::DynamicImage> {
    let bytes = crate::data::folder::read_file(path)?;
    crate::data::folder::decode_image(&bytes, &path.display().to_string())
}
