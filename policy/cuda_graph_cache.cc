// Capture and replay of pass graphs (see cuda_graph_cache.h).
#include "policy/cuda_graph_cache.h"

#include <spdlog/spdlog.h>

#include <string>

#include "policy/cuda_check.h"

namespace longtail::policy::cuda {

GraphCache::~GraphCache() { clear(); }

void GraphCache::clear() {
  for (auto& [key, e] : graphs_)
    if (e.exec) cudaGraphExecDestroy(e.exec);
  graphs_.clear();
  captured_ = 0;
}

void GraphCache::run_eagerly(const std::function<void()>& body) {
  ++eager_runs_;
  body();
  warm_ = true;
}

void GraphCache::run(const GraphKey& gk, cudaStream_t stream, const std::function<void()>& body) {
  if (!capture_) {
    run_eagerly(body);
    return;
  }
  Entry& e = graphs_[gk];
  if (e.exec) {
    LT_CUDA_CHECK(cudaGraphLaunch(e.exec, stream));
    ++replays_;
    return;
  }
  const bool first = e.seen++ == 0;
  if (e.failed_captures >= 2 || captured_ >= max_graphs_ || !warm_ || (first && !first_sight_)) {
    run_eagerly(body);
    return;
  }
  auto failed = [&](const std::string& why) {
    cudaGetLastError();  // capture errors are not sticky; clear the last one
    ++e.failed_captures;
    spdlog::warn("cuda backend: capture of pass (batch {}, {} tokens, query length {}, width {}) "
                 "failed ({}); running it eagerly{}",
                 gk.seqs, gk.tokens, gk.max_query_len, gk.table_width, why,
                 e.failed_captures >= 2 ? " from now on" : "");
    run_eagerly(body);
  };
  const auto t0 = std::chrono::steady_clock::now();
  struct AddElapsed {  // every way out counts (a failed capture's eager fallback with it: rare)
    std::chrono::steady_clock::time_point t0;
    double& total;
    ~AddElapsed() {
      total += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
  } add_elapsed{t0, capture_s_};
  cudaGraph_t graph = nullptr;
  LT_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  try {
    body();
  } catch (const std::exception& ex) {
    cudaStreamEndCapture(stream, &graph);
    if (graph) cudaGraphDestroy(graph);
    failed(ex.what());
    return;
  }
  const cudaError_t end = cudaStreamEndCapture(stream, &graph);
  if (end != cudaSuccess || !graph) {
    failed(cudaGetErrorString(end));
    return;
  }
  const cudaError_t inst = cudaGraphInstantiate(&e.exec, graph, 0);
  cudaGraphDestroy(graph);
  if (inst != cudaSuccess) {
    e.exec = nullptr;
    failed(std::string("instantiation: ") + cudaGetErrorString(inst));
    return;
  }
  ++captured_;
  LT_CUDA_CHECK(cudaGraphLaunch(e.exec, stream));
  ++replays_;
}

}  // namespace longtail::policy::cuda
