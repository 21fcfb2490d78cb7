//! A lazy image folder: the index torchvision's `ImageFolder` builds (class folders sorted, class index = that
//! order, files in `sorted(os.walk(..., followlinks=True))` order with sorted names, the extensions of
//! `IMG_EXTENSIONS`), and nothing decoded. Listing uses the directory entries' types, so it costs one `readdir`
//! per folder and no `stat` per file: a million files index in seconds.
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// torchvision's `IMG_EXTENSIONS` that the image crate here decodes.
pub const READABLE: [&str; 6] = ["jpg", "jpeg", "png", "bmp", "ppm", "pgm"];
/// torchvision's `IMG_EXTENSIONS` that it does not: an error naming the file rather than a silent skip.
pub const UNREADABLE: [&str; 3] = ["tif", "tiff", "webp"];
const MAX_DEPTH: usize = 32;

/// What an image folder is without decoding: file paths, labels, class names.
#[derive(Debug, Clone)]
pub struct ImageIndex {
    pub root: PathBuf,
    pub paths: Vec<Box<Path>>,
    pub labels: Vec<u32>,
    pub class_names: Vec<String>,
}

impl ImageIndex {
    pub fn len(&self) -> usize {
        self.paths.len()
    }
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }
}

/// Indexes `dir` (one sub-folder per class).
pub fn index(dir: &Path) -> Result<ImageIndex> {
    if !dir.is_dir() {
        let what = if dir.exists() { "is not a folder" } else { "no such folder" };
        return Err(Error::data(dir.display(), format!("{what}; give an image folder with one sub-folder per class")));
    }
    let mut classes: Vec<(String, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        if is_dir(&entry, &path) {
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
            dir.display(),
            "found no data here: expected IDX files (train-images-idx3-ubyte[.gz]), CIFAR-10 batches \
             (data_batch_1.bin), or one sub-folder of images (PNG, JPEG, BMP, PPM/PGM) per class",
        ));
    }
    classes.sort();
    let mut paths: Vec<Box<Path>> = Vec::new();
    let mut labels = Vec::new();
    for (label, (class, class_dir)) in classes.iter().enumerate() {
        let mut dirs = Vec::new();
        walk(class_dir, 0, &mut dirs)?;
        dirs.sort_by(|a, b| a.0.cmp(&b.0));
        let before = paths.len();
        for (_, files) in dirs {
            labels.extend(std::iter::repeat_n(label as u32, files.len()));
            paths.extend(files);
        }
        if paths.len() == before {
            return Err(Error::data(
                class_dir.display(),
                format!("class folder '{class}' has no images (PNG, JPEG, BMP, PPM/PGM); add some or remove it"),
            ));
        }
    }
    Ok(ImageIndex { root: dir.to_path_buf(), paths, labels, class_names: classes.into_iter().map(|c| c.0).collect() })
}

fn is_dir(entry: &std::fs::DirEntry, path: &Path) -> bool {
    match entry.file_type() {
        Ok(t) if t.is_symlink() => path.is_dir(),
        Ok(t) => t.is_dir(),
        Err(_) => path.is_dir(),
    }
}

