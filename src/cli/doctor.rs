//! `tchzoo doctor`: what this binary runs on.
use clap::Args;

use crate::error::Result;

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: DoctorArgs) -> Result<()> {
    let f = crate::device::facts();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&f).unwrap_or_default());
        return Ok(());
    }
    println!("tchzoo          {}", f.tchzoo_version);
    println!("libtorch        {}", f.libtorch_version);
    println!("libtorch path   {}", f.libtorch_path.as_deref().unwrap_or("?"));
    println!("CUDA available  {}", f.cuda_available);
    println!("cuDNN available {}", f.cudnn_available);
    println!("GPUs            {}", f.gpu_count);
    println!("CPU threads     {}", f.threads);
    let backends = if f.distributed_backends.is_empty() {
        "none (built without Gloo's headers: apt-get install libgloo-dev, then rebuild)".to_string()
    } else {
        f.distributed_backends.join(", ")
    };
    println!("distributed     {backends}");
    println!("NCCL            {}", f.nccl_version.as_deref().unwrap_or("not built in"));
    Ok(())
}
