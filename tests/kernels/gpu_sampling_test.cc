// GPU tests of the sampler and argmax: token choice identical to ref::sample_row (the rule of
// policy/sampling.h) on thousands of rows mixing greedy, temperature, min-p, top-k, top-p, ties and
// -inf logits, with and without rule 0's mask (random stop-token lists that often hold the row's
// argmax) and with raw or processed logprobs (rule 3); logprobs and teacher-forced logprobs close
// to the fp64 reference (processed ones within fp64 summation order); pruned whole-vocabulary
// draws on peaked and flat rows; the same bits for a row in batches of 1 to 2,176 rows (blocks of
// one or several chunks); argmax ties.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "tests/kernels/gpu_test_util.h"

#if LONGTAIL_HAVE_CUDA
namespace longtail::kernels {
namespace {
using testing::DeviceBuffer;

struct Batch {
  int32_t vocab;
  int64_t stride;
  std::vector<float> logits;
  std::vector<SamplingRow> rows;
  std::vector<int32_t> targets;
  std::vector<std::vector<int32_t>> masks;  // per row, as a caller gives them (rule 0's host form)
  std::vector<int32_t> mask_ids;            // the device form: each row's ids sorted, distinct, in range
  std::vector<ref::LogprobKind> kinds;
};

// Rows with extras: every third row reports processed logprobs; two rows of three carry a mask of
// 1..6 ids (duplicates, ids outside the vocabulary, the row's argmax half of the time, ids near
// chunk boundaries), so masking moves the argmax, the draw, min-p's reference and top-k/top-p.
void add_extras(Batch& b, std::mt19937_64& rng) {
  const int64_t num_rows = static_cast<int64_t>(b.rows.size());
  std::uniform_int_distribution<int32_t> id(0, b.vocab - 1);
  for (int64_t r = 0; r < num_rows; ++r) {
    SamplingRow& p = b.rows[r];
    b.kinds[r] = (r / 3) % 3 == 0 ? ref::LogprobKind::kRaw : ref::LogprobKind::kProcessed;
    p.processed = b.kinds[r] == ref::LogprobKind::kProcessed;
    if (r % 3 == 2) continue;
    const std::span<const float> row(b.logits.data() + r * b.stride, b.vocab);
    std::vector<int32_t>& m = b.masks[r];
    const int n = 1 + static_cast<int>(rng() % 6);
    for (int j = 0; j < n; ++j) {
      const int what = static_cast<int>(rng() % 8);
      if (what == 0) m.push_back(b.vocab + 3);                              // outside: ignored
      else if (what == 1) m.push_back(std::min(b.vocab - 1, 4095 + static_cast<int32_t>(rng() % 3)));
      else m.push_back(id(rng));
    }
    if (rng() % 2) m.push_back(ref::argmax(row));
    if (rng() % 4 == 0) m.push_back(m.front());                            // duplicate
    if (rng() % 8 == 0) b.targets[r] = m.back();                          // a masked target
    std::vector<int32_t> dev;
    for (int32_t t : m)
      if (t >= 0 && t < b.vocab) dev.push_back(t);
    std::sort(dev.begin(), dev.end());
    dev.erase(std::unique(dev.begin(), dev.end()), dev.end());
    if (static_cast<int32_t>(dev.size()) == b.vocab) {  // callers never mask a whole vocabulary
      std::erase(m, dev.back());
      dev.pop_back();
    }
    p.mask_start = static_cast<int32_t>(b.mask_ids.size());
    p.mask_count = static_cast<int32_t>(dev.size());
    b.mask_ids.insert(b.mask_ids.end(), dev.begin(), dev.end());
  }
}

Batch make_batch(int64_t num_rows, int32_t vocab, std::mt19937_64& rng, bool extras = false) {
  Batch b{vocab, vocab + 3, {}, {}, {}, {}, {}, {}};
  b.logits.assign(num_rows * b.stride, std::numeric_limits<float>::quiet_NaN());  // pad = NaN
  std::normal_distribution<float> nd(0.0f, 3.0f);
  std::uniform_int_distribution<int32_t> tok(-1, vocab - 1);
  const float temps[] = {0.0f, 0.0f, 0.5f, 1.0f, 1.0f, 1.3f};
  const int32_t topks[] = {0, 0, 1, 5, 50, vocab + 7};
  const float topps[] = {1.0f, 1.0f, 0.9f, 0.5f, 0.01f, 0.999f};
  const float minps[] = {0.0f, 0.05f, 0.0f, 0.3f, 1.0f, 0.0f};
  for (int64_t r = 0; r < num_rows; ++r) {
    float* row = b.logits.data() + r * b.stride;
    const int kind = static_cast<int>(r % 4);
    for (int32_t i = 0; i < vocab; ++i) {
      float v = nd(rng);
      if (kind == 1) v = std::round(v * 2.0f) / 2.0f;                  // many exact ties
      if (kind == 2 && (i % 3 == 0)) v = -std::numeric_limits<float>::infinity();  // masked
      if (kind == 3 && i % 7 == 0) v = -0.0f;                         // signed zeros tie with +0
      row[i] = v;
    }
    if (kind == 1) row[vocab - 1] = row[0] = 20.0f;  // tied maximum: lowest index must win
    SamplingRow p;
    p.temperature = temps[(r / 4) % 6];
    p.top_k = topks[(r / 24) % 6];
    p.top_p = topps[(r / 144) % 6];
    p.min_p = minps[(r / 864 + r / 7) % 6];
    p.seed = 0x5eed0000ull + static_cast<uint64_t>(r % 5);
    p.uid = (static_cast<uint64_t>(r) << 33) | static_cast<uint64_t>(r);
    p.position = 7 + r;
    b.rows.push_back(p);
    b.targets.push_back(r % 11 == 0 ? vocab + 5 : tok(rng));
  }
  b.masks.resize(static_cast<size_t>(num_rows));
  b.kinds.assign(static_cast<size_t>(num_rows), ref::LogprobKind::kRaw);
  if (extras) add_extras(b, rng);
  if (b.mask_ids.empty()) b.mask_ids.push_back(-1);  // never read (no row masks): a valid pointer
  return b;
}

struct Sampled {
  std::vector<int32_t> tokens;
  std::vector<float> logprobs, target_logprobs;
};

// Samples rows [first, first + num_rows) of the batch in one launch.
void sample(const Batch& b, int64_t first, int64_t num_rows, Sampled* out) {
  std::vector<float> logits(b.logits.begin() + first * b.stride,
                            b.logits.begin() + (first + num_rows) * b.stride);
  DeviceBuffer<float> d_logits(logits);
  DeviceBuffer<SamplingRow> d_rows(
      std::vector<SamplingRow>(b.rows.begin() + first, b.rows.begin() + first + num_rows));
  DeviceBuffer<int32_t> d_targets(
      std::vector<int32_t>(b.targets.begin() + first, b.targets.begin() + first + num_rows));
  DeviceBuffer<int32_t> d_mask(b.mask_ids);
  DeviceBuffer<int32_t> d_tokens(num_rows);
  DeviceBuffer<float> d_lp(num_rows), d_tlp(num_rows);
  const size_t ws_bytes = sample_rows_workspace_bytes(num_rows, b.vocab);
  DeviceBuffer<char> d_ws(std::vector<char>(ws_bytes, 0));
  for (int rep = 0; rep < 2; ++rep) {  // the second launch reuses the tickets the first left
    LT_KERNEL_OK(sample_rows(d_logits.get(), b.stride, num_rows, b.vocab, d_rows.get(),
                             d_mask.get(), d_targets.get(), d_tokens.get(), d_lp.get(), d_tlp.get(),
                             d_ws.get(), ws_bytes, nullptr));
  }
  *out = {d_tokens.download(), d_lp.download(), d_tlp.download()};
}

void check_batch(const Batch& b, int64_t num_rows) {
  Sampled all;
  ASSERT_NO_FATAL_FAILURE(sample(b, 0, num_rows, &all));
  const auto& tokens = all.tokens;
  const auto& lp = all.logprobs;
  const auto& tlp = all.target_logprobs;
  int64_t mismatches = 0;
  // Raw logprobs: the GPU sums exp in float per chunk; processed: in fp64 like the reference, so
  // only the summation order differs.
  auto expect_logprob = [](float got, float want, bool processed, const std::string& what) {
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(got)) << what;
    } else if (std::isinf(want)) {  // a masked (-inf) logit, or not a candidate (processed)
      EXPECT_EQ(got, want) << what;
    } else {
      EXPECT_NEAR(got, want, (processed ? 2e-6 : 2e-4) * (1.0f + std::fabs(want))) << what;
    }
  };
  for (int64_t r = 0; r < num_rows; ++r) {
    const std::span<const float> row(b.logits.data() + r * b.stride, b.vocab);
    ref::RuleExtras extras;
    extras.masked = b.masks[r];
    extras.logprob = b.kinds[r];
    const bool processed = extras.logprob == ref::LogprobKind::kProcessed;
    const auto want = ref::sample_row(row, b.rows[r], ref::LogRounding::kCorrect, extras);
    if (tokens[r] != want.token) {
      if (++mismatches <= 5) {
        ADD_FAILURE() << "row " << r << " (T " << b.rows[r].temperature << " k "
                      << b.rows[r].top_k << " p " << b.rows[r].top_p << " min_p "
                      << b.rows[r].min_p << " masked " << b.masks[r].size() << " processed "
                      << processed << "): gpu " << tokens[r] << " ref " << want.token;
      }
      continue;
    }
    const std::string what = "row " + std::to_string(r) + (processed ? " processed" : " raw");
    expect_logprob(lp[r], want.logprob, processed, what);
    const float want_t = ref::rule_logprob(row, b.rows[r], extras, b.targets[r]);
    expect_logprob(tlp[r], want_t, processed, what + " target " + std::to_string(b.targets[r]));
  }
  EXPECT_EQ(mismatches, 0) << "of " << num_rows << " rows";
  // Batch invariance: a row sampled in a smaller batch, at another index, gives the same bits.
  const int64_t first = num_rows / 3, sub = std::min<int64_t>(num_rows - first, 5);
  Sampled part;
  ASSERT_NO_FATAL_FAILURE(sample(b, first, sub, &part));
  for (int64_t j = 0; j < sub; ++j) {
    EXPECT_EQ(part.tokens[j], tokens[first + j]) << "row " << first + j;
    EXPECT_EQ(std::memcmp(&part.logprobs[j], &lp[first + j], 4), 0) << "row " << first + j;
    EXPECT_EQ(std::memcmp(&part.target_logprobs[j], &tlp[first + j], 4), 0) << "row " << first + j;
  }
}

