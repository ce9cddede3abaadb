// CUDA graphs of repeated decode/verify pass shapes. A shape is replayed from a graph once it has
// been seen before (the first occurrence runs eagerly, so lazy library initialisation such as
// cuBLAS heuristics or kernel attributes never happens inside a capture); a capture that fails
// marks the shape eager-only instead of failing the step. With capture off every pass runs eagerly
// with the same padded shapes (LONGTAIL_CUDA_GRAPHS=eager: what replay must reproduce bit for bit).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <functional>
#include <map>

#include "policy/cuda_step_plan.h"

namespace longtail::policy::cuda {

class GraphCache {
 public:
  // Ragged verify steps give a few hundred shapes over a long round; each graph is host memory
  // only (kernel nodes), so the cap is there to bound capture time, not memory.
  explicit GraphCache(size_t max_graphs = 512, bool capture = true)
      : max_graphs_(max_graphs), capture_(capture) {}
  ~GraphCache();
  GraphCache(const GraphCache&) = delete;
  GraphCache& operator=(const GraphCache&) = delete;

  // Runs `body` for this key on `stream`: eagerly, or by capturing it once and replaying.
  void run(const GraphKey& key, cudaStream_t stream, const std::function<void()>& body);
  void clear();
  size_t size() const { return graphs_.size(); }
  size_t replays() const { return replays_; }
  size_t captured() const { return captured_; }
  size_t eager_runs() const { return eager_runs_; }  // graphable passes that ran without a graph

 private:
  struct Entry {
    int seen = 0;
    bool eager_only = false;
    cudaGraphExec_t exec = nullptr;
  };
  size_t max_graphs_;
  bool capture_;
  std::map<GraphKey, Entry> graphs_;
  size_t captured_ = 0;
  size_t replays_ = 0;
  size_t eager_runs_ = 0;
};

}  // namespace longtail::policy::cuda
