// Token-tree verification on the CUDA backend against the CPU backend (whose tree nodes are
// bitwise their paths' chains): random trees beside chains and a long prefill in one forward,
// greedy and T = 1, graphed and not; then the accepted path compacted on both backends and decoded
// on. Tokens must agree except at near-ties; logprobs (sampled and first-child) closely.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include "gpu_test_util.h"
#include "random_checkpoint.h"

namespace longtail::policy::testing {
namespace {

namespace fs = std::filesystem;

struct Diff {
  int outputs = 0, flips = 0;
  double max_diff = 0;
  void add(const TokenOutput& c, const TokenOutput& g) {
    ++outputs;
    if (c.sampled != g.sampled) {
      ++flips;
    } else {
      max_diff = std::max(max_diff, std::fabs(static_cast<double>(c.sampled_logprob) - g.sampled_logprob));
    }
    if (std::isnan(c.next_input_logprob)) {
      EXPECT_TRUE(std::isnan(g.next_input_logprob));
    } else {
      max_diff = std::max(max_diff, std::fabs(static_cast<double>(c.next_input_logprob) - g.next_input_logprob));
    }
  }
};

// Random parents: each input hangs off the context or an earlier input (a chain now and then).
std::vector<int32_t> random_tree(int n, std::mt19937& rng) {
  std::vector<int32_t> p(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) p[i] = rng() % 4 == 0 ? i - 1 : static_cast<int32_t>(rng() % (i + 1)) - 1;
  return p;
}

class CudaTrees : public ::testing::Test {
 protected:
  void SetUp() override {
    LT_SKIP_WITHOUT_GPU();
    dir_ = fs::temp_directory_path() / ("longtail_cuda_trees_" + std::to_string(::getpid()));
    write_random_checkpoint(dir_, RandomCheckpointShape{}, 11);
    BackendOptions c;
    c.kind = "cpu";
    cpu_ = make_backend(dir_, c);
    gpu_ = make_cuda_backend(dir_, small_cuda_options());
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  // Prompts on both backends, then one forward of a tree per sequence (one sequence a chain, and
  // with_prefill a new 130-token prompt too), compared output by output; then each tree sequence
  // keeps a random root-to-leaf path and both backends decode one more token on it.
  Diff run(const SamplingParams& sp, int tree_size, bool with_prefill, uint32_t seed) {
    std::mt19937 rng(seed);
    const int seqs = 5;
    std::vector<int64_t> cs, gs;
    std::vector<std::vector<int32_t>> prompts;
    std::vector<SequenceChunk> cc, gc;
    for (int i = 0; i < seqs; ++i) {
      prompts.push_back(random_tokens(static_cast<size_t>(3 + 9 * i), seed + i));
      cs.push_back(cpu_->create_sequence());
      gs.push_back(gpu_->create_sequence());
      const int32_t last = static_cast<int32_t>(prompts.back().size()) - 1;
      cc.push_back(make_chunk(cs.back(), 50 + i, prompts.back(), last, sp));
      gc.push_back(make_chunk(gs.back(), 50 + i, prompts.back(), last, sp));
    }
    cpu_->forward(cc);
    gpu_->forward(gc);
    std::vector<std::vector<int32_t>> tokens(seqs), parents(seqs);
    cc.clear();
    gc.clear();
    for (int i = 0; i < seqs; ++i) {
      tokens[i] = random_tokens(static_cast<size_t>(tree_size), seed * 7 + i);
      parents[i] = random_tree(tree_size, rng);
      if (i == 2) parents[i].clear();  // a chain among the trees
      cc.push_back(make_chunk(cs[i], 50 + i, tokens[i], 0, sp));
      gc.push_back(make_chunk(gs[i], 50 + i, tokens[i], 0, sp));
      cc.back().parents = gc.back().parents = parents[i];
    }
    const std::vector<int32_t> long_prompt = random_tokens(130, seed + 99);
    if (with_prefill) {
      cc.push_back(make_chunk(cpu_->create_sequence(), 77, long_prompt, 0, sp));
      gc.push_back(make_chunk(gpu_->create_sequence(), 77, long_prompt, 0, sp));
    }
    const auto co = cpu_->forward(cc);
    const auto go = gpu_->forward(gc);
    Diff d;
    EXPECT_EQ(co.size(), go.size());
    for (size_t o = 0; o < co.size() && o < go.size(); ++o) d.add(co[o], go[o]);
    for (int i = 0; i < seqs; ++i) {
      if (parents[i].empty()) continue;
      int32_t node = static_cast<int32_t>(rng() % static_cast<uint32_t>(tree_size));
      std::vector<int32_t> keep;
      for (; node >= 0; node = parents[i][static_cast<size_t>(node)]) keep.push_back(node);
      std::reverse(keep.begin(), keep.end());
      const int32_t start = static_cast<int32_t>(prompts[i].size());
      cpu_->compact_kv(cs[i], start, keep);
      gpu_->compact_kv(gs[i], start, keep);
      EXPECT_EQ(gpu_->sequence_length(gs[i]), start + static_cast<int32_t>(keep.size()));
    }
    std::vector<std::vector<int32_t>> next(seqs);
    cc.clear();
    gc.clear();
    for (int i = 0; i < seqs; ++i) {
      next[i] = {static_cast<int32_t>(i + 1)};
      cc.push_back(make_chunk(cs[i], 50 + i, next[i], 0, sp));
      gc.push_back(make_chunk(gs[i], 50 + i, next[i], 0, sp));
    }
    const auto ca = cpu_->forward(cc);
    const auto ga = gpu_->forward(gc);
    for (size_t o = 0; o < ca.size() && o < ga.size(); ++o) d.add(ca[o], ga[o]);
    return d;
  }

  fs::path dir_;
  std::unique_ptr<Backend> cpu_, gpu_;
};

TEST_F(CudaTrees, SupportsTreesInFastModeOnly) {
  EXPECT_TRUE(gpu_->supports_token_trees());
  BackendOptions o = small_cuda_options();
  o.deterministic = true;  // bitwise chain equality is not kept by tree attention: chains only
  const auto det = make_cuda_backend(dir_, o);
  EXPECT_FALSE(det->supports_token_trees());
  const int64_t s = det->create_sequence();
  const std::vector<int32_t> toks{5, 6}, parents{-1, -1};
  SequenceChunk c = make_chunk(s, 1, toks, 0, greedy());
  c.parents = parents;
  EXPECT_THROW(det->forward(std::vector<SequenceChunk>{c}), std::invalid_argument);
  EXPECT_EQ(det->sequence_length(s), 0);
}

TEST_F(CudaTrees, GreedyTreesBesideChainsAndAPrefillMatchTheCpu) {
  for (const int n : {12, 48}) {  // 12 nodes replay a graph; 48, beside a prefill, run eagerly
    const Diff d = run(greedy(), n, n == 48, 3 + n);
    std::cout << "[cuda vs cpu, trees of " << n << "] " << d.outputs << " outputs, " << d.flips
              << " flips, max |dlogprob| " << d.max_diff << "\n";
    EXPECT_LE(d.flips, d.outputs / 20);
    EXPECT_LE(d.max_diff, 5e-2);
  }
}

TEST_F(CudaTrees, SampledTreesMatchTheCpuAtTemperatureOne) {
  SamplingParams sp;
  sp.temperature = 1.0f;
  sp.seed = 99;
  const Diff d = run(sp, 16, false, 5);
  std::cout << "[cuda vs cpu, T=1 trees of 16] " << d.outputs << " outputs, " << d.flips
            << " flips, max |dlogprob| " << d.max_diff << "\n";
  EXPECT_LE(d.flips, d.outputs / 15);
  EXPECT_LE(d.max_diff, 5e-2);
}

TEST_F(CudaTrees, BadTreesAndCompactionsChangeNothing) {
  const int64_t s = gpu_->create_sequence();
  const std::vector<int32_t> prompt = random_tokens(10, 1);
  gpu_->forward(std::vector<SequenceChunk>{make_chunk(s, 1, prompt, 9, greedy())});
  const std::vector<int32_t> toks{5, 6, 7};
  const std::vector<int32_t> bad{-1, 1, 0};  // parent 1 of input 1 is not earlier
  SequenceChunk c = make_chunk(s, 1, toks, 0, greedy());
  c.parents = bad;
  EXPECT_THROW(gpu_->forward(std::vector<SequenceChunk>{c}), std::invalid_argument);
  EXPECT_EQ(gpu_->sequence_length(s), 10);
  const std::vector<int32_t> keep{1, 1};
  EXPECT_THROW(gpu_->compact_kv(s, 4, keep), std::invalid_argument);
  EXPECT_EQ(gpu_->sequence_length(s), 10);
  const std::vector<int32_t> big(65, 3);
  SequenceChunk t = make_chunk(s, 1, big, 0, greedy());
  std::vector<int32_t> chain(65);
  for (int i = 0; i < 65; ++i) chain[i] = i - 1;
  t.parents = chain;
  EXPECT_THROW(gpu_->forward(std::vector<SequenceChunk>{t}), std::invalid_argument);
  EXPECT_EQ(gpu_->sequence_length(s), 10);
}

}  // namespace
}  // namespace longtail::policy::testing
