// CUDA graphs of repeated decode/verify pass shapes. The first pass of the cache's life runs
// eagerly (cuBLAS's and the kernels' one-time set-up happens outside any capture). Then, with
// capture_at_first_sight, a new shape is captured the first time it is seen and replayed ever
// after: a speculative run meets a new ragged-verify shape every few steps, and running each one
// eagerly before capturing it cost an eager pass per shape (bench/results/rounds_gpu_2026-12-02d.md).
// Without it (the legacy policy, kept to measure against) a shape runs eagerly once and is captured
// when it recurs. A capture that fails runs that pass eagerly and is tried again next time; a shape
// whose capture failed twice stays eager. With capture off every pass runs eagerly with the same
// padded shapes (LONGTAIL_CUDA_GRAPHS=eager: what replay must reproduce bit for bit).
#pragma once

#include <cuda_runtime_api.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>

#include "policy/cuda_step_plan.h"

namespace longtail::policy::cuda {

class GraphCache {
 public:
  // Ragged verify steps give a few hundred shapes over a long round; each graph is host memory
  // only (kernel nodes), so the cap is there to bound capture time, not memory.
  explicit GraphCache(size_t max_graphs = 512, bool capture = true,
                      bool capture_at_first_sight = true)
      : max_graphs_(max_graphs), capture_(capture), first_sight_(capture_at_first_sight) {}
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
  // Host seconds spent capturing and instantiating (the GPU idles through them when the stream has
  // drained): what a round pays for shapes it meets for the first time.
  double capture_s() const { return capture_s_; }

 private:
  struct Entry {
    int seen = 0;
    int failed_captures = 0;
    cudaGraphExec_t exec = nullptr;
  };
  void run_eagerly(const std::function<void()>& body);
  size_t max_graphs_;
  bool capture_;
  bool first_sight_;
  bool warm_ = false;  // a pass has run: one-time library set-up is done
  std::map<GraphKey, Entry> graphs_;
  size_t captured_ = 0;
  size_t replays_ = 0;
  size_t eager_runs_ = 0;
  double capture_s_ = 0;
};

}  // namespace longtail::policy::cuda
