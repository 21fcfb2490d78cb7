//! An image folder as torchvision's `ImageFolder` reads it: one sub-folder per class, class index = the sorted
//! order of the sub-folder names, files in `sorted(os.walk(...))` order with sorted names. PNG and JPEG only.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use image::imageops::FilterType;
use tch::{Kind, Tensor};

use super::{check_options, parse_size, torch_err};
use crate::data::{Dataset, Task};
use crate::error::{Error, Result};

const SUPPORTED: [&str; 3] = ["png", "jpg", "jpeg"];
/// Image types torchvision would read but we cannot: an error rather than a silent skip.
const UNSUPPORTED: [&str; 7] = ["ppm", "bmp", "pgm", "tif", "tiff", "webp", "gif"];
/// The most memory the decoded set may take (float32 tensor plus the byte buffer).
const MAX_MEMORY: u64 = 32 << 30;
const MAX_DEPTH: usize = 32;

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

    let mut classes: Vec<(String, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        if path.is_dir() {
            let class = path
                .file_name()
                .and_then(|n| n.to_str())
                .map(String::from)
                .ok_or_else(|| Error::data(path.display(), "the folder name is not valid UTF-8; rename it"))?;
            classes.push((class, path));
        }
    }
    if classes.is_empty() {
        return Err(Error::data(
            &name,
            "found no data here: expected IDX files (train-images-idx3-ubyte[.gz]), CIFAR-10 batches \
             (data_batch_1.bin), or one sub-folder of PNG/JPEG images per class",
        ));
    }
    classes.sort();

    let mut samples: Vec<(PathBuf, i64)> = Vec::new();
    for (label, (class, class_dir)) in classes.iter().enumerate() {
        let mut dirs = Vec::new();
        walk(class_dir, 0, &mut dirs)?;
        dirs.sort();
        let before = samples.len();
        for (_, files) in dirs {
            samples.extend(files.into_iter().map(|f| (f, label as i64)));
        }
        if samples.len() == before {
            return Err(Error::data(
                class_dir.display(),
                format!("class folder '{class}' has no PNG or JPEG images; add some or remove the folder"),
            ));
        }
    }

    let n = samples.len();
    let mut ys: Vec<i64> = Vec::with_capacity(n);
    let mut buf: Vec<u8> = Vec::new();
    let given = size.is_some();
    let mut target: Option<(u32, u32)> = size.map(|(h, w)| (w as u32, h as u32));
    let mut first: Option<&Path> = None;
    let mut all_gray = true;
    let mut stride = 0usize;
    for (path, label) in &samples {
        let img = decode(path)?;
        let (w, h) = *target.get_or_insert((img.width(), img.height()));
        let first = *first.get_or_insert(path);
        if !given && (img.width(), img.height()) != (w, h) {
            // A size is never taken silently from one file.
            return Err(Error::data(
                path.display(),
                format!(
                    "the image is {}x{} but {} is {h}x{w}; give the size all images become, e.g. {name}:size={h}x{w}, \
                     or train with the lazy pipeline (--train-crop-size)",
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
        ys.push(*label);
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
    let mut data = Dataset::new(&name, xs, ys, Task::Classification { n_classes: classes.len() })?;
    data.class_names = Some(classes.into_iter().map(|(c, _)| c).collect());
    Ok(data)
}

/// Collects (folder, sorted image files) for `dir` and its sub-folders, like `os.walk(followlinks=True)`.
fn walk(dir: &Path, depth: usize, out: &mut Vec<(String, Vec<PathBuf>)>) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(Error::data(dir.display(), "folders nest too deep (a link loop?); flatten the class folders"));
    }
    let mut files = Vec::new();
    let mut subdirs = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        if path.is_dir() {
            subdirs.push(path);
            continue;
        }
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        if SUPPORTED.contains(&ext.as_str()) {
            files.push(path);
        } else if UNSUPPORTED.contains(&ext.as_str()) {
            return Err(Error::data(
                path.display(),
                format!(".{ext} images are not supported (PNG and JPEG are); convert it or move it out"),
            ));
        }
    }
    files.sort();
    out.push((dir.display().to_string(), files));
    for sub in subdirs {
        walk(&sub, depth + 1, out)?;
    }
    Ok(())
}

fn decode(path: &Path) -> Result<image::DynamicImage> {
    let open = || -> Result<_> {
        let reader = image::ImageReader::open(path).map_err(|e| Error::io(path, e))?;
        reader.with_guessed_format().map_err(|e| Error::io(path, e))
    };
    // The size from the header, checked before decoding: a few hundred KB of PNG can declare gigapixels.
    let (w, h) = open()?
        .into_dimensions()
        .map_err(|e| Error::data(path.display(), format!("cannot read the image header: {e}; fix or remove it")))?;
    // Decoded RGBA (up to 16 bits a channel), and a converted copy.
    crate::util::check_memory(w as u64 * h as u64 * 8 * 2, format!("{} ({w}x{h} pixels)", path.display()))?;
    let reader = open()?;
    reader.decode().map_err(|e| Error::data(path.display(), format!("cannot decode the image: {e}; fix or remove it")))
}
