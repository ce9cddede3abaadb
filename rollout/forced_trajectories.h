// Trace-forced generation for benchmarks: recorded responses keyed by (prompt id, sample index),
// loaded from the replay JSONL format ({"prompt_id", "sample", "prompt_tokens", "response_tokens"}
// per line, as in /work/shared/traces). With EngineOptions::forced_trajectories set, the engine
// emits the recorded tokens instead of its samples (see speculative_step.h).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "rollout/types.h"

namespace longtail::rollout {

struct TraceRollout {
  std::string prompt_id;
  int32_t sample = 0;
  int64_t step = -1;                      // -1 when the line has none
  std::vector<int32_t> prompt_tokens;
  std::vector<int32_t> response_tokens;
};

// Reads a JSONL trace. vocab_modulo > 0 maps every token id to id % vocab_modulo (Qwen ids in a
// tiny test vocabulary). Throws std::runtime_error naming the file and line of a malformed line,
// a missing or mistyped field or a negative token id.
std::vector<TraceRollout> load_trace_jsonl(const std::filesystem::path& file,
                                           int32_t vocab_modulo = 0);

// The forced-trajectory map of a trace (later lines win on duplicate keys).
ForcedTrajectories forced_from_trace(const std::vector<TraceRollout>& trace);

}  // namespace longtail::rollout
