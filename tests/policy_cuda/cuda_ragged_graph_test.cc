// Ragged verify steps (sequences adding different token counts) replayed from captured CUDA
// graphs: outputs must be bit-identical to running the same padded passes eagerly
// (LONGTAIL_CUDA_GRAPHS=eager), over random batches whose metadata (lengths, slots, block tables,
// draft lengths) changes between replays of one graph, with rollback of rejected drafts in
// between; and close to the unpadded eager path (LONGTAIL_CUDA_GRAPHS=0), which may differ only by
// the products' rounding (cuBLAS may pick another algorithm for another row count).
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <numeric>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "gpu_test_util.h"
#include "random_checkpoint.h"

namespace longtail::policy::testing {
namespace {

namespace fs = std::filesystem;

// Sets environment variables for the lifetime of the object (backends read them when built).
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    setenv(name, value, 1);
  }
  ~ScopedEnv() {
    if (old_) {
      setenv(name_, old_->c_str(), 1);
    } else {
      unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

std::unique_ptr<Backend> make_backend(const fs::path& dir, const char* graphs,
                                      const char* buckets = "") {
  ScopedEnv g("LONGTAIL_CUDA_GRAPHS", graphs);
  ScopedEnv b("LONGTAIL_GRAPH_BUCKETS", buckets);
  ScopedEnv r("LONGTAIL_RAGGED_GRAPHS", "1");
  return make_cuda_backend(dir, small_cuda_options());
}

// The same sequences, driven in lock-step on several backends.
struct Lockstep {
  std::vector<Backend*> backends;
  std::vector<std::vector<int64_t>> seqs;  // [backend][i]
  std::vector<int32_t> lengths;            // [i]

  void create(int n, std::mt19937& rng) {
    seqs.assign(backends.size(), {});
    std::vector<std::vector<int32_t>> prompts(static_cast<size_t>(n));
    for (auto& p : prompts) {
      p.resize(20 + rng() % 120);
      for (auto& t : p) t = static_cast<int32_t>(rng() % 1000);
      lengths.push_back(static_cast<int32_t>(p.size()));
    }
    for (size_t b = 0; b < backends.size(); ++b) {
      std::vector<SequenceChunk> chunks;
      for (int i = 0; i < n; ++i) {
        seqs[b].push_back(backends[b]->create_sequence());
        const auto& p = prompts[static_cast<size_t>(i)];
        chunks.push_back(make_chunk(seqs[b].back(), 900 + i, p,
                                    static_cast<int32_t>(p.size()) - 1, greedy()));
      }
      backends[b]->forward(chunks);
    }
  }

  // One verify step over `which` with k[j] tokens each; returns each backend's outputs. Afterwards
  // every sequence keeps a random number of its new tokens (rollback of rejected drafts).
  std::vector<std::vector<TokenOutput>> step(const std::vector<int>& which,
                                             const std::vector<int32_t>& k, std::mt19937& rng) {
    std::vector<std::vector<int32_t>> toks(which.size());
    for (size_t j = 0; j < which.size(); ++j) {
      toks[j].resize(static_cast<size_t>(k[j]));
      for (auto& t : toks[j]) t = static_cast<int32_t>(rng() % 1000);
    }
    std::vector<std::vector<TokenOutput>> outs;
    for (size_t b = 0; b < backends.size(); ++b) {
      std::vector<SequenceChunk> chunks;
      for (size_t j = 0; j < which.size(); ++j) {
        SamplingParams sp;
        sp.temperature = 1.0f;
        sp.seed = 3;
        chunks.push_back(make_chunk(seqs[b][static_cast<size_t>(which[j])],
                                    900 + static_cast<uint64_t>(which[j]), toks[j], 0, sp));
      }
      outs.push_back(backends[b]->forward(chunks));
    }
    for (size_t j = 0; j < which.size(); ++j) {
      const int i = which[j];
      const int32_t keep = 1 + static_cast<int32_t>(rng() % static_cast<uint32_t>(k[j]));
      lengths[static_cast<size_t>(i)] += keep;
      for (size_t b = 0; b < backends.size(); ++b)
        backends[b]->truncate(seqs[b][static_cast<size_t>(i)], lengths[static_cast<size_t>(i)]);
    }
    return outs;
  }
};

std::vector<int> random_subset(int n, int k, std::mt19937& rng) {
  std::vector<int> all(static_cast<size_t>(n));
  std::iota(all.begin(), all.end(), 0);
  std::shuffle(all.begin(), all.end(), rng);
  all.resize(static_cast<size_t>(k));
  return all;
}

// Bitwise equality, NaN included (the next-input logprob of a chunk's last token is NaN).
int count_bit_differences(const std::vector<TokenOutput>& a, const std::vector<TokenOutput>& b) {
  int diff = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff += a[i].sampled != b[i].sampled ||
            std::bit_cast<uint32_t>(a[i].sampled_logprob) !=
                std::bit_cast<uint32_t>(b[i].sampled_logprob) ||
            std::bit_cast<uint32_t>(a[i].next_input_logprob) !=
                std::bit_cast<uint32_t>(b[i].next_input_logprob);
  }
  return diff;
}

class CudaRaggedGraphs : public ::testing::Test {
 protected:
  void SetUp() override {
    LT_SKIP_WITHOUT_GPU();
    dir_ = fs::temp_directory_path() / ("longtail_cuda_ragged_" + std::to_string(::getpid()));
    write_random_checkpoint(dir_ / "a", RandomCheckpointShape{}, 23);
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }
  fs::path dir_;
};

TEST_F(CudaRaggedGraphs, ReplayIsBitIdenticalToEagerPaddedPassesAndCloseToUnpadded) {
  auto graphs = make_backend(dir_ / "a", "1");
  auto eager = make_backend(dir_ / "a", "eager");
  auto unpadded = make_backend(dir_ / "a", "0");
  Lockstep ls;
  ls.backends = {graphs.get(), eager.get(), unpadded.get()};
  std::mt19937 rng(41);
  const int kSeqs = 24;
  ls.create(kSeqs, rng);

  double max_dlp = 0, sum_dlp = 0;
  int flips = 0, compared = 0;
  auto check = [&](const std::vector<std::vector<TokenOutput>>& outs, size_t expected,
                   const std::string& what) {
    ASSERT_EQ(outs[0].size(), expected) << what << ": padding rows must not be returned";
    ASSERT_EQ(outs[1].size(), expected) << what;
    ASSERT_EQ(outs[2].size(), expected) << what;
    EXPECT_EQ(count_bit_differences(outs[0], outs[1]), 0)
        << what << ": graph replay differs from the same padded pass run eagerly";
    for (size_t i = 0; i < expected; ++i) {
      ++compared;
      if (outs[0][i].sampled != outs[2][i].sampled) {
        ++flips;
      } else {
        const double d = std::fabs(outs[0][i].sampled_logprob - outs[2][i].sampled_logprob);
        max_dlp = std::max(max_dlp, d);
        sum_dlp += d;
      }
    }
  };

  // One shape over and over (12 sequences, 43 tokens, longest 8: one graph key) with different
  // sequences, lengths, draft lengths and tokens each time: the first runs eagerly, the second
  // captures, the rest replay with new metadata.
  const size_t replays_before = cuda_backend_stats(*graphs).graph_replays;
  std::vector<int32_t> ks{1, 1, 2, 3, 5, 8, 4, 6, 2, 7, 1, 3};
  const int kSameShape = 10;
  for (int it = 0; it < kSameShape; ++it) {
    std::shuffle(ks.begin(), ks.end(), rng);
    const auto which = random_subset(kSeqs, static_cast<int>(ks.size()), rng);
    check(ls.step(which, ks, rng), 43, "same-shape step " + std::to_string(it));
  }
  EXPECT_GE(cuda_backend_stats(*graphs).graph_replays - replays_before,
            static_cast<size_t>(kSameShape - 1))
      << "ragged verify steps of one shape were not replayed from a graph";
  EXPECT_EQ(cuda_backend_stats(*eager).graph_replays, 0u);

  // Random ragged batches (1..17 tokens per sequence, 2..24 sequences); keys repeat now and then.
  for (int it = 0; it < 40; ++it) {
    const int n = 2 + static_cast<int>(rng() % (kSeqs - 1));
    const auto which = random_subset(kSeqs, n, rng);
    std::vector<int32_t> k(static_cast<size_t>(n));
    size_t total = 0;
    for (auto& x : k) total += static_cast<size_t>(x = 1 + static_cast<int32_t>(rng() % 17));
    check(ls.step(which, k, rng), total, "random step " + std::to_string(it));
  }
  EXPECT_GT(cuda_backend_stats(*graphs).graphs_captured, 1u);
  EXPECT_GT(cuda_backend_stats(*graphs).graph_capture_s, 0.0);  // captures take host time

  const double mean_dlp = sum_dlp / std::max(1, compared - flips);
  std::printf("[ragged graphs] %d outputs vs unpadded eager: %d sampled-token flips, |dlogprob| max "
              "%.3g mean %.3g; %zu replays, %zu graphs\n",
              compared, flips, max_dlp, mean_dlp, cuda_backend_stats(*graphs).graph_replays,
              cuda_backend_stats(*graphs).graphs_captured);
  // Unpadded passes may round the products differently (other cuBLAS algorithms for other row
  // counts, another attention tile shape): bf16 level, the bounds the other CUDA tests use (the
  // H100 run of 2026-11-23 saw max 0.042 here, and 0.047 cuda vs cpu). A flip needs a near-tie.
  EXPECT_LE(max_dlp, 0.08);
  EXPECT_LE(mean_dlp, 0.01);
  EXPECT_LE(flips, compared / 100 + 2);
}

// cuda_graph_cache.h: after the runner's first graphable pass a new shape is captured the first
// time it is seen, where the old policy (LONGTAIL_GRAPH_BUCKETS=legacy) ran every new shape
// eagerly once; the same steps give the same outputs from both backends where they share a shape.
TEST_F(CudaRaggedGraphs, NewShapesAreCapturedAtFirstSight) {
  auto now = make_backend(dir_ / "a", "1");
  auto legacy = make_backend(dir_ / "a", "1", "legacy");
  Lockstep ls;
  ls.backends = {now.get(), legacy.get()};
  std::mt19937 rng(5);
  ls.create(24, rng);
  const CudaBackendStats now0 = cuda_backend_stats(*now), legacy0 = cuda_backend_stats(*legacy);
  const int kSteps = 16;
  for (int it = 0; it < kSteps; ++it) {
    const int n = 2 + static_cast<int>(rng() % 22);
    const auto which = random_subset(24, n, rng);
    std::vector<int32_t> k(static_cast<size_t>(n));
    for (auto& x : k) x = 1 + static_cast<int32_t>(rng() % 17);
    k[0] = 2;  // ragged, not a decode step
    k[1] = 3;
    ls.step(which, k, rng);
  }
  const CudaBackendStats a = cuda_backend_stats(*now), b = cuda_backend_stats(*legacy);
  const size_t now_eager = a.graphable_eager_passes - now0.graphable_eager_passes;
  const size_t legacy_eager = b.graphable_eager_passes - legacy0.graphable_eager_passes;
  EXPECT_LE(now_eager, 1u) << "only the runner's first graphable pass may run eagerly";
  EXPECT_EQ(a.graph_replays - now0.graph_replays + now_eager, static_cast<size_t>(kSteps));
  EXPECT_GE(a.graphs_captured, 2u);
  EXPECT_GE(legacy_eager, 4u) << "the legacy policy runs each new shape eagerly once";
  EXPECT_EQ(b.graph_replays - legacy0.graph_replays + legacy_eager, static_cast<size_t>(kSteps));
  std::printf("[first sight] %d ragged steps: %zu eager + %zu graphs (legacy: %zu eager + %zu graphs)\n",
              kSteps, now_eager, a.graphs_captured, legacy_eager, b.graphs_captured);
}

}  // namespace
}  // namespace longtail::policy::testing
