// The one validator of a group request. The wire codec only checks wire types; the worker (before
// admitting any group of a SUBMIT) and the engine (at submit) call these functions, so a rule about
// what a valid request is lives here and nowhere else. Rules:
//   group_id        non-empty
//   n               >= 1
//   prompt_tokens   non-empty, every id in [0, vocab_size), fewer than context_length tokens
//   max_new_tokens  >= 1
//   stop_tokens, stop_token_ids  every id in [0, vocab_size)
//   sampling        temperature finite and >= 0, top_p in (0, 1], min_p <= 1
//                   (policy::check_sampling_params, the backends' own input check);
//                   min_tokens in [0, max_new_tokens]; logprobs_mode "raw" or "processed";
//                   min_p > 0, min_tokens > 0 and "processed" only where the backend's sampler
//                   implements them (RequestLimits)
//   trace-forced    every sample has a non-empty recording whose ids are in the vocabulary
// and, for a list of groups (one SUBMIT), no group_id twice. Whether a group id is already in
// flight is the engine's state, checked by the engine.
#pragma once

#include <cstdint>
#include <span>

#include "rollout/types.h"

namespace longtail::rollout {

// What the engine knows about valid requests. A zero bound is not checked (a caller without a
// model, e.g. a codec test, still gets every other rule).
struct RequestLimits {
  int32_t vocab_size = 0;      // token ids must be in [0, vocab_size)
  int32_t context_length = 0;  // a prompt must leave room for one token: size < context_length
  // Trace-forced mode (EngineOptions::forced_trajectories): every sample needs a recording.
  const ForcedTrajectories* forced = nullptr;
  // What the backend's sampler implements (policy::Backend): a request needing more is refused
  // by name. True by default, so a caller without a backend checks only the ranges.
  bool min_p_supported = true;               // sampling.min_p > 0
  bool min_tokens_supported = true;          // sampling.min_tokens > 0
  bool processed_logprobs_supported = true;  // sampling.logprobs_mode "processed"
};

// Throws InvalidRequest (types.h: group, field path, reason) at the first rule the group breaks.
void validate_group_request(const GroupRequest& g, const RequestLimits& limits);

// Every group of a list (in order, index() set), then that no group_id repeats within it.
void validate_group_requests(std::span<const GroupRequest> groups, const RequestLimits& limits);

}  // namespace longtail::rollout