TEST(KernelsGpuSampling, AgreesWithReferenceOnThousandsOfRows) {
  LT_REQUIRE_GPU();
  std::mt19937_64 rng(21);
  const int64_t rows = 4 * 864;  // every (kind, T, top-k, top-p) combination, 4 times
  check_batch(make_batch(rows, 1000, rng), rows);
  check_batch(make_batch(97, 3, rng), 97);  // vocab smaller than top-k and the block
}

TEST(KernelsGpuSampling, AgreesWithReferenceAtFullQwenVocab) {
  LT_REQUIRE_GPU();
  std::mt19937_64 rng(22);
  const int64_t rows = 48;
  check_batch(make_batch(rows, 151936, rng), rows);
}

TEST(KernelsGpuSampling, MaskAndProcessedLogprobsAgreeWithReference) {
  LT_REQUIRE_GPU();
  std::mt19937_64 rng(24);
  const int64_t rows = 4 * 864;
  check_batch(make_batch(rows, 1000, rng, true), rows);
  check_batch(make_batch(97, 5, rng, true), 97);  // masks that leave one or two tokens
  check_batch(make_batch(4 * 96, 9000, rng, true), 4 * 96);  // masks on both sides of a chunk edge
  check_batch(make_batch(72, 151936, rng, true), 72);
}

