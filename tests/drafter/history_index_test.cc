// History window and budgets: which rollouts stay visible per scope after each round, generation
// bumps, and memory per indexed token on the synthetic workload.
#include "drafter/history_index.h"

#include <gtest/gtest.h>

#include "drafter/drafter.h"
#include "testing/workload.h"

namespace longtail::drafter {
namespace {

using Str = std::vector<int32_t>;

std::vector<Str> to_vec(const std::vector<std::span<const int32_t>>& spans) {
  std::vector<Str> out;
  for (const auto& s : spans) out.emplace_back(s.begin(), s.end());
  return out;
}

TEST(HistoryIndex, StagedUntilEndRoundThenWindowEvicts) {
  HistoryIndex h({/*window_rounds=*/2, /*global=*/1000, /*prompt=*/1000, true, true});
  h.insert("a", {1, 2}, 0);
  EXPECT_EQ(h.prompt_sam("a"), nullptr);  // not visible before end_round
  const auto g0 = h.generation();
  h.end_round(0);
  EXPECT_NE(h.generation(), g0);
  ASSERT_NE(h.prompt_sam("a"), nullptr);
  h.insert("a", {3}, 1);
  h.insert("b", {4, 5}, 1);
  h.end_round(1);
  EXPECT_EQ(to_vec(h.prompt_rollouts("a")), (std::vector<Str>{{1, 2}, {3}}));
  EXPECT_EQ(h.indexed_tokens(), 5);
  h.end_round(2);  // window 2: rounds 1 and 2 kept, round 0 evicted
  EXPECT_EQ(to_vec(h.prompt_rollouts("a")), (std::vector<Str>{{3}}));
  EXPECT_EQ(to_vec(h.global_rollouts()), (std::vector<Str>{{3}, {4, 5}}));
  h.end_round(3);
  EXPECT_EQ(h.prompt_sam("a"), nullptr);
  EXPECT_EQ(h.prompt_scopes(), 0);
  EXPECT_EQ(h.indexed_tokens(), 0);
  EXPECT_EQ(h.global_sam(), nullptr);
}

TEST(HistoryIndex, TokenBudgetsEvictOldestFirst) {
  HistoryIndex h({/*window_rounds=*/100, /*global=*/5, /*prompt=*/3, true, true});
  h.insert("a", {1, 1}, 0);
  h.insert("a", {2, 2}, 1);
  h.insert("b", {3, 3, 3}, 1);
  h.end_round(1);
  EXPECT_EQ(to_vec(h.prompt_rollouts("a")), (std::vector<Str>{{2, 2}}));      // 4 > 3 tokens
  EXPECT_EQ(to_vec(h.global_rollouts()), (std::vector<Str>{{2, 2}, {3, 3, 3}}));  // 7 > 5 tokens
  // The automaton reflects exactly the visible rollouts.
  const FrozenSam* a = h.prompt_sam("a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->find(0, 1), -1);
  EXPECT_GE(a->find(0, 2), 0);
}

TEST(HistoryIndex, MemoryPerIndexedTokenWithinTarget) {
  workload::WorkloadOptions w;
  w.prompts = 16;
  w.samples = 8;
  w.rounds = 2;
  w.median_len = 400;
  Drafter d;
  for (const auto& r : workload::generate_workload(w)) {
    d.add_rollout(r.prompt_id, r.prompt_tokens, r.response_tokens, r.round);
  }
  d.end_round(1);
  const auto m = d.memory();
  EXPECT_GT(m.indexed_tokens, 10000);
  // Both scopes (per-prompt and global automata) plus the stored text: the 64 B target.
  EXPECT_LE(m.bytes_per_indexed_token(), 64.0);
  DrafterOptions prompt_only;
  prompt_only.use_global_scope = false;
  Drafter p(prompt_only);
  for (const auto& r : workload::generate_workload(w)) {
    p.add_rollout(r.prompt_id, r.prompt_tokens, r.response_tokens, r.round);
  }
  p.end_round(1);
  EXPECT_LE(p.memory().bytes_per_indexed_token(), 36.0);
}

}  // namespace
}  // namespace longtail::drafter
