// A backend that runs no model: each sequence's length and the KV cache's blocks are kept exactly as
// the CPU backend keeps them (kv_account.h), chunks are checked by the same rule (check_chunk), trees
// and compactions are accepted, and every output is empty (sampled = -1, NaN logprobs). With it the
// real engine -- scheduler, admissions, partial rollouts, drafts, budgets, acceptance -- replays a
// trace in trace-forced mode (EngineOptions::forced_trajectories: the emitted tokens are the
// recording's, so no sampled token is ever used) at the drafter's cost instead of the model's,
// and counts forwards and verified tokens as a run on a real backend with the same KV capacity
// would. Outside trace-forced mode its outputs are meaningless.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <unordered_map>
#include <vector>

#include "policy/backend.h"
#include "policy/kv_account.h"

namespace longtail::policy {

class AccountingBackend final : public Backend {
 public:
  // config: vocabulary and context limit (and the EOS ids the engine stops on); opts: the KV
  // bound and block size (kv_block_size, max_kv_tokens), as BackendOptions gives the CPU backend.
  AccountingBackend(ModelConfig config, const BackendOptions& opts);

  const ModelConfig& config() const override { return config_; }
  std::string name() const override { return "accounting"; }
  int64_t create_sequence() override;
  void release_sequence(int64_t seq) override;
  int32_t sequence_length(int64_t seq) const override;
  void truncate(int64_t seq, int32_t new_length) override;
  KvCapacity kv_capacity() const override { return kv_.capacity(); }
  bool can_fit(std::span<const KvGrowth> batch) const override;
  std::vector<TokenOutput> forward(std::span<const SequenceChunk> chunks) override;
  bool supports_token_trees() const override { return true; }
  void compact_kv(int64_t seq, int32_t start, std::span<const int32_t> keep) override;
  // There are no weights: a weight update only invalidates KV, which the engine handles.
  void replace_weights(const std::filesystem::path&) override {}
  void replace_weights(const Checkpoint&) override {}

 private:
  int32_t& length_of(int64_t seq);
  int32_t length_of(int64_t seq) const;

  ModelConfig config_;
  KvBlockAccount kv_;
  int64_t next_handle_ = 1;
  std::unordered_map<int64_t, int32_t> lengths_;
};

// The accounting backend for the checkpoint in dir (its config.json only: no weights are read).
// Deliberately not a make_backend kind: a worker configured with it would emit nothing real.
std::unique_ptr<Backend> make_accounting_backend(const std::filesystem::path& dir, const BackendOptions& opts);

}  // namespace longtail::policy
