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
// Acceptance-aware budgets (option acceptance_aware; fixed and length-aware modes, applied after step
// 3 so they only lower budgets: handing the allowance a rejected sequence gives up to sequences with
// shorter predictions cost 5-9% projected makespan on tot_text): a draft is worth verifying only
// where it is likely to be accepted.
//  a. Per-token acceptance a_i of sequence i (probability that the next draft token is accepted given
//     the previous one was), from observe_acceptance(): a draft of k tokens with m accepted counts m
//     successes and one failure if m < k (the geometric model's MLE). Counts decay by acceptance_decay
//     per reported draft of the sequence, so the estimate follows recent drafts. The estimate is
//     shrunk towards the prompt's (decay prompt_acceptance_decay per draft of any of its sequences),
//     which is shrunk towards all prompts', which is shrunk towards acceptance_prior; each level adds
//     acceptance_prior_weight pseudo-trials of the level above. Until a first draft is reported the
//     rule is inactive (callers that report nothing get the length-aware budgets unchanged).
//  b. With per-token acceptance a, draft tokens 1..k are all accepted with probability a^k, so k
//     drafts yield sum_{j=1..k} a^j expected extra tokens and the j-th draft token is worth a^j
//     tokens, i.e. a^j steps of this sequence. It costs c_tok/(c_base + c_tok*T) of a step, with T
//     the tokens of a plain step of this batch (one per sequence). A saved step shortens the round
//     only if the sequence turns out to be the longest, and any of the C sequences still holding a
//     budget after step 3 may be, so the cost is weighed C^contender_exponent times. The net gain
//     sum_{j<=k} (a^j - threshold) is largest for the largest k with
//       a^k > threshold = acceptance_cost_margin * C^contender_exponent * c_tok/(c_base + c_tok*T),
//     which becomes the sequence's budget if below its class budget (0 at low acceptance, the class
//     budget at high). Defaults (margin 1.5, exponent 1, decay 0.8) were picked on the three replay
//     traces (bench/results/drafter_2026-11-23.md); exponent 0.5 or margin 1 gain less on tot_text,
//     margin 2 loses up to 0.4% on skythought.
//  c. Probing: a sequence that drafted nothing for probe_interval reported steps in a row while its
//     class budget is positive gets min(probe_budget, class budget) tokens, so a sequence whose text
//     turned repetitive can recover.
// Critical-path rule (length-aware mode with critical_path, the default; replaces the classes of
// step 2, whose zero budget for predicted-short sequences left the round's actual longest sequence
// undrafted whenever a prediction was wrong, so it lost to uniform budgets on skythought):
//  4. Every sequence starts from max_budget (step 3's cap comes last). Its remaining length R_i has
//     a distribution: its prompt's recorded lengths above g_i, mixed with all prompts' lengths above
//     g_i at weight global_length_weight (a prompt's few rollouts do not rule out a long one), or
//     the overshoot guess of step 1 once past every recorded length; with critical_in_steps it is
//     measured in steps, R_i / (1 + a_i + ... + a_i^B) at the sequence's acceptance a_i, since a
//     looping sequence that accepts 10 tokens per step is not the one that sets the makespan. The
//     probability that i finishes last, P_i = E[prod_{j != i} P(R_j <= R_i)], is computed on a
//     log-spaced grid (56 cells, O(batch x 56)). A saved step of i shortens the round with
//     probability P_i, so rules a-c apply (whatever acceptance_aware says) with the cost of i's
//     draft tokens weighed by 1 / max(P_i, critical_floor, critical_share / batch) instead of the
//     contender factor, and the sequence with the largest P_i (all of them on a tie) keeps its
//     budget: the critical path drafts whatever it can, the others only where their drafts keep
//     being accepted, and promotion is continuous (P_i rises as g_i passes the prompt's lengths).
//     Then step 3 caps the budgets rules a-c left, so the step's allowance goes to drafts worth
//     verifying (capping first spent it on max_budget-sized budgets that rule b then cut:
//     bench/results/budgets_2026-12-04.md). Floor, share and weights were picked on the three
//     open traces (bench/results/drafter_2026-12-01.md).
// Cost model: StepCostModel below (base + per cached position + per verified token, piecewise);
// "plain step" above means step_us(B, the batch's context), a draft token's price is the marginal
// token cost at B. observe_step_time() refits it online by recursive least squares with forgetting
// factor `rls_forgetting`.
#pragma once

