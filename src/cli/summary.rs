//! `tchzoo summary MODEL [--input 1x32x32] [--classes N]`: a Keras-style table of layers.
use clap::Args;

use super::models::group;
use crate::error::{Error, Result};
use crate::models;
use crate::nn::{VarKind, VarStore};

#[derive(Debug, Args)]
pub struct SummaryArgs {
    /// Model name with options (e.g. lenet5, mlp:hidden=128x64).
    pub model: String,
    /// The shape of one input sample, e.g. 1x32x32 or 2 [default: the model's].
    #[arg(long)]
    pub input: Option<String>,
    /// Output classes [default: the model's].
    #[arg(long)]
    pub classes: Option<i64>,
}

pub fn parse_shape(text: &str) -> Result<Vec<i64>> {
    text.split(['x', 'X', ',', '*'])
        .map(|d| d.trim().parse::<i64>().ok().filter(|&v| v > 0))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| Error::config(format!("--input {text}: give positive sizes like 1x32x32 or 2")))
}

pub fn render(model_spec: &str, input: Option<&[i64]>, classes: Option<i64>) -> Result<String> {
    let name = crate::util::Spec::parse(model_spec, "model")?.source;
    let entry = models::find(&name)?;
    let input = input.map(|s| s.to_vec()).unwrap_or_else(|| entry.default_input.to_vec());
    let store = VarStore::new(tch::Device::Cpu);
    let classes = classes.unwrap_or(entry.default_classes);
    let (model, _) = crate::train::transfer::build_model(model_spec, &store, classes, &input, &[])?;
    let rows = models::trace(model.as_ref(), &store, &input)?;
    let mut out = format!("Model: \"{model_spec}\"\n");
    let rule = "─".repeat(78);
    out.push_str(&format!("{rule}\n{:<34} {:<26} {:>16}\n{rule}\n", "Layer (type)", "Output Shape", "Param #"));
    for r in &rows {
        let shape = format!("({})", r.output_shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "));
        out.push_str(&format!("{:<34} {:<26} {:>16}\n", format!("{} ({})", r.name, r.kind), shape, group(r.params)));
    }
    let total: i64 =
        store.entries_meta().iter().filter(|e| e.3 == VarKind::Parameter).map(|e| e.1.iter().product::<i64>()).sum();
    let buffers: i64 =
        store.entries_meta().iter().filter(|e| e.3 == VarKind::Buffer).map(|e| e.1.iter().product::<i64>()).sum();
    out.push_str(&format!(
        "{rule}\nTotal params: {}\nTrainable params: {}\nNon-trainable params: 0\n",
        group(total),
        group(total)
    ));
    if buffers > 0 {
        out.push_str(&format!("Buffers (running statistics, counters): {}\n", group(buffers)));
    }
    out.push_str(&rule);
    Ok(out)
}

pub fn run(args: SummaryArgs) -> Result<()> {
    let input = args.input.as_deref().map(parse_shape).transpose()?;
    if let (Some(text), Some([h, w, c])) = (&args.input, input.as_deref()) {
        // Keras writes images H×W×C; the models here take C×H×W (PyTorch's order).
        if (*c == 1 || *c == 3) && *h > 4 && *w > 4 {
            return Err(Error::config(format!(
                "--input {text} looks like height×width×channels; give channels×height×width, e.g. {c}x{h}x{w}"
            )));
        }
    }
    println!("{}", render(&args.model, input.as_deref(), args.classes)?);
    Ok(())
}
