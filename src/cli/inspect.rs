//! `tchzoo inspect FILE`: the tensors of a state dict or general checkpoint (name, shape, dtype) and the total
//! parameter count.
use std::path::{Path, PathBuf};

use clap::Args;
use tch::Tensor;

use crate::checkpoint::{dtype_name, format_of, read_pt, read_state_dict, Format, Object};
use crate::error::{Error, Result};

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A .pt/.pth/.bin (torch.save) or .safetensors file.
    pub file: PathBuf,
}

fn number(o: &Object) -> String {
    match o {
        Object::Int(i) => i.to_string(),
        other => other.as_f64().map(|f| format!("{f}")).unwrap_or_else(|| other.type_name().to_string()),
    }
}

/// What a general checkpoint holds besides the weights, in one line; `None` for a plain state dict.
fn describe_checkpoint(obj: &Object) -> Option<String> {
    obj.get("model_state_dict")?;
    let mut parts = vec![];
    for key in ["epoch", "loss"] {
        if let Some(v) = obj.get(key) {
            parts.push(format!("{key} {}", number(v)));
        }
    }
    if let Some(opt) = obj.get("optimizer_state_dict") {
        let states = opt.get("state").and_then(|s| s.items()).map_or(0, |s| s.len());
        let groups = match opt.get("param_groups") {
            Some(Object::List(g)) => g.as_slice(),
            _ => &[],
        };
        let lr = groups.first().and_then(|g| g.get("lr")).map(number).unwrap_or_else(|| "?".into());
        parts.push(format!("optimizer: {} param group(s), lr {lr}, state for {states} parameters", groups.len()));
    }
    let others: Vec<String> = obj
        .items()
        .unwrap_or(&[])
        .iter()
        .filter_map(|(k, _)| k.as_str())
        .filter(|k| !["epoch", "loss", "model_state_dict", "optimizer_state_dict"].contains(k))
        .map(|k| format!("'{k}'"))
        .collect();
    if !others.is_empty() {
        parts.push(format!("other keys: {}", others.join(", ")));
    }
    Some(format!("general checkpoint: {}", parts.join("; ")))
}

fn table(tensors: &[(String, Tensor)]) -> String {
    let rows: Vec<(String, String, &str)> =
        tensors.iter().map(|(k, t)| (k.clone(), format!("{:?}", t.size()), dtype_name(t.kind()))).collect();
    let w0 = rows.iter().map(|r| r.0.len()).max().unwrap_or(0).max(4);
    let w1 = rows.iter().map(|r| r.1.len()).max().unwrap_or(0).max(5);
    let mut out = format!("{:<w0$}  {:<w1$}  dtype\n", "name", "shape");
    for (name, shape, dtype) in &rows {
        out.push_str(&format!("{name:<w0$}  {shape:<w1$}  {dtype}\n"));
    }
    // A file holds no parameter/buffer flag: BatchNorm's running statistics and counters are told by name, so the
    // parameter count matches `tchzoo summary` and `sum(p.numel() for p in model.parameters())`.
    let is_buffer = |k: &str| {
        let last = k.rsplit('.').next().unwrap_or(k);
        matches!(last, "running_mean" | "running_var" | "num_batches_tracked")
    };
    let count = |buffers: bool| -> i64 {
        tensors.iter().filter(|(k, _)| is_buffer(k) == buffers).map(|(_, t)| t.numel() as i64).sum()
    };
    let (params, buffers) = (count(false), count(true));
    let group = super::models::group;
    out.push_str(&format!(
        "Total parameters: {} in {} tensors",
        group(params),
        tensors.iter().filter(|(k, _)| !is_buffer(k)).count()
    ));
    if buffers > 0 {
        out.push_str(&format!(
            "\nBuffers (BatchNorm running statistics and counters): {} in {} tensors\nTotal values: {}",
            group(buffers),
            tensors.iter().filter(|(k, _)| is_buffer(k)).count(),
            group(params + buffers)
        ));
    }
    out
}

pub fn render(path: &Path) -> Result<String> {
    match format_of(path)? {
        Format::Safetensors => Ok(table(&read_state_dict(path)?)),
        Format::Pt => {
            let obj = read_pt(path)?;
            let tensors = obj.find_state_dict().ok_or_else(|| Error::Checkpoint {
                path: path.display().to_string(),
                msg: format!("holds a {} ({}) with no state dict", obj.type_name(), obj.keys()),
            })?;
            Ok(match describe_checkpoint(&obj) {
                Some(head) => format!("{head}\nmodel_state_dict:\n{}", table(&tensors)),
                None => table(&tensors),
            })
        }
    }
}

pub fn run(args: InspectArgs) -> Result<()> {
    println!("{}", render(&args.file)?);
    Ok(())
}
