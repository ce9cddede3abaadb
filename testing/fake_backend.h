// A small deterministic policy::Backend for engine tests that need no checkpoint: the logits at a
// position are a hash of (the two tokens ending there, the position, the weights' salt) with one
// strongly favoured token, so sampled text is repetitive enough for drafts to be accepted. The KV
// "cache" stores the real tokens, so a wrong truncate or a token at the wrong position changes the
// logits; capacity is counted in blocks exactly as policy/backend.h describes, and a forward that
// would exceed it throws before touching anything (the engine's accounting must prevent that).
// Sampling follows policy/sampling.h for greedy and plain temperature (no top-k/top-p here).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/philox.h"
#include "policy/backend.h"
#include "policy/checkpoint.h"

namespace longtail::rollout::testing {

struct FakeBackendOptions {
  int32_t vocab = 64;
  int32_t max_position = 512;
  int64_t max_kv_tokens = 0;   // 0 = unlimited
  int32_t block_size = 4;
  float peak = 6.0f;           // logit of the favoured token; the others lie in [0, 2)
  int32_t eos = 1;
  int64_t overstate_free_tokens = 0;  // kv_capacity() lies by this much: the engine must plan
                                      // by can_fit, never by the reported capacity
};

class FakeBackend : public policy::Backend {
 public:
  explicit FakeBackend(FakeBackendOptions o = {}) : o_(o) {
    config_.architecture_name = "FakeForCausalLM";
    config_.vocab_size = o.vocab;
    config_.max_position_embeddings = o.max_position;
    config_.eos_token_ids = {o.eos};
  }

  const policy::ModelConfig& config() const override { return config_; }
  std::string name() const override { return "fake"; }

  int64_t create_sequence() override {
    kv_[next_] = {};
    return next_++;
  }
  void release_sequence(int64_t seq) override { kv_.erase(at(seq)); }
  int32_t sequence_length(int64_t seq) const override {
    return static_cast<int32_t>(at(seq)->second.size());
  }
  void truncate(int64_t seq, int32_t new_length) override {
    auto it = at(seq);
    if (new_length < 0 || new_length > static_cast<int32_t>(it->second.size())) {
      throw std::invalid_argument("fake truncate: bad length");
    }
    it->second.resize(new_length);
  }
  policy::KvCapacity kv_capacity() const override {
    policy::KvCapacity c;
    c.block_size = o_.block_size;
    c.total_tokens = o_.max_kv_tokens;
    c.free_tokens = o_.max_kv_tokens > 0
                        ? o_.max_kv_tokens - used_blocks() * o_.block_size + o_.overstate_free_tokens
                        : 0;
    return c;
  }

  bool can_fit(std::span<const policy::KvGrowth> batch) const override {
    if (o_.max_kv_tokens <= 0) return true;
    int64_t blocks = used_blocks();
    for (const auto& g : batch) {
      const int64_t len = g.seq < 0 ? 0 : static_cast<int64_t>(at(g.seq)->second.size());
      blocks += ceil_div(len + g.new_tokens) - ceil_div(len);
    }
    const bool ok = blocks * o_.block_size <= o_.max_kv_tokens;
    can_fit_refusals += ok ? 0 : 1;
    return ok;
  }

  std::vector<policy::TokenOutput> forward(std::span<const policy::SequenceChunk> chunks) override {
    // Validate everything first: no side effects on error.
    int64_t blocks = used_blocks();
    for (const auto& c : chunks) {
      auto it = at(c.seq);
      const int64_t len = static_cast<int64_t>(it->second.size());
      if (c.tokens.empty()) throw std::invalid_argument("fake forward: empty chunk");
      if (len + static_cast<int64_t>(c.tokens.size()) > o_.max_position) {
        throw std::invalid_argument("fake forward: past max_position");
      }
      for (int32_t t : c.tokens) {
        if (t < 0 || t >= o_.vocab) throw std::invalid_argument("fake forward: bad token");
      }
      blocks += ceil_div(len + c.tokens.size()) - ceil_div(len);
    }
    if (o_.max_kv_tokens > 0 && blocks * o_.block_size > o_.max_kv_tokens) {
      throw policy::KvCapacityError("fake forward: KV capacity exceeded");
    }
    std::vector<policy::TokenOutput> out;
    for (const auto& c : chunks) {
      std::vector<int32_t>& kv = kv_.at(c.seq);
      const int64_t base = static_cast<int64_t>(kv.size());
      kv.insert(kv.end(), c.tokens.begin(), c.tokens.end());
      for (size_t i = static_cast<size_t>(c.first_output); i < c.tokens.size(); ++i) {
        const int64_t pos = base + static_cast<int64_t>(i);
        const std::vector<float> logits = logits_at(kv, pos);
        policy::TokenOutput o;
        o.sampled = sample(logits, c.sampling, c.uid, pos + 1);
        o.sampled_logprob = logprob(logits, c.sampling.temperature, o.sampled);
        if (i + 1 < c.tokens.size()) {
          o.next_input_logprob = logprob(logits, c.sampling.temperature, c.tokens[i + 1]);
        }
        out.push_back(o);
      }
      tokens_processed += static_cast<int64_t>(c.tokens.size());
    }
    ++forward_calls;
    return out;
  }

