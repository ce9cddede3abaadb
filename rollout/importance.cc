// Importance statistics for trajectories that were (partly) sampled by an older policy than the
// one the trainer will update: partial rollouts carried across a weight update (APRIL) make part
// of every batch off-policy, and these numbers let the trainer correct for it.
//
// Notation: mu(y_t) is the behaviour logprob (the policy version that sampled token t, recorded per
// token as in AReaL's per-token versions), pi(y_t) the latest policy's logprob of the same token
// (computed by the re-prefill after a weight update; tokens sampled by the latest policy have
// pi = mu). Per trajectory i:
//   log_ratio_i = sum_t [log pi(y_t) - log mu(y_t)]
//   w_i         = exp(log_ratio_i)                       (VCPO sequence weight)
//   wbar_i      = min(w_i, C)                            (C = EngineOptions::importance_cap, 8 in
//                                                          VCPO's MATH recipe)
//   tis_t       = min(pi(y_t) / mu(y_t), C_tok)          (token-level truncated importance sampling,
//                                                          C_tok = 2 as in verl and slime)
// Per batch of B trajectories (over the truncated weights wbar):
//   ESS = (sum wbar)^2 / sum wbar^2,  rho = ESS / B,  lr_scale = sqrt(min(1, rho))
//   per group g with every reward R_i known: b*_g = sum_{i in g} wbar_i^2 R_i / sum wbar_i^2
//   (VCPO's off-policy optimal baseline with equal gradient norms).
// Sources: VCPO, "Stable Asynchrony" (variance-controlled off-policy RL: ESS-scaled learning rate,
// minimum-variance baseline); TIS as implemented in verl and slime; AReaL (per-token versions).
// max_weight/min_weight report the untruncated w (how far off-policy the batch really is);
// tokens whose current logprob is NaN (never scored) count as on-policy, and so do tokens whose
// behaviour logprob is not finite (only a trace-forced recording can hold a token the behaviour
// rule could not draw). With logprobs_mode "processed" both logprobs are under the truncated rule,
// so pi(y_t) = 0 (a token the latest policy's truncation excludes) gives w_i = 0 and
// log_ratio_i = -inf.
#include "rollout/importance.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <stdexcept>
#include <string>

namespace longtail::rollout {

void compute_trajectory_importance(Trajectory& t, double weight_cap, double token_ratio_cap) {
  if (!(weight_cap > 0) || !(token_ratio_cap > 0)) {
    throw std::invalid_argument("importance caps must be positive (weight cap " +
                                std::to_string(weight_cap) + ", token ratio cap " +
                                std::to_string(token_ratio_cap) + ")");
  }
  t.log_ratio = 0;
  t.weight = 1;
  t.truncated_weight = std::min(1.0, weight_cap);
  t.token_tis.clear();
  if (t.current_logprobs.empty()) return;
  if (t.current_logprobs.size() != t.behaviour_logprobs.size()) {
    throw std::invalid_argument("trajectory " + std::to_string(t.uid) + ": " +
                                std::to_string(t.current_logprobs.size()) +
                                " current logprobs for " +
                                std::to_string(t.behaviour_logprobs.size()) + " behaviour logprobs");
  }
  t.token_tis.resize(t.current_logprobs.size());
  double sum = 0;
  for (size_t i = 0; i < t.current_logprobs.size(); ++i) {
    const double cur = t.current_logprobs[i];
    const double mu = t.behaviour_logprobs[i];
    if (std::isnan(cur) || !std::isfinite(mu)) {
      t.token_tis[i] = static_cast<float>(std::min(1.0, token_ratio_cap));
      continue;
    }
    const double d = cur - mu;
    sum += d;
    t.token_tis[i] = static_cast<float>(std::min(std::exp(d), token_ratio_cap));
  }
  t.log_ratio = sum;
  t.weight = std::exp(sum);
  t.truncated_weight = std::min(t.weight, weight_cap);
}

BatchImportance compute_batch_importance(const std::vector<Trajectory>& trajectories,
                                         int64_t policy_version) {
  BatchImportance b;
  b.trajectories = static_cast<int32_t>(trajectories.size());
  if (trajectories.empty()) return b;
  double sw = 0, sw2 = 0, slr = 0;
  b.max_weight = -std::numeric_limits<double>::infinity();
  b.min_weight = std::numeric_limits<double>::infinity();
  struct Acc {
    double num = 0, den = 0;
    bool all_rewarded = true;
  };
  std::map<std::string, size_t> group_index;
  std::vector<Acc> acc;
  for (const Trajectory& t : trajectories) {
    const bool off = std::any_of(t.policy_versions.begin(), t.policy_versions.end(),
                                 [&](int64_t v) { return v < policy_version; });
    if (off) ++b.off_policy_trajectories;
    const double w = t.truncated_weight;
    sw += w;
    sw2 += w * w;
    slr += t.log_ratio;
    b.max_weight = std::max(b.max_weight, t.weight);
    b.min_weight = std::min(b.min_weight, t.weight);
    auto [it, inserted] = group_index.emplace(t.group_id, acc.size());
    if (inserted) {
      acc.emplace_back();
      b.baselines.push_back(GroupBaseline{t.group_id, 0, false});
    }
    Acc& a = acc[it->second];
    if (!t.has_reward) {
      a.all_rewarded = false;
    } else {
      a.num += w * w * t.reward;
      a.den += w * w;
    }
  }
  b.ess = sw2 > 0 ? sw * sw / sw2 : 0;
  b.ess_ratio = b.ess / b.trajectories;
  b.lr_scale = std::sqrt(std::min(1.0, b.ess_ratio));
  b.mean_log_ratio = slr / b.trajectories;
  for (size_t g = 0; g < acc.size(); ++g) {
    if (acc[g].all_rewarded && acc[g].den > 0) {
      b.baselines[g].baseline = acc[g].num / acc[g].den;
      b.baselines[g].valid = true;
    }
  }
  return b;
}

}  // namespace longtail::rollout
