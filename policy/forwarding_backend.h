// A Backend that forwards every call to an inner backend: the base of decorators that watch or
// price what the engine asks (the replay's priced backend, the step-plan bench, test counters).
// One class holds the forwarding so that a decorator overrides only what it changes and a new
// Backend virtual (sleep, CUDA IPC weights, ...) reaches every decorator's inner backend at once.
#pragma once

#include <memory>
#include <utility>

#include "policy/backend.h"

namespace longtail::policy {

class ForwardingBackend : public Backend {
 public:
  explicit ForwardingBackend(std::unique_ptr<Backend> inner) : inner_(std::move(inner)) {}

  const ModelConfig& config() const override { return inner_->config(); }
  std::string name() const override { return inner_->name(); }
  std::string device_name() const override { return inner_->device_name(); }
  bool samples_min_p() const override { return inner_->samples_min_p(); }
  bool samples_min_tokens() const override { return inner_->samples_min_tokens(); }
  bool samples_processed_logprobs() const override { return inner_->samples_processed_logprobs(); }
  int64_t create_sequence() override { return inner_->create_sequence(); }
  void release_sequence(int64_t seq) override { inner_->release_sequence(seq); }
  int32_t sequence_length(int64_t seq) const override { return inner_->sequence_length(seq); }
  void truncate(int64_t seq, int32_t new_length) override { inner_->truncate(seq, new_length); }
  KvCapacity kv_capacity() const override { return inner_->kv_capacity(); }
  bool can_fit(std::span<const KvGrowth> batch) const override { return inner_->can_fit(batch); }
  std::vector<TokenOutput> forward(std::span<const SequenceChunk> chunks) override {
    return inner_->forward(chunks);
  }
  bool supports_token_trees() const override { return inner_->supports_token_trees(); }
  void compact_kv(int64_t seq, int32_t start, std::span<const int32_t> keep) override {
    inner_->compact_kv(seq, start, keep);
  }
  void replace_weights(const std::filesystem::path& dir) override { inner_->replace_weights(dir); }
  void replace_weights(const Checkpoint& weights) override { inner_->replace_weights(weights); }
  bool takes_cuda_ipc_weights() const override { return inner_->takes_cuda_ipc_weights(); }
  void replace_weights_from_cuda_ipc(const CudaIpcTensorSource& source, bool check_finite) override {
    inner_->replace_weights_from_cuda_ipc(source, check_finite);
  }
  int max_sleep_level() const override { return inner_->max_sleep_level(); }
  int sleep_level() const override { return inner_->sleep_level(); }
  size_t sleep(int level) override { return inner_->sleep(level); }
  size_t wake_up() override { return inner_->wake_up(); }

 protected:
  Backend& inner() { return *inner_; }
  const Backend& inner() const { return *inner_; }

 private:
  std::unique_ptr<Backend> inner_;
};

}  // namespace longtail::policy
