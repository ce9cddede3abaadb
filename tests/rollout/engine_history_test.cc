// The engine's own history: a round's rollouts join the drafter's history after its batch is
// returned (Engine::index_history, which the worker calls while it waits for the trainer, or the
// next step() first thing), and the next round drafts from them the same either way.
#include <gtest/gtest.h>

#include "engine_test_util.h"
#include "rollout/engine.h"
#include "testing/fake_backend.h"

namespace longtail::rollout {
namespace {

using testing::make_groups;
using testing::RunResult;

std::unique_ptr<Engine> engine() {
  EngineOptions o;
  o.budgets.mode = drafter::BudgetMode::kFixed;
  o.budgets.max_budget = 8;
  o.budgets.max_tokens_per_step = 4096;
  return std::make_unique<Engine>(std::make_unique<testing::FakeBackend>(), o);
}

// Two rounds of the same prompts, greedy: the second can draft the first's responses exactly.
RunResult two_rounds(Engine& e, bool index_between) {
  SamplingParams greedy;
  greedy.temperature = 0.0f;
  RunResult r = testing::run_rounds(e, {make_groups("a", 3, 2, 6, 40, 64, greedy)});
  if (index_between) {
    EXPECT_TRUE(e.index_history());
    EXPECT_FALSE(e.index_history()) << "a round is indexed once";
  }
  const RunResult second = testing::run_rounds(e, {make_groups("b", 3, 2, 6, 40, 64, greedy)});
  r.batches.insert(r.batches.end(), second.batches.begin(), second.batches.end());
  return r;
}

TEST(EngineHistory, ARoundDraftsFromTheLastOneWhetherIndexedEarlyOrByTheNextStep) {
  auto early = engine();
  auto late = engine();
  const RunResult e = two_rounds(*early, true);
  const RunResult l = two_rounds(*late, false);
  ASSERT_EQ(e.batches.size(), 2u);
  ASSERT_EQ(l.batches.size(), 2u);
  // The second round's drafts come from the first round's rollouts: far fewer forwards.
  EXPECT_LT(e.batches[1].stats.forward_passes * 2, e.batches[0].stats.forward_passes);
  EXPECT_GT(e.batches[1].stats.tokens_accepted, 0);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(e.batches[i].stats.forward_passes, l.batches[i].stats.forward_passes) << "round " << i;
    EXPECT_EQ(e.batches[i].stats.tokens_drafted, l.batches[i].stats.tokens_drafted) << "round " << i;
    EXPECT_EQ(e.batches[i].stats.tokens_accepted, l.batches[i].stats.tokens_accepted) << "round " << i;
  }
  EXPECT_TRUE(early->index_history());  // the second round's rollouts were waiting
  EXPECT_FALSE(early->index_history());
}

}  // namespace
}  // namespace longtail::rollout
