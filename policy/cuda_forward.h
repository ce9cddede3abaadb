// The CUDA forward runner: executes planned passes (cuda_step_plan.h) on the device. All tokens of
// a pass go through each weight matrix in one cuBLAS product; attention runs per sequence over the
// paged cache; the final norm and the output projection run only on the rows that produce
// outputs; sampling happens on the device, and only (token, logprob, next-input logprob) per
// output row comes back, after the one stream synchronisation of the step.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "policy/backend.h"
#include "policy/cuda_buffer.h"
#include "policy/cuda_gemm.h"
#include "policy/cuda_graph_cache.h"
#include "policy/cuda_step_plan.h"
#include "policy/cuda_weights.h"
#include "policy/model_config.h"

namespace longtail::policy::cuda {

// Per layer, K then V, each [num_blocks][block_size][num_kv_heads][head_dim] bf16.
struct KvPool {
  void* base = nullptr;
  size_t layer_bytes = 0;  // one of K or V for one layer
  int32_t num_blocks = 0;
  int32_t block_size = 16;
  void* k(int layer) const { return static_cast<char*>(base) + 2 * layer * layer_bytes; }
  void* v(int layer) const { return static_cast<char*>(base) + (2 * layer + 1) * layer_bytes; }
};

class ForwardRunner {
 public:
  // capture_graphs = false runs graphable passes eagerly with their padded shapes (a check mode).
  // deterministic: batch-invariant products (cuda_gemm.h) and attention with fixed KV splits of
  // kDeterministicSplit positions, so a row's logits depend on neither the batch nor the pass.
  // gemm_choices: the products' algorithm choices to use and extend (cuda_gemm.h;
  // the backend keeps one set across sleeps so a wake does not choose again); null = a new set.
  // limits() is `limits` with the graph buckets priced for this model (priced_graph_limits in
  // cuda_step_plan.h: padding under 1/8 of a step's cost) and the graph cache captures new shapes
  // at first sight (capture_at_first_sight). LONGTAIL_GRAPH_BUCKETS overrides the pricing:
  // "legacy" = the behaviour until 2026-12-02 (fixed token steps, every shape eager once before its
  // capture), "tokens" = padding under 1/8 of the tokens, a number N = fixed_cost_tokens N.
  ForwardRunner(const ModelConfig& config, const PlanLimits& limits, bool capture_graphs = true,
                bool deterministic = false, std::shared_ptr<GemmChoices> gemm_choices = nullptr);
  static constexpr int32_t kDeterministicSplit = 1024;
  ~ForwardRunner();
  ForwardRunner(const ForwardRunner&) = delete;
  ForwardRunner& operator=(const ForwardRunner&) = delete;

  // Runs the passes in order and returns the real outputs, flattened in plan order. The only
  // host wait is the final stream synchronisation (plus, for multi-pass forwards, reuse of the
  // double-buffered metadata staging area).
  std::vector<TokenOutput> run(std::span<const PassPlan> passes, const ModelWeights& weights,
                               const KvPool& kv);

  // Token trees need the tensor-core attention (head_dim 64 or 128).
  bool supports_trees() const { return config_.head_dim == 64 || config_.head_dim == 128; }
  // Enqueues kernels::kv_cache_move_rows over every layer's K and V: slot src[j] -> dst[j], the
  // moves of group g (one sequence's compaction) in order. Stream-ordered before later passes.
  void move_kv_rows(const KvPool& kv, std::span<const int32_t> src, std::span<const int32_t> dst,
                    std::span<const int32_t> group_start);

  cudaStream_t stream() const { return stream_; }
  const PlanLimits& limits() const { return limits_; }
  size_t graph_replays() const { return graphs_.replays(); }
  size_t graphs_captured() const { return graphs_.captured(); }
  size_t graphable_eager_passes() const { return graphs_.eager_runs(); }
  double graph_capture_s() const { return graphs_.capture_s(); }
  size_t ungraphable_passes() const { return ungraphable_passes_; }
  void clear_graphs() { graphs_.clear(); }
  bool deterministic() const { return deterministic_; }
  // The fp32 logits of the first `rows` output rows of the last pass run (a test hook; waits).
  std::vector<float> last_logits(int32_t rows);

 private:
  void body(const PassPlan& pass, const MetaLayout& layout, const ModelWeights& w,
            const KvPool& kv);
  void attention(const PassPlan& pass, const MetaLayout& layout, const KvPool& kv, int layer);

  ModelConfig config_;
  PlanLimits limits_;
  bool deterministic_ = false;
  int32_t max_table_width_ = 0;
  int num_sms_ = 0;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<Gemm> gemm_;
  DeviceBuffer residual_, normed_, big_, q_, attn_, act_, logits_, meta_, out_, attn_ws_,
      inv_freq_, sample_ws_, moves_;
  int32_t max_splits_ = 1;
  // Attention blocks wanted per step, in waves of one block per SM (LONGTAIL_ATTN_WAVES, default
  // 2 as in kernels::paged_attention_choose_splits); more waves split long KV ranges further.
  int attn_waves_ = 2;
  PinnedBuffer staging_[2];
  cudaEvent_t staged_[2] = {nullptr, nullptr};
  PinnedBuffer results_;
  GraphCache graphs_;
  size_t ungraphable_passes_ = 0;
};

}  // namespace longtail::policy::cuda
