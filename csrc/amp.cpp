// Mixed precision and memory formats that tch does not reach: autocast for a device type with a chosen dtype
// (tch's `autocast` is CUDA-only and float16-only), GradScaler's fused unscale-and-check, channels-last copies and
// replacing a parameter's data in place (`param.data = …`). Every function catches C++ exceptions: it returns
// null on success or the error's message (strdup'd; the caller frees it with tz_free_message).
#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>

#include <cstring>
#include <exception>
#include <vector>

namespace {
at::DeviceType device_type(int cuda) { return cuda ? at::kCUDA : at::kCPU; }

// The first line of a c10 error (without the C++ backtrace c10::Error appends).
char* amp_message(const std::exception& e) {
  if (auto c10e = dynamic_cast<const c10::Error*>(&e)) return strdup(c10e->msg().c_str());
  return strdup(e.what());
}
}  // namespace

#define TZ_AMP_TRY try {
#define TZ_AMP_CATCH                       \
  return nullptr;                          \
  }                                        \
  catch (const std::exception& e) {        \
    return amp_message(e);                 \
  }                                        \
  catch (...) {                            \
    return strdup("unknown C++ exception"); \
  }

extern "C" {

// Enters an autocast region for the CPU (cuda = 0) or CUDA (cuda = 1) with bfloat16 (half = 0) or float16
// (half = 1); `*prev` gets the previous state as enabled * 1000 + dtype, for tz_autocast_exit.
char* tz_autocast_enter(int cuda, int half, int* prev) {
  TZ_AMP_TRY
  auto dt = device_type(cuda);
  *prev = (at::autocast::is_autocast_enabled(dt) ? 1000 : 0) + static_cast<int>(at::autocast::get_autocast_dtype(dt));
  at::autocast::set_autocast_enabled(dt, true);
  at::autocast::set_autocast_dtype(dt, half ? at::kHalf : at::kBFloat16);
  at::autocast::increment_nesting();
  TZ_AMP_CATCH
}

char* tz_autocast_exit(int cuda, int prev) {
  TZ_AMP_TRY
  auto dt = device_type(cuda);
  if (at::autocast::decrement_nesting() == 0) {
    at::autocast::clear_cache();
  }
  at::autocast::set_autocast_enabled(dt, prev >= 1000);
  at::autocast::set_autocast_dtype(dt, static_cast<at::ScalarType>(prev % 1000));
  TZ_AMP_CATCH
}

// GradScaler.unscale_: every gradient multiplied by inv_scale in place; found_inf set to 1 where any is not finite.
char* tz_amp_unscale(at::Tensor** grads, int n, at::Tensor* found_inf, at::Tensor* inv_scale) {
  TZ_AMP_TRY
  std::vector<at::Tensor> gs;
  gs.reserve(n);
  for (int i = 0; i < n; i++) gs.push_back(*grads[i]);
  at::_amp_foreach_non_finite_check_and_unscale_(gs, *found_inf, *inv_scale);
  TZ_AMP_CATCH
}

// `*out` = a channels-last (NHWC in memory) copy of a 4-D tensor; other tensors as they are.
char* tz_channels_last(at::Tensor* t, at::Tensor** out) {
  TZ_AMP_TRY
  *out = nullptr;
  if (t->dim() != 4) {
    *out = new at::Tensor(*t);
  } else {
    *out = new at::Tensor(t->contiguous(at::MemoryFormat::ChannelsLast));
  }
  TZ_AMP_CATCH
}

// param.data = data (same shape and dtype; keeps the parameter object, its requires_grad and identity).
char* tz_set_data(at::Tensor* param, at::Tensor* data) {
  TZ_AMP_TRY
  param->set_data(*data);
  TZ_AMP_CATCH
}

}  // extern "C"