// Rows drawn from the whole vocabulary, where the pruned draw skips most Philox calls and logs:
// peaked rows (a few entries 8..40 above the rest, like a trained model's logits, or a scaled
// lm_head), flat rows of several spreads, and temperatures from near-greedy to hot, so that
// every filter (group reach, log-free bound, float logs) both prunes and keeps entries.
TEST(KernelsGpuSampling, PrunedDrawsAgreeOnPeakedAndScaledRows) {
  LT_REQUIRE_GPU();
  std::mt19937_64 rng(25);
  const int32_t vocab = 151936;
  const int64_t rows = 64;
  Batch b{vocab, vocab + 3, {}, {}, {}, {}, {}, {}};
  b.logits.assign(rows * b.stride, std::numeric_limits<float>::quiet_NaN());
  const float temps[] = {0.02f, 0.25f, 1.0f, 3.0f};
  const float spreads[] = {0.3f, 1.0f, 3.0f, 8.0f};
  std::uniform_int_distribution<int32_t> id(0, vocab - 1);
  for (int64_t r = 0; r < rows; ++r) {
    float* row = b.logits.data() + r * b.stride;
    std::normal_distribution<float> nd(-2.0f, spreads[(r / 4) % 4]);
    for (int32_t i = 0; i < vocab; ++i) row[i] = nd(rng);
    const int peaks = static_cast<int>(r % 16) / 4 * 2;  // 0, 2, 4 or 6 peaked entries
    for (int j = 0; j < peaks; ++j) row[id(rng)] = 8.0f + static_cast<float>(rng() % 33);
    SamplingRow p;
    p.temperature = temps[r % 4];
    p.seed = 0xabcdef00ull + static_cast<uint64_t>(r);
    p.uid = static_cast<uint64_t>(r) * 0x9e3779b97f4a7c15ull;
    p.position = 100 + 37 * r;
    p.processed = r % 2;
    b.rows.push_back(p);
    b.targets.push_back(id(rng));
  }
  b.masks.resize(rows);
  for (int64_t r = 0; r < rows; ++r) {
    b.kinds.push_back(r % 2 ? ref::LogprobKind::kProcessed : ref::LogprobKind::kRaw);
  }
  b.mask_ids.push_back(-1);
  check_batch(b, rows);
}

