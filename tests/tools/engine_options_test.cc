// The engine option table (rollout/engine_options_io.h): every field reachable under its key with
// the struct's own default, typed errors naming key / expected type / value, ranges, aliases, and
// the cross-field rules.
#include "rollout/engine_options_io.h"

#include <gtest/gtest.h>

#include <set>

namespace longtail::rollout {
namespace {

std::string error_of(std::string_view key, std::string_view value) {
  EngineSettings s;
  try {
    set_option(s, key, value);
  } catch (const OptionError& e) {
    return e.what();
  }
  return "";
}

TEST(EngineOptionsIo, EveryKeyRoundTripsItsDefaultAndIsUnique) {
  const EngineSettings defaults;
  std::set<std::string> keys;
  for (const OptionSpec& s : engine_option_table()) {
    EXPECT_TRUE(keys.insert(s.key).second) << "duplicate key " << s.key;
    for (const std::string& a : s.aliases) EXPECT_TRUE(keys.insert(a).second) << "duplicate alias " << a;
    EXPECT_FALSE(s.help.empty()) << s.key;
    const std::string def = s.get(defaults);
    if (s.key == "speculation.cost_model") continue;  // a loader, no value of its own
    EngineSettings t;
    ASSERT_NO_THROW(set_option(t, s.key, def)) << s.key << " = " << def;
    EXPECT_EQ(get_option(t, s.key), def) << s.key;
  }
  EXPECT_GE(keys.size(), 50u);
  EXPECT_EQ(get_option(defaults, "speculation.max_budget"), "16");
  EXPECT_EQ(get_option(defaults, "drafter.window_rounds"), "8");
  EXPECT_EQ(get_option(defaults, "backend.kind"), "cpu");
  EXPECT_EQ(get_option(defaults, "speculation.mode"), "length-aware");
}

TEST(EngineOptionsIo, SetsTheFieldsTheKeysName) {
  EngineSettings s;
  set_option(s, "round_groups", "4");
  set_option(s, "overprovision", "2.5");
  set_option(s, "speculation.max_budget", "7");
  set_option(s, "speculation.history_window_rounds", "3");  // alias of drafter.window_rounds
  set_option(s, "drafter.use_own_context", "off");
  set_option(s, "drafter.threads", "2");
  set_option(s, "speculation.cost_base_us", "1234.5");
  set_option(s, "backend.kind", "cuda");
  set_option(s, "backend.threads", "3");
  set_option(s, "backend.deterministic", "yes");
  set_option(s, "trajectory_log", "/tmp/x.ltlog");
  EXPECT_EQ(s.engine.round_groups, 4);
  EXPECT_DOUBLE_EQ(s.engine.overprovision, 2.5);
  EXPECT_EQ(s.engine.budgets.max_budget, 7);
  EXPECT_EQ(s.engine.drafter.window_rounds, 3);
  EXPECT_FALSE(s.engine.drafter.use_own_context);
  EXPECT_EQ(s.engine.drafter.threads, 2);
  EXPECT_DOUBLE_EQ(s.engine.budgets.cost.base_us, 1234.5);
  EXPECT_EQ(s.backend.kind, "cuda");
  EXPECT_EQ(s.backend.num_threads, 3);
  EXPECT_TRUE(s.backend.deterministic);
  EXPECT_EQ(s.engine.trajectory_log, "/tmp/x.ltlog");

  // The worker YAML's older switches map onto speculation.mode in any order.
  EngineSettings m;
  set_option(m, "speculation.length_aware", "false");
  EXPECT_EQ(m.engine.budgets.mode, drafter::BudgetMode::kFixed);
  set_option(m, "speculation.enabled", "false");
  EXPECT_EQ(m.engine.budgets.mode, drafter::BudgetMode::kOff);
  set_option(m, "speculation.length_aware", "true");
  EXPECT_EQ(m.engine.budgets.mode, drafter::BudgetMode::kOff) << "length_aware must not re-enable";
  set_option(m, "speculation.mode", "das");
  EXPECT_EQ(m.engine.budgets.mode, drafter::BudgetMode::kLengthAware);
}

TEST(EngineOptionsIo, ErrorsNameTheKeyTheExpectedTypeAndTheValue) {
  EngineSettings s;
  try {
    set_option(s, "speculation.max_budget", "lots");
    FAIL();
  } catch (const OptionError& e) {
    EXPECT_EQ(e.key(), "speculation.max_budget");
    EXPECT_EQ(e.value(), "lots");
    EXPECT_EQ(std::string(e.what()), "option 'speculation.max_budget' expects an integer in [0, 1024] (tokens), got 'lots'");
  }
  EXPECT_NE(error_of("speculation.max_budget", "2000").find("in [0, 1024]"), std::string::npos);
  EXPECT_NE(error_of("speculation.max_budget", "1.5").find("an integer"), std::string::npos);
  EXPECT_NE(error_of("overprovision", "0.5").find("a number in [1, 64]"), std::string::npos);
  EXPECT_NE(error_of("overprovision", "nan").find("got 'nan'"), std::string::npos);
  EXPECT_NE(error_of("drafter.use_global_scope", "maybe").find("a bool"), std::string::npos);
  EXPECT_NE(error_of("backend.kind", "tpu").find("one of cpu, cuda"), std::string::npos);
  EXPECT_NE(error_of("speculation.mode", "always").find("one of length-aware, fixed, off"), std::string::npos);
  EXPECT_NE(error_of("speculation.max_bugdet", "3").find("did you mean 'speculation.max_budget'"), std::string::npos);
  EXPECT_NE(error_of("speculation.cost_model", "/nonexistent.yaml").find("option 'speculation.cost_model'"),
            std::string::npos);
  EXPECT_EQ(s.engine.budgets.max_budget, 16) << "a refused value must leave the option unchanged";
}

TEST(EngineOptionsIo, TheDraftersAndPolicysNewerOptionsHaveRows) {
  EngineSettings s;
  set_option(s, "speculation.token_trees", "true");
  set_option(s, "speculation.critical_path", "false");
  set_option(s, "speculation.critical_share", "2.5");
  set_option(s, "drafter.calibrate", "off");
  set_option(s, "drafter.tree_max_width", "4");
  EXPECT_TRUE(s.engine.budgets.token_trees);
  EXPECT_FALSE(s.engine.budgets.critical_path);
  EXPECT_DOUBLE_EQ(s.engine.budgets.critical_share, 2.5);
  EXPECT_FALSE(s.engine.drafter.calibrate);
  EXPECT_EQ(s.engine.drafter.tree_max_width, 4);
  // The drafter's own limit (8,000,000 tokens per scope) is the table's range, so it fails early.
  EXPECT_NE(error_of("drafter.global_token_budget", "9000000").find("in [0, 8000000]"), std::string::npos);
}

TEST(EngineOptionsIo, ErrorKindsTellUnknownKeysBadValuesAndFailedLoadsApart) {
  auto kind_of = [](std::string_view key, std::string_view value) {
    EngineSettings s;
    try {
      set_option(s, key, value);
    } catch (const OptionError& e) {
      return e.kind();
    }
    ADD_FAILURE() << key << " = " << value << " was accepted";
    return OptionError::Kind::kFailed;
  };
  EXPECT_EQ(kind_of("speculation.max_bugdet", "3"), OptionError::Kind::kUnknownKey);
  EXPECT_EQ(kind_of("speculation.max_budget", "-1"), OptionError::Kind::kBadValue);
  EXPECT_EQ(kind_of("speculation.cost_model", "/nonexistent.yaml"), OptionError::Kind::kFailed);
  EXPECT_EQ(closest_option("drafter.min_prb"), "drafter.min_prob");
  EXPECT_EQ(closest_option("completely.different"), "");
}

TEST(EngineOptionsIo, CrossFieldRulesNameTheirKeys) {
  EngineSettings s;
  set_option(s, "speculation.short_frac", "0.8");
  set_option(s, "speculation.long_frac", "0.4");
  try {
    validate_settings(s);
    FAIL();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("speculation.short_frac"), std::string::npos) << e.what();
  }
  EXPECT_NO_THROW(validate_settings(EngineSettings{}));
}

// backend.kind accounting emits empty outputs: only trace-forced tools take it, and each scope's
// error lists what that scope accepts.
TEST(EngineOptionsIo, AccountingBackendIsAcceptedOnlyByTraceForcedTools) {
  EXPECT_EQ(error_of("backend.kind", "accounting"), "option 'backend.kind' expects one of cpu, cuda, got 'accounting'");
  EngineSettings s;
  set_option(s, "backend.kind", "accounting", OptionScope::kTraceForced);
  EXPECT_EQ(s.backend.kind, "accounting");
  EXPECT_EQ(get_option(s, "backend.kind"), "accounting");
  set_option(s, "backend.kind", "cuda", OptionScope::kTraceForced);
  EXPECT_EQ(s.backend.kind, "cuda");
  try {
    set_option(s, "backend.kind", "tpu", OptionScope::kTraceForced);
    FAIL();
  } catch (const OptionError& e) {
    EXPECT_EQ(std::string(e.what()), "option 'backend.kind' expects one of cpu, cuda, accounting, got 'tpu'");
    EXPECT_EQ(e.expected(), "one of cpu, cuda, accounting");
  }
  EXPECT_EQ(describe_expected(*find_option("backend.kind")), "one of cpu, cuda");
}

// Every term of the step cost model (drafter/speculation_policy.h StepCostModel) has its key.
TEST(EngineOptionsIo, EveryStepCostTermHasARow) {
  EngineSettings s;
  set_option(s, "speculation.cost_crossover_tokens", "256");
  set_option(s, "speculation.cost_per_token_above_us", "3.5");
  set_option(s, "speculation.cost_per_context_us", "0.01");
  set_option(s, "speculation.cost_verify_step_us", "425");
  EXPECT_DOUBLE_EQ(s.engine.budgets.cost.crossover_tokens, 256);
  EXPECT_DOUBLE_EQ(s.engine.budgets.cost.verify_step_us, 425);
  EXPECT_DOUBLE_EQ(s.engine.budgets.cost.per_token_above_us, 3.5);
  EXPECT_DOUBLE_EQ(s.engine.budgets.cost.per_context_us, 0.01);
  EXPECT_EQ(error_of("speculation.cost_per_context_us", "-1"),
            "option 'speculation.cost_per_context_us' expects a number in [0, inf] (us), got '-1'");
}

TEST(EngineOptionsIo, CostModelKeyReadsTheRepositoryYaml) {
  EngineSettings s;
  set_option(s, "speculation.cost_model", std::string(LONGTAIL_SOURCE_DIR) + "/configs/cost_model_h100.yaml#Qwen2.5-1.5B");
  EXPECT_NEAR(s.engine.budgets.cost.base_us, 2205.41, 1e-9);
  set_option(s, "speculation.cost_model", std::string(LONGTAIL_SOURCE_DIR) + "/configs/cost_model.yaml");
  EXPECT_NEAR(s.engine.budgets.cost.base_us, 5000, 1e-9);
}

}  // namespace
}  // namespace longtail::rollout
