//! `tchzoo pack DIR OUT_PREFIX`: an image folder as WebDataset tar shards (`OUT_PREFIX-000000.tar`, …), each image
//! resized so its longer side is at most `--max-side` and re-encoded as JPEG, with `KEY.cls` class indices and
//! `OUT_PREFIX-classes.json`; prints the pattern to pass to `--data`.
use std::path::PathBuf;

use clap::Args;

use crate::data::shards;
use crate::error::Result;

#[derive(Debug, Args)]
pub struct PackArgs {
    /// The image folder (one sub-folder per class, as torchvision's ImageFolder).
    pub dir: PathBuf,
    /// Shards are written as OUT_PREFIX-000000.tar, OUT_PREFIX-000001.tar, …
    pub out_prefix: String,
    /// The longest side an image keeps (larger images are scaled down).
    #[arg(long, default_value_t = 512)]
    pub max_side: u32,
    /// A shard's size at most (e.g. 1GB, 500MB, 64MiB).
    #[arg(long, default_value = "1GB")]
    pub shard_size: String,
}

pub fn run(args: PackArgs) -> Result<()> {
    let size = shards::parse_size(&args.shard_size)?;
    let report = shards::pack(&args.dir, &args.out_prefix, args.max_side, size)?;
    println!(
        "wrote {} samples in {} shard(s) ({:.1} MB) and {}",
        report.samples,
        report.shards.len(),
        report.bytes as f64 / 1e6,
        report.classes.display()
    );
    println!("--data \"{}\"", report.pattern);
    Ok(())
}
