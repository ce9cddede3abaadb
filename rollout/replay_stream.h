// `longtail-replay --stream ENDPOINT`: re-sends recorded rollouts to a trainer as BATCH messages.
// The protocol lives in trainer_bridge, a layer above rollout, so the replay tool does not link it:
// it hands a trajectory log to the bridge's `longtail-stream` executable (installed next to
// longtail-replay). JSONL input is first written as a trajectory log, one round per recorded round.
#pragma once

#include <filesystem>
#include <string>

#include "rollout/replay.h"

namespace longtail::rollout {

struct StreamRequest {
  std::string endpoint;           // where longtail-stream binds (the trainer connects)
  double batches_per_second = 0;  // 0 = as fast as credit allows
  int trajectories_per_batch = 0; // 0 = one batch per recorded round
};

// Writes the rounds of `input` as a trajectory log at `log` (behaviour logprobs unknown: NaN,
// policy version = round, finish reason "stop").
void write_replay_input_as_log(const ReplayInput& input, const std::filesystem::path& log);

// Replaces the current process with longtail-stream streaming `log`; returns only on failure, with
// the reason in the return value.
std::string exec_stream(const std::filesystem::path& log, const StreamRequest& request);

}  // namespace longtail::rollout
