// DAS budgets (classes, promotion, cap), acceptance-aware budgets (back-off, probing, recovery),
// the critical-path rule (probability of finishing last), modes, the RLS cost refit and cost model
// files.
#include "drafter/speculation_policy.h"

#include <gtest/gtest.h>

#include <cmath>

#include <algorithm>
#include <fstream>
#include <random>
#include <string>
#include <vector>

namespace longtail::drafter {
namespace {

// The long/medium/short class rule (critical_path off; rule 4 is tested at the end).
SpeculationPolicyOptions no_cap() {
  SpeculationPolicyOptions o;
  o.max_tokens_per_step = 1 << 30;
  o.critical_path = false;
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
  o.critical_path = false;
  o.max_tokens_per_step = 3 + 20;  // 3 sequences + 20 draft tokens
  SpeculationPolicy p(o);
  p.record_finished("a", 1000);
  p.record_finished("b", 900);
  p.record_finished("c", 800);
  std::vector<SequenceView> s{{1, "c", 0, 0}, {2, "a", 0, 0}, {3, "b", 0, 0}};
  EXPECT_EQ(p.budgets(s), (std::vector<int32_t>{0, 16, 4}));
  // Derived from the cost model: (1 + 1) * (c_base + c_tok * 3) - c_base = c_base + 2 * 3 * c_tok
  SpeculationPolicyOptions m;
  m.critical_path = false;
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

// The acceptance-aware rule (on by default) with the class rule; explicit so the tests say what they need.
SpeculationPolicyOptions acceptance_on() {
  SpeculationPolicyOptions o = no_cap();
  o.acceptance_aware = true;
  return o;
}

// Reports what a drafter whose first `accept_first` draft tokens are always accepted would see.
void report(SpeculationPolicy& p, uint64_t uid, std::string_view prompt, int32_t drafted, int32_t accept_first) {
  p.observe_acceptance(uid, prompt, drafted, std::min(drafted, accept_first));
}

TEST(SpeculationPolicyAcceptance, NothingReportedLeavesBudgetsUnchanged) {
  SpeculationPolicy p(acceptance_on());
  std::vector<SequenceView> s{{1, "a", 0, 0}, {2, "b", 10, 0}};
  EXPECT_EQ(p.budgets(s), (std::vector<int32_t>{16, 16}));
  EXPECT_DOUBLE_EQ(p.acceptance_estimate(1, "a"), p.options().acceptance_prior);
}

TEST(SpeculationPolicyAcceptance, BudgetFollowsTheCostThreshold) {
  SpeculationPolicyOptions o = acceptance_on();
  o.cost = {5000, 20};
  o.acceptance_cost_margin = 1.5;
  SpeculationPolicy p(o);
  // Batch of 1: threshold 1.5 * 20 / 5020 = 0.00598; 0.5^7 = 0.0078 > it > 0.5^8.
  EXPECT_EQ(p.acceptance_budget(0.5, 16, 1), 7);
  EXPECT_EQ(p.acceptance_budget(0.5, 3, 1), 3);  // never above the class budget
  // Four contenders: threshold x4 = 0.0239; 0.5^5 = 0.031 > it > 0.5^6.
  EXPECT_EQ(p.acceptance_budget(0.5, 16, 1, 4), 5);
  EXPECT_EQ(p.acceptance_budget(0.0, 16, 1), 0);
  EXPECT_EQ(p.acceptance_budget(1.0, 16, 1), 16);
}

TEST(SpeculationPolicyAcceptance, PersistentRejectionShrinksToZero) {
  SpeculationPolicy p(acceptance_on());
  const std::vector<SequenceView> s{{1, "a", 0, 0}};
  std::vector<int32_t> sizes;
  for (int step = 0; step < 12; ++step) {
    const int32_t b = p.budgets(s)[0];
    sizes.push_back(b);
    report(p, 1, "a", b, 0);
  }
  EXPECT_EQ(sizes.front(), 16);
  EXPECT_EQ(sizes.back(), 0);
  EXPECT_TRUE(std::is_sorted(sizes.rbegin(), sizes.rend()));  // only shrinks while rejected
  EXPECT_LT(p.acceptance_estimate(1, "a"), 0.05);
  // A new sequence of the same prompt starts from the prompt's (low) estimate, one of an unseen
  // prompt from all prompts' (less confident, so higher).
  EXPECT_LT(p.acceptance_estimate(2, "a"), p.acceptance_estimate(3, "b"));
  EXPECT_LT(p.budgets(std::vector<SequenceView>{{2, "a", 0, 0}})[0],
            p.budgets(std::vector<SequenceView>{{3, "b", 0, 0}})[0]);
}

TEST(SpeculationPolicyAcceptance, ProbesAndRecoversWhenDraftsStartMatching) {
  SpeculationPolicy p(acceptance_on());
  const std::vector<SequenceView> s{{1, "a", 0, 0}};
  // Rejected until the budget reaches 0 (the first step without drafts).
  for (int step = 0; step < 20 && p.budgets(s)[0] > 0; ++step) report(p, 1, "a", p.budgets(s)[0], 0);
  ASSERT_EQ(p.budgets(s)[0], 0);
  // Steps without drafts: no budget until probe_interval of them, then a probe.
  for (int step = 1; step < p.options().probe_interval; ++step) {
    report(p, 1, "a", 0, 0);
    EXPECT_EQ(p.budgets(s)[0], 0) << step;
  }
  report(p, 1, "a", 0, 0);
  EXPECT_EQ(p.budgets(s)[0], p.options().probe_budget);
  // The text turned repetitive: every draft token is accepted from now on.
  int32_t b = 0;
  int steps = 0;
  for (; steps < 30 && b < 16; ++steps) {
    b = p.budgets(s)[0];
    report(p, 1, "a", b, 1 << 20);
  }
  EXPECT_EQ(b, 16) << "after " << steps << " steps";
  // A failed probe: the budget goes back to 0 until the next probe.
  SpeculationPolicy q(acceptance_on());
  const std::vector<SequenceView> t{{7, "x", 0, 0}};
  for (int step = 0; step < 20 && q.budgets(t)[0] > 0; ++step) report(q, 7, "x", q.budgets(t)[0], 0);
  ASSERT_EQ(q.budgets(t)[0], 0);
  for (int step = 0; step < q.options().probe_interval; ++step) report(q, 7, "x", 0, 0);
  ASSERT_EQ(q.budgets(t)[0], q.options().probe_budget);
  report(q, 7, "x", q.options().probe_budget, 0);
  EXPECT_EQ(q.budgets(t)[0], 0);
}

TEST(SpeculationPolicyAcceptance, HighAcceptanceKeepsTheClassBudget) {
  SpeculationPolicy p(acceptance_on());
  for (int i = 0; i < 4; ++i) {
    p.record_finished("long", 1000);
    p.record_finished("mid", 300);
    p.record_finished("short", 50);
  }
  const std::vector<SequenceView> s{{1, "long", 0, 0}, {2, "mid", 0, 0}, {3, "short", 0, 0}};
  for (int step = 0; step < 20; ++step) {
    const auto b = p.budgets(s);
    EXPECT_EQ(b, (std::vector<int32_t>{16, 4, 0})) << step;
    for (size_t i = 0; i < s.size(); ++i) report(p, s[i].uid, s[i].prompt_id, b[i], 1 << 20);
  }
  EXPECT_GT(p.acceptance_estimate(1, "long"), 0.9);
  p.end_sequence(1);  // forgotten: back to the prompt's estimate, still high
  EXPECT_GT(p.acceptance_estimate(1, "long"), 0.8);
}

TEST(SpeculationPolicyAcceptance, RespectsTheStepCapAndDoesNotHandOnFreedTokens) {
  SpeculationPolicyOptions o;
  o.acceptance_aware = true;
  o.critical_path = false;
  o.max_tokens_per_step = 24;  // 4 sequences + 20 draft tokens
  SpeculationPolicy p(o);
  // Own prompts, so sequence 1's estimate is not pulled up by the others' through the prompt prior.
  for (const char* prompt : {"p1", "p2", "p3", "p4"}) {
    p.record_finished(prompt, 1000);
    p.record_finished(prompt, 900);
  }
  const std::vector<SequenceView> s{{1, "p1", 0, 0}, {2, "p2", 10, 0}, {3, "p3", 20, 0}, {4, "p4", 30, 0}};
  const auto before = p.budgets(s);
  EXPECT_EQ(before, (std::vector<int32_t>{16, 4, 0, 0}));
  // Sequence 1 keeps being rejected, the others accept everything.
  for (int step = 0; step < 12; ++step) {
    const auto b = p.budgets(s);
    int32_t tokens = 0;
    for (size_t i = 0; i < b.size(); ++i) {
      tokens += 1 + b[i];
      EXPECT_LE(b[i], before[i]) << "acceptance never raises a budget over the capped one";
      report(p, s[i].uid, s[i].prompt_id, b[i], i == 0 ? 0 : 1 << 20);
    }
    EXPECT_LE(tokens, 24);
  }
  const auto after = p.budgets(s);
  EXPECT_LE(after[0], p.options().probe_budget);
  EXPECT_EQ(after[1], 4);
}

TEST(SpeculationPolicyAcceptance, OptionOffAndBadInput) {
  SpeculationPolicyOptions o = acceptance_on();
  o.acceptance_aware = false;
  SpeculationPolicy p(o);
  const std::vector<SequenceView> s{{1, "a", 0, 0}};
  for (int step = 0; step < 12; ++step) report(p, 1, "a", 16, 0);
  EXPECT_EQ(p.budgets(s)[0], 16);
  EXPECT_THROW(p.observe_acceptance(1, "a", 2, 3), std::invalid_argument);
  EXPECT_THROW(p.observe_acceptance(1, "a", -1, 0), std::invalid_argument);
  SpeculationPolicyOptions bad = acceptance_on();
  bad.acceptance_decay = 0;
  EXPECT_THROW(SpeculationPolicy{bad}, std::invalid_argument);
  bad = acceptance_on();
  bad.probe_interval = 0;
  EXPECT_THROW(SpeculationPolicy{bad}, std::invalid_argument);
  bad = acceptance_on();
  bad.acceptance_prior = 1.5;
  EXPECT_THROW(SpeculationPolicy{bad}, std::invalid_argument);
}

TEST(SpeculationPolicyCritical, ProbabilityOfFinishingLastFollowsTheLengths) {
  SpeculationPolicyOptions o;
  o.max_tokens_per_step = 1 << 30;
  SpeculationPolicy p(o);
  for (int i = 0; i < 4; ++i) {
    p.record_finished("long", 1000 + 10 * i);
    p.record_finished("mid", 300 + 10 * i);
    p.record_finished("short", 50 + 10 * i);
  }
  std::vector<SequenceView> s{{1, "long", 0, 0}, {2, "mid", 0, 0}, {3, "short", 0, 0}};
  auto crit = p.critical_probabilities(s);
  double sum = 0;
  for (const double c : crit) sum += c;
  EXPECT_NEAR(sum, 1.0, 0.1);
  EXPECT_GT(crit[0], crit[1]);
  EXPECT_GT(crit[1], crit[2]);
  EXPECT_GT(crit[0], 0.5);  // not 1: each prompt's lengths are mixed with all prompts' (weight 4)
  // Unlike the class rule, nobody is left without drafts before acceptance is known.
  EXPECT_EQ(p.budgets(s), (std::vector<int32_t>{16, 16, 16}));
  // The short prompt's sequence outgrew its prompt's lengths (50-80): its remaining length now
  // follows all prompts' lengths above 100, so it is promoted.
  const double before = crit[2];
  s[2].generated_len = 100;
  crit = p.critical_probabilities(s);
  EXPECT_GT(crit[2], before);
  // Past every recorded length: the overshoot guess max(g / 2, 64) = 2000 remaining beats the rest.
  s[2].generated_len = 4000;
  crit = p.critical_probabilities(s);
  EXPECT_GT(crit[2], 0.9);
}

TEST(SpeculationPolicyCritical, AcceptanceCutsSparesTheCriticalSequence) {
  SpeculationPolicyOptions o;
  o.max_tokens_per_step = 1 << 30;
  SpeculationPolicy p(o);
  for (int i = 0; i < 4; ++i) {
    p.record_finished("long", 1000 + 10 * i);
    p.record_finished("short", 50 + 10 * i);
  }
  // One likely-critical sequence among ten (the floor on P_i is critical_share / 10 = 0.15).
  std::vector<SequenceView> s{{1, "long", 0, 0}};
  for (uint64_t uid = 2; uid <= 10; ++uid) s.push_back({uid, "short", 0, 0});
  // Every draft fails at its second token for everyone.
  for (int step = 0; step < 20; ++step) {
    const auto b = p.budgets(s);
    for (size_t i = 0; i < s.size(); ++i) report(p, s[i].uid, s[i].prompt_id, b[i], 1);
  }
  const auto b = p.budgets(s);
  EXPECT_GE(b[0], 1);
  EXPECT_GT(b[0], b[1]);
  EXPECT_EQ(b[1], b[2]);
}

// Rule 4's probability of finishing last against a plain reference of the rule the header states
// (grid 1.25^k, k < 56; each prompt's lengths above g mixed with all prompts' at weight
// global_length_weight; the overshoot guess past every length; the max_new_tokens cap; cell
// midpoints; P_i = sum_k mass_i(k) prod_{j != i} H_j(k)) by direct counts and long double
// products, on random histories of short and long lengths and random batches.
TEST(SpeculationPolicyCritical, ProbabilitiesMatchAPlainReference) {
  constexpr int kGrid = 56;
  for (int trial = 0; trial < 12; ++trial) {
    SCOPED_TRACE(::testing::Message() << "trial " << trial);
    std::mt19937 rng(100 + trial);
    SpeculationPolicyOptions o;
    o.length_history = 4 + static_cast<int32_t>(rng() % 40);
    SpeculationPolicy p(o);
    const int prompts = 1 + static_cast<int>(rng() % 12);
    const int32_t longest = trial % 2 ? 6000 : 400;
    std::vector<std::vector<int32_t>> by_prompt(prompts);  // the last length_history of each
    std::vector<int32_t> all;                                // the last 16 length_history
    for (int r = 0, n = static_cast<int>(rng() % 800); r < n; ++r) {
      const int q = static_cast<int>(rng() % prompts);
      const auto len = static_cast<int32_t>(rng() % longest);
      p.record_finished("p" + std::to_string(q), len);
      by_prompt[q].push_back(len);
      if (static_cast<int32_t>(by_prompt[q].size()) > o.length_history) by_prompt[q].erase(by_prompt[q].begin());
      all.push_back(len);
      if (static_cast<int64_t>(all.size()) > 16LL * o.length_history) all.erase(all.begin());
    }
    std::vector<SequenceView> seqs;
    std::vector<std::string> ids;  // seqs' prompt ids point here
    const int n = 1 + static_cast<int>(rng() % 64);
    for (int i = 0; i < n; ++i) ids.push_back("p" + std::to_string(rng() % (prompts + 1)));  // one unseen
    for (int i = 0; i < n; ++i) {
      seqs.push_back({static_cast<uint64_t>(i + 1), ids[i], static_cast<int32_t>(rng() % (longest + 500)),
                      rng() % 3 ? static_cast<int32_t>(256 * (1 + rng() % 24)) : 0, 0});
    }
    std::vector<std::vector<long double>> h(n, std::vector<long double>(kGrid)), cdf = h;
    for (int i = 0; i < n; ++i) {
      const SequenceView& sv = seqs[i];
      const int32_t g = sv.generated_len;
      const int q = std::stoi(ids[i].substr(1));
      auto above = [&](const std::vector<int32_t>& v) {
        return std::count_if(v.begin(), v.end(), [&](int32_t l) { return l > g; });
      };
      const long double prompt_w = q < prompts ? above(by_prompt[q]) : 0;
      const long double global_w = above(all) > 0 ? (prompt_w > 0 ? o.global_length_weight : 1.0) : 0;
      for (int k = 0; k < kGrid; ++k) {
        const double x = std::pow(1.25, k);
        auto share = [&](const std::vector<int32_t>& v) -> long double {
          const auto within = std::count_if(v.begin(), v.end(), [&](int32_t l) { return l > g && l <= g + x; });
          return static_cast<long double>(within) / static_cast<long double>(above(v));
        };
        long double c = 0;
        if (prompt_w + global_w > 0) {
          if (prompt_w > 0) c += prompt_w * share(by_prompt[q]);
          if (global_w > 0) c += global_w * share(all);
          c /= prompt_w + global_w;
        } else {
          c = x >= std::max(g * o.overshoot_factor, o.min_remaining) ? 1 : 0;
        }
        if (sv.max_new_tokens > 0 && x >= std::max(1, sv.max_new_tokens - g)) c = 1;
        cdf[i][k] = c;
        h[i][k] = 0.5L * ((k ? cdf[i][k - 1] : 0) + c);
      }
    }
    const std::vector<double> got = p.critical_probabilities(seqs);
    ASSERT_EQ(got.size(), static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) {
      long double want = 0;
      for (int k = 0; k < kGrid; ++k) {
        long double others = 1;
        for (int j = 0; j < n; ++j) others *= j == i ? 1 : h[j][k];
        want += (cdf[i][k] - (k ? cdf[i][k - 1] : 0)) * others;
      }
      EXPECT_NEAR(got[i], std::clamp(static_cast<double>(want), 0.0, 1.0), 1e-9) << "sequence " << i;
    }
  }
}

// Rule 4 caps the budgets its acceptance rule left, not max_budget before it: when the longest
// predictions keep rejecting, the step's allowance goes to the sequences whose drafts are accepted
// instead of going unused, and a larger max_budget does not draft less.
TEST(SpeculationPolicyCritical, CapSharesTheAllowanceAmongBudgetsWorthVerifying) {
  for (const int32_t max_budget : {16, 64}) {
    SCOPED_TRACE(::testing::Message() << "max_budget " << max_budget);
    SpeculationPolicyOptions o;
    o.max_budget = max_budget;
    o.max_tokens_per_step = 10 + 24;  // ten sequences and 24 draft tokens
    // In tokens: in steps, the rejecting sequences would become the likeliest critical ones.
    o.critical_in_steps = false;
    SpeculationPolicy p(o);
    for (int i = 0; i < 4; ++i) {
      p.record_finished("long", 1000 + 10 * i);
      p.record_finished("mid", 600 + 10 * i);
      p.record_finished("short", 100 + 10 * i);
    }
    // The likely-critical sequence, three next-longest that reject every draft, six shorter ones
    // that accept everything.
    std::vector<SequenceView> s{{1, "long", 0, 0}};
    for (uint64_t uid = 2; uid <= 4; ++uid) s.push_back({uid, "mid", 0, 0});
    for (uint64_t uid = 5; uid <= 10; ++uid) s.push_back({uid, "short", 0, 0});
    for (int step = 0; step < 30; ++step) {
      const auto b = p.budgets(s);
      for (size_t i = 0; i < s.size(); ++i)
        report(p, s[i].uid, s[i].prompt_id, b[i], s[i].prompt_id == "mid" ? 0 : 1 << 20);
    }
    const auto b = p.budgets(s);
    int32_t drafted = 0, to_short = 0;
    for (size_t i = 0; i < s.size(); ++i) {
      drafted += b[i];
      if (s[i].prompt_id == "short") to_short += b[i];
    }
    EXPECT_EQ(b[0], std::min(max_budget, 24)) << "the critical sequence is served first";
    EXPECT_EQ(drafted, 24) << "the whole allowance is drafted";
    if (max_budget < 24) EXPECT_GT(to_short, 0) << "what the rejecting ones give up goes on";
    for (size_t i = 1; i <= 3; ++i) EXPECT_LE(b[i], o.probe_budget);
  }
}

// Trees: the chains' budgets, and each node must beat its verify cost, weighed as rule b / rule 4
// weigh a draft token.
TEST(SpeculationPolicyTrees, NodeFloorIsTheTokenThresholdPerNode) {
  SpeculationPolicyOptions o = acceptance_on();
  o.mode = BudgetMode::kFixed;
  o.cost = {5000, 20};
  SpeculationPolicy p(o);
  const std::vector<SequenceView> s{{1, "a", 0, 0}, {2, "b", 0, 0}};
  for (int step = 0; step < 10; ++step) {  // drafts always fail at their second token
    for (const SequenceView& v : s) report(p, v.uid, v.prompt_id, 16, 1);
  }
  std::vector<int32_t> b;
  std::vector<double> floor;
  p.tree_budgets(s, b, floor);
  EXPECT_EQ(b, p.budgets(s));
  EXPECT_LT(b[0], 16);  // rule b cut them
  // Two contenders: 1.5 * 20 / (5000 + 20 * 2) * 2.
  ASSERT_EQ(floor.size(), 2u);
  EXPECT_NEAR(floor[0], 1.5 * 20 / 5040.0 * 2, 1e-12);
  EXPECT_EQ(floor[0], floor[1]);
  o.mode = BudgetMode::kOff;
  SpeculationPolicy off(o);
  off.tree_budgets(s, b, floor);
  EXPECT_EQ(b, (std::vector<int32_t>{0, 0}));
}

TEST(SpeculationPolicyTrees, CriticalSequenceGetsTheLowestNodeFloor) {
  SpeculationPolicyOptions o;
  o.max_tokens_per_step = 1 << 30;
  o.cost = {5000, 20};
  SpeculationPolicy p(o);
  for (int i = 0; i < 4; ++i) {
    p.record_finished("long", 1000 + 10 * i);
    p.record_finished("short", 50 + 10 * i);
  }
  std::vector<SequenceView> s{{1, "long", 0, 0}};
  for (uint64_t uid = 2; uid <= 10; ++uid) s.push_back({uid, "short", 0, 0});
  std::vector<int32_t> b;
  std::vector<double> floor;
  p.tree_budgets(s, b, floor);
  EXPECT_EQ(b, std::vector<int32_t>(10, 16));
  const double unit = 1.5 * 20 / (5000 + 20 * 10.0);
  EXPECT_NEAR(floor[0], unit, 1e-12);  // the likeliest-critical sequence: weight 1
  // The others: weight 1 / max(P_i, 1.5 / 10), so at most 10 / 1.5 times the unit.
  for (size_t i = 1; i < s.size(); ++i) {
    EXPECT_GT(floor[i], floor[0]);
    EXPECT_LE(floor[i], unit * 10 / 1.5 + 1e-12);
  }
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

TEST(CostModel, ReadsAPerModelEntryAndNamesTheEntriesThatExist) {
  const std::string h100 = std::string(LONGTAIL_SOURCE_DIR) + "/configs/cost_model_h100.yaml";
  const auto m = load_cost_model(h100, "Qwen2.5-1.5B");
  EXPECT_NEAR(m.base_us, 2205.41, 1e-9);
  EXPECT_NEAR(m.per_token_us, 8.89337, 1e-9);
  try {
    load_cost_model(h100, "Qwen9");
    ADD_FAILURE() << "no error for a missing entry";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("Qwen2.5-0.5B"), std::string::npos) << e.what();
  }
  EXPECT_THROW(load_cost_model(std::string(LONGTAIL_SOURCE_DIR) + "/configs/cost_model.yaml", "x"),
               std::runtime_error);  // no per_model map
}

TEST(CostModel, PiecewiseTokensAndContextTerms) {
  StepCostModel m;
  m.base_us = 1000;
  m.per_token_us = 2;
  m.crossover_tokens = 100;
  m.per_token_above_us = 10;
  m.per_context_us = 0.01;
  EXPECT_DOUBLE_EQ(m.step_us(50), 1000 + 100);
  EXPECT_DOUBLE_EQ(m.step_us(150), 1000 + 200 + 500);
  EXPECT_DOUBLE_EQ(m.step_us(150, 10000), 1000 + 200 + 500 + 100);
  EXPECT_DOUBLE_EQ(m.marginal_token_us(99), 2);
  EXPECT_DOUBLE_EQ(m.marginal_token_us(100), 10);
  // The inverse of the step time on both sides of the crossover, and with context.
  EXPECT_DOUBLE_EQ(m.max_tokens_within(1100), 50);
  EXPECT_DOUBLE_EQ(m.max_tokens_within(1700), 150);
  EXPECT_DOUBLE_EQ(m.max_tokens_within(1800, 10000), 150);
  EXPECT_LT(m.max_tokens_within(900), 0);
  m.per_token_us = m.per_token_above_us = 0;
  EXPECT_TRUE(std::isinf(m.max_tokens_within(2000)));
  // Without a crossover it is the linear model of before.
  const StepCostModel linear;
  EXPECT_DOUBLE_EQ(linear.step_us(64), 5000 + 20 * 64);
  EXPECT_DOUBLE_EQ(linear.max_tokens_within(linear.step_us(64)), 64);
}

TEST(CostModel, CachedPositionsRaiseThePlainStepAndSoTheCap) {
  // Cap = the tokens within (1 + overhead) x the plain step: a per-context cost makes the plain
  // step dearer and leaves more room for drafts; the same batch without context keeps its cap.
  SpeculationPolicyOptions o;
  o.mode = BudgetMode::kFixed;
  o.max_budget = 32;
  o.cost = {1000, 10, 0, 0, 0.1};
  std::vector<SequenceView> s(8);
  for (size_t i = 0; i < s.size(); ++i) s[i].uid = i + 1;
  auto total = [&](const SpeculationPolicy& p) {
    int64_t t = 0;
    for (int32_t b : p.budgets(s)) t += b;
    return t;
  };
  const SpeculationPolicy p(o);
  // Plain step 1000 + 8 x 10 = 1080 us; 2 x 1080 = 2160 us holds 116 tokens, 8 of them pending.
  EXPECT_EQ(total(p), 108);
  // 8000 cached positions add 800 us to both: 2 x 1880 - 1000 - 800 = 1960 us = 196 tokens.
  for (auto& v : s) v.context_len = 1000;
  EXPECT_EQ(total(p), 188);
}

TEST(CostModel, AVerifyStepsFixedCostIsPricedOnceAndLeavesTheBudgetsAlone) {
  StepCostModel m;
  m.base_us = 1000;
  m.per_token_us = 10;
  m.verify_step_us = 300;
  EXPECT_DOUBLE_EQ(m.step_us(8), 1080);
  EXPECT_DOUBLE_EQ(m.step_us(8, 0, true), 1380);
  EXPECT_DOUBLE_EQ(m.step_us(100, 0, true), 1000 + 1000 + 300);
  EXPECT_DOUBLE_EQ(m.marginal_token_us(8), 10);  // a draft token's price leaves it out

  SpeculationPolicyOptions o;
  o.mode = BudgetMode::kFixed;
  o.max_budget = 32;
  o.cost = m;
  std::vector<SequenceView> s(8);
  for (size_t i = 0; i < s.size(); ++i) s[i].uid = i + 1;
  auto total = [&](const SpeculationPolicyOptions& opts) {
    int64_t t = 0;
    for (int32_t b : SpeculationPolicy(opts).budgets(s)) t += b;
    return t;
  };
  // The cap weighs tokens: 2 x 1080 = 2160 us holds 116 tokens, 8 of them pending, as without it.
  EXPECT_EQ(total(o), 108);
  o.cost.verify_step_us = 2000;
  EXPECT_EQ(total(o), 108);
}

TEST(CostModel, ReadsTheFittedTermsOfTheRepositoryYamls) {
  // scripts/fit_cost_model.py's output for the H200 (bench/results/gpu_2026-12-02.json) and H100.
  for (const char* f : {"/configs/cost_model_h200.yaml", "/configs/cost_model_h100_fit.yaml"}) {
    SCOPED_TRACE(f);
    const std::string path = std::string(LONGTAIL_SOURCE_DIR) + f;
    for (const char* entry : {"", "Qwen2.5-0.5B", "Qwen2.5-1.5B", "Qwen2.5-7B"}) {
      const auto m = load_cost_model(path, entry);
      EXPECT_GT(m.base_us, 0);
      EXPECT_GT(m.crossover_tokens, 0);
      EXPECT_GE(m.per_token_above_us, m.per_token_us);  // compute-bound tokens cost more
      EXPECT_GT(m.per_context_us, 0);
    }
  }
}

TEST(CostModel, ReaderNamesTheKeyOfEveryBadTerm) {
  const std::string f = ::testing::TempDir() + "/cost_terms.yaml";
  std::ofstream(f) << "step_cost: {base_us: 10, per_token_us: 1, crossover_tokens: 256, per_token_above_us: 3,"
                      " per_context_us: 0.02, verify_step_us: 400}\n"
                      "per_model:\n  m: {base_us: 5, per_token_us: 2}\n";
  const auto m = load_cost_model(f);
  EXPECT_DOUBLE_EQ(m.crossover_tokens, 256);
  EXPECT_DOUBLE_EQ(m.per_token_above_us, 3);
  EXPECT_DOUBLE_EQ(m.per_context_us, 0.02);
  EXPECT_DOUBLE_EQ(m.verify_step_us, 400);
  const auto e = load_cost_model(f + "#m");  // FILE#ENTRY is the entry argument
  EXPECT_DOUBLE_EQ(e.base_us, 5);
  EXPECT_DOUBLE_EQ(e.per_context_us, 0);  // optional terms default to off
  EXPECT_DOUBLE_EQ(e.verify_step_us, 0);
  EXPECT_DOUBLE_EQ(e.crossover_tokens, 0);
  auto expect_error = [&](const std::string& text, const std::string& needle, const std::string& entry = {}) {
    std::ofstream(f) << text;
    try {
      load_cost_model(f, entry);
      ADD_FAILURE() << "no error for: " << text;
    } catch (const std::runtime_error& err) {
      EXPECT_NE(std::string(err.what()).find(needle), std::string::npos) << err.what();
    }
  };
  expect_error("step_cost: {base_us: 10, per_token_us: 1, crossover_tokens: 64}\n", "step_cost.per_token_above_us");
  expect_error("step_cost: {base_us: 10, per_token_us: 1, per_token_above_us: 3}\n", "step_cost.crossover_tokens");
  expect_error("step_cost: {base_us: 10, per_token_us: 1, per_context_us: -0.5}\n", "step_cost.per_context_us must be");
  expect_error("step_cost: {base_us: 10, per_token_us: 1, crossover_tokens: x, per_token_above_us: 1}\n",
               "step_cost.crossover_tokens is not a number");
  expect_error("step_cost: {base_us: 10, per_token_us: 1, per_context_us: .inf}\n", "step_cost.per_context_us");
  expect_error("step_cost: {base_us: 10, per_token_us: 1, verify_step_us: -1}\n", "step_cost.verify_step_us must be");
  expect_error("per_model:\n  a: {base_us: 1, per_token_us: 1, per_context_us: []}\n", "per_model.a.per_context_us", "a");
  expect_error("per_model:\n  a: {per_token_us: 1}\n", "per_model.a.base_us", "a");
  EXPECT_THROW(load_cost_model(f + "#"), std::runtime_error);  // "#" without an entry name
}

}  // namespace
}  // namespace longtail::drafter
