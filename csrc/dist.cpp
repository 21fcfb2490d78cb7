// The C++ side of tchzoo's data-parallel training: libtorch's own c10d (TCPStore for the rendezvous,
// ProcessGroupGloo for CPU tensors, ProcessGroupNCCL for CUDA tensors when built with it), exposed to Rust as a
// handful of C functions. Every function catches C++ exceptions and returns the message (malloc'd; the caller
// frees it with tz_free_string); a tensor argument is tch's `torch::Tensor*`.
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <c10/util/Logging.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef TCHZOO_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

namespace {

struct Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> backend;
  std::chrono::milliseconds timeout;
  int rank;
  int world;
};

char* copy_message(const std::string& s) {
  char* out = static_cast<char*>(std::malloc(s.size() + 1));
  if (out) std::memcpy(out, s.c_str(), s.size() + 1);
  return out;
}

// The first line of a c10 error (its message without the C++ backtrace that c10::Error appends).
std::string first_line(const std::exception& e) {
  if (auto c10e = dynamic_cast<const c10::Error*>(&e)) {
    return c10e->msg();
  }
  return e.what();
}

#define TZ_TRY(err) \
  try {
#define TZ_CATCH(err, ret)                    \
  }                                           \
  catch (const std::exception& e) {           \
    *(err) = copy_message(first_line(e));     \
    return ret;                               \
  }                                           \
  catch (...) {                               \
    *(err) = copy_message("unknown C++ error"); \
    return ret;                               \
  }

c10d::ReduceOp reduce_op(int op) {
  switch (op) {
    case 1:
      return c10d::ReduceOp::MAX;
    case 2:
      return c10d::ReduceOp::MIN;
    default:
      return c10d::ReduceOp::SUM;
  }
}

// Starts `collective` on each tensor (one list each: a list of several would be several devices' copies), then
// waits for all of them.
template <typename F>
void each_tensor(void* group, at::Tensor** tensors, int n, F collective) {
  auto g = reinterpret_cast<Group*>(group);
  std::vector<std::vector<at::Tensor>> lists(n);
  std::vector<c10::intrusive_ptr<c10d::Work>> works;
  for (int i = 0; i < n; i++) {
    lists[i].push_back(*tensors[i]);
    works.push_back(collective(g, lists[i]));
  }
  for (auto& w : works) {
    w->wait(g->timeout);
  }
}

// An all-reduce (sum) that autograd differentiates: the gradient of every rank's input is the sum of the
// gradients of every rank's output, which is what synchronised batch normalisation needs.
struct AllReduceSum : public torch::autograd::Function<AllReduceSum> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& input, int64_t group) {
    ctx->saved_data["group"] = group;
    auto g = reinterpret_cast<Group*>(group);
    std::vector<at::Tensor> ts{input.clone().contiguous()};
    auto work = g->backend->allreduce(ts, c10d::AllreduceOptions{});
    work->wait(g->timeout);
    return ts[0];
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto g = reinterpret_cast<Group*>(ctx->saved_data["group"].toInt());
    std::vector<at::Tensor> ts{grads[0].clone().contiguous()};
    auto work = g->backend->allreduce(ts, c10d::AllreduceOptions{});
    work->wait(g->timeout);
    return {ts[0], at::Tensor()};
  }
};

// c10d logs every failed connection attempt with a C++ backtrace; tchzoo reports the failure itself in one line,
// so while joining only fatal messages are logged, unless the user chose a level with TORCH_CPP_LOG_LEVEL.
struct QuietLogs {
  int saved;
  bool active;
  QuietLogs() : saved(FLAGS_caffe2_log_level), active(std::getenv("TORCH_CPP_LOG_LEVEL") == nullptr) {
    if (active) FLAGS_caffe2_log_level = 3;
  }
  ~QuietLogs() {
    if (active) FLAGS_caffe2_log_level = saved;
  }
};

}  // namespace

