// The fp32 CPU reference backend: the numerics every other backend is compared with, and what CI
// runs the whole engine on. Per-sequence contiguous KV cache (rollback is a resize); capacity is
// accounted in blocks of BackendOptions::kv_block_size up to max_kv_tokens, so the scheduler's
// admission and preemption logic can be exercised on CPU exactly as on the GPU. Not thread-safe:
// one caller drives it (forward itself is parallel inside). Verifies token trees (tree attention
// over the committed context plus each node's ancestors) and compacts accepted paths. Sleeps at
// levels 1 and 2: its KV arrays belong to its sequences (none may be live to sleep), so level 1
// only stops serving; level 2 also frees the fp32 weights until replace_weights loads new ones.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <unordered_map>
#include <vector>

#include "policy/backend.h"
#include "policy/cpu_model.h"
#include "policy/kv_account.h"
#include "policy/thread_pool.h"

namespace longtail::policy {

class CpuBackend final : public Backend {
 public:
  CpuBackend(const std::filesystem::path& dir, const BackendOptions& opts);

  const ModelConfig& config() const override { return config_; }
  std::string name() const override { return "cpu"; }
  bool samples_min_p() const override { return true; }
  bool samples_min_tokens() const override { return true; }
  bool samples_processed_logprobs() const override { return true; }
  int64_t create_sequence() override;
  void release_sequence(int64_t seq) override;
  int32_t sequence_length(int64_t seq) const override;
  void truncate(int64_t seq, int32_t new_length) override;
  KvCapacity kv_capacity() const override;
  bool can_fit(std::span<const KvGrowth> batch) const override;
  std::vector<TokenOutput> forward(std::span<const SequenceChunk> chunks) override;
  bool supports_token_trees() const override { return true; }
  void compact_kv(int64_t seq, int32_t start, std::span<const int32_t> keep) override;
  void replace_weights(const std::filesystem::path& dir) override;
  void replace_weights(const Checkpoint& weights) override;
  int max_sleep_level() const override { return 2; }
  int sleep_level() const override { return sleep_level_; }
  size_t sleep(int level) override;
  size_t wake_up() override;

  // forward() that also returns the logits of every output row ([outputs, vocab], row-major), for
  // tests and tools that compare numerics.
  std::vector<TokenOutput> forward_with_logits(std::span<const SequenceChunk> chunks,
                                               std::vector<float>* logits);

 private:
  struct Sequence {
    int32_t length = 0;
    std::vector<std::vector<float>> k, v;  // per layer: [length, kv_heads * head_dim]
  };
  Sequence& seq_ref(int64_t seq);
  const Sequence& seq_ref(int64_t seq) const;
  void check_awake(const char* what) const;  // std::logic_error while asleep

  ModelConfig config_;
  std::unique_ptr<CpuWeights> weights_;  // null after sleep(2) until replace_weights
  ThreadPool pool_;
  KvBlockAccount kv_;
  int64_t next_handle_ = 1;
  std::unordered_map<int64_t, Sequence> seqs_;
  int sleep_level_ = 0;
};

std::unique_ptr<Backend> make_cpu_backend(const std::filesystem::path& dir, const BackendOptions& opts);

}  // namespace longtail::policy