// Batch invariance at the full vocabulary across launch shapes: a launch of many rows lets each
// block reduce several consecutive chunks of its row (how many depends on the row count and the
// device), a launch of a few rows one chunk each; the same rows (greedy, T = 1, T = 0.7, raw and
// processed, some with a mask on chunk edges) must give the same tokens and the same logprob bits
// in batches of 1..8, 128 and 512 rows as in one of 2,176 rows. The small batches are also checked
// against the reference, so that equal garbage cannot pass.
TEST(KernelsGpuSampling, RowsGiveTheSameBitsInSmallAndLargeBatches) {
  LT_REQUIRE_GPU();
  std::mt19937_64 rng(26);
  const int32_t vocab = 151936;
  const int64_t stride = vocab + 3, rows = 2176, unique = 40;
  // Rows past `unique` repeat its logits (with other parameters), which keeps generation short.
  std::vector<float> logits(unique * stride, std::numeric_limits<float>::quiet_NaN());
  std::uniform_int_distribution<int32_t> id(0, vocab - 1);
  for (int64_t u = 0; u < unique; ++u) {
    float* row = logits.data() + u * stride;
    const int kind = static_cast<int>(u % 4);
    std::normal_distribution<float> nd(0.0f, kind == 3 ? 1.0f : 3.0f);
    for (int32_t i = 0; i < vocab; ++i) {
      float v = nd(rng);
      if (kind == 1) v = std::round(v * 2.0f) / 2.0f;                              // exact ties
      if (kind == 3 && i % 3 == 0) v = -std::numeric_limits<float>::infinity();  // masked
      row[i] = v;
    }
    if (kind == 1) row[0] = row[vocab - 1] = 20.0f;  // a tied maximum in the first and last chunk
    if (kind == 2) {
      for (int j = 0; j < 16; ++j) row[id(rng)] += 25.0f;  // peaked, like a trained model's
    }
  }
  std::vector<SamplingRow> params(rows);
  std::vector<int32_t> targets(rows), mask_ids;
  std::vector<std::vector<int32_t>> masks(rows);
  const float temps[] = {0.0f, 1.0f, 0.7f};
  for (int64_t r = 0; r < rows; ++r) {
    SamplingRow& p = params[r];
    p.temperature = temps[r % 3];
    p.processed = (r / 3) % 2;
    p.seed = 0x77000000ull + static_cast<uint64_t>(r % 7);
    p.uid = static_cast<uint64_t>(r) * 0x9e3779b97f4a7c15ull;
    p.position = 11 + 3 * r;
    targets[r] = r % 13 == 0 ? -1 : id(rng);
    if (r % 4 == 1) {  // chunk edges, one random id and the row's argmax
      const std::span<const float> row(logits.data() + (r % unique) * stride, vocab);
      std::vector<int32_t> m = {4095, 4096, 37 * 4096, id(rng), ref::argmax(row)};
      std::sort(m.begin(), m.end());
      m.erase(std::unique(m.begin(), m.end()), m.end());
      masks[r] = m;
      p.mask_start = static_cast<int32_t>(mask_ids.size());
      p.mask_count = static_cast<int32_t>(m.size());
      mask_ids.insert(mask_ids.end(), m.begin(), m.end());
    }
  }
  DeviceBuffer<float> d_logits(static_cast<size_t>(rows * stride));
  LT_CUDA_OK(cudaMemcpy(d_logits.get(), logits.data(), logits.size() * sizeof(float),
                        cudaMemcpyHostToDevice));
  for (int64_t r = unique; r < rows; r += unique) {
    const int64_t n = std::min(unique, rows - r);
    LT_CUDA_OK(cudaMemcpy(d_logits.get() + r * stride, d_logits.get(),
                          static_cast<size_t>(n * stride) * sizeof(float),
                          cudaMemcpyDeviceToDevice));
  }
  DeviceBuffer<SamplingRow> d_rows(params);
  DeviceBuffer<int32_t> d_targets(targets), d_mask(mask_ids);
  // Rows [first, first + n) of the batch as one launch of n rows.
  auto sample_range = [&](int64_t first, int64_t n, Sampled* out) {
    DeviceBuffer<int32_t> d_tokens(n);
    DeviceBuffer<float> d_lp(n), d_tlp(n);
    const size_t ws_bytes = sample_rows_workspace_bytes(n, vocab);
    DeviceBuffer<char> d_ws(std::vector<char>(ws_bytes, 0));
    for (int rep = 0; rep < 2; ++rep) {  // the second launch reuses the tickets the first left
      LT_KERNEL_OK(sample_rows(d_logits.get() + first * stride, stride, n, vocab,
                               d_rows.get() + first, d_mask.get(), d_targets.get() + first,
                               d_tokens.get(), d_lp.get(), d_tlp.get(), d_ws.get(), ws_bytes,
                               nullptr));
    }
    *out = {d_tokens.download(), d_lp.download(), d_tlp.download()};
  };
  Sampled all;
  ASSERT_NO_FATAL_FAILURE(sample_range(0, rows, &all));
  auto same_bits = [&](const Sampled& part, int64_t first, int64_t n, const std::string& batch) {
    for (int64_t j = 0; j < n; ++j) {
      const int64_t r = first + j;
      const std::string what = "row " + std::to_string(r) + " (T " +
                               std::to_string(params[r].temperature) + " processed " +
                               std::to_string(params[r].processed) + ") in a batch of " + batch;
      EXPECT_EQ(part.tokens[j], all.tokens[r]) << what;
      EXPECT_EQ(std::memcmp(&part.logprobs[j], &all.logprobs[r], 4), 0)
          << what << ": " << part.logprobs[j] << " vs " << all.logprobs[r];
      EXPECT_EQ(std::memcmp(&part.target_logprobs[j], &all.target_logprobs[r], 4), 0)
          << what << " target: " << part.target_logprobs[j] << " vs " << all.target_logprobs[r];
    }
  };
  int64_t checked = 0;
  for (int64_t n = 1; n <= 8; ++n) {
    const int64_t first = (n * 977) % (rows - n);
    Sampled part;
    ASSERT_NO_FATAL_FAILURE(sample_range(first, n, &part));
    same_bits(part, first, n, std::to_string(n));
    for (int64_t j = 0; j < n; ++j) {
      const int64_t r = first + j;
      const std::span<const float> row(logits.data() + (r % unique) * stride, vocab);
      ref::RuleExtras extras;
      extras.masked = masks[r];
      extras.logprob = params[r].processed ? ref::LogprobKind::kProcessed : ref::LogprobKind::kRaw;
      const auto want = ref::sample_row(row, params[r], ref::LogRounding::kCorrect, extras);
      EXPECT_EQ(part.tokens[j], want.token) << "row " << r << " vs the reference";
      if (std::isinf(want.logprob)) {
        EXPECT_EQ(part.logprobs[j], want.logprob) << "row " << r << " vs the reference";
      } else {
        EXPECT_NEAR(part.logprobs[j], want.logprob, 2e-4 * (1.0f + std::fabs(want.logprob)))
            << "row " << r << " vs the reference";
      }
      ++checked;
    }
  }
  EXPECT_EQ(checked, 36);
  for (const int64_t n : {int64_t{128}, int64_t{512}}) {
    const int64_t first = rows - n - 5;
    Sampled part;
    ASSERT_NO_FATAL_FAILURE(sample_range(first, n, &part));
    same_bits(part, first, n, std::to_string(n));
  }
}

