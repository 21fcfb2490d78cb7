//! `--auto-augment augmix`: torchvision's `AugMix()` (severity 3, mixture width 3, chain depth −1, α = 1, all ops,
//! bilinear interpolation, fill 0) on the uint8 image [C, H, W] after the crop and flip, as
//! `transforms.v2.AugMix.forward` composes it: `mixture_width` chains of 1 to 3 ops (uniform, when
//! `chain_depth` ≤ 0) from its 13-op space, each op's magnitude one of the first `severity` of 10 bins and signed
//! with probability ½, mixed in float32 as `m₀·image + Σᵢ wᵢ·m₁·chainᵢ(image)` and truncated back to uint8.
//! The ops are [`Op::apply`], those of TrivialAugmentWide and RandAugment.
//!
//! The random parameters come from the sample's generator (keyed by seed, epoch and sample index, drawn after the
//! crop box and flip), in torchvision's order: `m = Dirichlet([α, α])` (so m₁ ~ Beta(α, α)), then the chain
//! weights `w = Dirichlet([α] × width)`, each a set of Gamma(α, 1) draws divided by their sum (as
//! `torch._sample_dirichlet` does) and held in float32; then for each chain its depth, and for each op its index,
//! its bin (ops with magnitudes) and its sign (signed ops). [`AugMix::draw`] returns them all, so a test can hand
//! the same draws to torchvision.
use rand::Rng;
use rand_distr::{Distribution, Gamma};
use tch::{Device, Kind, Tensor};

use super::autoaugment::{Interp, Op};
use crate::error::{Error, Result};

/// `_PARAMETER_MAX`: the number of magnitude bins; `severity` picks among the first ones.
pub const PARAMETER_MAX: usize = 10;

/// AugMix's augmentation space in torchvision's order (`_PARTIAL_AUGMENTATION_SPACE`, then the four colour ops
/// that `all_ops` adds).
pub const OPS: [Op; 13] = [
    Op::ShearX,
    Op::ShearY,
    Op::TranslateX,
    Op::TranslateY,
    Op::Rotate,
    Op::Posterize,
    Op::Solarize,
    Op::AutoContrast,
    Op::Equalize,
    Op::Brightness,
    Op::Color,
    Op::Contrast,
    Op::Sharpness,
];

/// `AugMix`'s constructor arguments; `Default` is torchvision's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AugMix {
    /// 1 to 10: the magnitude bin is drawn from `0..severity`.
    pub severity: usize,
    /// The number of chains.
    pub mixture_width: usize,
    /// The ops a chain; ≤ 0 draws 1 to 3 for each chain.
    pub chain_depth: i64,
    /// The Dirichlet and Beta parameter.
    pub alpha: f64,
    /// With the colour ops (Brightness, Color, Contrast, Sharpness).
    pub all_ops: bool,
}

impl Default for AugMix {
    fn default() -> Self {
        AugMix { severity: 3, mixture_width: 3, chain_depth: -1, alpha: 1.0, all_ops: true }
    }
}

/// One op of a chain as drawn: its index in the space, its bin (ops with magnitudes), its sign (signed ops), and
/// the magnitude they give.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    pub op_index: usize,
    pub op: Op,
    pub bin: Option<usize>,
    pub negative: bool,
    pub magnitude: f64,
}

/// The random parameters of one image.
#[derive(Debug, Clone, PartialEq)]
pub struct Draw {
    /// `m = Dirichlet([α, α])`: the weight of the original image and the share of the chains.
    pub m: [f32; 2],
    /// `Dirichlet([α] × width)`: the chains' weights before they are scaled by `m[1]`.
    pub weights: Vec<f32>,
    /// The ops of each chain, in the order applied.
    pub chains: Vec<Vec<Step>>,
}

/// The magnitude bins of `op` in AugMix's space for an image of `h` × `w` (`_AUGMENTATION_SPACE` with `bins`
/// bins, torchvision's v2 values: Solarize as a fraction of 255); `None` for ops without a magnitude.
pub fn magnitudes(op: Op, bins: usize, h: i64, w: i64) -> Option<Vec<f64>> {
    let linspace = |start: f64, end: f64| -> Vec<f64> {
        Vec::<f32>::try_from(Tensor::linspace(start, end, bins as i64, (Kind::Float, Device::Cpu)))
            .unwrap_or_default()
            .into_iter()
            .map(f64::from)
            .collect()
    };
    Some(match op {
        Op::Identity | Op::AutoContrast | Op::Equalize => return None,
        Op::ShearX | Op::ShearY => linspace(0.0, 0.3),
        Op::TranslateX => linspace(0.0, w as f64 / 3.0),
        Op::TranslateY => linspace(0.0, h as f64 / 3.0),
        Op::Rotate => linspace(0.0, 30.0),
        Op::Posterize => {
            // (4 - (arange(bins) / ((bins - 1) / 4))).round().int() in float32.
            let d = ((bins.max(2) - 1) as f64 / 4.0) as f32;
            (0..bins).map(|i| (4.0f32 - i as f32 / d).round_ties_even() as f64).collect()
        }
        Op::Solarize => linspace(1.0, 0.0),
        Op::Brightness | Op::Color | Op::Contrast | Op::Sharpness => linspace(0.0, 0.9),
    })
}

