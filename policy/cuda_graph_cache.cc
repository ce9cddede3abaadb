// Capture and replay of pass graphs (see cuda_graph_cache.h).
#include "policy/cuda_graph_cache.h"

#include <spdlog/spdlog.h>

#include "policy/cuda_check.h"

namespace longtail::policy::cuda {

GraphCache::~GraphCache() { clear(); }

void GraphCache::clear() {
  for (auto& [key, e] : graphs_)
    if (e.exec) cudaGraphExecDestroy(e.exec);
  graphs_.clear();
  captured_ = 0;
}

void GraphCache::run(const GraphKey& gk, cudaStream_t stream, const std::function<void()>& body) {
  if (!capture_) {
    ++eager_runs_;
    body();
    return;
  }
  Entry& e = graphs_[gk];
  if (e.exec) {
    LT_CUDA_CHECK(cudaGraphLaunch(e.exec, stream));
    ++replays_;
    return;
  }
  if (e.eager_only || e.seen++ == 0 || captured_ >= max_graphs_) {
    ++eager_runs_;
    body();
    return;
  }
  cudaGraph_t graph = nullptr;
  LT_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  try {
    body();
  } catch (const std::exception& ex) {
    cudaStreamEndCapture(stream, &graph);
    if (graph) cudaGraphDestroy(graph);
    cudaGetLastError();
    e.eager_only = true;
    ++eager_runs_;
    spdlog::warn("cuda backend: capture of pass (batch {}, {} tokens, query length {}, width {}) "
                 "failed ({}); running it eagerly",
                 gk.seqs, gk.tokens, gk.max_query_len, gk.table_width, ex.what());
    body();
    return;
  }
  LT_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
  const cudaError_t inst = cudaGraphInstantiate(&e.exec, graph, 0);
  cudaGraphDestroy(graph);
  if (inst != cudaSuccess) {
    cudaGetLastError();
    e.exec = nullptr;
    e.eager_only = true;
    ++eager_runs_;
    spdlog::warn("cuda backend: graph instantiation failed ({}); running eagerly",
                 cudaGetErrorString(inst));
    body();
    return;
  }
  ++captured_;
  LT_CUDA_CHECK(cudaGraphLaunch(e.exec, stream));
  ++replays_;
}

}  // namespace longtail::policy::cuda
