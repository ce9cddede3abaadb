// The engine option table; see engine_options_io.h. Each row names a field once: its accessor gives
// both set and get, so the default shown is the struct's own initialiser.
#include "rollout/engine_options_io.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <sstream>

namespace longtail::rollout {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

std::string number_text(double v) {
  if (v == std::floor(v) && std::fabs(v) < 1e15) return std::to_string(static_cast<int64_t>(v));
  std::ostringstream o;
  o.precision(9);
  o << v;
  return o.str();
}

OptionError bad_value(const OptionSpec& s, std::string_view value, OptionScope scope) {
  const std::string expected = describe_expected(s, scope);
  return OptionError(OptionError::Kind::kBadValue, s.key, expected, std::string(value),
                     "option '" + s.key + "' expects " + expected + ", got '" + std::string(value) + "'");
}

bool parse_bool(std::string_view v, bool& out) {
  for (std::string_view t : {"true", "on", "yes", "1"}) {
    if (v == t) return out = true, true;
  }
  for (std::string_view f : {"false", "off", "no", "0"}) {
    if (v == f) return out = false, true;
  }
  return false;
}

bool parse_int(std::string_view v, int64_t& out) {
  const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  return ec == std::errc() && end == v.data() + v.size() && !v.empty();
}

bool parse_float(std::string_view v, double& out) {
  const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  return ec == std::errc() && end == v.data() + v.size() && !v.empty() && std::isfinite(out);
}

bool in_range(const OptionSpec& s, double v) { return s.min > s.max || (v >= s.min && v <= s.max); }

// Row builders. `field` returns a reference to the member in EngineSettings.
template <class T, class Field>
OptionSpec number(std::string key, std::string unit, double lo, double hi, std::string help, Field field) {
  OptionSpec s;
  s.key = std::move(key);
  s.type = std::is_integral_v<T> ? OptionType::kInt : OptionType::kFloat;
  s.unit = std::move(unit);
  s.min = lo;
  s.max = hi;
  s.help = std::move(help);
  s.set = [field](EngineSettings& e, std::string_view v) {
    if constexpr (std::is_integral_v<T>) {
      int64_t x = 0;
      parse_int(v, x);
      field(e) = static_cast<T>(x);
    } else {
      double x = 0;
      parse_float(v, x);
      field(e) = static_cast<T>(x);
    }
  };
  s.get = [field](const EngineSettings& e) { return number_text(static_cast<double>(field(const_cast<EngineSettings&>(e)))); };
  return s;
}

template <class Field>
OptionSpec boolean(std::string key, std::string help, Field field) {
  OptionSpec s;
  s.key = std::move(key);
  s.type = OptionType::kBool;
  s.help = std::move(help);
  s.set = [field](EngineSettings& e, std::string_view v) {
    bool b = false;
    parse_bool(v, b);
    field(e) = b;
  };
  s.get = [field](const EngineSettings& e) { return field(const_cast<EngineSettings&>(e)) ? "true" : "false"; };
  return s;
}

template <class Field>
OptionSpec text(std::string key, OptionType type, std::string help, Field field) {
  OptionSpec s;
  s.key = std::move(key);
  s.type = type;
  s.help = std::move(help);
  s.set = [field](EngineSettings& e, std::string_view v) { field(e) = std::string(v); };
  s.get = [field](const EngineSettings& e) {
    if constexpr (std::is_same_v<std::decay_t<decltype(field(const_cast<EngineSettings&>(e)))>, std::string>) {
      return field(const_cast<EngineSettings&>(e));
    } else {
      return field(const_cast<EngineSettings&>(e)).string();
    }
  };
  return s;
}

OptionSpec with_aliases(OptionSpec s, std::vector<std::string> aliases) {
  s.aliases = std::move(aliases);
  return s;
}

std::vector<OptionSpec> build_table() {
  using E = EngineSettings;
  std::vector<OptionSpec> t;
  auto& b = t;
  // ---- rounds and batching ----
  b.push_back(number<int32_t>("round_groups", "groups", 0, 1 << 20,
      "N: groups per emitted batch (0 = every submitted group forms one round)",
      [](E& e) -> int32_t& { return e.engine.round_groups; }));
  b.push_back(number<double>("overprovision", "x N", 1, 64,
      "APRIL partial rollouts: keep ceil(f * N) groups in flight and carry the unfinished over (1 = off)",
      [](E& e) -> double& { return e.engine.overprovision; }));
  b.push_back(number<int32_t>("max_running_sequences", "sequences", 1, 1 << 20,
      "sequences in the running batch at most",
      [](E& e) -> int32_t& { return e.engine.max_running_sequences; }));
  b.push_back(number<int32_t>("max_tokens_per_forward", "tokens", 2, 1 << 24,
      "tokens fed to one forward at most (prefill chunking bound)",
      [](E& e) -> int32_t& { return e.engine.max_tokens_per_forward; }));
  b.push_back(number<double>("importance_cap", "", 1e-9, kInf,
      "C in min(w, C) for sequence importance weights (VCPO)",
      [](E& e) -> double& { return e.engine.importance_cap; }));
  b.push_back(number<double>("token_ratio_cap", "", 1e-9, kInf,
      "C for token-level truncated importance sampling (TIS)",
      [](E& e) -> double& { return e.engine.token_ratio_cap; }));
  b.push_back(text("trajectory_log", OptionType::kPath,
      "append every emitted trajectory and round boundary to this file (empty = off; rollout/trajectory_log.h)",
      [](E& e) -> std::filesystem::path& { return e.engine.trajectory_log; }));
  b.push_back(number<int32_t>("recent_rounds_kept", "rounds", 1, 1 << 20,
      "rounds whose trajectories stay reachable by rewards (set_reward)",
      [](E& e) -> int32_t& { return e.engine.recent_rounds_kept; }));

  // ---- speculation: budgets (drafter/speculation_policy.h) ----
  {
    OptionSpec s;
    s.key = "speculation.mode";
    s.type = OptionType::kChoice;
    s.choices = {"length-aware", "fixed", "off", "das", "length_aware"};
    s.help = "draft budgets: length-aware (DAS: by predicted remaining length), fixed (max_budget for every "
             "sequence) or off (no speculation)";
    s.aliases = {"speculation.budget_policy"};
    s.set = [](E& e, std::string_view v) { e.engine.budgets.mode = drafter::parse_budget_mode(v); };
    s.get = [](const E& e) { return std::string(drafter::to_string(e.engine.budgets.mode)); };
    b.push_back(s);
  }
  {
    OptionSpec s;
    s.key = "speculation.enabled";
    s.type = OptionType::kBool;
    s.help = "false = speculation.mode off; true turns an off mode back to length-aware and keeps any other "
             "(the worker YAML's older switch)";
    s.set = [](E& e, std::string_view v) {
      bool on = false;
      parse_bool(v, on);
      auto& m = e.engine.budgets.mode;
      if (!on) m = drafter::BudgetMode::kOff;
      else if (m == drafter::BudgetMode::kOff) m = drafter::BudgetMode::kLengthAware;
    };
    s.get = [](const E& e) { return std::string(e.engine.budgets.mode == drafter::BudgetMode::kOff ? "false" : "true"); };
    b.push_back(s);
  }
  {
    OptionSpec s;
    s.key = "speculation.length_aware";
    s.type = OptionType::kBool;
    s.help = "true = speculation.mode length-aware, false = fixed; no effect while the mode is off (the worker "
             "YAML's older switch)";
    s.set = [](E& e, std::string_view v) {
      bool on = false;
      parse_bool(v, on);
      auto& m = e.engine.budgets.mode;
      if (m != drafter::BudgetMode::kOff) m = on ? drafter::BudgetMode::kLengthAware : drafter::BudgetMode::kFixed;
    };
    s.get = [](const E& e) { return std::string(e.engine.budgets.mode == drafter::BudgetMode::kFixed ? "false" : "true"); };
    b.push_back(s);
  }
  b.push_back(number<int32_t>("speculation.max_budget", "tokens", 0, 1024,
      "draft tokens per sequence per step, at most (the long class; 0 = no speculation)",
      [](E& e) -> int32_t& { return e.engine.budgets.max_budget; }));
  b.push_back(number<int32_t>("speculation.medium_budget", "tokens", 0, 1024,
      "draft tokens of the medium class (length-aware; never above max_budget)",
      [](E& e) -> int32_t& { return e.engine.budgets.medium_budget; }));
  b.push_back(number<double>("speculation.long_frac", "", 0, 1,
      "length-aware: predicted remaining >= this x the batch's largest is the long class",
      [](E& e) -> double& { return e.engine.budgets.long_frac; }));
  b.push_back(number<double>("speculation.short_frac", "", 0, 1,
      "length-aware: below this x the batch's largest is the short class (no drafts)",
      [](E& e) -> double& { return e.engine.budgets.short_frac; }));
  b.push_back(number<int32_t>("speculation.max_tokens_per_step", "tokens", 0, 1 << 24,
      "verified tokens per step at most (0 = derived from the cost model and max_step_overhead)",
      [](E& e) -> int32_t& { return e.engine.budgets.max_tokens_per_step; }));
  b.push_back(number<double>("speculation.max_step_overhead", "", 0, kInf,
      "a speculative step may cost up to (1 + this) x a plain step under the cost model",
      [](E& e) -> double& { return e.engine.budgets.max_step_overhead; }));
  b.push_back(number<int32_t>("speculation.length_history", "lengths", 1, 1 << 20,
      "finished response lengths remembered per prompt (x16 over all prompts) for length prediction",
      [](E& e) -> int32_t& { return e.engine.budgets.length_history; }));
  b.push_back(number<double>("speculation.overshoot_factor", "", 0, kInf,
      "remaining-length guess, as a share of the length so far, once past every recorded length",
      [](E& e) -> double& { return e.engine.budgets.overshoot_factor; }));
  b.push_back(number<double>("speculation.min_remaining", "tokens", 0, kInf,
      "smallest remaining-length guess",
      [](E& e) -> double& { return e.engine.budgets.min_remaining; }));
  b.push_back(boolean("speculation.critical_path",
      "length-aware: budgets follow each sequence's probability of finishing last (rule 4) instead of the "
      "long/medium/short classes",
      [](E& e) -> bool& { return e.engine.budgets.critical_path; }));
  b.push_back(number<double>("speculation.critical_floor", "", 0, 1,
      "critical path: a sequence's probability of finishing last is taken as at least this",
      [](E& e) -> double& { return e.engine.budgets.critical_floor; }));
  b.push_back(number<double>("speculation.critical_share", "", 0, kInf,
      "critical path: ... and at least this / the batch size",
      [](E& e) -> double& { return e.engine.budgets.critical_share; }));
  b.push_back(number<double>("speculation.global_length_weight", "rollouts", 0, kInf,
      "critical path: pseudo-rollouts of all prompts' lengths mixed into a prompt's length distribution",
      [](E& e) -> double& { return e.engine.budgets.global_length_weight; }));
  b.push_back(boolean("speculation.critical_in_steps",
      "critical path: compare remaining steps at each sequence's acceptance, not remaining tokens",
      [](E& e) -> bool& { return e.engine.budgets.critical_in_steps; }));
  b.push_back(boolean("speculation.token_trees",
      "verify token trees of up to the budget's nodes instead of chains (backends that verify trees; "
      "others get chains)",
      [](E& e) -> bool& { return e.engine.budgets.token_trees; }));
  b.push_back(number<double>("speculation.rls_forgetting", "", 1e-9, 1,
      "forgetting factor of the online cost-model fit (refit_cost_model)",
      [](E& e) -> double& { return e.engine.budgets.rls_forgetting; }));
  {
    OptionSpec s = number<double>("speculation.cost_base_us", "us", 0, kInf,
        "c_base of the step cost model t = c_base + c_tok * tokens verified (0 = the built-in 5000)",
        [](E& e) -> double& { return e.engine.budgets.cost.base_us; });
    s.set = [](E& e, std::string_view v) {
      double x = 0;
      parse_float(v, x);
      e.engine.budgets.cost.base_us = x > 0 ? x : drafter::StepCostModel{}.base_us;
    };
    b.push_back(s);
  }
  {
    OptionSpec s = number<double>("speculation.cost_per_token_us", "us", 0, kInf,
        "c_tok of the step cost model, per verified token (0 = the built-in 20)",
        [](E& e) -> double& { return e.engine.budgets.cost.per_token_us; });
    s.set = [](E& e, std::string_view v) {
      double x = 0;
      parse_float(v, x);
      e.engine.budgets.cost.per_token_us = x > 0 ? x : drafter::StepCostModel{}.per_token_us;
    };
    b.push_back(s);
  }
  b.push_back(number<double>("speculation.cost_crossover_tokens", "tokens", 0, kInf,
      "X of the step cost model: verified tokens per step beyond which each further token costs "
      "speculation.cost_per_token_above_us (0 = no crossover)",
      [](E& e) -> double& { return e.engine.budgets.cost.crossover_tokens; }));
  b.push_back(number<double>("speculation.cost_per_token_above_us", "us", 0, kInf,
      "step cost per verified token beyond the crossover (read only when cost_crossover_tokens > 0)",
      [](E& e) -> double& { return e.engine.budgets.cost.per_token_above_us; }));
  b.push_back(number<double>("speculation.cost_per_context_us", "us", 0, kInf,
      "step cost per cached position the step's sequences attend to",
      [](E& e) -> double& { return e.engine.budgets.cost.per_context_us; }));
  b.push_back(number<double>("speculation.cost_verify_step_us", "us", 0, kInf,
      "step cost added once to a step in which some sequence feeds more than one token (drafts "
      "to verify, a prefill chunk): the verify path's fixed cost over a decode step",
      [](E& e) -> double& { return e.engine.budgets.cost.verify_step_us; }));
  {
    OptionSpec s;
    s.key = "speculation.cost_model";
    s.type = OptionType::kPath;
    s.help = "read the step cost model (c_base, c_tok and the optional crossover and context terms) from this "
             "YAML (configs/cost_model*.yaml: step_cost, or FILE#NAME for its per_model entry NAME; "
             "scripts/fit_cost_model.py writes them); auto (default): the compiled-in measurement of this "
             "GPU and checkpoint shape where one exists (rollout/measured_cost_model.h), else the cost_* keys";
    s.set = [](E& e, std::string_view v) {
      if (v == "auto") {
        e.engine.measured_cost_model = true;
        return;
      }
      e.engine.budgets.cost = drafter::load_cost_model(std::string(v));
    };
    // A loader: the constants it read are the cost_* keys above.
    s.get = [](const E& e) { return std::string(e.engine.measured_cost_model ? "auto" : ""); };
    b.push_back(s);
  }
  // Any explicit cost setting (a file or one constant) is the user's model: auto no longer replaces it.
  for (OptionSpec& s : b) {
    if (s.key.rfind("speculation.cost_", 0) != 0) continue;
    s.set = [inner = s.set](E& e, std::string_view v) {
      inner(e, v);
      if (v != "auto") e.engine.measured_cost_model = false;
    };
  }
  b.push_back(boolean("speculation.refit_cost_model",
      "refit c_base and c_tok online from measured forward times",
      [](E& e) -> bool& { return e.engine.refit_cost_model; }));
  b.push_back(boolean("speculation.acceptance_aware",
      "shrink budgets of sequences whose drafts keep failing (drafter/speculation_policy.h)",
      [](E& e) -> bool& { return e.engine.budgets.acceptance_aware; }));
  b.push_back(number<double>("speculation.acceptance_decay", "", 1e-9, 1,
      "acceptance-aware: per-draft decay of a sequence's acceptance counts",
      [](E& e) -> double& { return e.engine.budgets.acceptance_decay; }));
  b.push_back(number<double>("speculation.prompt_acceptance_decay", "", 1e-9, 1,
      "acceptance-aware: per-draft decay of a prompt's (and the global) acceptance counts",
      [](E& e) -> double& { return e.engine.budgets.prompt_acceptance_decay; }));
  b.push_back(number<double>("speculation.acceptance_prior", "", 0, 1,
      "acceptance-aware: per-token acceptance assumed before anything was reported",
      [](E& e) -> double& { return e.engine.budgets.acceptance_prior; }));
  b.push_back(number<double>("speculation.acceptance_prior_weight", "trials", 1e-9, kInf,
      "acceptance-aware: pseudo-trials each level borrows from the one above",
      [](E& e) -> double& { return e.engine.budgets.acceptance_prior_weight; }));
  b.push_back(number<double>("speculation.acceptance_cost_margin", "", 0, kInf,
      "acceptance-aware: draft token j only while a^j > margin x its relative cost",
      [](E& e) -> double& { return e.engine.budgets.acceptance_cost_margin; }));
  b.push_back(number<double>("speculation.contender_exponent", "", 0, kInf,
      "acceptance-aware: threshold x (sequences with a budget)^this",
      [](E& e) -> double& { return e.engine.budgets.contender_exponent; }));
  b.push_back(number<int32_t>("speculation.probe_interval", "steps", 1, 1 << 20,
      "acceptance-aware: steps without drafts before a probe",
      [](E& e) -> int32_t& { return e.engine.budgets.probe_interval; }));
  b.push_back(number<int32_t>("speculation.probe_budget", "tokens", 0, 1024,
      "acceptance-aware: draft tokens of a probe",
      [](E& e) -> int32_t& { return e.engine.budgets.probe_budget; }));

  // ---- drafter (drafter/drafter.h) ----
  b.push_back(with_aliases(number<int32_t>("drafter.window_rounds", "rounds", 1, 1 << 20,
      "drafter history kept for this many rounds",
      [](E& e) -> int32_t& { return e.engine.drafter.window_rounds; }), {"speculation.history_window_rounds"}));
  b.push_back(number<int64_t>("drafter.global_token_budget", "tokens", 0, 8e6,
      "global history scope: newest rollouts up to this many tokens",
      [](E& e) -> int64_t& { return e.engine.drafter.global_token_budget; }));
  b.push_back(number<int64_t>("drafter.prompt_token_budget", "tokens", 0, 8e6,
      "per-prompt history scope: newest rollouts up to this many tokens",
      [](E& e) -> int64_t& { return e.engine.drafter.prompt_token_budget; }));
  b.push_back(boolean("drafter.use_prompt_scope", "draft from recent rollouts of the same prompt id",
      [](E& e) -> bool& { return e.engine.drafter.use_prompt_scope; }));
  b.push_back(boolean("drafter.use_global_scope", "draft from recent rollouts of every prompt",
      [](E& e) -> bool& { return e.engine.drafter.use_global_scope; }));
  b.push_back(boolean("drafter.use_own_context", "draft from the sequence's own prompt and output",
      [](E& e) -> bool& { return e.engine.drafter.use_own_context; }));
  b.push_back(number<int32_t>("drafter.prompt_tail_tokens", "tokens", 0, 1 << 20,
      "last prompt tokens indexed before each rollout's response (drafts for the first tokens)",
      [](E& e) -> int32_t& { return e.engine.drafter.prompt_tail_tokens; }));
  b.push_back(number<double>("drafter.min_prob", "", 0, 1,
      "stop a draft when its path probability falls below this",
      [](E& e) -> double& { return e.engine.drafter.min_prob; }));
  b.push_back(number<double>("drafter.match_length_factor", "", 0, kInf,
      "draft at most ceil(factor x match length) tokens (0 = no limit)",
      [](E& e) -> double& { return e.engine.drafter.match_length_factor; }));
  b.push_back(number<double>("drafter.extend_prob", "", 0, 1,
      "past the match-length limit, a history draft goes on while its path probability stays >= this",
      [](E& e) -> double& { return e.engine.drafter.extend_prob; }));
  b.push_back(number<double>("drafter.count_prior", "", 0, kInf,
      "path probability = count / (context count + prior)",
      [](E& e) -> double& { return e.engine.drafter.count_prior; }));
  b.push_back(number<int32_t>("drafter.min_match", "tokens", 1, 1 << 20,
      "history matches shorter than this propose nothing",
      [](E& e) -> int32_t& { return e.engine.drafter.min_match; }));
  b.push_back(number<int32_t>("drafter.match_states", "", 1, 64,
      "history contexts tried per scope (the longest match and up to this - 1 shorter ones)",
      [](E& e) -> int32_t& { return e.engine.drafter.match_states; }));
  b.push_back(number<int32_t>("drafter.own_min_match", "tokens", 1, 1 << 20,
      "own-context repeats shorter than this propose nothing",
      [](E& e) -> int32_t& { return e.engine.drafter.own_min_match; }));
  b.push_back(number<double>("drafter.own_match_scale", "", 1e-9, kInf,
      "own-context per-token confidence = l / (l + this) for a repeat of l tokens",
      [](E& e) -> double& { return e.engine.drafter.own_match_scale; }));
  b.push_back(boolean("drafter.own_recent", "own-context drafts follow a recent earlier occurrence, not the first",
      [](E& e) -> bool& { return e.engine.drafter.own_recent; }));
  b.push_back(boolean("drafter.calibrate",
      "draft probabilities are the realised acceptance of tokens with similar evidence, learnt online",
      [](E& e) -> bool& { return e.engine.drafter.calibrate; }));
  b.push_back(number<double>("drafter.calibration_prior", "tokens", 0, kInf,
      "calibration: pseudo-tokens per cell at the raw probability",
      [](E& e) -> double& { return e.engine.drafter.calibration_prior; }));
  b.push_back(number<int32_t>("drafter.tree_max_width", "children", 1, 1024,
      "token trees: children per node at most",
      [](E& e) -> int32_t& { return e.engine.drafter.tree_max_width; }));
  b.push_back(number<int32_t>("drafter.threads", "threads", 1, 1024,
      "threads drafting for the batch (1 = the engine's thread only)",
      [](E& e) -> int32_t& { return e.engine.drafter.threads; }));

  // ---- backend (policy/backend.h) ----
  {
    OptionSpec s = text("backend.kind", OptionType::kChoice,
                        "cpu (fp32 reference) or cuda (bf16; needs a CUDA build and a GPU); trace-forced tools "
                        "(bench-rounds --trace, replay) also take accounting: no model, only each sequence's "
                        "length and the KV blocks, so the real engine replays a trace at the drafter's cost and "
                        "counts forwards and verified tokens as the cpu backend would (policy/accounting_backend.h)",
                        [](E& e) -> std::string& { return e.backend.kind; });
    s.choices = {"cpu", "cuda"};
    s.trace_forced_choices = {"accounting"};
    b.push_back(s);
  }
  b.push_back(number<int>("backend.threads", "threads", 0, 4096,
      "cpu: threads for the forward (0 = all cores)",
      [](E& e) -> int& { return e.backend.num_threads; }));
  b.push_back(number<int64_t>("backend.max_kv_tokens", "tokens", 0, 1e15,
      "cpu: KV cache capacity (0 = bounded only by memory)",
      [](E& e) -> int64_t& { return e.backend.max_kv_tokens; }));
  b.push_back(number<double>("backend.kv_memory_fraction", "", 1e-6, 1,
      "cuda: share of free GPU memory given to the KV cache",
      [](E& e) -> double& { return e.backend.kv_memory_fraction; }));
  b.push_back(number<int32_t>("backend.kv_block_size", "tokens", 1, 4096,
      "KV allocation granularity",
      [](E& e) -> int32_t& { return e.backend.kv_block_size; }));
  b.push_back(number<int>("backend.device", "", 0, 1024, "cuda: device ordinal",
      [](E& e) -> int& { return e.backend.device; }));
  b.push_back(boolean("backend.deterministic",
      "batch-invariant kernels: logits independent of the batch, so speculation cannot change outputs (cuda: "
      "costs throughput; cpu: holds by construction)",
      [](E& e) -> bool& { return e.backend.deterministic; }));
  return t;
}

// Levenshtein distance, for "did you mean".
size_t distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] != b[j - 1])});
      diag = up;
    }
  }
  return row[b.size()];
}

}  // namespace

