// A finished (or carried-over) rollout as the trainer receives it: the unit that the round
// assembler batches, the trajectory log records, the replay tool reads and the bridge streams.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "rollout/finish_reason.h"

namespace longtail::rollout {

struct Trajectory {
  uint64_t uid = 0;                     // unique per sequence within a worker run
  std::string group_id;
  std::string prompt_id;
  int32_t sample_index = 0;             // 0..n-1 within the group
  std::vector<int32_t> prompt_tokens;
  std::vector<int32_t> response_tokens;
  std::vector<float> behaviour_logprobs;  // mu: logprob of each response token when sampled
  std::vector<int64_t> policy_versions;   // version of the policy that sampled each token
  // pi_current: logprob of each response token under the latest policy, when a re-prefill after a
  // weight update computed it (tokens sampled by the latest version copy their behaviour logprob);
  // empty when the trajectory never crossed a weight update.
  std::vector<float> current_logprobs;
  FinishReason finish_reason = FinishReason::kLength;
  std::string metadata;                 // passed through from the group request
  double reward = 0;                    // set via Engine::set_reward
  bool has_reward = false;
  // Importance statistics of this trajectory (see importance.h); zeros/ones when on-policy.
  double log_ratio = 0;                 // sum_t (log pi_current - log mu)
  double weight = 1;                    // exp(log_ratio)
  double truncated_weight = 1;          // min(weight, C)
  std::vector<float> token_tis;         // min(pi/mu, C_tok) per response token; empty = all 1
};

}  // namespace longtail::rollout
