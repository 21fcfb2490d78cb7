//! DCT-domain JPEG downscaling, as PIL's `Image.draft`, DALI and FFCV do it: when the region a transform keeps
//! (RandomResizedCrop's box, or the whole image for the evaluation `Resize`) is at least twice the output size, a
//! JPEG is decoded at 1/2, 1/4 or 1/8 of its size by a reduced inverse DCT (jpeg-decoder's `Decoder::scale`) and
//! the box is mapped to the reduced image; the resize that follows then starts from fewer pixels. The crop box,
//! flip and every other random draw are made on the full image's size, so the sample's generator draws the same
//! numbers either way. torchvision decodes at full size: the outputs differ by a few grey levels (a box filter
//! in the DCT before the antialiased resize); `--decode-scaling off` gives torchvision's pipeline exactly.
use rand::Rng;
use tch::Tensor;

use super::folder;
use super::transforms::{shorter_side_size, CropBox, Transforms};
use crate::error::{Error, Result};

/// Whether `--decode-scaling` is on when not given.
pub const DEFAULT: bool = false;

/// The largest reduction 8, 4 or 2 by which a region whose shorter side is `side` pixels can shrink and still be
/// at least `out` pixels (1 when none can).
pub fn reduction(side: i64, out: i64) -> i64 {
    [8, 4, 2].into_iter().find(|&s| side >= out * s).unwrap_or(1)
}

/// The [height, width] of a JPEG from its frame header (the markers walked up to SOF, nothing decoded); `None`
/// for anything else, or a JPEG this decoder does not reduce (not 8-bit, not 1 or 3 components, lossless or
/// arithmetic-coded), which then takes the full decoder.
pub fn jpeg_size(bytes: &[u8]) -> Option<[i64; 2]> {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let mut at = 2;
    loop {
        // A marker: 0xFF (fill bytes repeat it), then its code.
        while *bytes.get(at)? == 0xFF && *bytes.get(at + 1)? == 0xFF {
            at += 1;
        }
        if *bytes.get(at)? != 0xFF {
            return None;
        }
        let code = *bytes.get(at + 1)?;
        at += 2;
        if code == 0x01 || (0xD0..=0xD7).contains(&code) {
            continue;
        }
        let len = u16::from_be_bytes([*bytes.get(at)?, *bytes.get(at + 1)?]) as usize;
        match code {
            // SOF0 (baseline), SOF1 (extended), SOF2 (progressive), Huffman-coded.
            0xC0..=0xC2 => {
                let sof = bytes.get(at + 2..at + 8)?;
                let (precision, h, w, components) =
                    (sof[0], u16::from_be_bytes([sof[1], sof[2]]), u16::from_be_bytes([sof[3], sof[4]]), sof[5]);
                return (precision == 8 && h > 0 && w > 0 && (components == 1 || components == 3))
                    .then_some([h as i64, w as i64]);
            }
            0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF | 0xD9 | 0xDA => return None,
            _ if len < 2 => return None,
            _ => at += len,
        }
    }
}

/// A JPEG of `size` ([height, width]) decoded at 1/`s` of it (s = 2, 4 or 8): uint8 [C, H', W'] with H' = ⌈H/s⌉.
pub fn decode_reduced(bytes: &[u8], name: &str, size: [i64; 2], s: i64, channels: u32) -> Result<Tensor> {
    let bad = |e: String| folder::bad_image(name, e);
    let (h, w) = ((size[0] + s - 1) / s, (size[1] + s - 1) / s);
    let decoded = std::panic::catch_unwind(|| -> std::result::Result<_, String> {
        let mut d = jpeg_decoder::Decoder::new(bytes);
        let (w2, h2) = d.scale(w as u16, h as u16).map_err(|e| e.to_string())?;
        let raw = d.decode().map_err(|e| e.to_string())?;
        let info = d.info().ok_or("no frame header")?;
        Ok((w2, h2, raw, info))
    });
    let (w2, h2, raw, info) = decoded.map_err(|_| bad("the reduced decoder failed on it".into()))?.map_err(bad)?;
    let (w2, h2) = (w2 as u32, h2 as u32);
    let img = match info.pixel_format {
        jpeg_decoder::PixelFormat::L8 => image::GrayImage::from_raw(w2, h2, raw).map(image::DynamicImage::ImageLuma8),
        jpeg_decoder::PixelFormat::RGB24 => image::RgbImage::from_raw(w2, h2, raw).map(image::DynamicImage::ImageRgb8),
        _ => None,
    }
    .ok_or_else(|| bad(format!("the reduced decode of a {w}x{h} JPEG gave a short buffer")))?;
    folder::to_tensor(img, name, channels)
}