#include <cstdint>
#include <deque>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace longtail::drafter {

// Step cost of one forward pass, in microseconds (fitted per model shape and GPU by
// scripts/fit_cost_model.py into configs/cost_model*.yaml):
//   t = base_us + per_context_us * context_positions + token_us(tokens_verified)
//       [+ verify_step_us when some sequence feeds the step more than one token]
//   token_us(T) = per_token_us * min(T, X) + per_token_above_us * max(T - X, 0),  X = crossover_tokens
// context_positions: cached positions attended, summed over the step's sequences (each reads its
// KV once per step). Below the memory-compute crossover X a verified token costs less than above
// it; X = 0 means one slope (per_token_us) for every token. verify_step_us is what a step with
// drafts (or a prefill chunk) costs over a decode step of as many tokens, whatever its size
// (multi-query attention, a sampled row per input rather than per sequence): it prices steps (the
// replay, the online refit), while the budgets' acceptance rule and step cap, which weigh draft
// tokens, leave it out. The defaults are the linear 7B-class/H100 model of configs/cost_model.yaml.
struct StepCostModel {
  double base_us = 5000.0;         // c_base: per forward pass (weights read once)
  double per_token_us = 20.0;      // c_tok: per verified token (below the crossover when X > 0)
  double crossover_tokens = 0;     // X, tokens per step; 0 = no crossover
  double per_token_above_us = 0;   // per verified token beyond X (read only when X > 0)
  double per_context_us = 0;       // per cached position attended per step
  double verify_step_us = 0;       // per step in which some sequence feeds more than one token
  double token_us(double tokens) const;
  double step_us(double tokens_verified, double context_positions = 0,
                 bool multi_token = false) const {
    return base_us + per_context_us * context_positions + token_us(tokens_verified) +
           (multi_token ? verify_step_us : 0.0);
  }
  // The steps that pay verify_step_us: every sequence feeds at least one token, so some feeds
  // more exactly when the tokens outnumber the sequences.
  static bool multi_token(double tokens, double sequences) { return tokens > sequences; }
  // Price of one more verified token in a step that verifies `tokens`.
  double marginal_token_us(double tokens) const;
  // The most tokens whose step stays within budget_us at this context (+inf when tokens are free,
  // below 0 when not even the base fits).
  double max_tokens_within(double budget_us, double context_positions = 0) const;
};

// Reads {step_cost: {base_us, per_token_us[, crossover_tokens, per_token_above_us,
// per_context_us, verify_step_us]}} (configs/cost_model*.yaml), or with an entry name the map
// per_model[entry] (one measured model shape, same keys). The file may also be given as
// "FILE#ENTRY". The one reader of that format. Throws std::runtime_error naming the file and the
// YAML key at fault (missing, not a number, out of range), and the entries that exist when `entry`
// is not one.
StepCostModel load_cost_model(const std::filesystem::path& yaml_file, std::string_view entry = {});

