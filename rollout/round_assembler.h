// Turns the completed groups of a round into the RoundBatch the trainer receives: trajectories in
// group and sample order, each with its importance fields, plus batch importance and round stats.
#pragma once

#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "rollout/sequence.h"
#include "rollout/types.h"

namespace longtail::rollout {

struct RoundInputs {
  int64_t round = 0;
  int64_t policy_version = 0;
  double importance_cap = 8.0;
  double token_ratio_cap = 2.0;
  RoundStats stats;  // counters accumulated by the engine (steps, forwards, drafts, makespan...)
  const std::unordered_map<uint64_t, double>* rewards = nullptr;  // rewards set before emission
};

RoundBatch assemble_round(const std::vector<std::unique_ptr<Group>>& groups,
                          const RoundInputs& in);

}  // namespace longtail::rollout
