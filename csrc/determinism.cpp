// Determinism switches as `torch.use_deterministic_algorithms` and `torch.backends.cudnn.{deterministic,benchmark}`,
// and the libtorch version the crate was built against (for the run's config.json).
#include <ATen/Context.h>
#include <torch/headeronly/version.h>

#include <cstring>
#include <exception>

extern "C" {

// deterministic: ATen raises on an op without a deterministic kernel and cuDNN picks deterministic algorithms;
// benchmark: cuDNN times its algorithms for each new shape and keeps the fastest.
// Returns null, or the C++ exception's message (strdup'd; freed with tz_free_message).
char* tz_set_determinism(int deterministic, int benchmark) {
  try {
    auto& ctx = at::globalContext();
    ctx.setDeterministicAlgorithms(deterministic != 0, false);
    ctx.setDeterministicCuDNN(deterministic != 0);
    ctx.setBenchmarkCuDNN(benchmark != 0);
    return nullptr;
  } catch (const std::exception& e) {
    return strdup(e.what());
  } catch (...) {
    return strdup("unknown C++ exception");
  }
}

// 1 on, 0 off (or unreadable).
int tz_deterministic_algorithms() {
  try {
    return at::globalContext().deterministicAlgorithms() ? 1 : 0;
  } catch (...) {
    return 0;
  }
}

const char* tz_torch_version() { return TORCH_VERSION; }

}  // extern "C"
