// JSONL trace loading for trace-forced benchmark runs (see forced_trajectories.h).
#include "rollout/forced_trajectories.h"

namespace longtail::rollout {

std::vector<RecordedRollout> load_trace_jsonl(const std::filesystem::path& file, int32_t vocab_modulo) {
  std::vector<RecordedRollout> out = read_rollout_jsonl(file);
  if (vocab_modulo > 0) {
    for (RecordedRollout& r : out) {
      for (int32_t& t : r.prompt_tokens) t %= vocab_modulo;
      for (int32_t& t : r.response_tokens) t %= vocab_modulo;
    }
  }
  return out;
}

ForcedTrajectories forced_from_trace(const std::vector<RecordedRollout>& trace) {
  ForcedTrajectories f;
  for (const RecordedRollout& r : trace) f[{r.prompt_id, r.sample}] = r.response_tokens;
  return f;
}

}  // namespace longtail::rollout
