// The host sampler follows sampling.h exactly: greedy ties go to the lowest index, the raw logprob
// is log softmax(logits / T) over the whole vocabulary and the processed one that of the truncated,
// masked distribution drawn from (hand-computed values), draws depend only on (seed, stream,
// position), top-k / top-p / min-p / the min_tokens mask sample from the right distribution
// (empirical frequencies over many streams against the expected probabilities), and the stream
// key of a group id is FNV-1a 64.
#include <cmath>
#include <map>
#include <set>
#include <vector>

#include <gtest/gtest.h>

#include "policy/sampling.h"

namespace lp = longtail::policy;

namespace {

std::vector<double> softmax(const std::vector<float>& logits, double t) {
  double m = -1e30;
  for (float x : logits) m = std::max(m, x / t);
  std::vector<double> p;
  double s = 0;
  for (float x : logits) {
    p.push_back(std::exp(x / t - m));
    s += p.back();
  }
  for (double& v : p) v /= s;
  return p;
}

// Draws n tokens with distinct uids and checks frequencies against `expected` (zero entries must
// never be drawn); tolerance 5 standard deviations per token.
void check_distribution(const std::vector<float>& logits, const lp::SamplingParams& params,
                        const std::vector<double>& expected, int n = 40000) {
  std::vector<int> counts(logits.size(), 0);
  for (int i = 0; i < n; ++i) counts[lp::sample_token(logits, params, 1000 + i, 17).token]++;
  for (size_t k = 0; k < logits.size(); ++k) {
    if (expected[k] == 0) {
      EXPECT_EQ(counts[k], 0) << "token " << k << " is outside the candidates";
      continue;
    }
    const double sd = std::sqrt(n * expected[k] * (1 - expected[k]));
    EXPECT_NEAR(counts[k], n * expected[k], 5 * sd + 1) << "token " << k;
  }
}

const std::vector<float> kLogits = {1.0f, 2.5f, 0.3f, 2.0f, -1.0f, 1.7f};

TEST(SamplingTest, GreedyTakesLowestIndexOnTies) {
  const std::vector<float> logits = {1.0f, 3.0f, 0.5f, 3.0f, 2.0f};
  lp::SamplingParams p;
  p.temperature = 0;
  const auto s = lp::sample_token(logits, p, 5, 9);
  EXPECT_EQ(s.token, 1);
  EXPECT_NEAR(s.logprob, std::log(softmax(logits, 1)[1]), 1e-6);
}

TEST(SamplingTest, LogprobIsFullVocabularyAtTemperature) {
  lp::SamplingParams p;
  p.temperature = 0.7f;
  p.top_k = 2;
  for (uint64_t uid = 0; uid < 50; ++uid) {
    const auto s = lp::sample_token(kLogits, p, uid, 3);
    ASSERT_TRUE(s.token == 1 || s.token == 3);
    // Not the truncated distribution's logprob: the full softmax at T = 0.7.
    EXPECT_NEAR(s.logprob, std::log(softmax(kLogits, 0.7)[s.token]), 1e-6);
    EXPECT_NEAR(s.logprob, lp::token_logprob(kLogits, 0.7f, s.token), 1e-7);
  }
  EXPECT_NEAR(lp::token_logprob(kLogits, 0.0f, 4), std::log(softmax(kLogits, 1)[4]), 1e-6);
}

TEST(SamplingTest, DrawDependsOnlyOnSeedUidPosition) {
  lp::SamplingParams p;
  p.seed = 42;
  std::map<int, int> by_uid, by_pos;
  for (int rep = 0; rep < 3; ++rep) {
    EXPECT_EQ(lp::sample_token(kLogits, p, 7, 11).token, lp::sample_token(kLogits, p, 7, 11).token);
  }
  for (uint64_t uid = 0; uid < 200; ++uid) by_uid[lp::sample_token(kLogits, p, uid, 11).token]++;
  for (int64_t pos = 0; pos < 200; ++pos) by_pos[lp::sample_token(kLogits, p, 7, pos).token]++;
  EXPECT_GT(by_uid.size(), 2u);  // the stream actually varies with uid and with position
  EXPECT_GT(by_pos.size(), 2u);
  lp::SamplingParams q = p;
  q.seed = 43;
  int differ = 0;
  for (uint64_t uid = 0; uid < 200; ++uid) {
    differ += lp::sample_token(kLogits, p, uid, 1).token != lp::sample_token(kLogits, q, uid, 1).token;
  }
  EXPECT_GT(differ, 20);
}

TEST(SamplingTest, FullDistributionAtTemperature) {
  lp::SamplingParams p;
  p.temperature = 0.8f;
  check_distribution(kLogits, p, softmax(kLogits, 0.8));
}

TEST(SamplingTest, TopKDistribution) {
  lp::SamplingParams p;
  p.top_k = 3;  // tokens 1 (2.5), 3 (2.0), 5 (1.7)
  const auto full = softmax(kLogits, 1);
  const double z = full[1] + full[3] + full[5];
  check_distribution(kLogits, p, {0, full[1] / z, 0, full[3] / z, 0, full[5] / z});
}

TEST(SamplingTest, TopPDistribution) {
  lp::SamplingParams p;
  p.top_p = 0.7f;
  const auto full = softmax(kLogits, 1);
  // Sorted: 1, 3, 5, 0, 2, 4. Shortest prefix reaching 0.7.
  ASSERT_LT(full[1] + full[3], 0.7);
  ASSERT_GE(full[1] + full[3] + full[5], 0.7);
  const double z = full[1] + full[3] + full[5];
  check_distribution(kLogits, p, {0, full[1] / z, 0, full[3] / z, 0, full[5] / z});
}

TEST(SamplingTest, TopKThenTopPOnTheCandidates) {
  lp::SamplingParams p;
  p.temperature = 0.5f;
  p.top_k = 4;
  p.top_p = 0.8f;
  // Candidates 1, 3, 5, 0 at T = 0.5; top-p renormalises over these four.
  const auto full = softmax(kLogits, 0.5);
  const double zk = full[1] + full[3] + full[5] + full[0];
  ASSERT_LT(full[1] / zk, 0.8);
  ASSERT_GE((full[1] + full[3]) / zk, 0.8);
  const double z = full[1] + full[3];
  check_distribution(kLogits, p, {0, full[1] / z, 0, full[3] / z, 0, 0});
}

TEST(SamplingTest, MinPKeepsTokensAtLeastThatLikelyRelativeToTheBest) {
  lp::SamplingParams p;
  p.min_p = 0.4f;  // p_i / p_max = exp(z_i - 2.5): token 3 0.61, token 5 0.45 stay; token 0 0.22 goes
  const auto full = softmax(kLogits, 1);
  const double z = full[1] + full[3] + full[5];
  check_distribution(kLogits, p, {0, full[1] / z, 0, full[3] / z, 0, full[5] / z});
  p.temperature = 0.5f;  // on the tempered distribution, as vLLM: token 5 falls to 0.20
  p.min_p = 0.3f;
  const auto cold = softmax(kLogits, 0.5);
  const double zc = cold[1] + cold[3];
  check_distribution(kLogits, p, {0, cold[1] / zc, 0, cold[3] / zc, 0, 0});
}

TEST(SamplingTest, MinPBeforeTopPOnTheCandidates) {
  lp::SamplingParams p;
  p.min_p = 0.4f;  // candidates 1, 3, 5
  p.top_p = 0.6f;  // renormalised over those three: token 1 alone is 0.49, with token 3 0.78
  const auto full = softmax(kLogits, 1);
  const double zm = full[1] + full[3] + full[5];
  ASSERT_LT(full[1] / zm, 0.6);
  ASSERT_GE((full[1] + full[3]) / zm, 0.6);
  const double z = full[1] + full[3];
  check_distribution(kLogits, p, {0, full[1] / z, 0, full[3] / z, 0, 0});
  p.min_p = 1.0f;  // only the most likely token
  for (uint64_t uid = 0; uid < 100; ++uid) EXPECT_EQ(lp::sample_token(kLogits, p, uid, 0).token, 1);
}

TEST(SamplingTest, TinyTopPIsGreedy) {
  lp::SamplingParams p;
  p.top_p = 1e-6f;
  for (uint64_t uid = 0; uid < 100; ++uid) EXPECT_EQ(lp::sample_token(kLogits, p, uid, 0).token, 1);
}

TEST(SamplingTest, TopKTiesPreferLowerIndex) {
  const std::vector<float> logits = {0.0f, 1.0f, 1.0f, 1.0f};
  lp::SamplingParams p;
  p.top_k = 2;  // candidates 1 and 2, never 3
  check_distribution(logits, p, {0, 0.5, 0.5, 0}, 20000);
}

// Hand-computed: kLogits at T = 1 under top-k 2 (or top-p 0.6: token 1 alone is 0.41, with token 3
// 0.66) keeps tokens 1 (2.5) and 3 (2.0): processed logprobs 2.5 - log(e^2.5 + e^2.0) =
// -log(1 + e^-0.5) = -0.474077 and 2.0 - log(e^2.5 + e^2.0) = -0.974077; -inf outside.
TEST(SamplingTest, ProcessedLogprobIsThatOfTheTruncatedRenormalisedDistribution) {
  for (const bool by_top_p : {false, true}) {
    lp::SamplingParams p;
    p.logprobs_mode = lp::LogprobsMode::kProcessed;
    if (by_top_p) p.top_p = 0.6f;
    else p.top_k = 2;
    std::set<int32_t> seen;
    for (uint64_t stream = 0; stream < 64; ++stream) {
      const auto s = lp::sample_token(kLogits, p, stream, 3);
      seen.insert(s.token);
      ASSERT_TRUE(s.token == 1 || s.token == 3);
      EXPECT_NEAR(s.logprob, s.token == 1 ? -0.474077 : -0.974077, 1e-6);
      EXPECT_EQ(s.logprob, lp::score_token(kLogits, p, 3, s.token));  // the re-score agrees bitwise
    }
    EXPECT_EQ(seen.size(), 2u);
    EXPECT_EQ(lp::score_token(kLogits, p, 3, 0), -INFINITY);  // cut: impossible under this rule
    p.logprobs_mode = lp::LogprobsMode::kRaw;  // the same draws, the untruncated logprob
    EXPECT_NEAR(lp::score_token(kLogits, p, 3, 3), std::log(softmax(kLogits, 1)[3]), 1e-6);
  }
}

// T = 0 draws the argmax with certainty: processed logprob 0, -inf for any other token; raw stays
// log softmax(logits) at T = 1.
TEST(SamplingTest, GreedyProcessedLogprobIsZeroAndRawIsTheTemperatureOneSoftmax) {
  lp::SamplingParams p;
  p.temperature = 0;
  p.logprobs_mode = lp::LogprobsMode::kProcessed;
  const auto s = lp::sample_token(kLogits, p, 5, 9);
  EXPECT_EQ(s.token, 1);
  EXPECT_EQ(s.logprob, 0.0f);
  EXPECT_EQ(lp::score_token(kLogits, p, 9, 1), 0.0f);
  EXPECT_EQ(lp::score_token(kLogits, p, 9, 3), -INFINITY);
  p.logprobs_mode = lp::LogprobsMode::kRaw;
  EXPECT_NEAR(lp::sample_token(kLogits, p, 5, 9).logprob, std::log(softmax(kLogits, 1)[1]), 1e-6);
}

// The min_tokens mask: token 1 cannot be drawn at positions [10, 12), can at 12. Masked, the
// distribution is the softmax over the other tokens: token 3's processed logprob is
// 2.0 - log(e^1 + e^0.3 + e^2 + e^-1 + e^1.7) = -0.850650, its raw one stays
// log softmax(kLogits)[3] = -1.383764. Greedy skips the masked argmax.
TEST(SamplingTest, MinTokensMaskExcludesTokensOnlyInsideItsPositions) {
  const std::vector<int32_t> masked = {1};
  lp::SamplingParams p;
  p.masked_tokens = masked;
  p.mask_begin = 10;
  p.mask_end = 12;
  auto full = softmax(kLogits, 1);
  const double rest = 1 - full[1];
  std::vector<double> expected;
  for (size_t i = 0; i < full.size(); ++i) expected.push_back(i == 1 ? 0 : full[i] / rest);
  std::vector<int> counts(kLogits.size(), 0);
  const int n = 40000;
  for (int i = 0; i < n; ++i) counts[lp::sample_token(kLogits, p, 1000 + i, 11).token]++;
  for (size_t k = 0; k < kLogits.size(); ++k) {
    const double sd = std::sqrt(n * expected[k] * (1 - expected[k]));
    EXPECT_NEAR(counts[k], n * expected[k], 5 * sd + 1) << "token " << k;
  }
  int drawn_after = 0;
  for (int i = 0; i < 2000; ++i) drawn_after += lp::sample_token(kLogits, p, 1000 + i, 12).token == 1;
  EXPECT_GT(drawn_after, 600);  // 0.41 of 2000 once the mask has ended
  EXPECT_NEAR(lp::score_token(kLogits, p, 10, 3), -1.383764, 1e-6);  // raw: no mask
  p.logprobs_mode = lp::LogprobsMode::kProcessed;
  EXPECT_NEAR(lp::score_token(kLogits, p, 10, 3), -0.850650, 1e-6);
  EXPECT_EQ(lp::score_token(kLogits, p, 10, 1), -INFINITY);
  EXPECT_NEAR(lp::score_token(kLogits, p, 12, 1), std::log(full[1]), 1e-6);
  p.temperature = 0;
  EXPECT_EQ(lp::sample_token(kLogits, p, 0, 11).token, 3);
  EXPECT_EQ(lp::sample_token(kLogits, p, 0, 12).token, 1);
  p.logprobs_mode = lp::LogprobsMode::kRaw;
  EXPECT_NEAR(lp::sample_token(kLogits, p, 0, 11).logprob, -1.383764, 1e-6);
}

TEST(SamplingTest, GroupStreamKeyIsFnv1a64OfTheGroupId) {
  EXPECT_EQ(lp::sample_key_of(""), 0xcbf29ce484222325ull);
  EXPECT_EQ(lp::sample_key_of("a"), 0xaf63dc4c8601ec8cull);
  EXPECT_EQ(lp::sample_key_of("foobar"), 0x85944171f73967e8ull);
}

TEST(SamplingTest, LogprobsModeNames) {
  EXPECT_EQ(lp::parse_logprobs_mode("raw"), lp::LogprobsMode::kRaw);
  EXPECT_EQ(lp::parse_logprobs_mode("processed"), lp::LogprobsMode::kProcessed);
  EXPECT_FALSE(lp::parse_logprobs_mode("processed_logprobs").has_value());
  EXPECT_STREQ(lp::logprobs_mode_name(lp::LogprobsMode::kProcessed), "processed");
  EXPECT_STREQ(lp::logprobs_mode_name(lp::LogprobsMode::kRaw), "raw");
}

TEST(SamplingTest, RejectsBadParameters) {
  lp::SamplingParams p;
  p.temperature = -1;
  EXPECT_THROW(lp::sample_token(kLogits, p, 0, 0), std::invalid_argument);
  p.temperature = NAN;
  EXPECT_THROW(lp::sample_token(kLogits, p, 0, 0), std::invalid_argument);
  p.temperature = 1;
  p.min_p = NAN;
  EXPECT_THROW(lp::sample_token(kLogits, p, 0, 0), std::invalid_argument);
  EXPECT_THROW(lp::token_logprob(kLogits, 1.0f, 6), std::invalid_argument);
  EXPECT_THROW(lp::token_logprob(kLogits, 1.0f, -1), std::invalid_argument);
  p.min_p = 0;
  EXPECT_THROW(lp::score_token(kLogits, p, 0, 6), std::invalid_argument);
}

}  // namespace
