//! Training-time image augmentation on the device, drawn from libtorch's seeded generator, no host round trip:
//! a random affine map per sample (rotation, scale, shift), or CIFAR's random crop with zero padding and
//! horizontal flip.
use tch::{Kind, Tensor};

use crate::error::{Error, Result};
use crate::util::Spec;

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Affine {
    /// Largest rotation, degrees either way.
    pub rotate: f64,
    /// Largest relative change of scale (0.1 = ±10 %).
    pub scale: f64,
    /// Largest shift as a fraction of the image size, each axis.
    pub shift: f64,
}

impl Affine {
    /// `affine[:rotate=10,scale=0.1,shift=0.1]`.
    fn parse_affine(spec: &str) -> Result<Affine> {
        let s = Spec::parse(spec, "augment")?;
        if s.source != "affine" {
            return Err(Error::config(format!(
                "unknown augmentation '{}'; use affine[:rotate=10,scale=0.1,shift=0.1]",
                s.source
            )));
        }
        let get = |k: &str, d: f64| -> Result<f64> {
            s.options.get(k).map_or(Ok(d), |v| {
                v.parse().map_err(|_| Error::config(format!("augment option {k}={v} is not a number")))
            })
        };
        for k in s.options.keys() {
            if !["rotate", "scale", "shift"].contains(&k.as_str()) {
                return Err(Error::config(format!("augment option '{k}' unknown; use rotate, scale, shift")));
            }
        }
        Ok(Affine { rotate: get("rotate", 10.0)?, scale: get("scale", 0.1)?, shift: get("shift", 0.1)? })
    }

    /// Applies a fresh random transform to each image of `xs` [N, C, H, W].
    pub fn apply(&self, xs: &Tensor) -> Tensor {
        let size = xs.size();
        if size.len() != 4 {
            return xs.shallow_clone();
        }
        let n = size[0];
        let opts = (Kind::Float, xs.device());
        let uniform = |lim: f64| Tensor::rand([n], opts) * (2.0 * lim) - lim;
        let angle = uniform(self.rotate.to_radians());
        let scale = uniform(self.scale) + 1.0;
        let (tx, ty) = (uniform(self.shift * 2.0), uniform(self.shift * 2.0));
        let (cos, sin) = (angle.cos() / &scale, angle.sin() / &scale);
        let theta = Tensor::stack(&[&cos, &(-&sin), &tx, &sin, &cos, &ty], 1).reshape([n, 2, 3]);
        let grid = Tensor::affine_grid_generator(&theta, size.as_slice(), false);
        // bilinear, zero padding
        xs.grid_sampler(&grid, 0, 0, false)
    }
}

/// An augmentation by name.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Augment {
    Affine(Affine),
    /// Pad by `pad` zeros, crop back to the size at a random offset, flip left-right with probability ½ when
    /// `flip` (the usual CIFAR augmentation of He et al. 2016).
    CropFlip {
        pad: i64,
        flip: bool,
    },
}

impl Augment {
    /// `affine[:rotate=10,scale=0.1,shift=0.1]`, or `crop_flip[:pad=4,flip=true]` (also `cifar`).
    pub fn parse(spec: &str) -> Result<Augment> {
        let s = Spec::parse(spec, "augment")?;
        match s.source.as_str() {
            "affine" => Ok(Augment::Affine(Affine::parse_affine(spec)?)),
            "crop_flip" | "cifar" => {
                for k in s.options.keys() {
                    if !["pad", "flip"].contains(&k.as_str()) {
                        return Err(Error::config(format!("augment option '{k}' unknown; crop_flip takes pad, flip")));
                    }
                }
                let pad = match s.options.get("pad") {
                    None => 4,
                    Some(v) => v.parse().ok().filter(|p: &i64| *p >= 0).ok_or_else(|| {
                        Error::config(format!("augment option pad={v}: give a whole number of pixels ≥ 0"))
                    })?,
                };
                let flip = match s.options.get("flip") {
                    None => true,
                    Some(v) => v.parse().map_err(|_| Error::config(format!("augment option flip={v}: true or false")))?,
                };
                Ok(Augment::CropFlip { pad, flip })
            }
            other => Err(Error::config(format!(
                "unknown augmentation '{other}'; use affine[:rotate=10,scale=0.1,shift=0.1] or crop_flip[:pad=4,flip=true]"
            ))),
        }
    }

    /// Applies a fresh random draw to each image of `xs` [N, C, H, W]; other shapes pass unchanged.
    pub fn apply(&self, xs: &Tensor) -> Tensor {
        match self {
            Augment::Affine(a) => a.apply(xs),
            Augment::CropFlip { pad, flip } => crop_flip(xs, *pad, *flip),
        }
    }
}

fn crop_flip(xs: &Tensor, pad: i64, flip: bool) -> Tensor {
    let size = xs.size();
    let [n, c, h, w] = size[..] else { return xs.shallow_clone() };
    let device = xs.device();
    let mut out = xs.shallow_clone();
    if pad > 0 {
        let padded = xs.constant_pad_nd([pad, pad, pad, pad]);
        let offsets = |len: i64| {
            let start = Tensor::randint(2 * pad + 1, [n, 1], (Kind::Int64, device));
            start + Tensor::arange(len, (Kind::Int64, device)).unsqueeze(0)
        };
        let rows = offsets(h).view([n, 1, h, 1]).expand([n, c, h, w + 2 * pad], false);
        let cols = offsets(w).view([n, 1, 1, w]).expand([n, c, h, w], false);
        out = padded.gather(2, &rows, false).gather(3, &cols, false);
    }
    if flip {
        let mask = Tensor::rand([n, 1, 1, 1], (Kind::Float, device)).lt(0.5);
        out = out.flip([3]).where_self(&mask, &out);
    }
    out
}
