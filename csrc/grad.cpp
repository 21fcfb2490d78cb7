// Gradient slots that tch cannot reach: setting a parameter's `.grad` to a given tensor or to None (PyTorch's
// `zero_grad(set_to_none=True)`). Returns null on success or the C++ exception's message (strdup'd; the caller
// frees it with tz_free_message).
#include <ATen/core/Tensor.h>

#include <cstring>
#include <exception>

extern "C" {

// `grad` null = None.
char* tz_set_grad(at::Tensor* param, at::Tensor* grad) {
  try {
    if (grad) {
      param->mutable_grad() = *grad;
    } else {
      param->mutable_grad().reset();
    }
    return nullptr;
  } catch (const std::exception& e) {
    return strdup(e.what());
  } catch (...) {
    return strdup("unknown C++ exception");
  }
}

}  // extern "C"
