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
    println!("cargo::rustc-check-cfg=cfg(tchzoo_cuda)");
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
    compile_cuda(&root, cuda);
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
    files.retain(|f| {
        f.extension().is_some_and(|e| e == "cpp") && !f.ends_with("dist.cpp") && !f.ends_with("cuda_graph.cpp")
    });
    if files.is_empty() {
        return;
    }
    files.sort();
    torch_build(libtorch).files(&files).compile("tchzoo_ops");
}

/// The CUDA runtime's headers: the wheel's `nvidia/cu13/include` and CUDA's compiler headers that `scripts/setup`
/// puts beside the venv; `None` when either is missing.
fn cuda_includes(libtorch: &Path) -> Option<[PathBuf; 2]> {
    // site-packages/torch → site-packages/nvidia; the venv's cuda-headers folder sits beside site-packages' lib.
    let cuda_rt = libtorch.join("..").join("nvidia/cu13/include");
    let extra = libtorch.join("../../../..").join("cuda-headers/nvidia/cu13/include");
    (cuda_rt.join("cuda_runtime_api.h").exists() && extra.join("crt/host_config.h").exists())
        .then_some([cuda_rt, extra])
}

/// `csrc/cuda_graph.cpp` (CUDA graph capture and the caching allocator's statistics) when libtorch has CUDA and
/// the CUDA runtime's headers are at hand; cfg `tchzoo_cuda` says it was built.
fn compile_cuda(libtorch: &Path, cuda: bool) {
    let Some(includes) = cuda_includes(libtorch).filter(|_| cuda) else {
        return;
    };
    let mut build = torch_build(libtorch);
    build.file("csrc/cuda_graph.cpp").define("USE_CUDA", None);
    for dir in &includes {
        build.include(dir);
    }
    build.compile("tchzoo_cuda");
    println!("cargo:rustc-cfg=tchzoo_cuda");
    // at::cuda::CUDAGraph lives in libtorch_cuda (linked above), the streams and the allocator in libc10_cuda, and
    // the header-only CUDAEvent calls the CUDA runtime, which the wheel ships as libcudart.so.13 (no unversioned
    // link name): linked by file name, found at run time through an rpath as libtorch_cuda finds it.
    println!("cargo:rustc-link-lib=dylib=c10_cuda");
    let cudart_dir = libtorch.join("..").join("nvidia/cu13/lib");
    if let Some(cudart) = std::fs::read_dir(&cudart_dir).ok().and_then(|d| {
        d.filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .find(|n| n.starts_with("libcudart.so."))
    }) {
        println!("cargo:rustc-link-search=native={}", cudart_dir.display());
        println!("cargo:rustc-link-arg=-l:{cudart}");
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", cudart_dir.display());
    }
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
    let nccl = libtorch.join("..").join("nvidia/nccl/include");
    if let (true, true, Some([cuda_rt, extra])) = (cuda, nccl.join("nccl.h").exists(), cuda_includes(libtorch)) {
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
