// Length-aware speculation budgets (DAS) and the step cost model that caps them.
//
// Why length-aware: a round's makespan is set by its longest sequence. Draft tokens spent on a
// sequence that will finish early make every step more expensive (t grows with verified tokens) but
// do not shorten the round, so they only pay on sequences on the critical path.
//
// Rule, per engine step, over the running sequences i (generated g_i tokens so far):
//  1. Predicted remaining length r_i = E[L - g_i | L > g_i] over the recent finished lengths L of the
//     same prompt id (at most `length_history` of them); when the prompt has none (or none exceeds
//     g_i) the recent lengths of all prompts are used; when no length exceeds g_i at all, the
//     sequence is past anything seen and r_i = max(g_i * overshoot_factor, min_remaining). Capped by
//     the sequence's own max_new_tokens - g_i when given.
//  2. Class by r_i relative to the batch's longest prediction r_max: long if r_i >= long_frac*r_max,
//     medium if r_i >= short_frac*r_max, else short. Budgets: long = max_budget, medium =
//     medium_budget, short = 0. A sequence is promoted as it grows, because r_i rises once g_i passes
//     the prompt's typical lengths (the conditional expectation moves to the long tail). With no
//     length history at all every sequence gets max_budget.
//  3. Cap: total verified tokens per step sum_i(1 + b_i) <= cap, where cap = max_tokens_per_step if
//     set, else the largest token count whose step time c_base + c_tok*tokens stays within
//     (1 + max_step_overhead) * the plain decode step of this batch (c_base + c_tok*B). Over the cap,
//     budgets are trimmed from the sequences with the shortest prediction first.
//  Fixed mode gives every sequence max_budget (then step 3); off gives 0.
// Cost model: t_step = c_base + c_tok * tokens_verified (microseconds). observe_step_time() refits
// (c_base, c_tok) online by recursive least squares with forgetting factor `rls_forgetting`.
#pragma once

#include <cstdint>
#include <deque>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace longtail::drafter {

struct StepCostModel {
  double base_us = 5000.0;      // c_base: per forward pass (weights read once), 7B-class on an H100
  double per_token_us = 20.0;   // c_tok: per verified token
  double step_us(double tokens_verified) const { return base_us + per_token_us * tokens_verified; }
};

// Reads {step_cost: {base_us: x, per_token_us: y}} (configs/cost_model.yaml format). Throws
// std::runtime_error naming the file and the missing/invalid key.
StepCostModel load_cost_model(const std::filesystem::path& yaml_file);

enum class BudgetMode : uint8_t { kOff = 0, kFixed = 1, kLengthAware = 2 };
const char* to_string(BudgetMode m);
// "off", "fixed", "length-aware" (also "length_aware", "das"); throws std::invalid_argument.
BudgetMode parse_budget_mode(std::string_view s);

struct SpeculationPolicyOptions {
  BudgetMode mode = BudgetMode::kLengthAware;
  int32_t max_budget = 16;          // long class (and fixed mode)
  int32_t medium_budget = 4;        // medium class
  double long_frac = 0.5;           // r_i >= long_frac * r_max: long
  double short_frac = 0.15;         // r_i <  short_frac * r_max: short (no speculation)
  int32_t max_tokens_per_step = 0;  // 0 = derived from the cost model and max_step_overhead
  double max_step_overhead = 1.0;   // speculative step may cost up to (1 + this) x a plain step
  int32_t length_history = 64;      // finished lengths remembered per prompt (and x16 globally)
  double overshoot_factor = 0.5;    // remaining guess once past every recorded length
  double min_remaining = 64;
  double rls_forgetting = 0.99;
  StepCostModel cost;
};

struct SequenceView {
  uint64_t uid = 0;
  std::string_view prompt_id;
  int32_t generated_len = 0;        // response tokens so far
  int32_t max_new_tokens = 0;       // 0 = unknown
};

class SpeculationPolicy {
 public:
  explicit SpeculationPolicy(SpeculationPolicyOptions options = {});

  // Draft budget per sequence, same order as `seqs`.
  std::vector<int32_t> budgets(std::span<const SequenceView> seqs) const;
  void budgets(std::span<const SequenceView> seqs, std::vector<int32_t>& out) const;
  // Predicted remaining response tokens of one sequence (rule step 1).
  double predict_remaining(std::string_view prompt_id, int32_t generated_len,
                           int32_t max_new_tokens = 0) const;

  // A rollout of prompt_id finished with this many response tokens.
  void record_finished(std::string_view prompt_id, int32_t response_length);
  // A measured forward: tokens verified and its wall time; refits the cost model (RLS).
  void observe_step_time(int32_t tokens_verified, double seconds);

  const StepCostModel& cost_model() const { return options_.cost; }
  const SpeculationPolicyOptions& options() const { return options_; }

 private:
  double conditional_remaining(const std::deque<int32_t>& lengths, int32_t g, bool& found) const;

  SpeculationPolicyOptions options_;
  std::unordered_map<std::string, std::deque<int32_t>> lengths_by_prompt_;
  std::deque<int32_t> all_lengths_;
  // RLS state for theta = (c_base, c_tok): P (2x2, symmetric) and whether it is initialised.
  double p00_ = 1e6, p01_ = 0, p11_ = 1e6;
};

}  // namespace longtail::drafter
