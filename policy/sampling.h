// Token sampling on the host, for the CPU backend. The rule itself (greedy, min-p, top-k, top-p,
// Gumbel-max keyed by (seed, uid, position), the logprob reported) is kernels/reference.h's
// sample_row, which is also the specification of the CUDA sampler, so both backends draw the same
// tokens; this file adds the parameter checks and the policy-side types.
#pragma once

#include <cstdint>
#include <span>

namespace longtail::policy {

struct SamplingParams {
  float temperature = 1.0f;  // 0 = greedy
  int32_t top_k = 0;         // <= 0: no top-k cut
  float top_p = 1.0f;        // >= 1: no nucleus cut
  float min_p = 0.0f;        // <= 0: off; else drop tokens less likely than min_p x the most likely
  uint64_t seed = 0;         // run-level seed; the per-sequence stream is keyed by (seed, uid)
};

struct SampledToken {
  int32_t token = -1;
  float logprob = 0;
};

// Draws the token at `position` (absolute index in the sequence, prompt included) of sequence
// `uid` from one row of logits (size = vocab). Throws std::invalid_argument on an empty row, a
// negative, NaN or infinite temperature, or a NaN top_p or min_p.
SampledToken sample_token(std::span<const float> logits, const SamplingParams& params, uint64_t uid,
                          int64_t position);

// log softmax(logits / T)[token] with T = temperature, or T = 1 when temperature is 0. Throws
// std::invalid_argument for a token outside the vocabulary or a negative temperature.
float token_logprob(std::span<const float> logits, float temperature, int32_t token);

}  // namespace longtail::policy
