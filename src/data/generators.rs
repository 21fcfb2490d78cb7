//! Toy datasets built as scikit-learn's `make_moons`, `make_circles` and `make_blobs` build them, plus `xor`.
//!
//! The constructions (point placement, class split, shuffle-then-noise order) follow scikit-learn; the random
//! numbers come from our ChaCha8 generator seeded with `seed`, not NumPy's, so a seed gives the same data on
//! every machine but not the numbers scikit-learn would draw. With `noise=0` and `shuffle=false`, `moons` and
//! `circles` equal scikit-learn's output.
use std::collections::BTreeMap;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use tch::{Kind, Tensor};

use super::files::{bad_opt, check_options, parse_bool, parse_opt};
use super::{Dataset, Task};
use crate::error::{did_you_mean, Error, Result};

pub const NAMES: &[&str] = &["moons", "circles", "blobs", "xor", "synthetic"];
/// More samples than this is a typo, not a toy dataset.
const MAX_SAMPLES: usize = 50_000_000;
const MAX_FEATURES: usize = 100_000;

/// The options each generator takes.
pub fn options_for(name: &str) -> Option<&'static [&'static str]> {
    Some(match name {
        "moons" => &["n_samples", "noise", "shuffle", "seed"],
        "circles" => &["n_samples", "noise", "factor", "shuffle", "seed"],
        "blobs" => &["n_samples", "n_features", "centers", "cluster_std", "center_box", "shuffle", "seed"],
        "xor" => &["n_samples", "noise", "seed"],
        "synthetic" => &["n_samples", "shape", "classes", "seed"],
        _ => return None,
    })
}

/// Generates dataset `name` (one of `NAMES`). Options (defaults as scikit-learn's):
/// - all: `n_samples=100`, `seed=` (overrides the `seed` argument)
/// - moons: `noise=0`, `shuffle=true`
/// - circles: `noise=0`, `factor=0.8`, `shuffle=true`
/// - blobs: `centers=3`, `n_features=2`, `cluster_std=1.0`, `center_box=-10..10`, `shuffle=true`
/// - xor: `noise=0` (uniform points in [-1, 1]², label 1 where x·y < 0)
/// - synthetic: `shape=3x224x224`, `classes=1000`: standard-normal inputs and uniform labels, nothing to learn;
///   for throughput measurements only (`scripts/gpu-check`), as torchvision's `FakeData`
pub fn generate(name: &str, options: &BTreeMap<String, String>, seed: u64) -> Result<Dataset> {
    let valid = options_for(name).ok_or_else(|| {
        Error::data(
            name,
            format!(
                "unknown generator{}; the generators are: {}",
                did_you_mean(name, NAMES.iter().copied()),
                NAMES.join(", ")
            ),
        )
    })?;
    check_options(name, options, valid)?;
    let seed = parse_opt(name, options, "seed", seed, "a whole number ≥ 0")?;
    let n = parse_opt(name, options, "n_samples", 100usize, "a whole number ≥ 1")?;
    if n == 0 || n > MAX_SAMPLES {
        return Err(bad_opt(name, "n_samples", &n.to_string(), &format!("a whole number in 1..={MAX_SAMPLES}")));
    }
    if name == "synthetic" {
        return synthetic(options, n, seed);
    }
    let noise = if valid.contains(&"noise") { parse_noise(name, options, "noise")? } else { 0.0 };
    let shuffle = parse_bool(name, options, "shuffle", true)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);

    let (mut points, n_classes) = match name {
        "moons" => (moons(n), 2),
        "circles" => {
            let factor = parse_opt(name, options, "factor", 0.8f64, "a number in [0, 1)")?;
            if !(0.0..1.0).contains(&factor) {
                return Err(bad_opt(name, "factor", &factor.to_string(), "a number in [0, 1)"));
            }
            (circles(n, factor), 2)
        }
        "blobs" => blobs(name, options, n, &mut rng)?,
        _ => (xor(n, &mut rng), 2),
    };
    if shuffle && name != "xor" {
        points.shuffle(&mut rng);
    }
    if noise > 0.0 {
        points.add_noise(noise, &mut rng);
    }
    let xs = Tensor::from_slice(&points.xs.iter().map(|&v| v as f32).collect::<Vec<_>>())
        .reshape([n as i64, points.dim as i64]);
    let ys = Tensor::from_slice(&points.ys);
    Dataset::new(name, xs, ys, Task::Classification { n_classes })
}

