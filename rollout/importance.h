// Batch-level importance statistics for trainers consuming stale (off-policy) trajectories. The
// formulas and their sources are documented in importance.cc's implementation header comment.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "rollout/trajectory.h"

namespace longtail::rollout {

struct GroupBaseline {
  std::string group_id;
  double baseline = 0;     // sum w_i^2 R_i / sum w_i^2 (VCPO minimum-variance baseline)
  bool valid = false;      // false until every trajectory of the group has a reward
};

struct BatchImportance {
  int32_t trajectories = 0;
  int32_t off_policy_trajectories = 0;  // trajectories with any token from an older version
  double ess = 0;                       // (sum w)^2 / sum w^2 over truncated weights
  double ess_ratio = 1;                 // rho = ESS / B
  double lr_scale = 1;                  // sqrt(min(1, rho))
  double max_weight = 1, min_weight = 1, mean_log_ratio = 0;
  std::vector<GroupBaseline> baselines; // per group, when rewards are attached
};

// Fills t.log_ratio, weight, truncated_weight and token_tis from behaviour_logprobs and
// current_logprobs (no current logprobs: on-policy, log_ratio 0, weights 1, token_tis empty).
// `weight_cap` is C in min(w, C); `token_ratio_cap` is C_tok in min(pi/mu, C_tok). Throws
// std::invalid_argument when the per-token arrays disagree in length or a cap is not positive.
void compute_trajectory_importance(Trajectory& t, double weight_cap, double token_ratio_cap);

// Batch statistics over trajectories whose per-trajectory fields are already computed.
// `policy_version` is the version live when the batch is emitted: a trajectory with any token of
// an older version counts as off-policy. Groups appear in baselines in first-appearance order.
BatchImportance compute_batch_importance(const std::vector<Trajectory>& trajectories,
                                         int64_t policy_version);

}  // namespace longtail::rollout