  void replace_weights(const std::filesystem::path& dir) override {
    const std::string name = dir.filename().string();
    if (name.rfind("bad", 0) == 0) throw std::runtime_error("fake: cannot load " + dir.string());
    if (name.rfind("same", 0) == 0) return;  // a new version with identical weights
    salt_ = std::hash<std::string>{}(name);
  }
  // An in-memory tensor set counts as new weights named after its source.
  void replace_weights(const policy::Checkpoint& weights) override { replace_weights(weights.dir()); }

  // Logits for the token that follows position pos of seq (pos indexes seq).
  std::vector<float> logits_at(const std::vector<int32_t>& seq, int64_t pos) const {
    const uint64_t a = static_cast<uint32_t>(seq[pos]);
    const uint64_t b = pos > 0 ? static_cast<uint32_t>(seq[pos - 1]) : 0xFFFF;
    const uint64_t h = mix(a * 0x9E3779B97F4A7C15ull ^ (b << 20) ^ salt_);
    std::vector<float> l(o_.vocab);
    for (int32_t j = 0; j < o_.vocab; ++j) {
      l[j] = static_cast<float>(mix(h ^ (static_cast<uint64_t>(j) << 40) ^ static_cast<uint64_t>(pos)) % 2000) / 1000.0f;
    }
    l[h % o_.vocab] = o_.peak;
    return l;
  }

  int64_t forward_calls = 0;
  int64_t tokens_processed = 0;
  mutable int64_t can_fit_refusals = 0;  // capacity events: batches the KV cache could not take

 private:
  static uint64_t mix(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
  }
  int64_t ceil_div(int64_t n) const { return (n + o_.block_size - 1) / o_.block_size; }
  int64_t used_blocks() const {
    int64_t b = 0;
    for (const auto& [k, v] : kv_) b += ceil_div(static_cast<int64_t>(v.size()));
    return b;
  }
  std::map<int64_t, std::vector<int32_t>>::iterator at(int64_t seq) {
    auto it = kv_.find(seq);
    if (it == kv_.end()) throw std::invalid_argument("fake: unknown sequence handle");
    return it;
  }
  std::map<int64_t, std::vector<int32_t>>::const_iterator at(int64_t seq) const {
    auto it = kv_.find(seq);
    if (it == kv_.end()) throw std::invalid_argument("fake: unknown sequence handle");
    return it;
  }
  static float logprob(const std::vector<float>& l, float temperature, int32_t tok) {
    const double t = temperature > 0 ? temperature : 1.0;
    double m = -std::numeric_limits<double>::infinity();
    for (float v : l) m = std::max(m, v / t);
    double s = 0;
    for (float v : l) s += std::exp(v / t - m);
    return static_cast<float>(l[tok] / t - m - std::log(s));
  }
  static int32_t sample(const std::vector<float>& l, const policy::SamplingParams& p, uint64_t uid,
                        int64_t position) {
    int32_t best = 0;
    double best_v = -std::numeric_limits<double>::infinity();
    for (int32_t i = 0; i < static_cast<int32_t>(l.size()); ++i) {
      double v = l[i];
      if (p.temperature > 0) {
        const double u = kernels::sampling_uniform(p.seed, uid, position, static_cast<uint32_t>(i));
        v = v / p.temperature - std::log(-std::log(u));
      }
      if (v > best_v) {
        best_v = v;
        best = i;
      }
    }
    return best;
  }

  FakeBackendOptions o_;
  policy::ModelConfig config_;
  std::map<int64_t, std::vector<int32_t>> kv_;
  int64_t next_ = 0;
  uint64_t salt_ = 0;
};

}  // namespace longtail::rollout::testing
