// The host sampler: parameter checks around kernels::ref::sample_row, the one written sampling
// rule. It keeps the host C library's logf (LogRounding::kHostLibm) so the CPU backend's rollouts
// stay exactly what they were before the rule moved to kernels/.
#include "policy/sampling.h"

#include <cmath>
#include <stdexcept>
#include <string>

#include "kernels/reference.h"

namespace longtail::policy {

float token_logprob(std::span<const float> logits, float temperature, int32_t token) {
  if (token < 0 || static_cast<size_t>(token) >= logits.size()) {
    throw std::invalid_argument("token_logprob: token " + std::to_string(token) +
                                " outside the vocabulary of " + std::to_string(logits.size()));
  }
  if (!(temperature >= 0.0f)) throw std::invalid_argument("token_logprob: temperature must be >= 0");
  return kernels::ref::token_logprob(logits, temperature, token);
}

SampledToken sample_token(std::span<const float> logits, const SamplingParams& params, uint64_t uid,
                          int64_t position) {
  if (logits.empty()) throw std::invalid_argument("sample_token: empty logits");
  if (!(params.temperature >= 0.0f) || std::isinf(params.temperature)) {
    throw std::invalid_argument("sampling: temperature must be a finite number >= 0, got " +
                                std::to_string(params.temperature));
  }
  if (std::isnan(params.top_p)) throw std::invalid_argument("sampling: top_p is NaN");
  if (std::isnan(params.min_p)) throw std::invalid_argument("sampling: min_p is NaN");
  kernels::SamplingRow row;
  row.temperature = params.temperature;
  row.top_k = params.top_k;
  row.top_p = params.top_p;
  row.min_p = params.min_p;
  row.seed = params.seed;
  row.uid = uid;
  row.position = position;
  const kernels::ref::SampleResult r =
      kernels::ref::sample_row(logits, row, kernels::ref::LogRounding::kHostLibm);
  return {r.token, r.logprob};
}

}  // namespace longtail::policy