// A per_model entry of a measured cost model file, one that names its `device:` (the GPU's name
// as the CUDA runtime reports it) and the model `shape:` it was measured on (HF config.json keys
// -> integers), so an engine can find the entry for its own GPU and checkpoint without a flag.
struct MeasuredStepCost {
  std::string device;                    // e.g. "NVIDIA H200"
  std::string entry;                     // per_model key, e.g. "Qwen2.5-1.5B"
  std::map<std::string, int64_t> shape;  // e.g. hidden_size -> 1536
  StepCostModel cost;
};
// Every per_model entry with a shape in a cost model YAML text (none when the file has no
// `device`); origin names the text in errors, which load_cost_model's rules give.
std::vector<MeasuredStepCost> read_measured_step_costs(std::string_view yaml_text, std::string_view origin);

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
  // Critical-path rule (rule 4; length-aware mode): budgets follow each sequence's probability of
  // being the round's last to finish instead of the long/medium/short classes.
  bool critical_path = true;
  double critical_floor = 0.0;      // P_i assumed at least max(critical_floor, critical_share /
  double critical_share = 1.5;      // batch size): nobody is ruled out, and in a large batch of
                                    // similar sequences everyone counts as a contender
  double global_length_weight = 4;  // pseudo-rollouts of all prompts' lengths mixed into a prompt's
  bool critical_in_steps = true;    // compare remaining steps (remaining tokens / expected tokens
                                    // per step at the sequence's acceptance), not remaining tokens
  double rls_forgetting = 0.99;
  StepCostModel cost;
  // Verify token trees of up to the budget's nodes instead of chains of up to the budget's tokens
  // (DraftRequest::tree; budgets and node floors from tree_budgets), on backends that verify trees
  // (policy::Backend::supports_token_trees; others get chains). Default on: fewer forwards for the
  // same tokens on every open trace, projected makespan 0.91-0.97x of chains under the default
  // cost model (bench/results/trees_2026-12-01.md).
  bool token_trees = true;
  // Acceptance-aware budgets (rules a-c) in fixed mode and with the class rule. Off by default: the
  // contender factor also takes budget from the sequence that turns out longest, and with it the
  // engine's forward-pass savings at T = 1 (tests/rollout EngineFake). Rule 4 (the length-aware
  // default) always applies rules a-c, weighted by P_i and sparing the likeliest-critical sequence.
  bool acceptance_aware = false;
  double acceptance_decay = 0.8;          // per reported draft of the sequence
  double prompt_acceptance_decay = 0.98;  // per reported draft of any sequence of the prompt (and global)
  double acceptance_prior = 0.5;          // per-token acceptance before anything was reported
  double acceptance_prior_weight = 2.0;   // pseudo-trials each level borrows from the one above
  double acceptance_cost_margin = 1.5;    // draft token j only while a^j > margin * relative token cost
  double contender_exponent = 1.0;        // threshold x (sequences with a budget)^this
  int32_t probe_interval = 8;             // steps without drafts before a probe
  int32_t probe_budget = 2;
};

struct SequenceView {
  uint64_t uid = 0;
  std::string_view prompt_id;
  int32_t generated_len = 0;        // response tokens so far
  int32_t max_new_tokens = 0;       // 0 = unknown
  int32_t context_len = 0;          // cached positions (prompt + response so far) before the step;
                                    // priced by StepCostModel::per_context_us (0 = not known)
};

class SpeculationPolicy {
 public:
  explicit SpeculationPolicy(SpeculationPolicyOptions options = {});

  // Draft budget per sequence, same order as `seqs`.
  std::vector<int32_t> budgets(std::span<const SequenceView> seqs) const;
  void budgets(std::span<const SequenceView> seqs, std::vector<int32_t>& out) const;
  // Budgets in nodes for token trees (the chain budgets of budgets()), and each sequence's node
  // floor (DraftRequest::min_node_prob): rule b's threshold applied per node. A node whose
  // calibrated path probability is p adds p expected tokens, i.e. p steps of its sequence, and
  // costs c_tok / (c_base + c_tok*T) of a step, weighed as rule b / rule 4 weigh a draft token
  // (contender factor, or 1 / P_i and 1 for the likeliest-critical sequence; 1 in fixed mode
  // without acceptance_aware): floor = margin * relative token cost * weight. Measured on the
  // three traces (bench/results/trees_2026-12-01.md): the budgets without rule b's per-depth cut
  // verified more nodes and lost on two of the three traces' partial-rollout projections.
  void tree_budgets(std::span<const SequenceView> seqs, std::vector<int32_t>& out,
                    std::vector<double>& node_floor) const;
  // Predicted remaining response tokens of one sequence (rule step 1).
  double predict_remaining(std::string_view prompt_id, int32_t generated_len,
                           int32_t max_new_tokens = 0) const;

  // A rollout of prompt_id finished with this many response tokens.
  void record_finished(std::string_view prompt_id, int32_t response_length);
  // A measured forward: tokens verified, its wall time, the cached positions it attended and
  // whether some sequence fed it more than one token; refits base_us and the token term's scale
  // (RLS; the crossover, the ratio of the two token slopes, per_context_us and verify_step_us stay
  // as configured).
  void observe_step_time(int32_t tokens_verified, double seconds, double context_positions = 0,
                         bool multi_token = false);
  // After each verify step, for every decoding sequence that was offered a budget: how many draft
  // tokens it verified (0 counts as a step without drafts, for probing) and how many were accepted.
  // Out-of-range counts (negative, accepted > drafted) throw std::invalid_argument.
  void observe_acceptance(uint64_t uid, std::string_view prompt_id, int32_t drafted, int32_t accepted);
  // The sequence finished or was dropped: forget its acceptance state.
  void end_sequence(uint64_t uid);
  // Per-token acceptance estimate of a sequence (rule a); acceptance_prior when nothing was reported.
  double acceptance_estimate(uint64_t uid, std::string_view prompt_id) const;
  // Largest budget <= class_budget worth verifying at per-token acceptance a (rule b) for a batch of
  // batch_size sequences holding context_positions cached positions under the current cost model.
  // cost_factor > 0 replaces the contender factor C^contender_exponent (rule 4 passes 1 / P_i).
  int32_t acceptance_budget(double a, int32_t class_budget, size_t batch_size, size_t contenders = 1,
                            double cost_factor = 0, double context_positions = 0) const;
  // Rule 4's probability that each sequence finishes last among `seqs` (length-aware mode).
  std::vector<double> critical_probabilities(std::span<const SequenceView> seqs) const {
    std::vector<double> p;
    critical_probabilities(seqs, p);
    return p;
  }

