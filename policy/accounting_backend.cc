// AccountingBackend: the CPU backend's bookkeeping without its math (see accounting_backend.h).
#include "policy/accounting_backend.h"

#include <limits>
#include <stdexcept>
#include <string>
#include <unordered_set>

namespace longtail::policy {

AccountingBackend::AccountingBackend(ModelConfig config, const BackendOptions& opts)
    : config_(std::move(config)), kv_(opts.max_kv_tokens, opts.kv_block_size) {
  if (config_.vocab_size <= 0 || config_.max_position_embeddings <= 0) {
    throw std::invalid_argument("accounting backend: vocab_size and max_position_embeddings must be positive");
  }
}

int32_t& AccountingBackend::length_of(int64_t seq) {
  auto it = lengths_.find(seq);
  if (it == lengths_.end()) throw std::invalid_argument("unknown sequence handle " + std::to_string(seq));
  return it->second;
}

int32_t AccountingBackend::length_of(int64_t seq) const {
  auto it = lengths_.find(seq);
  if (it == lengths_.end()) throw std::invalid_argument("unknown sequence handle " + std::to_string(seq));
  return it->second;
}

int64_t AccountingBackend::create_sequence() {
  lengths_.emplace(next_handle_, 0);
  return next_handle_++;
}

void AccountingBackend::release_sequence(int64_t seq) {
  kv_.resize(length_of(seq), 0);
  lengths_.erase(seq);
}

int32_t AccountingBackend::sequence_length(int64_t seq) const { return length_of(seq); }

void AccountingBackend::truncate(int64_t seq, int32_t new_length) {
  int32_t& len = length_of(seq);
  if (new_length < 0 || new_length > len) {
    throw std::invalid_argument("truncate: new length " + std::to_string(new_length) + " outside [0, " +
                                std::to_string(len) + "] for sequence " + std::to_string(seq));
  }
  kv_.resize(len, new_length);
  len = new_length;
}

bool AccountingBackend::can_fit(std::span<const KvGrowth> batch) const {
  return kv_.can_fit(batch, [&](int64_t seq) { return length_of(seq); });
}

std::vector<TokenOutput> AccountingBackend::forward(std::span<const SequenceChunk> chunks) {
  std::unordered_set<int64_t> seen;
  std::vector<int32_t> offsets;
  int64_t new_blocks = 0;
  size_t n_out = 0;
  for (size_t ci = 0; ci < chunks.size(); ++ci) {
    const SequenceChunk& ch = chunks[ci];
    const std::string where = "forward: chunk " + std::to_string(ci) + " (sequence " + std::to_string(ch.seq) + ")";
    auto it = lengths_.find(ch.seq);
    if (it == lengths_.end()) throw std::invalid_argument(where + ": unknown sequence handle");
    if (!seen.insert(ch.seq).second) throw std::invalid_argument(where + ": sequence appears twice in one forward");
    if (auto e = check_chunk(ch, it->second, config_, offsets)) throw std::invalid_argument(where + ": " + *e);
    new_blocks += kv_.growth(it->second, it->second + static_cast<int64_t>(ch.tokens.size()));
    n_out += ch.tokens.size() - static_cast<size_t>(ch.first_output);
  }
  kv_.check_fits(new_blocks);
  for (const SequenceChunk& ch : chunks) {
    int32_t& len = lengths_.at(ch.seq);
    kv_.resize(len, len + static_cast<int64_t>(ch.tokens.size()));
    len += static_cast<int32_t>(ch.tokens.size());
  }
  TokenOutput none;
  none.sampled_logprob = std::numeric_limits<float>::quiet_NaN();
  return std::vector<TokenOutput>(n_out, none);
}

void AccountingBackend::compact_kv(int64_t seq, int32_t start, std::span<const int32_t> keep) {
  check_compact_kv(length_of(seq), start, keep);
  truncate(seq, start + static_cast<int32_t>(keep.size()));
}

std::unique_ptr<Backend> make_accounting_backend(const std::filesystem::path& dir, const BackendOptions& opts) {
  return std::make_unique<AccountingBackend>(load_model_config(dir), opts);
}

}  // namespace longtail::policy