/// `torch._sample_dirichlet([α] × n)`: Gamma(α, 1) draws over their sum, in float32.
fn dirichlet(rng: &mut impl Rng, gamma: &Gamma<f64>, n: usize) -> Vec<f32> {
    let g: Vec<f64> = (0..n).map(|_| gamma.sample(rng)).collect();
    let sum: f64 = g.iter().sum();
    if !(sum > 0.0 && sum.is_finite()) {
        // All draws underflowed (α far below 1): no share is favoured.
        return vec![1.0 / n as f32; n];
    }
    g.iter().map(|x| ((x / sum) as f32).max(f32::MIN_POSITIVE)).collect()
}

impl AugMix {
    /// Checks the arguments as torchvision's constructor does (and α > 0, which the Dirichlet needs).
    pub fn new(severity: usize, mixture_width: usize, chain_depth: i64, alpha: f64, all_ops: bool) -> Result<Self> {
        if !(1..=PARAMETER_MAX).contains(&severity) {
            return Err(Error::config(format!(
                "AugMix severity {severity}: the severity must be between 1 and {PARAMETER_MAX}"
            )));
        }
        if mixture_width == 0 {
            return Err(Error::config("AugMix mixture width 0: mix at least one chain"));
        }
        if !(alpha.is_finite() && alpha > 0.0) {
            return Err(Error::config(format!("AugMix alpha {alpha}: the Dirichlet needs α > 0, e.g. 1.0")));
        }
        Ok(AugMix { severity, mixture_width, chain_depth, alpha, all_ops })
    }

    /// The ops a chain draws from.
    pub fn ops(&self) -> &'static [Op] {
        if self.all_ops {
            &OPS
        } else {
            &OPS[..9]
        }
    }

    /// Draws one image's parameters for an image of `h` × `w`.
    pub fn draw(&self, rng: &mut impl Rng, h: i64, w: i64) -> Draw {
        // `new` keeps α > 0, so Gamma accepts it; a struct literal with a bad α falls back to α = 1.
        let gamma = Gamma::new(self.alpha, 1.0).unwrap_or_else(|_| Gamma::new(1.0, 1.0).expect("Gamma(1, 1)"));
        let m = dirichlet(rng, &gamma, 2);
        let weights = dirichlet(rng, &gamma, self.mixture_width);
        let ops = self.ops();
        let chains = (0..self.mixture_width)
            .map(|_| {
                let depth = if self.chain_depth > 0 { self.chain_depth as usize } else { rng.gen_range(1..4) };
                (0..depth)
                    .map(|_| {
                        let op_index = rng.gen_range(0..ops.len());
                        let op = ops[op_index];
                        match magnitudes(op, PARAMETER_MAX, h, w) {
                            None => Step { op_index, op, bin: None, negative: false, magnitude: 0.0 },
                            Some(bins) => {
                                let bin = rng.gen_range(0..self.severity.clamp(1, PARAMETER_MAX));
                                // torchvision: `if signed and torch.rand(()) <= 0.5: magnitude *= -1`.
                                let negative = op.signed() && rng.gen::<f64>() <= 0.5;
                                let m = bins[bin];
                                Step {
                                    op_index,
                                    op,
                                    bin: Some(bin),
                                    negative,
                                    magnitude: if negative { -m } else { m },
                                }
                            }
                        }
                    })
                    .collect()
            })
            .collect();
        Draw { m: [m[0], m[1]], weights, chains }
    }

    /// Applies drawn parameters to a uint8 [C, H, W]: each chain's ops (bilinear, fill 0), then the float32 mix
    /// `m₀·image + Σᵢ (wᵢ·m₁)·chainᵢ` converted back to uint8 (truncated, as `.to(torch.uint8)`).
    pub fn apply_draw(img: &Tensor, draw: &Draw) -> Result<Tensor> {
        let mut mix = img.to_kind(Kind::Float) * f64::from(draw.m[0]);
        for (chain, w) in draw.chains.iter().zip(&draw.weights) {
            let mut aug = img.shallow_clone();
            for step in chain {
                aug = step.op.apply(&aug, step.magnitude, Interp::Bilinear)?;
            }
            // combined_weights = Dirichlet × m[:, 1], a float32 product.
            let weight = w * draw.m[1];
            mix += aug.to_kind(Kind::Float) * f64::from(weight);
        }
        Ok(mix.to_kind(Kind::Uint8))
    }

    /// Draws the parameters from `rng` and applies them.
    pub fn apply(&self, img: &Tensor, rng: &mut impl Rng) -> Result<Tensor> {
        let s = img.size();
        let draw = self.draw(rng, s[s.len() - 2], s[s.len() - 1]);
        Self::apply_draw(img, &draw)
    }
}