extern "C" {

void tz_free_string(char* s) { std::free(s); }

// Joins the process group: a TCPStore at addr:port (rank 0 serves it), then the backend ("gloo" or "nccl").
// `device_index` is the CUDA device of this rank for NCCL (ignored by Gloo).
void* tz_dist_init(const char* backend, const char* addr, int port, int rank, int world, int64_t timeout_ms,
                   char** err) {
  TZ_TRY(err)
  QuietLogs quiet;
  auto timeout = std::chrono::milliseconds(timeout_ms);
  c10d::TCPStoreOptions opts;
  opts.port = static_cast<uint16_t>(port);
  opts.isServer = rank == 0;
  opts.numWorkers = world;
  opts.waitWorkers = true;
  opts.timeout = timeout;
  auto tcp = c10::make_intrusive<c10d::TCPStore>(std::string(addr), opts);
  auto store = c10::make_intrusive<c10d::PrefixStore>("tchzoo/", tcp);
  auto g = std::make_unique<Group>();
  g->store = store;
  g->timeout = timeout;
  g->rank = rank;
  g->world = world;
  std::string name(backend);
  if (name == "gloo") {
    auto o = c10d::ProcessGroupGloo::Options::create(timeout);
    const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
    if (ifname && *ifname) {
      o->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
    } else {
      o->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
    g->backend = c10::make_intrusive<c10d::ProcessGroupGloo>(
        c10::make_intrusive<c10d::PrefixStore>("gloo/", store), rank, world, o);
  } else if (name == "nccl") {
#ifdef TCHZOO_NCCL
    auto o = c10d::ProcessGroupNCCL::Options::create();
    o->timeout = timeout;
    g->backend = c10::make_intrusive<c10d::ProcessGroupNCCL>(
        c10::make_intrusive<c10d::PrefixStore>("nccl/", store), rank, world, o);
#else
    throw std::runtime_error("this tchzoo was built without NCCL (its build found no nccl.h); use --dist-backend gloo");
#endif
  } else {
    throw std::runtime_error("unknown backend '" + name + "'; use gloo or nccl");
  }
  return g.release();
  TZ_CATCH(err, nullptr)
}

void tz_dist_free(void* group) { delete reinterpret_cast<Group*>(group); }

// All-reduces each tensor in place (op: 0 sum, 1 max, 2 min); all are started before any is waited on.
int tz_dist_allreduce(void* group, at::Tensor** tensors, int n, int op, char** err) {
  TZ_TRY(err)
  c10d::AllreduceOptions o;
  o.reduceOp = reduce_op(op);
  each_tensor(group, tensors, n, [&](Group* g, std::vector<at::Tensor>& one) { return g->backend->allreduce(one, o); });
  return 0;
  TZ_CATCH(err, 1)
}

// Broadcasts each tensor in place from `root`.
int tz_dist_broadcast(void* group, at::Tensor** tensors, int n, int root, char** err) {
  TZ_TRY(err)
  c10d::BroadcastOptions o;
  o.rootRank = root;
  each_tensor(group, tensors, n, [&](Group* g, std::vector<at::Tensor>& one) { return g->backend->broadcast(one, o); });
  return 0;
  TZ_CATCH(err, 1)
}

int tz_dist_barrier(void* group, char** err) {
  TZ_TRY(err)
  auto g = reinterpret_cast<Group*>(group);
  auto work = g->backend->barrier(c10d::BarrierOptions{});
  work->wait(g->timeout);
  return 0;
  TZ_CATCH(err, 1)
}

// The store's key-value pairs (e.g. rank 0's run folder for the others).
int tz_dist_store_set(void* group, const char* key, const char* value, char** err) {
  TZ_TRY(err)
  auto g = reinterpret_cast<Group*>(group);
  std::string v(value);
  g->store->set(key, std::vector<uint8_t>(v.begin(), v.end()));
  return 0;
  TZ_CATCH(err, 1)
}

char* tz_dist_store_get(void* group, const char* key, char** err) {
  TZ_TRY(err)
  auto g = reinterpret_cast<Group*>(group);
  auto v = g->store->get(key);
  return copy_message(std::string(v.begin(), v.end()));
  TZ_CATCH(err, nullptr)
}

// A differentiable all-reduce (sum); returns a new tensor (tch takes ownership).
at::Tensor* tz_dist_allreduce_autograd(void* group, at::Tensor* input, char** err) {
  TZ_TRY(err)
  return new at::Tensor(AllReduceSum::apply(*input, reinterpret_cast<int64_t>(group)));
  TZ_CATCH(err, nullptr)
}

// NCCL's version as major*10000+minor*100+patch (0 when built without it).
int tz_nccl_version() {
#ifdef TCHZOO_NCCL
  auto v = c10d::getNcclVersionNumber();
  return static_cast<int>(v);
#else
  return 0;
#endif
}

}  // extern "C"
