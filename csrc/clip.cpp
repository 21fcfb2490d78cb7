// Gradient clipping as torch.nn.utils.clip_grad_norm_ and clip_grad_value_ (torch/nn/utils/clip_grad.py) with the
// same ATen calls, so the clipped gradients are bit-exact with Python's: the per-tensor norms by _foreach_norm, their
// norm over torch.stack, `clip_coef = max_norm / (total_norm + 1e-6)` (Python's `float / Tensor` is
// `reciprocal() * float`), clamped to 1 and multiplied in by _foreach_mul_; clipping by value by _foreach_clamp_min_
// and _foreach_clamp_max_. Parameters without a gradient are left out; gradients are grouped by (device, dtype) in
// first-seen order, as _group_tensors_by_device_and_dtype does.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <cmath>
#include <cstring>
#include <exception>
#include <utility>
#include <vector>

namespace {

std::vector<std::vector<at::Tensor>> grouped_grads(at::Tensor** params, int64_t n) {
  std::vector<std::pair<std::pair<at::Device, at::ScalarType>, std::vector<at::Tensor>>> groups;
  for (int64_t i = 0; i < n; ++i) {
    const at::Tensor& g = params[i]->grad();
    if (!g.defined()) continue;
    auto key = std::make_pair(g.device(), g.scalar_type());
    auto it = groups.begin();
    for (; it != groups.end(); ++it) {
      if (it->first == key) break;
    }
    if (it == groups.end()) {
      groups.push_back({key, {}});
      it = groups.end() - 1;
    }
    it->second.push_back(g);
  }
  std::vector<std::vector<at::Tensor>> out;
  for (auto& g : groups) out.push_back(std::move(g.second));
  return out;
}

}  // namespace

extern "C" {

// Writes the total norm before clipping to `*total_out` (a new tensor; 0 when no parameter has a gradient).
// Returns null, or the C++ exception's message (strdup'd; the caller frees it with tz_free_message).
char* tz_clip_grad_norm(at::Tensor** params, int64_t n, double max_norm, double norm_type, at::Tensor** total_out) {
  try {
    at::NoGradGuard no_grad;
    auto groups = grouped_grads(params, n);
    if (groups.empty()) {
      *total_out = new at::Tensor(at::scalar_tensor(0.0, at::kFloat));
      return nullptr;
    }
    const at::Device first = groups[0][0].device();
    std::vector<at::Tensor> norms;
    for (auto& g : groups) {
      for (auto& t : at::_foreach_norm(g, norm_type)) norms.push_back(t.to(first));
    }
    at::Tensor total = at::linalg_vector_norm(at::stack(norms), norm_type);
    at::Tensor clip_coef = total.add(1e-6).reciprocal().mul(max_norm);
    at::Tensor clamped = at::clamp(clip_coef, std::nullopt, 1.0);
    for (auto& g : groups) at::_foreach_mul_(g, clamped.to(g[0].device()));
    *total_out = new at::Tensor(total);
    return nullptr;
  } catch (const std::exception& e) {
    return strdup(e.what());
  } catch (...) {
    return strdup("unknown C++ exception");
  }
}

// Returns null, or the C++ exception's message (as tz_clip_grad_norm).
char* tz_clip_grad_value(at::Tensor** params, int64_t n, double clip_value) {
  try {
    at::NoGradGuard no_grad;
    for (auto& g : grouped_grads(params, n)) {
      at::_foreach_clamp_min_(g, -clip_value);
      at::_foreach_clamp_max_(g, clip_value);
    }
    return nullptr;
  } catch (const std::exception& e) {
    return strdup(e.what());
  } catch (...) {
    return strdup("unknown C++ exception");
  }
}

}  // extern "C"
