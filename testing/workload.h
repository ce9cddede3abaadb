// Synthetic RL rollout workload for drafter tests and benchmarks: prompts x samples x rounds with a
// long-tail (lognormal) response length distribution, prompt-specific recurring segments (what DAS
// drafts from), segments shared by all prompts, random noise, and a slow drift of each prompt's
// segments across rounds (the policy changes between training steps).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace longtail::workload {

struct WorkloadOptions {
  int32_t prompts = 32;
  int32_t samples = 8;               // rollouts per prompt per round
  int32_t rounds = 4;
  uint64_t seed = 1;
  int32_t vocab = 32000;
  int32_t prompt_len = 64;
  double median_len = 600;           // median response length over prompts
  double prompt_len_sigma = 0.9;     // lognormal spread of a prompt's typical length
  double sample_len_sigma = 0.5;     // lognormal spread of samples around their prompt's length
  int32_t max_len = 16384;
  int32_t prompt_segments = 24;      // recurring segments per prompt
  int32_t shared_segments = 64;      // segments common to all prompts
  int32_t min_segment = 8, max_segment = 48;
  double p_prompt_segment = 0.6;     // else shared with p_shared_segment, else noise
  double p_shared_segment = 0.2;
  double mutation = 0.03;            // per-token substitution rate when a segment is copied
  double drift = 0.1;                // per round, chance that each prompt segment is replaced
};

struct WorkloadRollout {
  std::string prompt_id;
  int32_t sample = 0;
  int32_t round = 0;
  std::vector<int32_t> prompt_tokens;
  std::vector<int32_t> response_tokens;
};

// Deterministic for a given seed; ordered by round, then prompt, then sample.
std::vector<WorkloadRollout> generate_workload(const WorkloadOptions& options);

// Writes the replay tool's JSONL format ("step" = round).
void write_jsonl(const std::vector<WorkloadRollout>& rollouts, const std::filesystem::path& file);

}  // namespace longtail::workload
