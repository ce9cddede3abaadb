// DAS budgets (classes, promotion, cap), modes, the RLS cost refit and cost model files.
#include "drafter/speculation_policy.h"

#include <gtest/gtest.h>

#include <fstream>
#include <random>

namespace longtail::drafter {
namespace {

SpeculationPolicyOptions no_cap() {
  SpeculationPolicyOptions o;
  o.max_tokens_per_step = 1 << 30;
  return o;
}

TEST(SpeculationPolicy, NoHistoryGivesEveryoneTheMaxBudget) {
  SpeculationPolicy p(no_cap());
  std::vector<SequenceView> s{{1, "a", 0, 0}, {2, "b", 10, 0}};
  EXPECT_EQ(p.budgets(s), (std::vector<int32_t>{16, 16}));
}

TEST(SpeculationPolicy, LengthClassesAndPromotion) {
  SpeculationPolicy p(no_cap());
  for (int i = 0; i < 4; ++i) {
    p.record_finished("long", 1000);
    p.record_finished("mid", 300);
    p.record_finished("short", 50);
  }
  EXPECT_DOUBLE_EQ(p.predict_remaining("long", 200), 800);
  EXPECT_DOUBLE_EQ(p.predict_remaining("long", 200, 500), 300);  // capped by max_new_tokens
  std::vector<SequenceView> s{{1, "long", 0, 0}, {2, "mid", 0, 0}, {3, "short", 0, 0}};
  EXPECT_EQ(p.budgets(s), (std::vector<int32_t>{16, 4, 0}));
  // The short prompt's sequence ran past all its recorded lengths: its prediction moves to the
  // global lengths above 60 (1000 and 300), so it is promoted to the long class.
  s[2].generated_len = 60;
  EXPECT_DOUBLE_EQ(p.predict_remaining("short", 60), 590);  // mean of 940 (x4) and 240 (x4)
  EXPECT_EQ(p.budgets(s)[2], 16);
  // Past every length seen anywhere: max(g * 0.5, 64).
  EXPECT_DOUBLE_EQ(p.predict_remaining("short", 3000), 1500);
}

TEST(SpeculationPolicy, CapTrimsShortestPredictionsFirst) {
  SpeculationPolicyOptions o;
  o.max_tokens_per_step = 3 + 20;  // 3 sequences + 20 draft tokens
  SpeculationPolicy p(o);
  p.record_finished("a", 1000);
  p.record_finished("b", 900);
  p.record_finished("c", 800);
  std::vector<SequenceView> s{{1, "c", 0, 0}, {2, "a", 0, 0}, {3, "b", 0, 0}};
  EXPECT_EQ(p.budgets(s), (std::vector<int32_t>{0, 16, 4}));
  // Derived from the cost model: (1 + 1) * (c_base + c_tok * 3) - c_base = c_base + 2 * 3 * c_tok
  SpeculationPolicyOptions m;
  m.cost = {100.0, 10.0};
  SpeculationPolicy q(m);
  q.record_finished("a", 1000);
  q.record_finished("b", 900);
  q.record_finished("c", 800);
  // cap = floor((2 * 130 - 100) / 10) = 16 tokens verified, 13 of them drafts
  EXPECT_EQ(q.budgets(s), (std::vector<int32_t>{0, 13, 0}));
}

TEST(SpeculationPolicy, ModesAndBudgetLimitByMaxNewTokens) {
  SpeculationPolicyOptions o = no_cap();
  o.mode = BudgetMode::kOff;
  std::vector<SequenceView> s{{1, "a", 0, 0}, {2, "a", 95, 100}};
  EXPECT_EQ(SpeculationPolicy(o).budgets(s), (std::vector<int32_t>{0, 0}));
  o.mode = BudgetMode::kFixed;
  SpeculationPolicy f(o);
  f.record_finished("a", 5);
  EXPECT_EQ(f.budgets(s), (std::vector<int32_t>{16, 4}));
  EXPECT_EQ(parse_budget_mode("das"), BudgetMode::kLengthAware);
  EXPECT_EQ(parse_budget_mode("fixed"), BudgetMode::kFixed);
  EXPECT_THROW(parse_budget_mode("sometimes"), std::invalid_argument);
}

TEST(SpeculationPolicy, RlsRecoversStepCostConstants) {
  SpeculationPolicy p;
  std::mt19937 rng(5);
  std::uniform_int_distribution<int> tokens(16, 4096);
  std::normal_distribution<double> noise(0, 20);
  for (int i = 0; i < 2000; ++i) {
    const int n = tokens(rng);
    p.observe_step_time(n, (1200.0 + 4.0 * n + noise(rng)) * 1e-6);
  }
  EXPECT_NEAR(p.cost_model().base_us, 1200.0, 30.0);
  EXPECT_NEAR(p.cost_model().per_token_us, 4.0, 0.05);
  p.observe_step_time(0, 1.0);          // ignored
  p.observe_step_time(10, -1.0);        // ignored
  EXPECT_NEAR(p.cost_model().per_token_us, 4.0, 0.05);
}

TEST(CostModel, LoadsRepositoryDefaultAndReportsBadFiles) {
  const auto m = load_cost_model(std::string(LONGTAIL_SOURCE_DIR) + "/configs/cost_model.yaml");
  EXPECT_GT(m.base_us, 0);
  EXPECT_GT(m.per_token_us, 0);
  const std::string f = ::testing::TempDir() + "/cost_bad.yaml";
  auto expect_error = [&](const std::string& text, const std::string& needle) {
    std::ofstream(f) << text;
    try {
      load_cost_model(f);
      ADD_FAILURE() << "no error for: " << text;
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_error("other: 1\n", "step_cost");
  expect_error("step_cost: {base_us: 10}\n", "per_token_us");
  expect_error("step_cost: {base_us: abc, per_token_us: 1}\n", "base_us");
  expect_error("step_cost: {base_us: -1, per_token_us: 1}\n", "base_us");
  expect_error("step_cost: [1, 2\n", "cost model");
  EXPECT_THROW(load_cost_model("/nonexistent/cost.yaml"), std::runtime_error);
}

}  // namespace
}  // namespace longtail::drafter