const char* option_type_name(OptionType t) {
  switch (t) {
    case OptionType::kBool: return "bool";
    case OptionType::kInt: return "integer";
    case OptionType::kFloat: return "number";
    case OptionType::kString: return "string";
    case OptionType::kPath: return "path";
    case OptionType::kChoice: return "one of";
  }
  return "?";
}

std::span<const OptionSpec> engine_option_table() {
  static const std::vector<OptionSpec> table = build_table();
  return table;
}

const OptionSpec* find_option(std::string_view key) {
  for (const OptionSpec& s : engine_option_table()) {
    if (s.key == key) return &s;
    for (const std::string& a : s.aliases) {
      if (a == key) return &s;
    }
  }
  return nullptr;
}

std::string describe_expected(const OptionSpec& s, OptionScope scope) {
  std::string out;
  switch (s.type) {
    case OptionType::kBool: out = "a bool (true/false, on/off, yes/no, 1/0)"; break;
    case OptionType::kString: out = "a string"; break;
    case OptionType::kPath: out = "a path"; break;
    case OptionType::kChoice: {
      out = "one of ";
      for (size_t i = 0; i < s.choices.size(); ++i) out += (i ? ", " : "") + s.choices[i];
      if (scope == OptionScope::kTraceForced) {
        for (const std::string& c : s.trace_forced_choices) out += ", " + c;
      }
      break;
    }
    case OptionType::kInt:
    case OptionType::kFloat: {
      out = s.type == OptionType::kInt ? "an integer" : "a number";
      if (s.min <= s.max) {
        out += " in [" + number_text(s.min) + ", " + (std::isinf(s.max) ? std::string("inf") : number_text(s.max)) + "]";
      }
      break;
    }
  }
  if (!s.unit.empty()) out += " (" + s.unit + ")";
  return out;
}

