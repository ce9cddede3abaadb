// The host sampler: exactly the rule written in sampling.h, kept simple so that it can serve as the
// reference the CUDA kernel is compared with.
//
// Floating-point details that a bit-exact reimplementation must follow:
//   z_i = logits[i] / T in float (T = temperature as float; no division when greedy);
//   g_i = -logf(-logf(u_i)) in float, u_i from kernels::sampling_uniform;
//   the key compared is z_i + g_i in float; on equal keys the lower vocabulary index wins.
//   Softmax sums are accumulated in double: for top-p, the normaliser over the candidates in
//   ascending index order, then the cumulative probability in candidate order, each term
//   exp(z_i - z_max) / total, until it reaches top_p.
// The logprob reported is log softmax(z)[x] over the whole vocabulary: the behaviour policy's
// logprob at temperature T as a trainer recomputes it from its own logits, not the logprob under
// the truncated top-k/top-p distribution the token was actually drawn from.
#include "policy/sampling.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/philox.h"

namespace longtail::policy {
namespace {

void check_params(std::span<const float> logits, const SamplingParams& p) {
  if (logits.empty()) throw std::invalid_argument("sample_token: empty logits");
  if (!(p.temperature >= 0.0f) || std::isinf(p.temperature)) {
    throw std::invalid_argument("sampling: temperature must be a finite number >= 0, got " +
                                std::to_string(p.temperature));
  }
  if (std::isnan(p.top_p)) throw std::invalid_argument("sampling: top_p is NaN");
}

// log sum exp(logits[i] * inv_t) in double.
double log_sum_exp(std::span<const float> logits, float temperature) {
  float m = -std::numeric_limits<float>::infinity();
  for (float x : logits) m = std::max(m, x / temperature);
  if (std::isinf(m)) return m;
  double s = 0;
  for (float x : logits) s += std::exp(static_cast<double>(x / temperature) - m);
  return m + std::log(s);
}

float logprob_of(std::span<const float> logits, float temperature, int32_t token) {
  const double lse = log_sum_exp(logits, temperature);
  return static_cast<float>(static_cast<double>(logits[token] / temperature) - lse);
}

}  // namespace

float token_logprob(std::span<const float> logits, float temperature, int32_t token) {
  if (token < 0 || static_cast<size_t>(token) >= logits.size()) {
    throw std::invalid_argument("token_logprob: token " + std::to_string(token) +
                                " outside the vocabulary of " + std::to_string(logits.size()));
  }
  if (!(temperature >= 0.0f)) throw std::invalid_argument("token_logprob: temperature must be >= 0");
  return logprob_of(logits, temperature > 0 ? temperature : 1.0f, token);
}

SampledToken sample_token(std::span<const float> logits, const SamplingParams& params, uint64_t uid,
                          int64_t position) {
  check_params(logits, params);
  const int32_t vocab = static_cast<int32_t>(logits.size());
  if (params.temperature == 0.0f) {
    int32_t best = 0;
    for (int32_t i = 1; i < vocab; ++i) {
      if (logits[i] > logits[best]) best = i;  // strict: lowest index wins ties
    }
    return {best, logprob_of(logits, 1.0f, best)};
  }
  const float t = params.temperature;
  const bool cut_k = params.top_k > 0 && params.top_k < vocab;
  const bool cut_p = params.top_p < 1.0f;

  std::vector<int32_t> cand;  // empty = the whole vocabulary
  if (cut_k || cut_p) {
    std::vector<float> z(static_cast<size_t>(vocab));
    for (int32_t i = 0; i < vocab; ++i) z[i] = logits[i] / t;
    cand.resize(vocab);
    std::iota(cand.begin(), cand.end(), 0);
    // Candidate order: larger z first, lower index first on ties.
    auto before = [&](int32_t a, int32_t b) { return z[a] > z[b] || (z[a] == z[b] && a < b); };
    if (cut_k) {
      std::nth_element(cand.begin(), cand.begin() + params.top_k, cand.end(), before);
      cand.resize(params.top_k);
    }
    if (!cut_p) {
      // The draw below is an argmax, so the order of the candidates does not matter.
    } else {
      // Softmax normaliser over the candidates, summed in ascending index order.
      std::sort(cand.begin(), cand.end());
      float zmax = -std::numeric_limits<float>::infinity();
      for (int32_t i : cand) zmax = std::max(zmax, z[i]);
      double total = 0;
      for (int32_t i : cand) total += std::exp(static_cast<double>(z[i]) - zmax);
      // Walk the candidates in order, sorting only as far as needed: a peaked distribution reaches
      // top_p after a handful of tokens, so this rarely sorts the whole vocabulary.
      double cum = 0;
      size_t n = 0, sorted = 0;
      const size_t size = cand.size();
      bool reached = false;
      while (!reached && n < size) {
        if (n == sorted) {
          const size_t next = std::min(size, std::max<size_t>(64, sorted * 4));
          if (next < size) std::nth_element(cand.begin() + sorted, cand.begin() + next, cand.end(), before);
          std::sort(cand.begin() + sorted, cand.begin() + next, before);
          sorted = next;
        }
        cum += std::exp(static_cast<double>(z[cand[n]]) - zmax) / total;
        ++n;
        reached = cum >= static_cast<double>(params.top_p);
      }
      cand.resize(n);
    }
  }

  int32_t best = -1;
  float best_key = -std::numeric_limits<float>::infinity();
  auto consider = [&](int32_t i) {
    const float u = kernels::sampling_uniform(params.seed, uid, position, static_cast<uint32_t>(i));
    const float key = logits[i] / t + (-std::log(-std::log(u)));
    if (best < 0 || key > best_key || (key == best_key && i < best)) {
      best = i;
      best_key = key;
    }
  };
  if (cand.empty()) {
    for (int32_t i = 0; i < vocab; ++i) consider(i);
  } else {
    for (int32_t i : cand) consider(i);
  }
  return {best, logprob_of(logits, t, best)};
}

}  // namespace longtail::policy
