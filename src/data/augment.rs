//! Training-time image augmentation on the device: a random affine map per sample (rotation, scale, shift),
//! drawn from libtorch's seeded generator, no host round trip.
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
    pub fn parse(spec: &str) -> Result<Affine> {
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
