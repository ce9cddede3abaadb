// The rollout engine on the CUDA backend with the sampler's min_tokens mask and processed
// logprobs (kernels/reference.h's rules 0 and 3, now on the device): in deterministic mode
// speculation on and off give token- and logprob-identical trajectories while drafts propose the
// stop token at masked positions; the stop token never ends a sample before min_tokens; processed
// logprobs come with the same draws as raw ones, are >= them, and are 0 when greedy. Random Qwen2
// checkpoint (head_dim 64: the tensor-core attention path), greedy and T = 1 with top-p.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "gpu_test_util.h"
#include "random_checkpoint.h"
#include "rollout/engine.h"
#include "tests/rollout/engine_test_util.h"

namespace longtail::policy::testing {
namespace {

namespace fs = std::filesystem;
using rollout::Engine;
using rollout::EngineOptions;
using rollout::GroupRequest;
using rollout::Trajectory;

using ByKey = std::map<std::pair<std::string, int32_t>, Trajectory>;

class CudaEngine : public ::testing::Test {
 protected:
  void SetUp() override {
    LT_SKIP_WITHOUT_GPU();
    dir_ = fs::temp_directory_path() / ("longtail_cuda_engine_" + std::to_string(::getpid()));
    RandomCheckpointShape s;
    s.max_positions = 1024;
    write_random_checkpoint(dir_, s, 31);
    vocab_ = s.vocab;
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  // One round of all groups on a fresh deterministic CUDA engine, after `history` (drafts).
  ByKey run(const std::vector<GroupRequest>& groups, bool speculate,
            const std::vector<Trajectory>& history = {}, int64_t* drafted = nullptr) {
    BackendOptions bo = small_cuda_options(1 << 17);
    bo.deterministic = true;
    EngineOptions o;
    if (speculate) {
      o.budgets.mode = drafter::BudgetMode::kFixed;
      o.budgets.max_budget = 6;
      o.budgets.max_tokens_per_step = 1024;
    } else {
      o.budgets.mode = drafter::BudgetMode::kOff;
    }
    Engine e(make_backend(dir_, bo), o);
    EXPECT_TRUE(e.samples_min_tokens());
    EXPECT_TRUE(e.samples_processed_logprobs());
    EXPECT_TRUE(e.samples_min_p());
    for (const Trajectory& t : history) e.add_history(t.prompt_id, t.prompt_tokens, t.response_tokens, 0);
    const rollout::testing::RunResult r = rollout::testing::run_rounds(e, {groups});
    if (drafted) *drafted = r.stats.tokens_drafted;
    ByKey out;
    for (const auto& [uid, t] : r.by_uid) out[{t.group_id, t.sample_index}] = t;
    return out;
  }

  fs::path dir_;
  int32_t vocab_ = 0;
};

void expect_same(const Trajectory& a, const Trajectory& b) {
  EXPECT_EQ(a.response_tokens, b.response_tokens) << a.group_id << " / " << a.sample_index;
  ASSERT_EQ(a.behaviour_logprobs.size(), b.behaviour_logprobs.size());
  for (size_t i = 0; i < a.behaviour_logprobs.size(); ++i)
    EXPECT_EQ(a.behaviour_logprobs[i], b.behaviour_logprobs[i]) << a.group_id << " token " << i;
  EXPECT_EQ(a.finish_reason, b.finish_reason);
}

TEST_F(CudaEngine, MinTokensAndProcessedLogprobsStayLosslessUnderSpeculation) {
  constexpr int32_t kMinTokens = 10;
  for (const float temperature : {0.0f, 1.0f}) {
    SCOPED_TRACE(temperature);
    rollout::SamplingParams sp;
    sp.temperature = temperature;
    sp.top_p = temperature > 0 ? 0.9f : 1.0f;
    sp.seed = 5;
    // The stop token: what sample 0 of group m-0 draws first without a mask.
    GroupRequest probe = rollout::testing::make_groups("m", 1, 1, 12, 4, vocab_, sp)[0];
    probe.stop_tokens = {vocab_ - 1};
    const int32_t stop = run({probe}, false).begin()->second.response_tokens.at(0);

    std::vector<GroupRequest> groups = rollout::testing::make_groups("m", 6, 4, 12, 40, vocab_, sp);
    for (auto& g : groups) g.stop_tokens = {stop};
    const ByKey unmasked = run(groups, false);
    EXPECT_EQ(unmasked.at({"m-0", 0}).response_tokens, std::vector<int32_t>{stop});  // ends at once

    for (auto& g : groups) g.sampling.min_tokens = kMinTokens;
    std::vector<GroupRequest> processed = groups;
    for (auto& g : processed) g.sampling.logprobs_mode = "processed";
    const ByKey raw = run(groups, false), off = run(processed, false);
    int strictly = 0;
    for (const auto& [key, t] : off) {
      ASSERT_GE(t.response_tokens.size(), static_cast<size_t>(kMinTokens));
      for (int32_t i = 0; i < kMinTokens; ++i) EXPECT_NE(t.response_tokens[i], stop) << "token " << i;
      EXPECT_EQ(std::count(t.response_tokens.begin(), t.response_tokens.end(), stop),
                t.finish_reason == rollout::FinishReason::kStop ? 1 : 0);
      const Trajectory& r = raw.at(key);
      ASSERT_EQ(t.response_tokens, r.response_tokens);  // the logprob mode never moves a draw
      for (size_t i = 0; i < t.behaviour_logprobs.size(); ++i) {
        const float lp = t.behaviour_logprobs[i];
        if (temperature == 0.0f) {
          EXPECT_EQ(lp, 0.0f) << "token " << i;
          continue;
        }
        EXPECT_LE(lp, 0.0f);
        EXPECT_GE(lp, r.behaviour_logprobs[i] - 1e-6f) << "token " << i;
        strictly += lp > r.behaviour_logprobs[i] + 1e-4f;
      }
    }
    if (temperature > 0) EXPECT_GT(strictly, 0);

    // Drafts from histories that propose the stop token at masked positions, on every sample.
    std::vector<Trajectory> history;
    for (const auto& [key, t] : off) {
      Trajectory h = t;
      h.response_tokens.insert(h.response_tokens.begin() + 2, stop);
      h.response_tokens.insert(h.response_tokens.begin(), stop);
      history.push_back(std::move(h));
    }
    int64_t drafted = 0;
    const ByKey on = run(processed, true, history, &drafted);
    ASSERT_EQ(on.size(), off.size());
    for (const auto& [key, t] : off) expect_same(t, on.at(key));
    EXPECT_GT(drafted, 0);
  }
}

}  // namespace
}  // namespace longtail::policy::testing
