// The CUDA backend against the fp32 CPU reference on one random BF16 checkpoint with head size 64
// (the kernels/ attention fast path): a mixed batch of prompts crossing block boundaries, then
// decode steps where both backends are fed the same tokens, greedy and T = 1 with top-k/top-p.
// Tokens must agree except at near-ties; logprobs must agree closely.
#include <gtest/gtest.h>

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

struct Compare {
  int positions = 0, mismatches = 0;
  double max_diff = 0, sum_diff = 0;
};

Compare run_comparison(Backend& cpu, Backend& gpu, const SamplingParams& sp, int steps,
                       uint64_t seed) {
  std::mt19937 rng(static_cast<uint32_t>(seed));
  const int vocab = cpu.config().vocab_size;
  const std::vector<int> lengths{1, 7, 16, 17, 45, 130};
  std::vector<std::vector<int32_t>> prompts;
  for (int len : lengths) {
    std::vector<int32_t> p(static_cast<size_t>(len));
    for (auto& t : p) t = static_cast<int32_t>(rng() % static_cast<uint32_t>(vocab));
    prompts.push_back(p);
  }
  std::vector<int64_t> cs, gs;
  std::vector<SequenceChunk> cc, gc;
  for (size_t i = 0; i < prompts.size(); ++i) {
    cs.push_back(cpu.create_sequence());
    gs.push_back(gpu.create_sequence());
    const int32_t last = static_cast<int32_t>(prompts[i].size()) - 1;
    cc.push_back(make_chunk(cs.back(), 1000 + i, prompts[i], last, sp));
    gc.push_back(make_chunk(gs.back(), 1000 + i, prompts[i], last, sp));
  }
  Compare r;
  std::vector<std::vector<int32_t>> next(prompts.size());
  for (int step = 0; step <= steps; ++step) {
    const auto co = cpu.forward(cc);
    const auto go = gpu.forward(gc);
    EXPECT_EQ(co.size(), prompts.size());
    EXPECT_EQ(go.size(), prompts.size());
    for (size_t i = 0; i < co.size() && i < go.size(); ++i) {
      ++r.positions;
      if (co[i].sampled != go[i].sampled) {
        ++r.mismatches;
        // Greedy: a flip between near-equal logits, so the two chosen tokens' logprobs are close
        // too. (At T > 0 a flip is a near-tie of Gumbel keys z + g, whose logprobs may differ.)
        if (sp.temperature == 0.0f)
          EXPECT_NEAR(co[i].sampled_logprob, go[i].sampled_logprob, 5e-2)
              << "step " << step << " seq " << i << ": cpu " << co[i].sampled << " gpu "
              << go[i].sampled;
      } else {
        const double d = std::fabs(co[i].sampled_logprob - go[i].sampled_logprob);
        r.max_diff = std::max(r.max_diff, d);
        r.sum_diff += d;
      }
      next[i] = {co[i].sampled};  // both follow the reference's path
      cc[i] = make_chunk(cs[i], 1000 + i, next[i], 0, sp);
      gc[i] = make_chunk(gs[i], 1000 + i, next[i], 0, sp);
    }
  }
  return r;
}

class CudaVsCpu : public ::testing::Test {
 protected:
  void SetUp() override {
    LT_SKIP_WITHOUT_GPU();
    dir_ = fs::temp_directory_path() / ("longtail_cuda_vs_cpu_" + std::to_string(::getpid()));
    write_random_checkpoint(dir_, RandomCheckpointShape{}, 7);
    BackendOptions c;
    c.kind = "cpu";
    cpu_ = make_backend(dir_, c);
    gpu_ = make_cuda_backend(dir_, small_cuda_options());
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }
  fs::path dir_;
  std::unique_ptr<Backend> cpu_, gpu_;
};

TEST_F(CudaVsCpu, GreedyTokensAndLogprobsAgree) {
  const Compare r = run_comparison(*cpu_, *gpu_, greedy(), 24, 1);
  std::cout << "[cuda vs cpu, greedy] " << r.positions << " positions, " << r.mismatches
            << " mismatches, max |dlogprob| " << r.max_diff << ", mean "
            << r.sum_diff / std::max(1, r.positions - r.mismatches) << "\n";
  EXPECT_LE(r.mismatches, r.positions / 20);
  EXPECT_LE(r.max_diff, 5e-2);
  EXPECT_LE(r.sum_diff / std::max(1, r.positions - r.mismatches), 1e-2);
}

TEST_F(CudaVsCpu, SampledTokensAgreeAtTemperatureOneWithTopKTopP) {
  SamplingParams sp;
  sp.temperature = 1.0f;
  sp.top_k = 50;
  sp.top_p = 0.9f;
  sp.seed = 1234;
  const Compare r = run_comparison(*cpu_, *gpu_, sp, 24, 2);
  std::cout << "[cuda vs cpu, T=1 top-k 50 top-p 0.9] " << r.positions << " positions, "
            << r.mismatches << " mismatches, max |dlogprob| " << r.max_diff << "\n";
  EXPECT_LE(r.mismatches, r.positions / 15);  // a broken sampler mismatches almost always
  EXPECT_LE(r.max_diff, 5e-2);
}

TEST_F(CudaVsCpu, TeacherForcedLogprobsOfALongSequenceAgree) {
  std::mt19937 rng(3);
  std::vector<int32_t> tokens(300);
  for (auto& t : tokens) t = static_cast<int32_t>(rng() % 1000u);
  const int64_t a = cpu_->create_sequence(), b = gpu_->create_sequence();
  const auto co = cpu_->forward(std::vector<SequenceChunk>{make_chunk(a, 9, tokens, 0, greedy())});
  const auto go = gpu_->forward(std::vector<SequenceChunk>{make_chunk(b, 9, tokens, 0, greedy())});
  ASSERT_EQ(co.size(), tokens.size());
  ASSERT_EQ(go.size(), tokens.size());
  double max_diff = 0;
  for (size_t i = 0; i + 1 < tokens.size(); ++i)
    max_diff = std::max(max_diff, std::fabs(static_cast<double>(co[i].next_input_logprob) -
                                            go[i].next_input_logprob));
  std::cout << "[cuda vs cpu, teacher-forced 300 tokens] max |dlogprob| " << max_diff << "\n";
  EXPECT_LE(max_diff, 5e-2);
  EXPECT_TRUE(std::isnan(go.back().next_input_logprob));
}

}  // namespace
}  // namespace longtail::policy::testing
