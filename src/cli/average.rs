//! `tchzoo average A.pt B.pt … -o avg.pt [--weights w1,w2,…]`: the (weighted) mean of state dicts, as timm's
//! `avg_checkpoints.py` computes it: every floating tensor summed in float64 and cast back to its dtype; integer
//! buffers (`num_batches_tracked`) are not averaged but taken from the last file (timm averages them too and writes
//! float32). A general checkpoint contributes its `model_state_dict`. The output is a plain state dict (`.pt`, an
//! OrderedDict that `torch.load` + `load_state_dict(strict=True)` read, or `.safetensors`), written atomically.
use std::path::PathBuf;

use clap::Args;
use tch::{Kind, Tensor};

use crate::checkpoint::{format_of, read_state_dict, write_state_dict};
use crate::error::{Error, Result};

#[derive(Debug, Args)]
pub struct AverageArgs {
    /// The state dicts or checkpoints to average (.pt, .pth, .bin or .safetensors), all of the same model.
    #[arg(required = true, num_args = 1..)]
    pub inputs: Vec<PathBuf>,
    /// The averaged state dict to write; its extension picks the format.
    #[arg(short, long)]
    pub output: PathBuf,
    /// One weight per input (non-negative, not all zero; normalised to sum 1). Default: uniform.
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true)]
    pub weights: Option<Vec<f64>>,
}

fn is_float(k: Kind) -> bool {
    matches!(k, Kind::Half | Kind::Float | Kind::Double | Kind::BFloat16)
}

/// The weighted mean of the state dicts in `inputs` (weights normalised to sum 1), in the first file's key order.
pub fn average(inputs: &[PathBuf], weights: Option<&[f64]>) -> Result<Vec<(String, Tensor)>> {
    if inputs.is_empty() {
        return Err(Error::config("average: give at least one state dict"));
    }
    let weights: Vec<f64> = match weights {
        None => vec![1.0; inputs.len()],
        Some(w) if w.len() != inputs.len() => {
            return Err(Error::config(format!(
                "average: --weights has {} values for {} files; give one weight per file",
                w.len(),
                inputs.len()
            )))
        }
        Some(w) => w.to_vec(),
    };
    if let Some(w) = weights.iter().find(|w| !w.is_finite() || **w < 0.0) {
        return Err(Error::config(format!("average: weight {w} must be a finite number ≥ 0")));
    }
    let total: f64 = weights.iter().sum();
    if total <= 0.0 {
        return Err(Error::config("average: the weights are all 0; give at least one positive weight"));
    }
    let first = read_state_dict(&inputs[0])?;
    let name = |i: usize| inputs[i].display().to_string();
    let mut acc: Vec<(String, Kind, Tensor)> = Vec::with_capacity(first.len());
    for (k, t) in &first {
        let kind = t.kind();
        let v = if is_float(kind) { t.f_to_kind(Kind::Double)?.f_mul_scalar(weights[0] / total)? } else { t.copy() };
        acc.push((k.clone(), kind, v));
    }
    for (i, path) in inputs.iter().enumerate().skip(1) {
        let sd = read_state_dict(path)?;
        let mut by_name: std::collections::HashMap<&str, &Tensor> = sd.iter().map(|(k, t)| (k.as_str(), t)).collect();
        for (k, kind, v) in acc.iter_mut() {
            let t = by_name
                .remove(k.as_str())
                .ok_or_else(|| Error::config(format!("average: key '{k}' is in {} but not in {}", name(0), name(i))))?;
            if t.size() != v.size() || t.kind() != *kind {
                return Err(Error::config(format!(
                    "average: key '{k}' is {:?} {:?} in {} but {:?} {:?} in {}",
                    kind,
                    v.size(),
                    name(0),
                    t.kind(),
                    t.size(),
                    name(i)
                )));
            }
            if is_float(*kind) {
                *v = v.f_add(&t.f_to_kind(Kind::Double)?.f_mul_scalar(weights[i] / total)?)?;
            } else {
                *v = t.copy();
            }
        }
        if let Some(extra) = sd.iter().map(|(k, _)| k).find(|k| by_name.contains_key(k.as_str())) {
            return Err(Error::config(format!("average: key '{extra}' is in {} but not in {}", name(i), name(0))));
        }
    }
    acc.into_iter().map(|(k, kind, v)| Ok((k, if is_float(kind) { v.f_to_kind(kind)? } else { v }))).collect()
}

pub fn run(args: AverageArgs) -> Result<()> {
    format_of(&args.output)?;
    let avg = average(&args.inputs, args.weights.as_deref())?;
    write_state_dict(&args.output, &avg)?;
    println!("averaged {} files ({} tensors) into {}", args.inputs.len(), avg.len(), args.output.display());
    Ok(())
}
