// The trace-forced workload of the speculative-step and accounting tests: round s replays sample s
// of every prompt of a trace excerpt, one group of one sample per prompt and round.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "rollout/forced_trajectories.h"
#include "rollout/types.h"

namespace longtail::rollout::testing {

inline std::vector<std::vector<GroupRequest>> trace_rounds(const std::vector<RecordedRollout>& trace, int32_t rounds,
                                                           int32_t max_new_tokens) {
  std::vector<std::string> prompts;
  std::map<std::string, std::vector<int32_t>> prompt_tokens;
  for (const RecordedRollout& r : trace) {
    if (!prompt_tokens.count(r.prompt_id)) prompts.push_back(r.prompt_id);
    prompt_tokens[r.prompt_id] = r.prompt_tokens;
  }
  std::vector<std::vector<GroupRequest>> out;
  for (int32_t step = 0; step < rounds; ++step) {
    std::vector<GroupRequest> round;
    for (const std::string& p : prompts) {
      GroupRequest g;
      g.group_id = p + "/" + std::to_string(step);
      g.prompt_id = p;
      g.prompt_tokens = prompt_tokens[p];
      g.max_new_tokens = max_new_tokens;
      g.trace_sample_offset = step;
      round.push_back(g);
    }
    out.push_back(round);
  }
  return out;
}

}  // namespace longtail::rollout::testing
