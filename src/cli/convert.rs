//! `tchzoo convert A B`: a state dict from one format to the other (`.pt`/`.pth`/`.bin` ↔ `.safetensors`),
//! by extension; a general checkpoint gives its `model_state_dict`. The output is written atomically.
use std::path::PathBuf;

use clap::Args;

use crate::checkpoint::{format_of, read_state_dict, write_state_dict};
use crate::error::Result;

#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// The file to read (.pt, .pth, .bin or .safetensors).
    pub input: PathBuf,
    /// The file to write; its extension picks the format.
    pub output: PathBuf,
}

pub fn run(args: ConvertArgs) -> Result<()> {
    format_of(&args.output)?;
    let tensors = read_state_dict(&args.input)?;
    write_state_dict(&args.output, &tensors)?;
    let total: i64 = tensors.iter().map(|(_, t)| t.numel() as i64).sum();
    println!(
        "wrote {} tensors ({} values) from {} to {}",
        tensors.len(),
        super::models::group(total),
        args.input.display(),
        args.output.display()
    );
    Ok(())
}
