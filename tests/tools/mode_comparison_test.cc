// The mode comparison longtail-demo and longtail-bench-rounds share (tools/mode_comparison.h): what
// counts as a changed trajectory (tokens, logprob bits, finish reason, a missing or extra uid),
// where a divergence starts, the settings of a mode, and a run of every mode on the bundled
// checkpoint emitting the same trajectories.
#include "tools/mode_comparison.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>

namespace longtail::tools {
namespace {

rollout::Trajectory trajectory(uint64_t uid, std::vector<int32_t> tokens, std::vector<float> logprobs) {
  rollout::Trajectory t;
  t.uid = uid;
  t.response_tokens = std::move(tokens);
  t.behaviour_logprobs = std::move(logprobs);
  return t;
}

ModeRun run_of(std::vector<rollout::Trajectory> ts) {
  ModeRun r;
  for (auto& t : ts) r.trajectories[t.uid] = std::move(t);
  return r;
}

TEST(ModeComparison, MismatchesCountEveryKindOfChange) {
  const ModeRun base = run_of({trajectory(1, {5, 6, 7}, {-0.5f, -1.f, -2.f}), trajectory(2, {8}, {-0.25f})});
  EXPECT_EQ(mismatches(base, base), 0);

  ModeRun token = base;
  token.trajectories[1].response_tokens[2] = 9;
  EXPECT_EQ(mismatches(base, token), 1);

  ModeRun bits = base;  // the same value to print, another float
  bits.trajectories[1].behaviour_logprobs[0] = std::nextafter(-0.5f, 0.f);
  EXPECT_EQ(mismatches(base, bits), 1);

  ModeRun finish = base;
  finish.trajectories[2].finish_reason = rollout::FinishReason::kStop;
  EXPECT_EQ(mismatches(base, finish), 1);

  ModeRun missing = base;
  missing.trajectories.erase(2);
  EXPECT_EQ(mismatches(base, missing), 1);

  ModeRun extra = base;
  extra.trajectories[3] = trajectory(3, {1}, {-1.f});
  EXPECT_EQ(mismatches(base, extra), 1);
}

TEST(ModeComparison, TraceForcedRunsCompareLogprobsWhereBothModesScoredTheToken) {
  const float unscored = std::numeric_limits<float>::quiet_NaN();
  const ModeRun off = run_of({trajectory(1, {5, 6, 7}, {-0.5f, unscored, unscored})});
  ModeRun das = run_of({trajectory(1, {5, 6, 7}, {-0.5f, -1.f, unscored})});  // 6 was drafted and verified
  EXPECT_EQ(mismatches(off, das), 1);  // bit for bit, a scored token is not an unscored one
  EXPECT_EQ(mismatches(off, das, LogprobRule::kWhereBothScored), 0);
  das.trajectories[1].behaviour_logprobs[0] = -0.75f;  // both scored it, differently
  EXPECT_EQ(mismatches(off, das, LogprobRule::kWhereBothScored), 1);
  das = run_of({trajectory(1, {5, 6, 8}, {-0.5f, unscored, unscored})});  // tokens still count
  EXPECT_EQ(mismatches(off, das, LogprobRule::kWhereBothScored), 1);
}

TEST(ModeComparison, NanLogprobsAreEqualWhenTheirBitsAre) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_TRUE(same_bits({nan, -1.f}, {nan, -1.f}));
  EXPECT_FALSE(same_bits({nan}, {-1.f}));
  EXPECT_FALSE(same_bits({-1.f}, {-1.f, -2.f}));
  EXPECT_TRUE(same_bits({}, {}));
}

TEST(ModeComparison, DivergenceFindsTheFirstDifferingPosition) {
  const ModeRun base = run_of({trajectory(1, {5, 6, 7, 8}, {-0.5f, -1.f, -2.f, -3.f}),
                               trajectory(2, {4, 4}, {-0.1f, -0.2f}), trajectory(3, {1}, {-1.f})});
  ModeRun m = base;
  m.trajectories[1].response_tokens = {5, 6, 9, 9};
  m.trajectories[1].behaviour_logprobs = {-0.5f, -1.25f, -2.5f, -1.f};
  m.trajectories[2].behaviour_logprobs = {-0.1f, -0.3f};  // same tokens, other logprobs
  const Divergence d = divergence(base, m);
  EXPECT_EQ(d.sequences, 3);
  EXPECT_EQ(d.differing, 1);
  ASSERT_EQ(d.first_position.size(), 1u);
  EXPECT_EQ(d.first_position[0], 2);
  ASSERT_EQ(d.logprob_gap.size(), 1u);
  EXPECT_DOUBLE_EQ(d.logprob_gap[0], 0.5);
  EXPECT_DOUBLE_EQ(d.max_logprob_diff_before, 0.25);
  EXPECT_EQ(d.logprobs_only, 1);
}

TEST(ModeComparison, ModeSettingsTurnSpeculationOffAndSetOverprovision) {
  rollout::EngineSettings base;
  base.engine.budgets.mode = drafter::BudgetMode::kFixed;
  const rollout::EngineSettings off = mode_settings(base, {"off", false, 1.0});
  EXPECT_EQ(off.engine.budgets.mode, drafter::BudgetMode::kOff);
  const rollout::EngineSettings apr = mode_settings(base, {"das+apr", true, 2.5});
  EXPECT_EQ(apr.engine.budgets.mode, drafter::BudgetMode::kFixed);  // the base's own budgets
  EXPECT_DOUBLE_EQ(apr.engine.overprovision, 2.5);
  EXPECT_TRUE(apr.engine.trajectory_log.empty());  // no log asked for, none made up
  base.engine.trajectory_log = "/tmp/run.ltlog";
  EXPECT_EQ(mode_settings(base, {"das+partial f=2", true, 2.0}).engine.trajectory_log, "/tmp/run.ltlog.das+partial_f=2");
  EXPECT_EQ(mode_settings(base, {"off", false, 1.0}).engine.trajectory_log, "/tmp/run.ltlog.off");
}

std::vector<rollout::GroupRequest> groups(int rounds) {
  std::vector<rollout::GroupRequest> out;
  for (int r = 0; r < rounds; ++r) {
    rollout::GroupRequest g;
    g.group_id = "r" + std::to_string(r);
    g.prompt_id = "p";
    g.prompt_tokens = {5, 9, 17, 33};
    g.n = 2;
    g.max_new_tokens = 12;
    g.sampling.temperature = 1.0f;
    g.sampling.seed = 7;
    out.push_back(std::move(g));
  }
  return out;
}

TEST(ModeComparison, EveryModeEmitsTheBaselinesTrajectoriesOnTheCpuBackend) {
  rollout::EngineSettings base;
  base.engine.round_groups = 1;
  base.backend.num_threads = 1;
  ModeRunOptions o;
  o.model = std::string(LONGTAIL_SOURCE_DIR) + "/configs/models/tiny-qwen3";
  o.rounds = 2;
  o.update_weights = true;
  int prepared = 0;
  o.prepare = [&](rollout::Engine&) { ++prepared; };
  const auto g = groups(2);
  const ModeRun off = run_mode({"off", false, 1.0}, base, g, o);
  const ModeRun das = run_mode({"das", true, 1.0}, base, g, o);
  const ModeRun apr = run_mode({"das+apr", true, 2.0}, base, g, o);
  EXPECT_EQ(prepared, 3);
  ASSERT_EQ(off.rounds.size(), 2u);
  EXPECT_EQ(off.trajectories.size(), 4u);
  EXPECT_EQ(off.stats.tokens_drafted, 0);
  EXPECT_GT(das.stats.tokens_drafted, 0);  // the comparison is not between two plain runs
  EXPECT_EQ(mismatches(off, das), 0);
  EXPECT_EQ(mismatches(off, apr), 0);

  o.rounds = 3;  // more rounds than the groups submitted make
  EXPECT_THROW(run_mode({"off", false, 1.0}, base, g, o), std::runtime_error);
}

}  // namespace
}  // namespace longtail::tools