/// Collects (folder, sorted image files) for `dir` and its sub-folders, like `os.walk(followlinks=True)`.
fn walk(dir: &Path, depth: usize, out: &mut Vec<(String, Vec<Box<Path>>)>) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(Error::data(dir.display(), "folders nest too deep (a link loop?); flatten the class folders"));
    }
    let mut files = Vec::new();
    let mut subdirs = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        if is_dir(&entry, &path) {
            subdirs.push(path);
            continue;
        }
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        if READABLE.contains(&ext.as_str()) {
            files.push(path.into_boxed_path());
        } else if UNREADABLE.contains(&ext.as_str()) {
            return Err(Error::data(
                path.display(),
                format!(".{ext} images are not supported (PNG, JPEG, BMP, PPM/PGM are); convert it or move it out"),
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

/// Decodes one image file to a uint8 tensor [C, H, W] (C = `channels`, 1 or 3; alpha dropped, grey expanded).
pub fn decode(path: &Path, channels: u32) -> Result<tch::Tensor> {
    decode_bytes(&read_file(path)?, &path.display().to_string(), channels)
}

/// An image file's bytes, up to a size no image here reaches (256 MB).
pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    const MAX_BYTES: u64 = 256 << 20;
    crate::data::files::read_all(path, MAX_BYTES)
}

/// Decodes an image file's bytes (as [`decode`]); `name` names it in errors.
pub fn decode_bytes(bytes: &[u8], name: &str, channels: u32) -> Result<tch::Tensor> {
    to_tensor(decode_image(bytes, name)?, name, channels)
}

/// As [`decode_bytes`], as a [C, H, W] view of the decoded pixels in their [H, W, C] order (channels-last
/// strides, not copied): for a transform whose first op reads a crop of it (libtorch's uint8 resize takes either
/// layout and gives the same values).
pub fn decode_bytes_hwc(bytes: &[u8], name: &str, channels: u32) -> Result<tch::Tensor> {
    hwc_tensor(decode_image(bytes, name)?, name, channels)
}

/// The one image decoder (every reader of image files calls it: the workers, the in-memory folder loader,
/// `predict`/`evaluate` and `pack`): the format guessed from the bytes, the size read from the header and checked
/// against the memory before decoding (a few hundred KB of PNG can declare gigapixels), one line on failure.
pub fn decode_image(bytes: &[u8], name: &str) -> Result<image::DynamicImage> {
    use image::ImageDecoder;
    const MAX_ALLOC: u64 = 1 << 30;
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Error::data(name, format!("cannot read the image: {e}")))?;
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_ALLOC);
    reader.limits(limits);
    let decoder = reader.into_decoder().map_err(|e| bad_image(name, e.to_string()))?;
    let (w, h) = decoder.dimensions();
    if w == 0 || h == 0 {
        return Err(bad_image(name, "0 pixels wide or high".into()));
    }
    // Decoded RGBA (up to 16 bits a channel), and a converted copy; the free memory is read only for a large one.
    let need = w as u64 * h as u64 * 8 * 2;
    if need > 64 << 20 {
        crate::util::check_memory(need, format!("{name} ({w}x{h} pixels)"))?;
    }
    if decoder.total_bytes() > MAX_ALLOC {
        return Err(bad_image(name, format!("{w}x{h} pixels is more than this reader decodes (1 GiB)")));
    }
    image::DynamicImage::from_decoder(decoder).map_err(|e| bad_image(name, e.to_string()))
}

/// "cannot decode the image", on one line (the decoders' messages may span lines).
pub(crate) fn bad_image(name: &str, e: String) -> Error {
    let e = e.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ");
    Error::data(name, format!("cannot decode the image: {e}; fix or remove it"))
}

/// A decoded image as a uint8 tensor [C, H, W] with `channels` (1: grey, else RGB; alpha dropped, grey expanded).
pub fn to_tensor(img: image::DynamicImage, name: &str, channels: u32) -> Result<tch::Tensor> {
    Ok(hwc_tensor(img, name, channels)?.contiguous())
}

/// The [C, H, W] view of a decoded image's [H, W, C] pixels.
fn hwc_tensor(img: image::DynamicImage, name: &str, channels: u32) -> Result<tch::Tensor> {
    let (w, h) = (img.width() as i64, img.height() as i64);
    let (raw, c) = match channels {
        1 => (img.into_luma8().into_raw(), 1),
        _ => (img.into_rgb8().into_raw(), 3),
    };
    let hwc = tch::Tensor::f_from_data_size(&raw, &[h, w, c], tch::Kind::Uint8)
        .map_err(|e| bad_image(name, e.to_string()))?;
    Ok(hwc.permute([2, 0, 1]))
}