fn synthetic(options: &BTreeMap<String, String>, n: usize, seed: u64) -> Result<Dataset> {
    let name = "synthetic";
    let shape_text = options.get("shape").map(String::as_str).unwrap_or("3x224x224");
    let shape: Vec<i64> = shape_text
        .split('x')
        .map(|d| d.trim().parse::<i64>().ok().filter(|&d| d > 0))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| bad_opt(name, "shape", shape_text, "sizes joined by x, e.g. 3x32x32"))?;
    let classes = parse_opt(name, options, "classes", 1000usize, "a whole number ≥ 2")?;
    if classes < 2 {
        return Err(bad_opt(name, "classes", &classes.to_string(), "a whole number ≥ 2"));
    }
    let total = shape.iter().product::<i64>().saturating_mul(n as i64);
    if total > 4_000_000_000 {
        return Err(Error::data(name, format!("{n} samples of {shape_text} are {total} values; use fewer n_samples")));
    }
    let mut dims = vec![n as i64];
    dims.extend(&shape);
    // libtorch's generator, seeded here (the trainer reseeds it per epoch, so training does not depend on this).
    let cpu = tch::Device::Cpu;
    tch::manual_seed(seed as i64);
    let xs = Tensor::randn(dims.as_slice(), (Kind::Float, cpu));
    let ys = Tensor::randint(classes as i64, [n as i64], (Kind::Int64, cpu));
    Dataset::new(name, xs, ys, Task::Classification { n_classes: classes })
}

fn parse_noise(name: &str, options: &BTreeMap<String, String>, key: &str) -> Result<f64> {
    let v = parse_opt(name, options, key, 0.0f64, "a standard deviation ≥ 0, e.g. 0.1")?;
    if !(v.is_finite() && v >= 0.0) {
        return Err(bad_opt(name, key, &v.to_string(), "a standard deviation ≥ 0, e.g. 0.1"));
    }
    Ok(v)
}

/// Row-major points with their labels.
struct Points {
    xs: Vec<f64>,
    dim: usize,
    ys: Vec<i64>,
}

impl Points {
    /// Shuffles the samples, as `sklearn.utils.shuffle` does (one permutation of the rows).
    fn shuffle(&mut self, rng: &mut ChaCha8Rng) {
        let mut order: Vec<usize> = (0..self.ys.len()).collect();
        order.shuffle(rng);
        let d = self.dim;
        self.xs = order.iter().flat_map(|&i| self.xs[i * d..(i + 1) * d].iter().copied()).collect();
        self.ys = order.iter().map(|&i| self.ys[i]).collect();
    }
    /// Adds Gaussian noise of standard deviation `std` to every coordinate.
    fn add_noise(&mut self, std: f64, rng: &mut ChaCha8Rng) {
        let normal = Normal::new(0.0, std).expect("std was checked finite and ≥ 0");
        for v in &mut self.xs {
            *v += normal.sample(rng);
        }
    }
}

/// `numpy.linspace(0, stop, num, endpoint)`: `i * step`, the last point exactly `stop` with the endpoint.
fn linspace(stop: f64, num: usize, endpoint: bool) -> Vec<f64> {
    let div = if endpoint { num.saturating_sub(1) } else { num };
    if div == 0 {
        return vec![0.0; num];
    }
    let step = stop / div as f64;
    (0..num).map(|i| if endpoint && i == num - 1 { stop } else { i as f64 * step }).collect()
}

/// Two half circles: the outer (label 0) over [0, π], the inner (label 1) shifted by (1, -0.5) and flipped.
fn moons(n: usize) -> Points {
    let (n_out, n_in) = (n / 2, n - n / 2);
    let mut xs = Vec::with_capacity(2 * n);
    for t in linspace(std::f64::consts::PI, n_out, true) {
        xs.extend([t.cos(), t.sin()]);
    }
    for t in linspace(std::f64::consts::PI, n_in, true) {
        xs.extend([1.0 - t.cos(), 1.0 - t.sin() - 0.5]);
    }
    let ys = std::iter::repeat_n(0, n_out).chain(std::iter::repeat_n(1, n_in)).collect();
    Points { xs, dim: 2, ys }
}