/// [`decode_reduced`], or where jpeg-decoder fails on the file, the full decoder (which reads more JPEGs, and
/// otherwise says what is wrong with it).
fn reduced_or_full(bytes: &[u8], name: &str, size: [i64; 2], s: i64, channels: u32) -> Result<Tensor> {
    decode_reduced(bytes, name, size, s, channels).or_else(|_| folder::decode_bytes(bytes, name, channels))
}

/// `b` (on an image of `full` = [height, width]) on the reduced image of `reduced` size: its edges scaled and
/// rounded, at least one pixel, inside the image.
pub fn map_box(b: CropBox, full: [i64; 2], reduced: [i64; 2]) -> CropBox {
    let edge = |x: i64, axis: usize| (x as f64 * reduced[axis] as f64 / full[axis] as f64).round() as i64;
    let (top, left) = (edge(b.top, 0).min(reduced[0] - 1), edge(b.left, 1).min(reduced[1] - 1));
    let bottom = edge(b.top + b.height, 0).clamp(top + 1, reduced[0]);
    let right = edge(b.left + b.width, 1).clamp(left + 1, reduced[1]);
    CropBox { top, left, height: bottom - top, width: right - left }
}

/// One image file's bytes decoded and transformed: the training transform when `rng` is given (its draws as
/// [`Transforms::train`] makes them), else the evaluation transform. With `t.decode_scaling`, a JPEG whose kept
/// region allows it is decoded reduced; otherwise (and always with it off) this is `decode_bytes` then
/// `train`/`eval`, bit for bit.
pub fn decode_transform(bytes: &[u8], name: &str, t: &Transforms, rng: Option<&mut impl Rng>) -> Result<Tensor> {
    // The full decode is read in place ([H, W, C] pixels as a [C, H, W] view); the output is made contiguous.
    Ok(transform_decoded(bytes, name, t, rng)?.contiguous())
}

fn transform_decoded(bytes: &[u8], name: &str, t: &Transforms, rng: Option<&mut impl Rng>) -> Result<Tensor> {
    let size = if t.decode_scaling { jpeg_size(bytes) } else { None };
    let Some(full) = size else {
        let img = folder::decode_bytes_hwc(bytes, name, t.channels)?;
        let out = match rng {
            Some(rng) => t.train(&img, rng),
            None => t.eval(&img),
        };
        return out.map_err(|e| Error::data(name, e.to_string()));
    };
    match rng {
        Some(rng) => {
            let (b, flip) = t.train_params(rng, full[0], full[1]);
            let s = reduction(b.height.min(b.width), t.train_crop_size as i64);
            if s == 1 {
                let img = folder::decode_bytes_hwc(bytes, name, t.channels)?;
                return t.train_apply(&img, b, flip, rng).map_err(|e| Error::data(name, e.to_string()));
            }
            let img = reduced_or_full(bytes, name, full, s, t.channels)?;
            let reduced = [img.size()[1], img.size()[2]];
            t.train_apply(&img, map_box(b, full, reduced), flip, rng).map_err(|e| Error::data(name, e.to_string()))
        }
        None => {
            let resized = shorter_side_size(full[0], full[1], t.val_resize_size as i64);
            let s = reduction(full[0].min(full[1]), t.val_resize_size as i64);
            let img = if s == 1 {
                folder::decode_bytes_hwc(bytes, name, t.channels)?
            } else {
                reduced_or_full(bytes, name, full, s, t.channels)?
            };
            t.eval_at(&img, resized).map_err(|e| Error::data(name, e.to_string()))
        }
    }
}
