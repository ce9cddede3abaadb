// Token sampling on the host: the reference that the CUDA sampling kernel must reproduce bit for
// bit on the same logits. The rule, shared by both backends:
//   1. T = 0 (greedy): the argmax, lowest index on ties; its logprob is log softmax(logits)[x].
//   2. T > 0: z = logits / T. Candidates: the top_k largest z (k <= 0: all), lowest index first on
//      ties; then top-p: the shortest prefix of the candidates, in that order, whose probability
//      under softmax over the candidates reaches top_p (top_p >= 1: all).
//      Draw: Gumbel-max over the candidates, x = argmax_i z_i + g_i with
//      g_i = -log(-log(u_i)), u_i = uniform_open01(philox(key = (seed, uid), counter = (position, i))).
//      Gumbel-max needs no sort and no prefix sum, so a GPU reduction gives the same answer as a
//      serial loop; each vocabulary entry has its own independent uniform.
//   3. The reported logprob is log softmax(logits / T)[x] over the whole vocabulary (T = 1 when
//      greedy), i.e. the behaviour policy's logprob as trainers recompute it, not the logprob under
//      the truncated top-k/top-p distribution.
// position is the absolute index, in the sequence (prompt included), of the token being drawn.
#pragma once

#include <cstdint>
#include <span>

namespace longtail::policy {

struct SamplingParams {
  float temperature = 1.0f;  // 0 = greedy
  int32_t top_k = 0;         // <= 0: no top-k cut
  float top_p = 1.0f;        // >= 1: no nucleus cut
  uint64_t seed = 0;         // run-level seed; the per-sequence stream is keyed by (seed, uid)
};

struct SampledToken {
  int32_t token = -1;
  float logprob = 0;
};

// Draws the token at `position` of sequence `uid` from one row of logits (size = vocab).
SampledToken sample_token(std::span<const float> logits, const SamplingParams& params, uint64_t uid,
                          int64_t position);

// log softmax(logits / T)[token] with T = temperature, or T = 1 when temperature is 0.
float token_logprob(std::span<const float> logits, float temperature, int32_t token);

}  // namespace longtail::policy
