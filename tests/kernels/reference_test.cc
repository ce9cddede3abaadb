// Tests of the plain C++ references themselves (they are the oracle of the GPU tests, so their
// semantics are pinned here on cases small enough to check by hand), and of the sampling rule's
// statistics: the Gumbel-max draw follows softmax(z) restricted to the top-k/top-p candidates.
#include "kernels/reference.h"

#include "kernels/philox.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <map>
#include <numeric>
#include <random>

namespace longtail::kernels::ref {
namespace {

TEST(KernelsReference, Bf16RoundsToNearestEven) {
  EXPECT_EQ(to_bf16(1.0f).bits, 0x3F80);
  EXPECT_EQ(from_bf16(to_bf16(1.0f + 1.0f / 256)), 1.0f);  // exact half-way: to even
  EXPECT_EQ(from_bf16(to_bf16(1.0f + 3.0f / 256)), 1.0f + 4.0f / 256);
  EXPECT_TRUE(std::isnan(from_bf16(to_bf16(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_EQ(from_bf16(to_bf16(-2.5f)), -2.5f);
}

TEST(KernelsReference, RopeInverseFrequencies) {
  RopeConfig def;
  const auto inv = rope_inv_freq(def, 8);
  ASSERT_EQ(inv.size(), 4u);
  EXPECT_FLOAT_EQ(inv[0], 1.0f);
  EXPECT_FLOAT_EQ(inv[1], std::pow(10000.0f, -0.25f));
  EXPECT_FLOAT_EQ(inv[3], std::pow(10000.0f, -0.75f));
  // Llama 3.1 scaling: high frequencies untouched, the lowest divided by factor.
  RopeConfig l3;
  l3.theta = 500000.0;
  l3.llama3 = true;
  l3.factor = 8.0;
  const auto base = rope_inv_freq(RopeConfig{500000.0}, 128);
  const auto scaled = rope_inv_freq(l3, 128);
  EXPECT_EQ(scaled[0], base[0]);
  EXPECT_FLOAT_EQ(scaled[63], base[63] / 8.0f);
  for (size_t i = 0; i < scaled.size(); ++i) {
    EXPECT_LE(scaled[i], base[i]);
    EXPECT_GE(scaled[i], base[i] / 8.0f * 0.999f);
  }
  EXPECT_THROW(rope_inv_freq(def, 7), std::invalid_argument);
}

TEST(KernelsReference, RopeRotatesHalvesByPositionTimesFrequency) {
  std::vector<float> q = {1, 0, 0, 1};  // head_dim 4: pairs (0,2) and (1,3)
  const std::vector<float> inv = {1.0f, 0.5f};
  rope_inplace(q, 1, {}, 0, 4, std::vector<int32_t>{2}, inv);
  EXPECT_NEAR(q[0], std::cos(2.0), 1e-6);
  EXPECT_NEAR(q[2], std::sin(2.0), 1e-6);
  EXPECT_NEAR(q[1], -std::sin(1.0), 1e-6);
  EXPECT_NEAR(q[3], std::cos(1.0), 1e-6);
}

TEST(KernelsReference, RmsNormAndSwiglu) {
  std::vector<float> res = {3, 4}, x = {0, 0}, w = {1, 2}, out(2);
  fused_add_rmsnorm(res, x, w, out, 1, 2, 0.0f);
  const double rms = std::sqrt((9.0 + 16.0) / 2.0);
  EXPECT_NEAR(out[0], 3 / rms, 1e-6);
  EXPECT_NEAR(out[1], 8 / rms, 1e-6);
  std::vector<float> gu = {1.0f, -2.0f, 3.0f, 0.5f}, sw(2);
  swiglu(gu, sw, 1, 2);
  EXPECT_NEAR(sw[0], 1.0 / (1.0 + std::exp(-1.0)) * 3.0, 1e-6);
  EXPECT_NEAR(sw[1], -2.0 / (1.0 + std::exp(2.0)) * 0.5, 1e-6);
}

// With q = 0 every visible position gets the same weight, and V one-hot per position shows exactly
// which positions a query saw.
TEST(KernelsReference, AttentionMasksCausalAndTree) {
  const int32_t D = 8, B = 2;
  const int32_t prefix = 3, n = 4, len = prefix + n;  // 7 positions: blocks {5, 1, 3, 0}
  AttentionShape sh{1, 1, D, B, 4, 1.0f};
  std::vector<int32_t> table = {5, 1, 3, 0};
  std::vector<float> k(6 * B * D, 0.5f), v(6 * B * D, 0.0f);
  for (int32_t pos = 0; pos < len; ++pos) {
    const int32_t slot = table[pos / B] * B + pos % B;
    v[slot * D + pos] = 1.0f;
  }
  std::vector<float> q(n * D, 0.0f), out(n * D);
  const std::vector<int32_t> qs = {0, n}, lens = {len};
  paged_attention(sh, q, k, v, table, qs, lens, {}, out);
  for (int32_t j = 0; j < n; ++j) {
    for (int32_t pos = 0; pos < D; ++pos) {
      const float want = pos <= prefix + j ? 1.0f / (prefix + j + 1) : 0.0f;
      EXPECT_NEAR(out[j * D + pos], want, 1e-6) << "query " << j << " pos " << pos;
    }
  }
  // Tree: 0 <- 1, 0 <- 2 <- 3 (1 and 2 are siblings).
  const std::vector<int32_t> parents = {-1, 0, 0, 2};
  ASSERT_EQ(validate_tree_parents(parents), "");
  paged_attention(sh, q, k, v, table, qs, lens, parents, out);
  const std::vector<std::vector<int32_t>> sees = {{0}, {0, 1}, {0, 2}, {0, 2, 3}};
  for (int32_t j = 0; j < n; ++j) {
    const float w = 1.0f / (prefix + sees[j].size());
    for (int32_t pos = 0; pos < D; ++pos) {
      bool vis = pos < prefix;
      for (int32_t a : sees[j]) vis |= pos == prefix + a;
      EXPECT_NEAR(out[j * D + pos], vis ? w : 0.0f, 1e-6) << "query " << j << " pos " << pos;
    }
  }
  EXPECT_NE(validate_tree_parents(std::vector<int32_t>{-1, 1}), "");
  EXPECT_NE(validate_tree_parents(std::vector<int32_t>{-2}), "");
}

TEST(KernelsReference, GreedyIsLowestIndexArgmaxWithFullSoftmaxLogprob) {
  const std::vector<float> logits = {1.0f, 3.0f, -2.0f, 3.0f};
  SamplingRow p;
  p.temperature = 0.0f;
  const auto r = sample_row(logits, p);
  EXPECT_EQ(r.token, 1);
  double z = 0;
  for (float v : logits) z += std::exp(v);
  EXPECT_NEAR(r.logprob, 3.0 - std::log(z), 1e-6);
  EXPECT_EQ(argmax(logits), 1);
  EXPECT_TRUE(std::isnan(token_logprob(logits, 1.0f, 4)));
  EXPECT_NEAR(token_logprob(logits, 2.0f, 2), -1.0 - std::log(std::exp(0.5) + 2 * std::exp(1.5) +
                                                              std::exp(-1.0)), 1e-6);
}

TEST(KernelsReference, TopKOneAndTinyTopPAreGreedy) {
  std::mt19937_64 rng(31);
  std::normal_distribution<float> nd(0.0f, 2.0f);
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<float> logits(100);
    for (auto& v : logits) v = nd(rng);
    SamplingRow p;
    p.temperature = 0.7f;
    p.seed = trial;
    p.top_k = 1;
    EXPECT_EQ(sample_row(logits, p).token, argmax(logits));
    p.top_k = 0;
    p.top_p = 1e-6f;
    EXPECT_EQ(sample_row(logits, p).token, argmax(logits));
  }
}

// Frequencies over many positions match softmax(z / T) over the candidates.
TEST(KernelsReference, DrawsFollowTheTruncatedSoftmax) {
  const std::vector<float> logits = {2.0f, 1.0f, 0.5f, 0.0f, -1.0f, -3.0f};
  SamplingRow p;
  p.temperature = 1.5f;
  p.top_k = 5;     // drops index 5
  p.top_p = 0.8f;  // then keeps the shortest prefix with >= 80% of the top-5 mass
  std::vector<double> w(5);
  double total = 0;
  for (int i = 0; i < 5; ++i) total += w[i] = std::exp(logits[i] / 1.5);
  int keep = 0;
  for (double cum = 0; keep < 5;) {
    cum += w[keep++];
    if (cum >= 0.8 * total) break;
  }
  double kept_total = 0;
  for (int i = 0; i < keep; ++i) kept_total += w[i];
  const int draws = 40000;
  std::map<int32_t, int> count;
  for (int pos = 0; pos < draws; ++pos) {
    p.position = pos;
    const auto r = sample_row(logits, p);
    ++count[r.token];
    ASSERT_LT(r.token, keep);
    ASSERT_NEAR(r.logprob, token_logprob(logits, 1.5f, r.token), 1e-6);
  }
  for (int i = 0; i < keep; ++i) {
    const double expect = draws * w[i] / kept_total;
    EXPECT_NEAR(count[i], expect, 5 * std::sqrt(expect)) << "token " << i;
  }
}

TEST(KernelsReference, EmbeddingZeroesBadIds) {
  const std::vector<float> table = {1, 2, 3, 4, 5, 6};  // vocab 3, hidden 2
  std::vector<float> out(6);
  bool bad = false;
  embedding_gather(table, 3, 2, std::vector<int32_t>{2, -1, 0}, out, &bad);
  EXPECT_TRUE(bad);
  EXPECT_EQ(out, (std::vector<float>{5, 6, 0, 0, 1, 2}));
}

// The whole-vocabulary draw walks groups of four entries (one Philox call each); it must pick
// exactly the argmax of z_i + (-logf(-logf(u_i))) with each entry's own sampling_uniform, odd
// vocabulary sizes (a partial last group) included.
TEST(KernelsReference, WholeVocabularyDrawIsGumbelArgmaxOfEachEntrysUniform) {
  std::mt19937 gen(11);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  for (int32_t vocab : {1, 3, 4, 5, 1023, 4099}) {
    std::vector<float> logits(static_cast<size_t>(vocab));
    for (float& v : logits) v = normal(gen);
    for (int64_t position = 0; position < 40; ++position) {
      SamplingRow p;
      p.temperature = 0.7f;
      p.seed = 0x1234567890abull;
      p.uid = 0x300000005ull;
      p.position = position;
      int32_t want = -1;
      float want_key = -std::numeric_limits<float>::infinity();
      for (int32_t i = 0; i < vocab; ++i) {
        const float u = sampling_uniform(p.seed, p.uid, position, static_cast<uint32_t>(i));
        const float inner = static_cast<float>(std::log(static_cast<double>(u)));
        const float key = logits[i] / p.temperature + -static_cast<float>(std::log(static_cast<double>(-inner)));
        if (want < 0 || key > want_key) {
          want = i;
          want_key = key;
        }
      }
      ASSERT_EQ(sample_row(logits, p).token, want) << "vocab " << vocab << " position " << position;
    }
  }
}

}  // namespace
}  // namespace longtail::kernels::ref

namespace longtail::kernels {
namespace {

// The top 24-bit draw used to round to exactly 1.0f (infinite Gumbel key: that entry always won).
TEST(KernelsPhilox, TopDrawStaysBelowOne) {
  const uint64_t seed = 12345, uid = 7;
  const int64_t position = 3;
  for (uint32_t g = 0; g < (1u << 25); ++g) {
    const Philox4x32 out = philox4x32_10(
        Philox4x32{{g, static_cast<uint32_t>(position), static_cast<uint32_t>(uid), 0u}},
        static_cast<uint32_t>(seed), 0u);
    for (uint32_t j = 0; j < 4; ++j) {
      if ((out.v[j] >> 8) != 0xFFFFFFu) continue;
      const float u = sampling_uniform(seed, uid, position, 4 * g + j);
      EXPECT_LT(u, 1.0f);
      EXPECT_GT(u, 0.9999999f);
      EXPECT_TRUE(std::isfinite(-std::log(-std::log(u))));
      return;
    }
  }
  FAIL() << "no top draw found in 2^27 words (expected one per 2^24)";
}

// Philox4x32-10's known answers (Random123's kat_vectors), then the sampling layout: entry i
// takes word i % 4 of the call on counter (i / 4, position, uid_lo, uid_hi) keyed by the seed.
TEST(KernelsPhilox, FourEntriesShareOneCounter) {
  const Philox4x32 zero = philox4x32_10(Philox4x32{{0, 0, 0, 0}}, 0, 0);
  EXPECT_EQ(zero.v[0], 0x6627e8d5u);
  EXPECT_EQ(zero.v[1], 0xe169c58du);
  EXPECT_EQ(zero.v[2], 0xbc57ac4cu);
  EXPECT_EQ(zero.v[3], 0x9b00dbd8u);
  const uint64_t seed = 0xfeedface00000001ull, uid = 0x200000009ull;
  const int64_t position = 77;
  for (uint32_t g = 0; g < 64; ++g) {
    const Philox4x32 out = philox4x32_10(
        Philox4x32{{g, static_cast<uint32_t>(position), static_cast<uint32_t>(uid),
                    static_cast<uint32_t>(uid >> 32)}},
        static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
    for (uint32_t j = 0; j < 4; ++j) {
      const float want = (static_cast<float>(out.v[j] >> 8) + 0.5f) / 16777216.0f;
      ASSERT_EQ(sampling_uniform(seed, uid, position, 4 * g + j), want) << g << " " << j;
    }
  }
}

TEST(KernelsPhilox, BottomDrawIsPositive) {
  EXPECT_GT(sampling_uniform(0, 0, 0, 0), 0.0f);
  for (uint32_t i = 0; i < 100000; ++i) {
    const float u = sampling_uniform(1, 2, 3, i);
    ASSERT_GT(u, 0.0f);
    ASSERT_LT(u, 1.0f);
  }
}

}  // namespace
}  // namespace longtail::kernels
