// The rules of a valid group request (see request_validator.h), in the order they are checked.
#include "rollout/request_validator.h"

#include <unordered_map>

#include "policy/backend.h"

namespace longtail::rollout {

namespace {

std::string vocab_range(int32_t vocab) { return "[0, " + std::to_string(vocab) + ")"; }

}  // namespace

void validate_group_request(const GroupRequest& g, const RequestLimits& limits) {
  auto bad = [&](std::string field, std::string reason) {
    throw InvalidRequest(g.group_id, std::move(field), std::move(reason));
  };
  const int32_t vocab = limits.vocab_size;
  auto outside_vocab = [&](int32_t t) { return t < 0 || (vocab > 0 && t >= vocab); };
  auto why_outside = [&](int32_t) {
    return vocab > 0 ? " is outside the vocabulary " + vocab_range(vocab)
                     : " is not a token id (ids are >= 0)";
  };
  if (g.group_id.empty()) bad("group_id", "group_id is empty");
  if (g.n < 1) bad("n", "n must be >= 1, got " + std::to_string(g.n));
  if (g.prompt_tokens.empty()) bad("prompt_tokens", "empty prompt");
  for (size_t i = 0; i < g.prompt_tokens.size(); ++i) {
    const int32_t t = g.prompt_tokens[i];
    if (outside_vocab(t)) {
      bad("prompt_tokens[" + std::to_string(i) + "]",
          "prompt token " + std::to_string(i) + " = " + std::to_string(t) + why_outside(t));
    }
  }
  if (limits.context_length > 0 &&
      static_cast<int64_t>(g.prompt_tokens.size()) >= limits.context_length) {
    bad("prompt_tokens", "prompt of " + std::to_string(g.prompt_tokens.size()) +
                             " tokens leaves no room in the context of " +
                             std::to_string(limits.context_length));
  }
  if (g.max_new_tokens < 1) {
    bad("max_new_tokens", "max_new_tokens must be >= 1, got " + std::to_string(g.max_new_tokens));
  }
  for (size_t i = 0; i < g.stop_tokens.size(); ++i) {
    const int32_t t = g.stop_tokens[i];
    if (outside_vocab(t)) {
      bad("stop_tokens[" + std::to_string(i) + "]", "stop token " + std::to_string(t) + why_outside(t));
    }
  }
  for (size_t i = 0; i < g.stop_token_ids.size(); ++i) {
    const int32_t t = g.stop_token_ids[i];
    if (outside_vocab(t)) {
      bad("stop_token_ids[" + std::to_string(i) + "]", "stop token " + std::to_string(t) + why_outside(t));
    }
  }
  if (auto e = policy::check_sampling_params(sampling_rule(g.sampling))) bad("sampling." + e->field, e->reason);
  if (g.sampling.min_p > 0 && !limits.min_p_supported) {
    bad("sampling.min_p", "min_p " + std::to_string(g.sampling.min_p) + " > 0 is not implemented by this backend's sampler");
  }
  const int32_t min_tokens = g.sampling.min_tokens;
  if (min_tokens < 0 || min_tokens > g.max_new_tokens) {
    bad("sampling.min_tokens", "min_tokens " + std::to_string(min_tokens) + " must be in [0, max_new_tokens = " +
                                   std::to_string(g.max_new_tokens) + "]");
  }
  if (min_tokens > 0 && !limits.min_tokens_supported) {
    bad("sampling.min_tokens", "min_tokens " + std::to_string(min_tokens) +
                                   " > 0 is not implemented by this backend's sampler (it cannot mask stop tokens)");
  }
  const auto mode = policy::parse_logprobs_mode(g.sampling.logprobs_mode);
  if (!mode) {
    bad("sampling.logprobs_mode", "logprobs_mode '" + g.sampling.logprobs_mode + "' must be 'raw' or 'processed'");
  }
  if (*mode == policy::LogprobsMode::kProcessed && !limits.processed_logprobs_supported) {
    bad("sampling.logprobs_mode", "logprobs_mode 'processed' is not implemented by this backend's sampler");
  }
  if (limits.forced && !limits.forced->empty()) {
    const std::string& pid = g.prompt_id.empty() ? g.group_id : g.prompt_id;
    for (int32_t i = 0; i < g.n; ++i) {
      const int32_t sample = g.trace_sample_offset + i;
      auto it = limits.forced->find({pid, sample});
      if (it == limits.forced->end() || it->second.empty()) {
        bad("", "trace-forced mode has no recorded response for prompt '" + pid + "' sample " +
                    std::to_string(sample));
      }
      for (int32_t t : it->second) {
        if (outside_vocab(t)) {
          bad("", "recorded token " + std::to_string(t) + " of prompt '" + pid + "' sample " +
                      std::to_string(sample) + why_outside(t));
        }
      }
    }
  }
}

void validate_group_requests(std::span<const GroupRequest> groups, const RequestLimits& limits) {
  std::unordered_map<std::string, size_t> seen;
  for (size_t i = 0; i < groups.size(); ++i) {
    const GroupRequest& g = groups[i];
    try {
      validate_group_request(g, limits);
    } catch (const InvalidRequest& e) {
      throw InvalidRequest(e.group_id(), e.field(), e.reason(), static_cast<int32_t>(i));
    }
    auto [it, fresh] = seen.emplace(g.group_id, i);
    if (!fresh) {
      throw InvalidRequest(g.group_id, "group_id",
                           "group_id repeated within the request (also group " +
                               std::to_string(it->second) + ")",
                           static_cast<int32_t>(i));
    }
  }
}

}  // namespace longtail::rollout
