// Shared helpers of the CUDA backend's GPU tests: skipping without a device, small KV caches (the
// tests need a few thousand positions, not 85% of the card), one-call chunk construction, an
// environment switch set for one scope.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "policy/backend.h"
#include "policy/cuda_backend.h"

#define LT_SKIP_WITHOUT_GPU()                                                   \
  do {                                                                          \
    if (!::longtail::policy::cuda_device_present()) GTEST_SKIP() << "no CUDA device"; \
  } while (0)

namespace longtail::policy::testing {

inline BackendOptions small_cuda_options(int64_t kv_tokens = 1 << 16) {
  BackendOptions o;
  o.kind = "cuda";
  o.max_kv_tokens = kv_tokens;
  return o;
}

inline std::vector<int32_t> random_tokens(size_t n, uint32_t seed, int vocab = 1000) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t(n);
  for (auto& x : t) x = static_cast<int32_t>(rng() % static_cast<uint32_t>(vocab));
  return t;
}

// Sets (or, with nullptr, unsets) an environment variable until the scope ends, then restores what
// the process had: the backend reads its LONGTAIL_* switches when it is made.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value) setenv(name, value, 1); else unsetenv(name);
  }
  ~ScopedEnv() {
    if (old_) setenv(name_.c_str(), old_->c_str(), 1); else unsetenv(name_.c_str());
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::string name_;
  std::optional<std::string> old_;
};

inline SamplingParams greedy() {
  SamplingParams s;
  s.temperature = 0.0f;
  return s;
}

inline SequenceChunk make_chunk(int64_t seq, uint64_t uid, const std::vector<int32_t>& tokens,
                                int32_t first_output, const SamplingParams& sampling) {
  SequenceChunk c;
  c.seq = seq;
  c.uid = uid;
  c.tokens = tokens;
  c.first_output = first_output;
  c.sampling = sampling;
  return c;
}

}  // namespace longtail::policy::testing