/// A unit circle (label 0) around a smaller one of radius `factor` (label 1).
fn circles(n: usize, factor: f64) -> Points {
    let (n_out, n_in) = (n / 2, n - n / 2);
    let tau = 2.0 * std::f64::consts::PI;
    let mut xs = Vec::with_capacity(2 * n);
    for t in linspace(tau, n_out, false) {
        xs.extend([t.cos(), t.sin()]);
    }
    for t in linspace(tau, n_in, false) {
        xs.extend([t.cos() * factor, t.sin() * factor]);
    }
    let ys = std::iter::repeat_n(0, n_out).chain(std::iter::repeat_n(1, n_in)).collect();
    Points { xs, dim: 2, ys }
}

/// Isotropic Gaussian blobs: centers uniform in `center_box`, then each cluster's points in turn
/// (the first `n % centers` clusters get one extra).
fn blobs(name: &str, options: &BTreeMap<String, String>, n: usize, rng: &mut ChaCha8Rng) -> Result<(Points, usize)> {
    let centers = parse_opt(name, options, "centers", 3usize, "a whole number of clusters ≥ 1")?;
    if centers == 0 || centers > n {
        return Err(bad_opt(name, "centers", &centers.to_string(), &format!("a cluster count in 1..={n} (n_samples)")));
    }
    let dim = parse_opt(name, options, "n_features", 2usize, "a whole number ≥ 1")?;
    if dim == 0 || dim > MAX_FEATURES || dim.saturating_mul(n) > MAX_SAMPLES * 2 {
        return Err(bad_opt(name, "n_features", &dim.to_string(), "a whole number ≥ 1 (n_samples × n_features ≤ 10⁸)"));
    }
    let std = parse_opt(name, options, "cluster_std", 1.0f64, "a standard deviation ≥ 0")?;
    if !(std.is_finite() && std >= 0.0) {
        return Err(bad_opt(name, "cluster_std", &std.to_string(), "a standard deviation ≥ 0"));
    }
    let (lo, hi) = match options.get("center_box") {
        None => (-10.0, 10.0),
        Some(v) => {
            let bad = || bad_opt(name, "center_box", v, "LO..HI with LO < HI, e.g. -10..10");
            let (a, b) = v.split_once("..").or_else(|| v.split_once(':')).ok_or_else(bad)?;
            let (a, b) = (a.trim().parse::<f64>().map_err(|_| bad())?, b.trim().parse::<f64>().map_err(|_| bad())?);
            if !(a.is_finite() && b.is_finite() && a < b) {
                return Err(bad());
            }
            (a, b)
        }
    };
    let center_values: Vec<f64> = (0..centers * dim).map(|_| rng.gen_range(lo..hi)).collect();
    let normal = Normal::new(0.0, std).expect("std was checked finite and ≥ 0");
    let mut xs = Vec::with_capacity(n * dim);
    let mut ys = Vec::with_capacity(n);
    for c in 0..centers {
        let count = n / centers + usize::from(c < n % centers);
        let center = &center_values[c * dim..(c + 1) * dim];
        for _ in 0..count {
            xs.extend(center.iter().map(|&m| m + normal.sample(rng)));
            ys.push(c as i64);
        }
    }
    Ok((Points { xs, dim, ys }, centers))
}

/// Uniform points in [-1, 1]², label 1 where the signs of x and y differ.
fn xor(n: usize, rng: &mut ChaCha8Rng) -> Points {
    let mut xs = Vec::with_capacity(2 * n);
    let mut ys = Vec::with_capacity(n);
    for _ in 0..n {
        let (x, y): (f64, f64) = (rng.gen_range(-1.0..=1.0), rng.gen_range(-1.0..=1.0));
        xs.extend([x, y]);
        ys.push(i64::from(x * y < 0.0));
    }
    Points { xs, dim: 2, ys }
}

#[cfg(test)]
mod tests {
    use super::linspace;

    #[test]
    fn linspace_as_numpy() {
        assert_eq!(linspace(2.0, 3, true), vec![0.0, 1.0, 2.0]);
        assert_eq!(linspace(3.0, 3, false), vec![0.0, 1.0, 2.0]);
        assert_eq!(linspace(1.0, 1, true), vec![0.0]);
        assert!(linspace(1.0, 0, true).is_empty());
    }
}
