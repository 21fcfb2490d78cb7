// CUDA graphs over libtorch's own at::cuda::CUDAGraph, as torch.cuda.graph() drives it: capture on a side stream
// (capture cannot run on the legacy default stream), a private memory pool, replay. Compiled only when the CUDA
// runtime headers are at hand (build.rs: cfg tchzoo_cuda); every entry catches C++ exceptions and returns a message
// (freed by tz_free_message) or null.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAStream.h>

#include <cstring>
#include <exception>
#include <optional>

namespace {

char* message(const std::exception& e) { return strdup(e.what()); }

// A side stream made current for warm-up or capture, and the stream it replaced.
struct SideStream {
  c10::cuda::CUDAStream previous;
  c10::cuda::CUDAStream side;
  SideStream(c10::cuda::CUDAStream prev, c10::cuda::CUDAStream s) : previous(prev), side(s) {}
};

struct Graph {
  at::cuda::CUDAGraph graph;
  std::optional<SideStream> stream;
};

// Makes a pool stream current after it has waited for the current one (`s.wait_stream(current)` in Python).
SideStream enter_side_stream(int device) {
  auto previous = c10::cuda::getCurrentCUDAStream(device);
  auto side = c10::cuda::getStreamFromPool(false, device);
  c10::cuda::CUDAEvent ready;
  ready.record(previous);
  ready.block(side);
  c10::cuda::setCurrentCUDAStream(side);
  return SideStream(previous, side);
}

// Restores the previous stream after it has waited for the side stream (`current.wait_stream(s)`).
void leave_side_stream(const SideStream& s) {
  c10::cuda::CUDAEvent done;
  done.record(s.side);
  done.block(s.previous);
  c10::cuda::setCurrentCUDAStream(s.previous);
}

}  // namespace

extern "C" {

char* tz_cuda_graph_new(void** out) {
  try {
    *out = new Graph();
    return nullptr;
  } catch (const std::exception& e) {
    return message(e);
  }
}

void tz_cuda_graph_free(void* g) { delete static_cast<Graph*>(g); }

// Side-stream warm-up, as torch.cuda.graphs' docs ask before capture: enter, run eager steps, leave.
char* tz_cuda_side_stream_enter(int device, void** out) {
  try {
    *out = new SideStream(enter_side_stream(device));
    return nullptr;
  } catch (const std::exception& e) {
    return message(e);
  }
}

char* tz_cuda_side_stream_leave(void* s) {
  try {
    auto* side = static_cast<SideStream*>(s);
    leave_side_stream(*side);
    delete side;
    return nullptr;
  } catch (const std::exception& e) {
    return message(e);
  }
}

// torch.cuda.graph.__enter__: synchronize, free cached blocks, switch to a side stream, capture_begin.
char* tz_cuda_graph_capture_begin(void* g, int device) {
  try {
    auto* graph = static_cast<Graph*>(g);
    c10::cuda::device_synchronize();
    c10::cuda::CUDACachingAllocator::emptyCache();
    graph->stream.emplace(enter_side_stream(device));
    graph->graph.capture_begin();
    return nullptr;
  } catch (const std::exception& e) {
    auto* graph = static_cast<Graph*>(g);
    if (graph->stream) {
      c10::cuda::setCurrentCUDAStream(graph->stream->previous);
      graph->stream.reset();
    }
    return message(e);
  }
}

// torch.cuda.graph.__exit__: capture_end (which instantiates), back to the previous stream.
char* tz_cuda_graph_capture_end(void* g) {
  auto* graph = static_cast<Graph*>(g);
  try {
    graph->graph.capture_end();
    if (graph->stream) {
      leave_side_stream(*graph->stream);
      graph->stream.reset();
    }
    return nullptr;
  } catch (const std::exception& e) {
    if (graph->stream) {
      c10::cuda::setCurrentCUDAStream(graph->stream->previous);
      graph->stream.reset();
    }
    return message(e);
  }
}

char* tz_cuda_graph_replay(void* g) {
  try {
    static_cast<Graph*>(g)->graph.replay();
    return nullptr;
  } catch (const std::exception& e) {
    return message(e);
  }
}

// The caching allocator's peak and current allocated and reserved bytes of `device` (torch.cuda.memory_stats'
// allocated_bytes.all.peak and reserved_bytes.all.peak); `reset` clears the peaks first.
char* tz_cuda_memory_stats(int device, int reset, int64_t* out) {
  try {
    if (reset) c10::cuda::CUDACachingAllocator::resetPeakStats(device);
    auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device);
    const auto all = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
    out[0] = stats.allocated_bytes[all].peak;
    out[1] = stats.allocated_bytes[all].current;
    out[2] = stats.reserved_bytes[all].peak;
    out[3] = stats.reserved_bytes[all].current;
    return nullptr;
  } catch (const std::exception& e) {
    return message(e);
  }
}

}  // extern "C"