  // Sum of the sequences' context_len: the step's cached positions (StepCostModel::per_context_us).
  static double context_positions(std::span<const SequenceView> seqs);
  const StepCostModel& cost_model() const { return options_.cost; }
  const SpeculationPolicyOptions& options() const { return options_; }

 private:
  double conditional_remaining(const std::deque<int32_t>& lengths, int32_t g, bool& found) const;
  // Decayed acceptance counts: accepted draft tokens and trials (accepted + rejections).
  struct AcceptanceCounts {
    double accepted = 0, trials = 0;
    void add(int32_t drafted, int32_t accepted_now, double decay);
    double estimate(double prior, double prior_weight) const {
      return (accepted + prior_weight * prior) / (trials + prior_weight);
    }
  };
  struct SequenceAcceptance {
    AcceptanceCounts counts;
    int32_t steps_without_draft = 0;
  };
  void apply_cap(const std::vector<double>& priority, double context_positions, std::vector<int32_t>& out) const;
  // Steps 1-2 (no cap yet), each sequence's predicted remaining length and rule 4's weights
  // (empty without rule 4); critical: rule 4 applies.
  void uncapped_budgets(std::span<const SequenceView> seqs, std::vector<int32_t>& out,
                        std::vector<double>& weight, std::vector<double>& remaining,
                        bool& critical) const;
  void budgets_and_floors(std::span<const SequenceView> seqs, std::vector<int32_t>& out,
                          std::vector<double>* node_floor) const;
  // Rule b's threshold on a draft token's acceptance probability at cost weight `weight`.
  double token_threshold(size_t batch_size, double weight, double context_positions) const;
  // weight[i] = how much a saved step of sequence i is worth (1 = certainly critical); empty: the
  // contender factor of rule b.
  void apply_acceptance(std::span<const SequenceView> seqs, const std::vector<double>& weight,
                        std::vector<int32_t>& out) const;
  // Rule 4: probability of each sequence to finish last, from its remaining-length distribution.
  void critical_probabilities(std::span<const SequenceView> seqs, std::vector<double>& out) const;
  // Remaining-length CDF of one sequence at the grid points (rule 4).
  // (The grid is in steps of `tokens_per_step` tokens.)
  void remaining_cdf(const SequenceView& s, double tokens_per_step, std::vector<double>& cdf) const;

  SpeculationPolicyOptions options_;
  std::unordered_map<std::string, std::deque<int32_t>> lengths_by_prompt_;
  std::deque<int32_t> all_lengths_;
  // The same lengths, sorted (rule 4 reads conditional distributions).
  std::unordered_map<std::string, std::vector<int32_t>> sorted_by_prompt_;
  std::vector<int32_t> all_sorted_;
  // all_count_le_[v] = how many of all_sorted_ are <= v, for v <= all_sorted_.back(): rule 4 asks
  // 56 such counts per sequence and step of the (up to 16 x length_history) global lengths, and a
  // lookup answers each where a search did (same counts, so the same bits). Rebuilt by
  // record_finished, O(longest length).
  std::vector<int32_t> all_count_le_;
  // RLS state for theta = (c_base, c_tok): P (2x2, symmetric) and whether it is initialised.
  double p00_ = 1e6, p01_ = 0, p11_ = 1e6;
  std::unordered_map<uint64_t, SequenceAcceptance> acceptance_by_seq_;
  std::unordered_map<std::string, AcceptanceCounts> acceptance_by_prompt_;
  AcceptanceCounts acceptance_global_;
  bool acceptance_reported_ = false;
};

}  // namespace longtail::drafter
