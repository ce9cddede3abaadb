// `longtail-replay --export jsonl`: recorded rollouts as rollout JSONL (rollout/rollout_jsonl.h), so
// tools outside C++ can read a trajectory log. Every line has the format's five fields with "step"
// = the round, so the output replays like the input; lines from a log also carry the rest of the
// trajectory: uid, group_id, behaviour_logprobs, policy_versions, current_logprobs, finish_reason,
// metadata, reward (null when none was set), log_ratio, weight, truncated_weight, token_tis and the
// round's policy_version (a NaN logprob, "unknown", is written as null).
#pragma once

#include <cstdint>
#include <filesystem>
#include <ostream>

#include "rollout/replay_input.h"

namespace longtail::tools {

// Writes `file` (a trajectory log or rollout JSONL) to `out`; returns the number of lines. JSONL
// input follows read_replay_input's rules (round_size, on_error); a log is read to its first corrupt
// record (kSkip) or throws there (kStop).
int64_t export_jsonl(const std::filesystem::path& file, int32_t round_size, rollout::OnError on_error,
                     std::ostream& out);

}  // namespace longtail::tools
