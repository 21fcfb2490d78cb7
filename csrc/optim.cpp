// One optimizer step over all parameters in one call: exactly the ATen calls of torch.optim's single-tensor
// algorithms (`_single_tensor_sgd`, `_single_tensor_adam`, `_single_tensor_rmsprop` in torch/optim/*.py, the
// path torch.optim takes on the CPU by default), with the same double Scalars, so the results are bit-exact with
// Python by construction. tch 0.26 binds neither the `alpha`/`value` Scalars of `add_`/`addcmul_`/`addcdiv_` nor
// lets Rust skip the per-call overhead of a step that is a dozen small ops per parameter.
//
// Arrays are indexed by parameter; a parameter without a gradient is skipped (its step count unchanged), as
// torch.optim's `_init_group` leaves it out. A state slot that is an undefined tensor is created on the
// parameter's first step, as `_init_group` does (zeros like the parameter; SGD's momentum buffer a copy of the
// gradient). `steps` holds torch's float32 `step` tensor's value (incremented in float32). Returns null, or a
// message (the caller frees it with tz_free_message) when ATen throws.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <cmath>
#include <cstring>
#include <exception>
#include <vector>

namespace {

char* message(const std::exception& e) { return strdup(e.what()); }

at::Tensor& slot(at::Tensor** slots, int64_t i, const at::Tensor& param) {
  at::Tensor& s = *slots[i];
  if (!s.defined()) {
    s = at::zeros_like(param, param.options(), at::MemoryFormat::Preserve);
  }
  return s;
}

void next_step(double* steps, int64_t i) { steps[i] = static_cast<double>(static_cast<float>(steps[i]) + 1.0f); }

// A number operand of `mul_`/`div`/`add_` as Python passes it (`exp_avg_sq.mul_(beta2)`): ATen wraps it in a 0-dim
// float64 tensor, and TensorIterator then casts that to the common dtype, a `to()` copy per call that costs more
// than the kernel on small tensors. For float32 and float64 tensors the same kernel gets the same operand, a 0-dim
// tensor of the tensor's dtype holding the number rounded to it, when that tensor is made here once per step and
// reused: identical results, without the wrap and the cast. Half and bfloat16 kernels read the original float64
// value instead, so they keep the number.
struct Number {
  double value;
  at::Tensor cached;

  explicit Number(double v) : value(v) {}
  // The operand for `like`: the cached 0-dim tensor of its dtype, or the number itself.
  at::Tensor operand(const at::Tensor& like) {
    const auto type = like.scalar_type();
    if (type != at::kFloat && type != at::kDouble) return at::Tensor();
    if (!cached.defined() || cached.scalar_type() != type) {
      cached = at::scalar_tensor(value, at::TensorOptions().dtype(type));
    }
    return cached;
  }
  void set(double v) {
    if (v != value) {
      value = v;
      cached.reset();
    }
  }
};

// `t.mul_(n)`, `t.div(n)`, `t.add_(n)` with Python's number semantics (see Number).
at::Tensor& mul_(at::Tensor& t, Number& n) {
  at::Tensor o = n.operand(t);
  return o.defined() ? t.mul_(o) : t.mul_(n.value);
}
at::Tensor div(const at::Tensor& t, Number& n) {
  at::Tensor o = n.operand(t);
  return o.defined() ? t.div(o) : t.div(n.value);
}
at::Tensor& add_(at::Tensor& t, Number& n) {
  at::Tensor o = n.operand(t);
  return o.defined() ? t.add_(o) : t.add_(n.value);
}

}  // namespace

