// Mixed precision and memory formats that tch does not reach: autocast for a device type with a chosen dtype
// (tch's `autocast` is CUDA-only and float16-only), GradScaler's fused unscale-and-check, channels-last copies and
// replacing a parameter's data in place (`param.data = …`).
#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>

#include <vector>

namespace {
at::DeviceType device_type(int cuda) { return cuda ? at::kCUDA : at::kCPU; }
}  // namespace

extern "C" {

// Enters an autocast region for the CPU (cuda = 0) or CUDA (cuda = 1) with bfloat16 (half = 0) or float16
// (half = 1); returns the previous state as enabled * 1000 + dtype, for tz_autocast_exit.
int tz_autocast_enter(int cuda, int half) {
  auto dt = device_type(cuda);
  int prev = (at::autocast::is_autocast_enabled(dt) ? 1000 : 0) + static_cast<int>(at::autocast::get_autocast_dtype(dt));
  at::autocast::set_autocast_enabled(dt, true);
  at::autocast::set_autocast_dtype(dt, half ? at::kHalf : at::kBFloat16);
  at::autocast::increment_nesting();
  return prev;
}

void tz_autocast_exit(int cuda, int prev) {
  auto dt = device_type(cuda);
  if (at::autocast::decrement_nesting() == 0) {
    at::autocast::clear_cache();
  }
  at::autocast::set_autocast_enabled(dt, prev >= 1000);
  at::autocast::set_autocast_dtype(dt, static_cast<at::ScalarType>(prev % 1000));
}

// GradScaler.unscale_: every gradient multiplied by inv_scale in place; found_inf set to 1 where any is not finite.
void tz_amp_unscale(at::Tensor** grads, int n, at::Tensor* found_inf, at::Tensor* inv_scale) {
  std::vector<at::Tensor> gs;
  gs.reserve(n);
  for (int i = 0; i < n; i++) gs.push_back(*grads[i]);
  at::_amp_foreach_non_finite_check_and_unscale_(gs, *found_inf, *inv_scale);
}

// A channels-last (NHWC in memory) copy of a 4-D tensor; other tensors as they are.
at::Tensor* tz_channels_last(at::Tensor* t) {
  if (t->dim() != 4) return new at::Tensor(*t);
  return new at::Tensor(t->contiguous(at::MemoryFormat::ChannelsLast));
}

// param.data = data (same shape and dtype; keeps the parameter object, its requires_grad and identity).
void tz_set_data(at::Tensor* param, at::Tensor* data) { param->set_data(*data); }

}  // extern "C"
