// Token sampling on the host, for the CPU backend, and the sampling parameters every backend takes
// per sequence. The rule itself (the min_tokens mask, greedy, min-p, top-k, top-p, Gumbel-max keyed
// by (seed, stream, position), the raw or processed logprob reported) is kernels/reference.h's
// sample_row, which is also the specification of the CUDA sampler, so both backends draw the same
// tokens; this file adds the parameter checks, the policy-side types and the RNG stream rule.
//
// RNG streams (per-request seeds). The noise of the draw at absolute position p of a sequence is
// sampling_uniform(seed, stream, p, i) for vocabulary entry i (kernels/philox.h), where `seed` is
// SamplingParams::seed and `stream` the sequence's 64-bit stream (SequenceChunk::uid). Nothing
// else enters the draw, so a sequence's tokens depend only on its logits, seed and stream: not on
// the batch, the submission order, speculation, preemption or which worker runs it. The rollout
// engine gives sample i (0-based) of a group
//     stream = key + i (mod 2^64), seed = the group's seed (0 when it has none), where
//     key = the group's sample_key                         when the request gives one;
//           sample_key_of(group_id) (FNV-1a 64, below)     else, when the group has a seed;
//           the engine's uid of the group's first sample   else (no seed, no key).
// So a seeded group samples the same tokens whatever the batch, order, run or worker, as long as
// its group_id (or sample_key) and seed are the same; two groups give identical samples exactly
// when their prompts, parameters, seeds and keys are equal (give them one sample_key to get vLLM's
// "same seed, same output"; distinct group ids keep groups independent). A group with neither
// seed nor key draws from streams unique within the engine's life (its uids are consecutive):
// independent of every other sample, but a function of submission order, like an unseeded vLLM
// request (reproducible only by re-running the same submissions on a fresh engine).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace longtail::policy {

// Which logprob a backend reports for a drawn (or scored) token: kernels/reference.h's rule 3.
enum class LogprobsMode : uint8_t {
  kRaw,        // log softmax(logits / T) over the full vocabulary (T = 1 when greedy): no mask,
               // no truncation; what a trainer recomputes from the same logits
  kProcessed,  // under the distribution actually sampled from: min_tokens mask, min-p, top-k and
               // top-p applied and renormalised; greedy: 0 for the argmax, -inf for other tokens
};
const char* logprobs_mode_name(LogprobsMode m);  // "raw" | "processed"
std::optional<LogprobsMode> parse_logprobs_mode(std::string_view name);

struct SamplingParams {
  float temperature = 1.0f;  // 0 = greedy
  int32_t top_k = 0;         // <= 0: no top-k cut
  float top_p = 1.0f;        // >= 1: no nucleus cut
  float min_p = 0.0f;        // <= 0: off; else drop tokens less likely than min_p x the most likely
  uint64_t seed = 0;         // Philox key of the draw; the stream is SequenceChunk::uid (rule above)
  LogprobsMode logprobs_mode = LogprobsMode::kRaw;
  // The min_tokens mask, resolved by the caller: a token drawn or scored at an absolute position
  // in [mask_begin, mask_end) cannot be any of masked_tokens (their logits count as -inf, rule 0).
  // The span must stay valid for the call that uses these parameters. Empty range: no mask.
  std::span<const int32_t> masked_tokens;
  int64_t mask_begin = 0, mask_end = 0;
};

// The stream key of a seeded group without an explicit sample_key: FNV-1a 64 over the bytes of
// group_id (offset basis 0xcbf29ce484222325, prime 0x100000001b3).
uint64_t sample_key_of(std::string_view group_id);

struct SampledToken {
  int32_t token = -1;
  float logprob = 0;
};

// Draws the token at `position` (absolute index in the sequence, prompt included) of the sequence
// with RNG stream `stream` from one row of logits (size = vocab). Throws std::invalid_argument on
// an empty row, a negative, NaN or infinite temperature, or a NaN top_p or min_p.
SampledToken sample_token(std::span<const float> logits, const SamplingParams& params, uint64_t stream,
                          int64_t position);

// The logprob sample_token reports (params.logprobs_mode, the mask at `position`) for a given
// `token` at `position`: the re-score of a given response token. Throws std::invalid_argument for
// a token outside the vocabulary and for parameters sample_token refuses.
float score_token(std::span<const float> logits, const SamplingParams& params, int64_t position,
                  int32_t token);

// log softmax(logits / T)[token] with T = temperature, or T = 1 when temperature is 0 (the raw
// logprob, no mask). Throws std::invalid_argument for a token outside the vocabulary or a
// negative temperature.
float token_logprob(std::span<const float> logits, float temperature, int32_t token);

}  // namespace longtail::policy
