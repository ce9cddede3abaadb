// The sampling rule exists once (ref::sample_row); the GPU sampler is tested against it with
// correctly rounded logs (its default), while the CPU backend's sampler (policy::sample_token) runs
// it with the host C library's logf. This checks that the one floating-point detail the two
// backends differ in does not change tokens on thousands of rows mixing greedy, temperature,
// top-k, top-p, exact ties, masked (-inf) and signed-zero logits, so both produce the same rollouts.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "kernels/reference.h"
#include "policy/sampling.h"

namespace longtail {
namespace {

TEST(KernelsCpuRuleAgreement, ReferenceAndPolicySamplerDrawTheSameTokens) {
  std::mt19937_64 rng(5);
  std::normal_distribution<float> nd(0.0f, 3.0f);
  const float temps[] = {0.0f, 0.5f, 1.0f, 1.3f};
  const int32_t ks[] = {0, 1, 5, 50, 2000};
  const float ps[] = {1.0f, 0.9f, 0.5f, 0.01f, 0.999f};
  int mismatches = 0;
  for (int r = 0; r < 2000; ++r) {
    const int32_t vocab = r % 20 == 0 ? 20000 : 1000;
    std::vector<float> logits(vocab);
    const int kind = r % 4;
    for (int32_t i = 0; i < vocab; ++i) {
      float v = nd(rng);
      if (kind == 1) v = std::round(v * 2.0f) / 2.0f;
      if (kind == 2 && i % 3 == 0) v = -INFINITY;
      if (kind == 3 && i % 7 == 0) v = -0.0f;
      logits[i] = v;
    }
    kernels::SamplingRow p;
    p.temperature = temps[r % 4];
    p.top_k = ks[(r / 4) % 5];
    p.top_p = ps[(r / 20) % 5];
    p.seed = static_cast<uint64_t>(r % 3);
    p.uid = static_cast<uint64_t>(r) * 7;
    p.position = r;
    policy::SamplingParams sp;
    sp.temperature = p.temperature;
    sp.top_k = p.top_k;
    sp.top_p = p.top_p;
    sp.seed = p.seed;
    const auto a = kernels::ref::sample_row(logits, p);
    const auto b = policy::sample_token(logits, sp, p.uid, p.position);
    if (a.token != b.token) {
      if (++mismatches <= 5) {
        ADD_FAILURE() << "row " << r << " (T " << p.temperature << " k " << p.top_k << " p "
                      << p.top_p << "): kernels ref " << a.token << ", policy " << b.token;
      }
      continue;
    }
    EXPECT_NEAR(a.logprob, b.logprob, 1e-5 * (1.0f + std::fabs(b.logprob))) << "row " << r;
  }
  EXPECT_EQ(mismatches, 0);
}

}  // namespace
}  // namespace longtail