TEST(KernelsGpuSampling, ArgmaxTakesLowestIndexOnTies) {
  LT_REQUIRE_GPU();
  std::mt19937_64 rng(23);
  for (int32_t cols : {1, 31, 1000, 151936}) {
    const int64_t rows = 9, stride = cols + 1;
    std::vector<float> x(rows * stride);
    std::normal_distribution<float> nd;
    for (auto& v : x) v = nd(rng);
    std::uniform_int_distribution<int32_t> pick(0, cols - 1);
    for (int64_t r = 0; r < rows; ++r) {
      const int32_t a = pick(rng), c = pick(rng);
      x[r * stride + a] = x[r * stride + c] = 50.0f;  // tie (or a single max when a == c)
      if (r == 0) {
        for (int32_t i = 0; i < cols; ++i) x[i] = 1.0f;  // all equal: index 0
      }
    }
    DeviceBuffer<float> d_x(x), d_val(rows);
    DeviceBuffer<int32_t> d_idx(rows);
    LT_KERNEL_OK(argmax_rows(d_x.get(), stride, rows, cols, d_idx.get(), d_val.get(), nullptr));
    const auto idx = d_idx.download();
    const auto val = d_val.download();
    for (int64_t r = 0; r < rows; ++r) {
      const std::span<const float> row(x.data() + r * stride, cols);
      EXPECT_EQ(idx[r], ref::argmax(row)) << "cols " << cols << " row " << r;
      EXPECT_EQ(val[r], row[ref::argmax(row)]);
    }
  }
}

}  // namespace
}  // namespace longtail::kernels
#else
TEST(KernelsGpuSampling, All) { GTEST_SKIP() << "built without CUDA (LONGTAIL_HAVE_CUDA off)"; }
#endif
