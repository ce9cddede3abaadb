// The host sampler: parameter checks around kernels::ref::sample_row, the one written sampling
// rule. It keeps the host C library's logf (LogRounding::kHostLibm) so the CPU backend's rollouts
// stay exactly what they were before the rule moved to kernels/.
#include "policy/sampling.h"

#include <cmath>
#include <stdexcept>
#include <string>

#include "kernels/reference.h"

namespace longtail::policy {

namespace {

void check(std::span<const float> logits, const SamplingParams& params) {
  if (logits.empty()) throw std::invalid_argument("sample_token: empty logits");
  if (!(params.temperature >= 0.0f) || std::isinf(params.temperature)) {
    throw std::invalid_argument("sampling: temperature must be a finite number >= 0, got " +
                                std::to_string(params.temperature));
  }
  if (std::isnan(params.top_p)) throw std::invalid_argument("sampling: top_p is NaN");
  if (std::isnan(params.min_p)) throw std::invalid_argument("sampling: min_p is NaN");
}

kernels::SamplingRow row_of(const SamplingParams& params, uint64_t stream, int64_t position) {
  kernels::SamplingRow row;
  row.temperature = params.temperature;
  row.top_k = params.top_k;
  row.top_p = params.top_p;
  row.min_p = params.min_p;
  row.seed = params.seed;
  row.uid = stream;
  row.position = position;
  return row;
}

kernels::ref::RuleExtras extras_of(const SamplingParams& params, int64_t position) {
  kernels::ref::RuleExtras e;
  if (position >= params.mask_begin && position < params.mask_end) e.masked = params.masked_tokens;
  e.logprob = params.logprobs_mode == LogprobsMode::kProcessed ? kernels::ref::LogprobKind::kProcessed
                                                                : kernels::ref::LogprobKind::kRaw;
  return e;
}

}  // namespace

const char* logprobs_mode_name(LogprobsMode m) {
  return m == LogprobsMode::kProcessed ? "processed" : "raw";
}

std::optional<LogprobsMode> parse_logprobs_mode(std::string_view name) {
  if (name == "raw") return LogprobsMode::kRaw;
  if (name == "processed") return LogprobsMode::kProcessed;
  return std::nullopt;
}

uint64_t sample_key_of(std::string_view group_id) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : group_id) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

float token_logprob(std::span<const float> logits, float temperature, int32_t token) {
  if (token < 0 || static_cast<size_t>(token) >= logits.size()) {
    throw std::invalid_argument("token_logprob: token " + std::to_string(token) +
                                " outside the vocabulary of " + std::to_string(logits.size()));
  }
  if (!(temperature >= 0.0f)) throw std::invalid_argument("token_logprob: temperature must be >= 0");
  return kernels::ref::token_logprob(logits, temperature, token);
}

SampledToken sample_token(std::span<const float> logits, const SamplingParams& params, uint64_t stream,
                          int64_t position) {
  check(logits, params);
  const kernels::ref::SampleResult r =
      kernels::ref::sample_row(logits, row_of(params, stream, position),
                               kernels::ref::LogRounding::kHostLibm, extras_of(params, position));
  return {r.token, r.logprob};
}

float score_token(std::span<const float> logits, const SamplingParams& params, int64_t position,
                  int32_t token) {
  check(logits, params);
  if (token < 0 || static_cast<size_t>(token) >= logits.size()) {
    throw std::invalid_argument("score_token: token " + std::to_string(token) +
                                " outside the vocabulary of " + std::to_string(logits.size()));
  }
  // The stream does not enter a logprob: only the draw uses the noise.
  return kernels::ref::rule_logprob(logits, row_of(params, 0, position), extras_of(params, position), token);
}

}  // namespace longtail::policy
