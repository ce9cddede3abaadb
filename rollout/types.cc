// The rules that apply to EngineOptions as a whole: when speculation is on, how the budgets are
// applied, which values are in range. One place, so the engine, the option tables of the tools and
// the worker config agree. Also the one mapping of a request's sampling onto the backend's.
#include "rollout/types.h"

#include <algorithm>
#include <cmath>

namespace longtail::rollout {

bool speculation_enabled(const EngineOptions& o) {
  return o.budgets.mode != drafter::BudgetMode::kOff && o.budgets.max_budget > 0;
}

drafter::SpeculationPolicyOptions effective_budgets(const EngineOptions& o) {
  drafter::SpeculationPolicyOptions p = o.budgets;
  p.medium_budget = std::min(p.medium_budget, p.max_budget);
  return p;
}

policy::SamplingParams sampling_rule(const SamplingParams& s) {
  policy::SamplingParams r;
  r.temperature = s.temperature;
  r.top_k = s.top_k;
  r.top_p = s.top_p;
  r.min_p = s.min_p;
  r.seed = s.seed.value_or(0);
  r.logprobs_mode = policy::parse_logprobs_mode(s.logprobs_mode).value_or(policy::LogprobsMode::kRaw);
  return r;
}

void validate_engine_options(const EngineOptions& o) {
  auto bad = [](const std::string& m) { throw std::invalid_argument("EngineOptions: " + m); };
  if (o.round_groups < 0) bad("round_groups must be >= 0");
  if (!(o.overprovision >= 1.0) || !std::isfinite(o.overprovision)) bad("overprovision must be >= 1");
  if (o.max_running_sequences < 1) bad("max_running_sequences must be >= 1");
  if (o.max_tokens_per_forward < 2) bad("max_tokens_per_forward must be >= 2");
  if (o.budgets.max_budget < 0) bad("budgets.max_budget must be >= 0");
  if (o.drafter.window_rounds < 1) bad("drafter.window_rounds must be >= 1");
  if (!(o.importance_cap > 0)) bad("importance_cap must be > 0");
  if (!(o.token_ratio_cap > 0)) bad("token_ratio_cap must be > 0");
  if (o.recent_rounds_kept < 1) bad("recent_rounds_kept must be >= 1");
}

}  // namespace longtail::rollout
