//! Link settings for the final binaries: an rpath to the venv's torch/lib (no LD_LIBRARY_PATH needed) and
//! libtorch_cuda kept as a needed library, which the linker's --as-needed would otherwise drop with tch,
//! leaving CUDA unavailable on a GPU machine.
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-changed=build.rs");
    let Some(libtorch) = std::env::var_os("LIBTORCH") else {
        return;
    };
    // Through the checkout's .venv link, so the binary follows scripts/setup when it relinks a new environment.
    let lib = PathBuf::from(libtorch).join("lib");
    println!("cargo:rerun-if-changed={}", lib.display());
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    println!("cargo:rustc-link-search=native={}", lib.display());
    if lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}
