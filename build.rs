//! Link settings for the final binaries: an rpath to the venv's torch/lib (no LD_LIBRARY_PATH needed) and
//! libtorch_cuda kept as a needed library, which the linker's --as-needed would otherwise drop with tch,
//! leaving CUDA unavailable on a GPU machine.
//!
//! Also compiles `csrc/dist.cpp`, the shim over libtorch's own c10d (data-parallel training), against the venv's
//! libtorch as tch compiles its own C++: with Gloo when Gloo's headers are installed (Debian's `libgloo-dev`, which
//! `scripts/setup` installs; the wheel ships c10d's headers but not Gloo's) and with NCCL when the wheel's `nccl.h`
//! and CUDA's compiler headers (`scripts/setup` puts them in `.venv/cuda-headers`) are there. The cfgs
//! `tchzoo_gloo` and `tchzoo_nccl` say what was built; without Gloo, `--distributed` says how to get it.
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=TCHZOO_GLOO_INCLUDE");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=csrc");
    println!("cargo::rustc-check-cfg=cfg(tchzoo_gloo)");
    println!("cargo::rustc-check-cfg=cfg(tchzoo_nccl)");
    let Some(libtorch) = std::env::var_os("LIBTORCH") else {
        return;
    };
    // Through the checkout's .venv link, so the binary follows scripts/setup when it relinks a new environment.
    let root = PathBuf::from(libtorch);
    let lib = root.join("lib");
    println!("cargo:rerun-if-changed={}", lib.display());
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    println!("cargo:rustc-link-search=native={}", lib.display());
    let cuda = lib.join("libtorch_cuda.so").exists();
    if cuda {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
    compile_ops(&root);
    compile_dist(&root, cuda);
}

/// The flags tch uses for its own C++ against this libtorch.
fn torch_build(libtorch: &Path) -> cc::Build {
    let include = libtorch.join("include");
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .std("c++20")
        .define("_GLIBCXX_USE_CXX11_ABI", "1")
        .define("GLOG_USE_GLOG_EXPORT", None)
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-w")
        .opt_level(2)
        .debug(false);
    build
}

/// Every `csrc/*.cpp` but the c10d shim: ATen calls that tch does not bind.
fn compile_ops(libtorch: &Path) {
    let mut files: Vec<PathBuf> =
        std::fs::read_dir("csrc").map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
    files.retain(|f| f.extension().is_some_and(|e| e == "cpp") && !f.ends_with("dist.cpp"));
    if files.is_empty() {
        return;
    }
    files.sort();
    torch_build(libtorch).files(&files).compile("tchzoo_ops");
}

fn compile_dist(libtorch: &Path, cuda: bool) {
    let gloo = std::env::var_os("TCHZOO_GLOO_INCLUDE").map(PathBuf::from).unwrap_or_else(|| "/usr/include".into());
    println!("cargo:rerun-if-changed={}", gloo.join("gloo").display());
    if !gloo.join("gloo/config.h").exists() {
        println!(
            "cargo:warning=Gloo's headers are not in {} (Debian: apt-get install libgloo-dev, which scripts/setup \
             does): building without distributed training",
            gloo.display()
        );
        return;
    }
    let mut build = torch_build(libtorch);
    build.file("csrc/dist.cpp").define("USE_C10D_GLOO", None).include(&gloo);
    // site-packages/torch → site-packages/nvidia; the venv's cuda-headers folder sits beside site-packages' lib.
    let site = libtorch.join("..").join("nvidia");
    let nccl = site.join("nccl/include");
    let cuda_rt = site.join("cu13/include");
    let venv = libtorch.join("../../../..");
    let extra = venv.join("cuda-headers/nvidia/cu13/include");
    if cuda && nccl.join("nccl.h").exists() && extra.join("crt/host_config.h").exists() {
        build
            .define("USE_C10D_NCCL", None)
            .define("USE_CUDA", None)
            .define("TCHZOO_NCCL", None)
            .include(&cuda_rt)
            .include(&extra)
            .include(&nccl);
        println!("cargo:rustc-cfg=tchzoo_nccl");
    }
    build.compile("tchzoo_dist");
    println!("cargo:rustc-cfg=tchzoo_gloo");
    // The c10d symbols live in libtorch_cpu (Gloo) and libtorch_cuda (NCCL), which tch links already.
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
}
