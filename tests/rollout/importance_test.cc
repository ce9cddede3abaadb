// Importance statistics (rollout/importance.cc) against values computed by hand.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "rollout/importance.h"

namespace longtail::rollout {
namespace {

Trajectory traj(const std::string& group, std::vector<float> mu, std::vector<float> cur,
                std::vector<int64_t> versions) {
  Trajectory t;
  t.group_id = group;
  t.response_tokens.assign(mu.size(), 7);
  t.behaviour_logprobs = std::move(mu);
  t.current_logprobs = std::move(cur);
  t.policy_versions = std::move(versions);
  return t;
}

TEST(Importance, TrajectoryWeightsAndTokenRatios) {
  // Differences 0.5, 1.0, -1.0: log ratio 0.5, w = e^0.5.
  Trajectory t = traj("g", {-1.0f, -2.0f, -0.5f}, {-0.5f, -1.0f, -1.5f}, {0, 0, 1});
  compute_trajectory_importance(t, 8.0, 2.0);
  EXPECT_NEAR(t.log_ratio, 0.5, 1e-6);
  EXPECT_NEAR(t.weight, 1.6487212707, 1e-6);
  EXPECT_NEAR(t.truncated_weight, 1.6487212707, 1e-6);
  ASSERT_EQ(t.token_tis.size(), 3u);
  EXPECT_NEAR(t.token_tis[0], 1.6487212707, 1e-6);
  EXPECT_NEAR(t.token_tis[1], 2.0, 1e-6);  // e^1 = 2.718 capped at 2
  EXPECT_NEAR(t.token_tis[2], 0.3678794412, 1e-6);
  compute_trajectory_importance(t, 1.5, 2.0);
  EXPECT_NEAR(t.truncated_weight, 1.5, 1e-12);
}

TEST(Importance, OnPolicyTrajectoryHasUnitWeight) {
  Trajectory t = traj("g", {-1.0f, -2.0f}, {}, {3, 3});
  t.log_ratio = 5;
  compute_trajectory_importance(t, 8.0, 2.0);
  EXPECT_EQ(t.log_ratio, 0);
  EXPECT_EQ(t.weight, 1);
  EXPECT_EQ(t.truncated_weight, 1);
  EXPECT_TRUE(t.token_tis.empty());
}

TEST(Importance, RejectsMismatchedArraysAndBadCaps) {
  Trajectory t = traj("g", {-1.0f, -2.0f}, {-1.0f}, {0, 0});
  EXPECT_THROW(compute_trajectory_importance(t, 8.0, 2.0), std::invalid_argument);
  Trajectory u = traj("g", {-1.0f}, {}, {0});
  EXPECT_THROW(compute_trajectory_importance(u, 0.0, 2.0), std::invalid_argument);
  EXPECT_THROW(compute_trajectory_importance(u, 8.0, -1.0), std::invalid_argument);
}

TEST(Importance, BatchEssLearningRateAndBaselines) {
  // Truncated weights 1, 2, 4 (the last from w = e^3 = 20.09 capped at C = 4).
  std::vector<Trajectory> b;
  b.push_back(traj("a", {-1.0f}, {}, {2}));
  b.push_back(traj("a", {-1.0f}, {-1.0f + std::log(2.0f)}, {1}));
  b.push_back(traj("b", {-2.0f}, {1.0f}, {1}));
  for (Trajectory& t : b) compute_trajectory_importance(t, 4.0, 2.0);
  EXPECT_NEAR(b[1].truncated_weight, 2.0, 1e-6);
  EXPECT_NEAR(b[2].weight, std::exp(3.0), 1e-4);
  EXPECT_NEAR(b[2].truncated_weight, 4.0, 1e-12);
  b[0].reward = 1.0;
  b[0].has_reward = true;
  b[1].reward = 0.0;
  b[1].has_reward = true;

  const BatchImportance s = compute_batch_importance(b, 2);
  EXPECT_EQ(s.trajectories, 3);
  EXPECT_EQ(s.off_policy_trajectories, 2);          // versions 1 < 2
  EXPECT_NEAR(s.ess, 49.0 / 21.0, 1e-6);           // (1+2+4)^2 / (1+4+16)
  EXPECT_NEAR(s.ess_ratio, 49.0 / 63.0, 1e-6);
  EXPECT_NEAR(s.lr_scale, std::sqrt(49.0 / 63.0), 1e-6);
  EXPECT_NEAR(s.max_weight, std::exp(3.0), 1e-4);
  EXPECT_NEAR(s.min_weight, 1.0, 1e-12);
  EXPECT_NEAR(s.mean_log_ratio, (0 + std::log(2.0) + 3.0) / 3.0, 1e-6);
  ASSERT_EQ(s.baselines.size(), 2u);
  EXPECT_EQ(s.baselines[0].group_id, "a");
  EXPECT_TRUE(s.baselines[0].valid);
  EXPECT_NEAR(s.baselines[0].baseline, (1 * 1.0 + 4 * 0.0) / (1 + 4), 1e-9);  // 0.2
  EXPECT_EQ(s.baselines[1].group_id, "b");
  EXPECT_FALSE(s.baselines[1].valid);               // no reward yet
}

TEST(Importance, EmptyBatch) {
  const BatchImportance s = compute_batch_importance({}, 0);
  EXPECT_EQ(s.trajectories, 0);
  EXPECT_EQ(s.lr_scale, 1);
}

}  // namespace
}  // namespace longtail::rollout
