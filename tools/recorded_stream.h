// Recorded rollouts to a trainer as BATCH messages, in process: what longtail-stream and
// `longtail-replay --stream` both do. A trajectory log is streamed record for record (logprobs,
// versions, importance fields as recorded); rollout JSONL is read with the replay tool's rules
// (rollout/replay_input.h) and each rollout becomes a trajectory with unknown logprobs (NaN), policy
// version = its round and finish reason "stop", one batch per round unless a batch size is given.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>

#include "rollout/replay_input.h"
#include "trainer_bridge/trajectory_stream.h"

namespace longtail::tools {

// The rounds of `input` as log records: each round's trajectories, then its boundary.
bridge::RecordSource records_of(rollout::ReplayInput input);

// Binds opts.session.endpoint and streams `file` (a trajectory log or rollout JSONL; JSONL lines
// without "step" form rounds of round_size prompts). Throws rollout::ReplayInputError on bad input
// (with kStop) and std::runtime_error when no trainer connects.
bridge::StreamResult stream_recorded(const std::filesystem::path& file, const bridge::StreamOptions& opts,
                                     int32_t round_size, rollout::OnError on_error,
                                     const std::atomic<bool>* stop);

}  // namespace longtail::tools
