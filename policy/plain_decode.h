// Plain (non-speculative) batched decoding and teacher-forced scoring over any Backend: what
// longtail-generate runs until it is switched to the rollout engine, and the reference the engine's
// speculative output must equal token for token. One forward per step over every live sequence.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "policy/backend.h"

namespace longtail::policy {

struct DecodeRequest {
  std::vector<int32_t> prompt;
  uint64_t uid = 0;  // RNG stream of this sample
};

struct DecodeOptions {
  SamplingParams sampling;
  int32_t max_new_tokens = 16;
  std::vector<int32_t> stop_tokens;  // a sampled stop token is emitted, then the sequence ends
};

struct DecodeResult {
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
  std::string finish_reason;  // "stop" | "length" (max_new_tokens or the context limit)
};

// The uid longtail-generate gives sample s of prompt p: (p << 32) | s. Deterministic, so a run
// is reproducible from its seed, and unique for p < 2^32, s < 2^32.
inline uint64_t sample_uid(uint64_t prompt_index, uint64_t sample) { return (prompt_index << 32) | sample; }

// Decodes every request to completion. Prompts must be non-empty and fit the context. Throws
// std::invalid_argument (bad token, too long) before any work.
std::vector<DecodeResult> plain_decode(Backend& backend, const std::vector<DecodeRequest>& requests,
                                       const DecodeOptions& options);

// Teacher-forced log softmax(logits / T)[response[j]] for every response token (T = temperature,
// 1 when 0). The prompt must be non-empty.
std::vector<float> score_response(Backend& backend, const std::vector<int32_t>& prompt,
                                  const std::vector<int32_t>& response, float temperature);

}  // namespace longtail::policy