extern "C" {

void tz_free_message(char* message) { free(message); }

// torch.optim.SGD: momentum_buffers[i] holds `momentum_buffer` (used when momentum != 0).
char* tz_sgd_step(at::Tensor** params, at::Tensor** momentum_buffers, int64_t n, double lr, double momentum,
                  double dampening, double weight_decay, int nesterov) {
  try {
    at::NoGradGuard no_grad;
    Number momentum_n(momentum);
    for (int64_t i = 0; i < n; ++i) {
      at::Tensor& param = *params[i];
      at::Tensor grad = param.grad();
      if (!grad.defined()) continue;
      if (weight_decay != 0) grad = grad.add(param, weight_decay);
      if (momentum != 0) {
        at::Tensor& buf = *momentum_buffers[i];
        if (!buf.defined()) {
          buf = grad.detach().clone();
        } else {
          mul_(buf, momentum_n).add_(grad, 1 - dampening);
        }
        grad = nesterov ? grad.add(buf, momentum) : buf;
      }
      param.add_(grad, -lr);
    }
    return nullptr;
  } catch (const std::exception& e) {
    return message(e);
  } catch (...) {
    return strdup("unknown C++ exception");
  }
}

// torch.optim.Adam, and AdamW with `decoupled` (weight decay applied to the parameter, `decoupled_weight_decay`).
char* tz_adam_step(at::Tensor** params, at::Tensor** exp_avgs, at::Tensor** exp_avg_sqs, at::Tensor** max_exp_avg_sqs,
                   double* steps, int64_t n, double lr, double beta1, double beta2, double eps, double weight_decay,
                   int amsgrad, int decoupled) {
  try {
    at::NoGradGuard no_grad;
    Number decay(1 - lr * weight_decay), beta2_n(beta2), eps_n(eps), bias_correction2_sqrt(1);
    for (int64_t i = 0; i < n; ++i) {
      at::Tensor& param = *params[i];
      at::Tensor grad = param.grad();
      if (!grad.defined()) continue;
      at::Tensor& exp_avg = slot(exp_avgs, i, param);
      at::Tensor& exp_avg_sq = slot(exp_avg_sqs, i, param);
      next_step(steps, i);
      if (weight_decay != 0) {
        if (decoupled) {
          mul_(param, decay);
        } else {
          grad = grad.add(param, weight_decay);
        }
      }
      exp_avg.lerp_(grad, 1 - beta1);
      mul_(exp_avg_sq, beta2_n).addcmul_(grad, grad, 1 - beta2);
      const double step = steps[i];
      const double bias_correction1 = 1 - std::pow(beta1, step);
      const double bias_correction2 = 1 - std::pow(beta2, step);
      const double step_size = lr / bias_correction1;
      bias_correction2_sqrt.set(std::pow(bias_correction2, 0.5));  // Python's `** 0.5`
      at::Tensor denom;
      if (amsgrad) {
        at::Tensor& max_sq = slot(max_exp_avg_sqs, i, param);
        at::maximum_out(max_sq, max_sq, exp_avg_sq);
        denom = div(max_sq.sqrt(), bias_correction2_sqrt);
      } else {
        denom = div(exp_avg_sq.sqrt(), bias_correction2_sqrt);
      }
      add_(denom, eps_n);
      param.addcdiv_(exp_avg, denom, -step_size);
    }
    return nullptr;
  } catch (const std::exception& e) {
    return message(e);
  } catch (...) {
    return strdup("unknown C++ exception");
  }
}

// torch.optim.RMSprop: momentum_buffers used when momentum > 0, grad_avgs when centered.
char* tz_rmsprop_step(at::Tensor** params, at::Tensor** square_avgs, at::Tensor** momentum_buffers,
                      at::Tensor** grad_avgs, double* steps, int64_t n, double lr, double alpha, double eps,
                      double weight_decay, double momentum, int centered) {
  try {
    at::NoGradGuard no_grad;
    Number alpha_n(alpha), eps_n(eps), momentum_n(momentum);
    for (int64_t i = 0; i < n; ++i) {
      at::Tensor& param = *params[i];
      at::Tensor grad = param.grad();
      if (!grad.defined()) continue;
      at::Tensor& square_avg = slot(square_avgs, i, param);
      if (momentum > 0) slot(momentum_buffers, i, param);
      if (centered) slot(grad_avgs, i, param);
      next_step(steps, i);
      if (weight_decay != 0) grad = grad.add(param, weight_decay);
      mul_(square_avg, alpha_n).addcmul_(grad, grad, 1 - alpha);
      at::Tensor avg;
      if (centered) {
        at::Tensor& grad_avg = *grad_avgs[i];
        grad_avg.lerp_(grad, 1 - alpha);
        avg = square_avg.addcmul(grad_avg, grad_avg, -1).sqrt_();
      } else {
        avg = square_avg.sqrt();
      }
      add_(avg, eps_n);
      if (momentum > 0) {
        at::Tensor& buf = *momentum_buffers[i];
        mul_(buf, momentum_n).addcdiv_(grad, avg);
        param.add_(buf, -lr);
      } else {
        param.addcdiv_(grad, avg, -lr);
      }
    }
    return nullptr;
  } catch (const std::exception& e) {
    return message(e);
  } catch (...) {
    return strdup("unknown C++ exception");
  }
}

// torch.optim.Adam / AdamW with fused=True (`_fused_adam` in torch/optim/adam.py): the parameters with a gradient,
// their state created as `_init_group` does, the float32 `step` tensors incremented by `_foreach_add_`, then one
// `_fused_adam_` / `_fused_adamw_` call (max_exp_avg_sqs empty unless amsgrad, as `_init_group` leaves it).
char* tz_fused_adam_step(at::Tensor** params, at::Tensor** exp_avgs, at::Tensor** exp_avg_sqs,
                         at::Tensor** max_exp_avg_sqs, double* steps, int64_t n, double lr, double beta1, double beta2,
                         double eps, double weight_decay, int amsgrad, int decoupled) {
  try {
    at::NoGradGuard no_grad;
    std::vector<at::Tensor> ps, gs, ms, vs, vmax, ss;
    std::vector<int64_t> index;
    for (int64_t i = 0; i < n; ++i) {
      at::Tensor& param = *params[i];
      if (!param.grad().defined()) continue;
      ps.push_back(param);
      gs.push_back(param.grad());
      ms.push_back(slot(exp_avgs, i, param));
      vs.push_back(slot(exp_avg_sqs, i, param));
      if (amsgrad) vmax.push_back(slot(max_exp_avg_sqs, i, param));
      ss.push_back(at::scalar_tensor(steps[i], param.options().dtype(at::kFloat)));
      index.push_back(i);
    }
    if (ps.empty()) return nullptr;
    at::_foreach_add_(ss, 1);
    if (decoupled) {
      at::_fused_adamw_(ps, gs, ms, vs, vmax, ss, lr, beta1, beta2, weight_decay, eps, amsgrad != 0, false);
    } else {
      at::_fused_adam_(ps, gs, ms, vs, vmax, ss, lr, beta1, beta2, weight_decay, eps, amsgrad != 0, false);
    }
    for (size_t k = 0; k < index.size(); ++k) steps[index[k]] = ss[k].item<double>();
    return nullptr;
  } catch (const std::exception& e) {
    return message(e);
  }
}

// torch.optim.SGD with fused=True (`_fused_sgd` in torch/optim/sgd.py): on the first step (no momentum buffer yet)
// the buffers are `empty_like(grad)` and the kernel fills them; one `_fused_sgd_` call.
char* tz_fused_sgd_step(at::Tensor** params, at::Tensor** momentum_buffers, int64_t n, double lr, double momentum,
                        double dampening, double weight_decay, int nesterov) {
  try {
    at::NoGradGuard no_grad;
    std::vector<at::Tensor> ps, gs, bufs;
    bool first = true;
    for (int64_t i = 0; i < n; ++i) {
      if (params[i]->grad().defined() && momentum_buffers[i]->defined()) first = false;
    }
    first = first && momentum != 0;
    for (int64_t i = 0; i < n; ++i) {
      at::Tensor& param = *params[i];
      if (!param.grad().defined()) continue;
      ps.push_back(param);
      gs.push_back(param.grad());
      if (momentum != 0) {
        at::Tensor& buf = *momentum_buffers[i];
        if (first) buf = at::empty_like(param.grad());
        bufs.push_back(buf);
      }
    }
    if (ps.empty()) return nullptr;
    at::_fused_sgd_(ps, gs, bufs, weight_decay, momentum, lr, dampening, nesterov != 0, false, first);
    return nullptr;
  } catch (const std::exception& e) {
    return message(e);
  }
}

// torch.optim.SGD with foreach=True (`_multi_tensor_sgd` in torch/optim/sgd.py; one device and dtype, the CPU's
// case, so one group): the `_foreach_*` ops with the same Scalars. Nesterov adds the buffers into the gradients in
// place when there is no weight decay, as torch does.
char* tz_foreach_sgd_step(at::Tensor** params, at::Tensor** momentum_buffers, int64_t n, double lr, double momentum,
                          double dampening, double weight_decay, int nesterov) {
  try {
    at::NoGradGuard no_grad;
    std::vector<at::Tensor> ps, gs;
    std::vector<int64_t> index;
    for (int64_t i = 0; i < n; ++i) {
      if (!params[i]->grad().defined()) continue;
      ps.push_back(*params[i]);
      gs.push_back(params[i]->grad());
      index.push_back(i);
    }
    if (ps.empty()) return nullptr;
    if (weight_decay != 0) gs = at::_foreach_add(gs, ps, weight_decay);
    if (momentum != 0) {
      std::vector<at::Tensor> bufs;
      bool all = true;
      for (int64_t i : index) all = all && momentum_buffers[i]->defined();
      if (all) {
        for (int64_t i : index) bufs.push_back(*momentum_buffers[i]);
        at::_foreach_mul_(bufs, momentum);
        at::_foreach_add_(bufs, gs, 1 - dampening);
      } else {
        for (size_t k = 0; k < index.size(); ++k) {
          at::Tensor& buf = *momentum_buffers[index[k]];
          if (!buf.defined()) {
            buf = gs[k].detach().clone();
          } else {
            buf.mul_(momentum).add_(gs[k], 1 - dampening);
          }
          bufs.push_back(buf);
        }
      }
      if (nesterov) {
        at::_foreach_add_(gs, bufs, momentum);
      } else {
        gs = bufs;
      }
    }
    at::_foreach_add_(ps, gs, -lr);
    return nullptr;
  } catch (const std::exception& e) {
    return message(e);
  } catch (...) {
    return strdup("unknown C++ exception");
  }
}

// torch.optim.Adam / AdamW with foreach=True (`_multi_tensor_adam` in torch/optim/adam.py, capturable=False): the
// step counts incremented first, then the `_foreach_*` ops with the same Scalars and Scalar lists (bias
// corrections computed in double from each float32 step, as `_get_value(step)`).
char* tz_foreach_adam_step(at::Tensor** params, at::Tensor** exp_avgs, at::Tensor** exp_avg_sqs,
                           at::Tensor** max_exp_avg_sqs, double* steps, int64_t n, double lr, double beta1,
                           double beta2, double eps, double weight_decay, int amsgrad, int decoupled) {
  try {
    at::NoGradGuard no_grad;
    std::vector<at::Tensor> ps, gs, ms, vs, vmax;
    std::vector<int64_t> index;
    for (int64_t i = 0; i < n; ++i) {
      at::Tensor& param = *params[i];
      if (!param.grad().defined()) continue;
      ps.push_back(param);
      gs.push_back(param.grad());
      ms.push_back(slot(exp_avgs, i, param));
      vs.push_back(slot(exp_avg_sqs, i, param));
      if (amsgrad) vmax.push_back(slot(max_exp_avg_sqs, i, param));
      index.push_back(i);
    }
    if (ps.empty()) return nullptr;
    for (int64_t i : index) next_step(steps, i);
    if (weight_decay != 0) {
      if (decoupled) {
        at::_foreach_mul_(ps, 1 - lr * weight_decay);
      } else {
        gs = at::_foreach_add(gs, ps, weight_decay);
      }
    }
    at::_foreach_lerp_(ms, gs, 1 - beta1);
    at::_foreach_mul_(vs, beta2);
    at::_foreach_addcmul_(vs, gs, gs, 1 - beta2);
    std::vector<at::Scalar> step_size, bias_correction2_sqrt;
    for (int64_t i : index) {
      const double bias_correction1 = 1 - std::pow(beta1, steps[i]);
      const double bias_correction2 = 1 - std::pow(beta2, steps[i]);
      step_size.emplace_back((lr / bias_correction1) * -1);
      bias_correction2_sqrt.emplace_back(std::pow(bias_correction2, 0.5));
    }
    std::vector<at::Tensor> denom;
    if (amsgrad) {
      at::_foreach_maximum_(vmax, vs);
      denom = at::_foreach_sqrt(vmax);
    } else {
      denom = at::_foreach_sqrt(vs);
    }
    at::_foreach_div_(denom, bias_correction2_sqrt);
    at::_foreach_add_(denom, eps);
    at::_foreach_addcdiv_(ps, ms, denom, step_size);
    return nullptr;
  } catch (const std::exception& e) {
    return message(e);
  } catch (...) {
    return strdup("unknown C++ exception");
  }
}

// zero_grad(set_to_none=True), PyTorch's default: no zeroing kernels; the next backward assigns the gradient.
char* tz_grads_to_none(at::Tensor** params, int64_t n) {
  try {
    for (int64_t i = 0; i < n; ++i) params[i]->mutable_grad().reset();
    return nullptr;
  } catch (const std::exception& e) {
    return message(e);
  } catch (...) {
    return strdup("unknown C++ exception");
  }
}

}  // extern "C"

#include <malloc.h>

extern "C" {

// Training frees and allocates the same buffers every step (gradients under set_to_none, activations, batches).
// glibc hands blocks of 128 KB and more to mmap and trims the heap's top past 128 KB, so such buffers go back to
// the kernel every step and are faulted in again (LeNet-5 at batch 64: 1,500 page faults a step). Keeping blocks
// under 32 MB (the most glibc allows; its own dynamic threshold grows to that) in the heap and trimming past 128 MB only makes them reused instead.
// mallopt is C and cannot throw, so this entry needs no try/catch.
void tz_keep_freed_memory() {
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 128 << 20);
}

}  // extern "C"
