// Synthetic batches for the bridge tests: deterministic contents so a round trip can be compared
// field by field without a model.
#pragma once

#include <cstdint>
#include <string>

#include "trainer_bridge/protocol.h"

namespace longtail::bridge::testing {

inline rollout::Trajectory make_trajectory(uint64_t uid, int prompt_len, int response_len, bool stale = false) {
  rollout::Trajectory t;
  t.uid = uid;
  t.group_id = "g" + std::to_string(uid / 4);
  t.prompt_id = "p" + std::to_string(uid / 4);
  t.sample_index = static_cast<int32_t>(uid % 4);
  for (int i = 0; i < prompt_len; ++i) t.prompt_tokens.push_back(static_cast<int32_t>((uid * 31 + i) % 1000));
  for (int i = 0; i < response_len; ++i) {
    t.response_tokens.push_back(static_cast<int32_t>((uid * 17 + i * 7) % 1000));
    t.behaviour_logprobs.push_back(-0.01f * static_cast<float>(i % 50));
    t.policy_versions.push_back(stale && i < response_len / 2 ? 3 : 4);
    if (stale) {
      t.current_logprobs.push_back(-0.02f * static_cast<float>(i % 50));
      t.token_tis.push_back(1.0f);
    }
  }
  t.finish_reason = uid % 2 ? rollout::FinishReason::kStop : rollout::FinishReason::kLength;
  t.metadata = std::string("meta\0data", 9);
  if (uid % 3 == 0) {
    t.reward = 0.5;
    t.has_reward = true;
  }
  t.log_ratio = stale ? -0.25 : 0;
  t.weight = stale ? 0.7788 : 1;
  t.truncated_weight = t.weight;
  return t;
}

inline Batch make_batch(int trajectories, int prompt_len, int response_len, uint64_t first_uid = 0) {
  Batch b;
  b.round = 7;
  b.policy_version = 4;
  for (int i = 0; i < trajectories; ++i)
    b.trajectories.push_back(make_trajectory(first_uid + i, prompt_len, response_len, i % 2 == 1));
  b.importance.trajectories = trajectories;
  b.importance.off_policy_trajectories = trajectories / 2;
  b.importance.ess = trajectories * 0.9;
  b.importance.ess_ratio = 0.9;
  b.importance.lr_scale = 0.9486;
  b.importance.baselines.push_back({"g0", 0.25, true});
  b.stats.round = 7;
  b.stats.trajectories = trajectories;
  b.stats.makespan_s = 1.5;
  return b;
}

}  // namespace longtail::bridge::testing
