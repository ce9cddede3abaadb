// Batch-level importance statistics for trainers consuming stale (off-policy) trajectories. The
// formulas and their sources are documented in importance.cc's implementation header comment.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

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

}  // namespace longtail::rollout
