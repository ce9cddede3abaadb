// Trace-forced generation for benchmarks: recorded responses keyed by (prompt id, sample index),
// loaded from the rollout-JSONL format (rollout/rollout_jsonl.h, as in /work/shared/traces). With
// EngineOptions::forced_trajectories set, the engine emits the recorded tokens instead of its
// samples (see speculative_step.h).
#pragma once

#include <cstdint>
#include <filesystem>
#include <vector>

#include "rollout/rollout_jsonl.h"
#include "rollout/types.h"

namespace longtail::rollout {

// Reads a JSONL trace (throws RolloutFormatError naming the file and line of a bad line).
// vocab_modulo > 0 maps every token id to id % vocab_modulo (Qwen ids in a tiny test vocabulary).
std::vector<RecordedRollout> load_trace_jsonl(const std::filesystem::path& file,
                                              int32_t vocab_modulo = 0);

// The forced-trajectory map of a trace (later lines win on duplicate keys).
ForcedTrajectories forced_from_trace(const std::vector<RecordedRollout>& trace);

}  // namespace longtail::rollout
