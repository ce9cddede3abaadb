// Round batch assembly: trajectory records, importance statistics and per-round counters.
#include "rollout/round_assembler.h"

#include "rollout/importance.h"

namespace longtail::rollout {

RoundBatch assemble_round(const std::vector<std::unique_ptr<Group>>& groups,
                          const RoundInputs& in) {
  RoundBatch b;
  b.round = in.round;
  b.policy_version = in.policy_version;
  b.stats = in.stats;
  b.stats.round = in.round;
  b.stats.groups = static_cast<int32_t>(groups.size());
  int64_t off_policy_tokens = 0;
  for (const auto& g : groups) {
    for (const auto& s : g->sequences) {
      Trajectory t = make_trajectory(*s);
      if (in.rewards) {
        auto it = in.rewards->find(t.uid);
        if (it != in.rewards->end()) {
          t.reward = it->second;
          t.has_reward = true;
        }
      }
      compute_trajectory_importance(t, in.importance_cap, in.token_ratio_cap);
      for (int64_t v : t.policy_versions) off_policy_tokens += v < in.policy_version ? 1 : 0;
      b.stats.response_tokens += static_cast<int64_t>(t.response_tokens.size());
      b.trajectories.push_back(std::move(t));
    }
  }
  b.stats.trajectories = static_cast<int32_t>(b.trajectories.size());
  b.stats.off_policy_token_share =
      b.stats.response_tokens > 0 ? double(off_policy_tokens) / double(b.stats.response_tokens) : 0;
  b.importance = compute_batch_importance(b.trajectories, in.policy_version);
  return b;
}

}  // namespace longtail::rollout