std::string closest_option(std::string_view key) {
  std::string best;
  size_t best_d = 4;  // suggest only a near miss
  for (const OptionSpec& o : engine_option_table()) {
    const size_t d = distance(key, o.key);
    if (d < best_d) best_d = d, best = o.key;
  }
  return best;
}

void set_option(EngineSettings& settings, std::string_view key, std::string_view value, OptionScope scope) {
  const OptionSpec* s = find_option(key);
  if (!s) {
    const std::string best = closest_option(key);
    throw OptionError(OptionError::Kind::kUnknownKey, std::string(key), "", std::string(value),
                      "unknown option '" + std::string(key) + "'" + (best.empty() ? "" : " (did you mean '" + best + "'?)"));
  }
  bool ok = true;
  switch (s->type) {
    case OptionType::kBool: {
      bool b;
      ok = parse_bool(value, b);
      break;
    }
    case OptionType::kInt: {
      int64_t x;
      ok = parse_int(value, x) && in_range(*s, static_cast<double>(x));
      break;
    }
    case OptionType::kFloat: {
      double x;
      ok = parse_float(value, x) && in_range(*s, x);
      break;
    }
    case OptionType::kChoice: {
      auto has = [&](const std::vector<std::string>& words) {
        return std::find(words.begin(), words.end(), value) != words.end();
      };
      ok = has(s->choices) || (scope == OptionScope::kTraceForced && has(s->trace_forced_choices));
      break;
    }
    case OptionType::kString:
    case OptionType::kPath:
      break;
  }
  if (!ok) throw bad_value(*s, value, scope);
  try {
    s->set(settings, value);
  } catch (const OptionError&) {
    throw;
  } catch (const std::exception& e) {  // a loader key (speculation.cost_model) that failed
    throw OptionError(OptionError::Kind::kFailed, s->key, describe_expected(*s), std::string(value),
                      "option '" + s->key + "': " + e.what());
  }
}

std::string get_option(const EngineSettings& settings, std::string_view key) {
  const OptionSpec* s = find_option(key);
  if (!s) throw OptionError(OptionError::Kind::kUnknownKey, std::string(key), "", "", "unknown option '" + std::string(key) + "'");
  return s->get(settings);
}

void validate_settings(const EngineSettings& settings) {
  const auto& b = settings.engine.budgets;
  if (b.short_frac > b.long_frac) {
    throw std::invalid_argument("speculation.short_frac (" + number_text(b.short_frac) +
                                ") must not exceed speculation.long_frac (" + number_text(b.long_frac) + ")");
  }
  if (b.cost.base_us + b.cost.per_token_us <= 0) {
    throw std::invalid_argument("speculation.cost_base_us and speculation.cost_per_token_us are both 0");
  }
  validate_engine_options(settings.engine);
}

}  // namespace longtail::rollout
