// Gradient slots that tch cannot reach: setting a parameter's `.grad` to a given tensor or to None (PyTorch's
// `zero_grad(set_to_none=True)`).
#include <ATen/core/Tensor.h>

extern "C" {

// `grad` null = None.
void tz_set_grad(at::Tensor* param, at::Tensor* grad) {
  if (grad) {
    param->mutable_grad() = *grad;
  } else {
    param->mutable_grad().reset();
  }
}

}  // extern "C"
