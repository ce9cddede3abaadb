// Drafter proposals: per-prompt history, frequency choice, own context, scope choice, re-sync after
// a round is published, batch = serial, and errors for bad input.
#include "drafter/drafter.h"

#include <gtest/gtest.h>

#include "testing/workload.h"

namespace longtail::drafter {
namespace {

using Str = std::vector<int32_t>;

DrafterOptions prompt_only() {
  DrafterOptions o;
  o.use_global_scope = false;
  o.use_own_context = false;
  return o;
}

TEST(Drafter, DraftsContinuationOfSamePromptHistory) {
  Drafter d(prompt_only());
  const Str prompt{100, 101};
  d.add_rollout("p", prompt, Str{1, 2, 3, 4, 5}, 0);
  d.end_round(0);
  d.begin_request(7, "p", prompt);
  // The prompt tail is indexed, so the response start can be drafted; the draft is at most as long
  // as the match (2 prompt tokens).
  Draft a = d.propose(7, 3);
  EXPECT_EQ(a.tokens, (Str{1, 2}));
  EXPECT_EQ(a.source, DraftSource::kPrompt);
  d.observe(7, Str{1, 2});
  a = d.propose(7, 16);
  EXPECT_EQ(a.tokens, (Str{3, 4, 5}));
  EXPECT_EQ(a.match_length, 4);
  EXPECT_TRUE(d.propose(7, 0).tokens.empty());
  // Another prompt id has no per-prompt history.
  d.begin_request(8, "q", prompt);
  EXPECT_TRUE(d.propose(8, 4).tokens.empty());
}

TEST(Drafter, PrefersMostFrequentContinuation) {
  Drafter d(prompt_only());
  d.add_rollout("p", Str{9}, Str{1, 2, 3}, 0);
  d.add_rollout("p", Str{9}, Str{1, 2, 3}, 0);
  d.add_rollout("p", Str{9}, Str{1, 4, 5}, 0);
  d.end_round(0);
  d.begin_request(1, "p", Str{9});
  d.observe(1, Str{1});
  const Draft a = d.propose(1, 4);
  EXPECT_EQ(a.tokens, (Str{2, 3}));
  ASSERT_EQ(a.probs.size(), 2u);
  EXPECT_NEAR(a.probs[0], 2.0 / 3.0, 1e-6);
  EXPECT_NEAR(a.score(), 4.0 / 3.0, 1e-6);
}

TEST(Drafter, OwnContextDraftsRepeats) {
  DrafterOptions o;
  o.own_min_match = 3;
  Drafter d(o);
  d.begin_request(1, "", Str{});
  d.observe(1, Str{5, 6, 7, 8, 9, 5, 6, 7});
  const Draft a = d.propose(1, 2);
  EXPECT_EQ(a.source, DraftSource::kOwn);
  EXPECT_EQ(a.tokens, (Str{8, 9}));
  EXPECT_EQ(a.match_length, 3);
}

TEST(Drafter, OwnContextFollowsTheRecentOccurrence) {
  // "1 2 3" is followed by 4 first and by 5 last: the recent occurrence wins (a drifting sequence),
  // the earliest one with own_recent off.
  for (const bool recent : {true, false}) {
    DrafterOptions o;
    o.own_recent = recent;
    Drafter d(o);
    d.begin_request(1, "", Str{});
    d.observe(1, Str{1, 2, 3, 4, 9, 1, 2, 3, 5, 8, 1, 2, 3});
    const Draft a = d.propose(1, 1);
    EXPECT_EQ(a.source, DraftSource::kOwn);
    EXPECT_EQ(a.tokens, (Str{recent ? 5 : 4})) << "own_recent " << recent;
  }
}

TEST(Drafter, OwnContextLoopCopiesPastTheEndOfTheText) {
  // The longest repeat of "1 2 1 2 1 2 1 2 1 2" ends two tokens before the end; the draft goes on
  // copying the period from its own tokens instead of stopping after two.
  Drafter d;
  d.begin_request(1, "", Str{1, 2, 1, 2, 1, 2, 1, 2, 1, 2});
  const Draft a = d.propose(1, 6);
  EXPECT_EQ(a.source, DraftSource::kOwn);
  EXPECT_EQ(a.tokens, (Str{1, 2, 1, 2, 1, 2}));
  EXPECT_EQ(a.match_length, 8);
}

TEST(Drafter, ShorterContextWinsWhenItScoresMore) {
  // Context "10 11" was followed by 20 and 21 once each (probability 1/2); its suffix "11" was
  // followed by 20 nine times in ten: with no match-length limit the shorter context scores more.
  auto options = [](int32_t states) {
    DrafterOptions o = prompt_only();
    o.match_length_factor = 0;
    o.match_states = states;
    return o;
  };
  for (const int32_t states : {8, 1}) {
    Drafter d(options(states));
    d.add_rollout("p", Str{}, Str{10, 11, 20, 30}, 0);
    d.add_rollout("p", Str{}, Str{10, 11, 21, 31}, 0);
    for (int i = 0; i < 8; ++i) d.add_rollout("p", Str{}, Str{12, 11, 20, 30}, 0);
    d.end_round(0);
    d.begin_request(1, "p", Str{10, 11});
    const Draft a = d.propose(1, 2);
    ASSERT_EQ(a.tokens, (Str{20, 30})) << "match_states " << states;
    EXPECT_NEAR(a.probs[0], states > 1 ? 0.9 : 0.5, 1e-6);
    EXPECT_EQ(a.match_length, states > 1 ? 1 : 2);
  }
  DrafterOptions bad;
  bad.match_states = 0;
  EXPECT_THROW(Drafter{bad}, std::invalid_argument);
}

TEST(Drafter, LiveRequestSeesHistoryPublishedLater) {
  Drafter d(prompt_only());
  d.begin_request(1, "p", Str{100});
  d.observe(1, Str{1, 2});
  EXPECT_TRUE(d.propose(1, 4).tokens.empty());
  d.add_rollout("p", Str{100}, Str{1, 2, 3, 4}, 0);
  EXPECT_TRUE(d.propose(1, 4).tokens.empty());  // staged, not yet visible
  d.end_round(0);
  EXPECT_EQ(d.propose(1, 4).tokens, (Str{3, 4}));
  d.observe(1, Str{3});
  EXPECT_EQ(d.propose(1, 4).tokens, (Str{4}));
}

TEST(Drafter, BatchWithThreadsEqualsSerial) {
  workload::WorkloadOptions w;
  w.prompts = 8;
  w.samples = 16;
  w.rounds = 2;
  w.median_len = 200;
  const auto rollouts = workload::generate_workload(w);
  DrafterOptions o;
  o.threads = 4;
  Drafter threaded(o), serial;
  std::vector<DraftRequest> reqs;
  for (auto* d : {&threaded, &serial}) {
    for (const auto& r : rollouts) {
      if (r.round == 0) d->add_rollout(r.prompt_id, r.prompt_tokens, r.response_tokens, 0);
    }
    d->end_round(0);
  }
  uint64_t uid = 0;
  for (const auto& r : rollouts) {
    if (r.round != 1) continue;
    ++uid;
    const Str half(r.response_tokens.begin(), r.response_tokens.begin() + static_cast<std::ptrdiff_t>(r.response_tokens.size() / 2));
    for (auto* d : {&threaded, &serial}) {
      d->begin_request(uid, r.prompt_id, r.prompt_tokens);
      d->observe(uid, half);
    }
    reqs.push_back({uid, 16});
  }
  ASSERT_GE(reqs.size(), 64u);
  std::vector<Draft> a(reqs.size()), b(reqs.size());
  threaded.propose_batch(reqs, a);
  serial.propose_batch(reqs, b);
  size_t nonempty = 0;
  for (size_t i = 0; i < reqs.size(); ++i) {
    EXPECT_EQ(a[i].tokens, b[i].tokens);
    nonempty += !a[i].tokens.empty();
  }
  EXPECT_GT(nonempty, reqs.size() / 2);
}

// observe() leaves the history matches' advance to the next proposal (advance_pending, a whole
// batch interleaved): however the tokens arrive (one per step with proposals between, several
// observes between proposals, a round published in between), the matches and so the drafts must
// equal those of a request that starts with the whole context as its prompt.
TEST(Drafter, DeferredAdvancesEqualAFreshMatch) {
  workload::WorkloadOptions w;
  w.prompts = 4;
  w.samples = 8;
  w.rounds = 3;
  w.median_len = 150;
  const auto rollouts = workload::generate_workload(w);
  DrafterOptions o;
  o.calibrate = false;  // drafts depend on the matches alone
  Drafter stepped(o), bunched(o), fresh(o);
  for (auto* d : {&stepped, &bunched, &fresh}) {
    for (const auto& r : rollouts) {
      if (r.round == 0) d->add_rollout(r.prompt_id, r.prompt_tokens, r.response_tokens, 0);
    }
    d->end_round(0);
  }
  uint64_t uid = 0;
  size_t compared = 0, nonempty = 0;
  for (const auto& r : rollouts) {
    if (r.round != 1) continue;
    ++uid;
    stepped.begin_request(uid, r.prompt_id, r.prompt_tokens);
    bunched.begin_request(uid, r.prompt_id, r.prompt_tokens);
    const auto& resp = r.response_tokens;
    const size_t n = std::min<size_t>(resp.size(), 60);
    for (size_t i = 0; i < n; ++i) {
      stepped.propose(uid, 8);  // walks the proposal, which the next observe follows
      stepped.observe(uid, std::span<const int32_t>(resp.data() + i, 1));
    }
    for (size_t i = 0; i < n; i += 7) {
      bunched.observe(uid, std::span<const int32_t>(resp.data() + i, std::min<size_t>(7, n - i)));
      if (i == 21) {  // a round published between observes: the matches re-sync from the text
        for (auto* d : {&stepped, &bunched, &fresh}) d->end_round(1);
      }
    }
    Str context = r.prompt_tokens;
    context.insert(context.end(), resp.begin(), resp.begin() + static_cast<std::ptrdiff_t>(n));
    fresh.begin_request(uid, r.prompt_id, context);
    for (const bool tree : {false, true}) {
      const DraftRequest q{uid, 16, tree};
      Draft a, b, c;
      stepped.propose_batch({&q, 1}, {&a, 1});
      bunched.propose_batch({&q, 1}, {&b, 1});
      fresh.propose_batch({&q, 1}, {&c, 1});
      EXPECT_EQ(a.tokens, c.tokens) << "uid " << uid;
      EXPECT_EQ(b.tokens, c.tokens) << "uid " << uid;
      EXPECT_EQ(a.parents, c.parents);
      EXPECT_EQ(b.parents, c.parents);
      ++compared;
      nonempty += !c.tokens.empty();
    }
  }
  EXPECT_GE(compared, 32u);
  EXPECT_GT(nonempty, compared / 4);
}

TEST(Drafter, TreeBranchesWhereHistoryBranches) {
  Drafter d(prompt_only());
  d.add_rollout("p", Str{9}, Str{1, 2, 3}, 0);
  d.add_rollout("p", Str{9}, Str{1, 2, 3}, 0);
  d.add_rollout("p", Str{9}, Str{1, 4, 5}, 0);
  d.end_round(0);
  d.begin_request(1, "p", Str{9});
  d.observe(1, Str{1});
  // A chain caller gets the chain it always got.
  const Draft chain = d.propose(1, 4);
  EXPECT_FALSE(chain.is_tree());
  EXPECT_EQ(chain.tokens, (Str{2, 3}));
  std::vector<DraftRequest> q{{1, 4, /*tree=*/true}};
  std::vector<Draft> out(1);
  d.propose_batch(q, out);
  const Draft& t = out[0];
  ASSERT_TRUE(t.is_tree());
  ASSERT_EQ(t.tokens.size(), 4u);
  // Both continuations of "1" with their successors; parents precede children.
  std::vector<int32_t> depth;
  t.depths(depth);
  for (size_t i = 0; i < t.tokens.size(); ++i) {
    EXPECT_LT(t.parents[i], static_cast<int32_t>(i));
    if (t.parents[i] >= 0) EXPECT_LE(t.probs[i], t.probs[static_cast<size_t>(t.parents[i])] + 1e-6);
  }
  EXPECT_NEAR(t.score(), 2.0 / 3 + 2.0 / 3 + 1.0 / 3 + 1.0 / 3, 1e-5);
  std::vector<int32_t> path;
  EXPECT_EQ(longest_accepted_path(t, Str{4, 5, 7}, &path), 2);
  ASSERT_EQ(path.size(), 2u);
  EXPECT_EQ(t.tokens[static_cast<size_t>(path[0])], 4);
  EXPECT_EQ(t.tokens[static_cast<size_t>(path[1])], 5);
  EXPECT_EQ(depth[static_cast<size_t>(path[1])], 2);
  EXPECT_EQ(longest_accepted_path(t, Str{2, 3}), 2);
  EXPECT_EQ(longest_accepted_path(t, Str{7}), 0);
  EXPECT_EQ(longest_accepted_path(chain, Str{2, 9}), 1);  // chains through the same function
  // Budget 1: only the most probable node.
  q[0].budget = 1;
  d.propose_batch(q, out);
  EXPECT_EQ(out[0].tokens, (Str{2}));
  EXPECT_EQ(out[0].parents, (std::vector<int32_t>{-1}));
}

TEST(Drafter, TreeStopsAtTheNodeFloor) {
  Drafter d(prompt_only());
  for (int i = 0; i < 3; ++i) d.add_rollout("p", Str{9}, Str{1, 2, 3, 4}, 0);
  d.add_rollout("p", Str{9}, Str{1, 5, 6, 7}, 0);
  d.end_round(0);
  d.begin_request(1, "p", Str{9});
  d.observe(1, Str{1});
  std::vector<DraftRequest> q{{1, 8, true, 0.0}};
  std::vector<Draft> out(1);
  d.propose_batch(q, out);
  const Draft all = out[0];
  ASSERT_GE(all.tokens.size(), 4u);
  // A floor between the branches' probabilities keeps exactly the nodes above it, best first.
  float low = 1, high = 0;
  for (const float pr : all.probs) {
    low = std::min(low, pr);
    high = std::max(high, pr);
  }
  ASSERT_LT(low, high);
  q[0].min_node_prob = 0.5 * (low + high);
  d.propose_batch(q, out);
  size_t above = 0;
  for (const float pr : all.probs) above += pr > q[0].min_node_prob ? 1 : 0;
  EXPECT_EQ(out[0].tokens.size(), above);
  EXPECT_LT(out[0].tokens.size(), all.tokens.size());
  for (const float pr : out[0].probs) EXPECT_GT(pr, q[0].min_node_prob);
  q[0].min_node_prob = 1.0;  // nothing is certain to be accepted
  d.propose_batch(q, out);
  EXPECT_TRUE(out[0].tokens.empty());
}

TEST(Drafter, TreeMergesOwnContextAndHistory) {
  // History says "5 6" goes on with 1; the sequence's own text says 7 8: the tree holds both.
  DrafterOptions o;
  o.use_global_scope = false;
  Drafter d(o);
  d.add_rollout("p", Str{}, Str{5, 6, 1, 2}, 0);
  d.end_round(0);
  d.begin_request(1, "p", Str{});
  d.observe(1, Str{5, 6, 7, 8, 5, 6});
  std::vector<DraftRequest> q{{1, 6, true}};
  std::vector<Draft> out(1);
  d.propose_batch(q, out);
  EXPECT_EQ(longest_accepted_path(out[0], Str{7, 8}), 2);
  EXPECT_EQ(longest_accepted_path(out[0], Str{1, 2}), 2);
}

TEST(Drafter, CalibrationLowersAScopeWhoseDraftsFail) {
  // The prompt's only rollout continues "1" with 2 (count ratio 1), but sequences keep writing 3.
  for (const bool calibrate : {true, false}) {
    DrafterOptions o = prompt_only();
    o.calibrate = calibrate;
    Drafter d(o);
    d.add_rollout("p", Str{9}, Str{1, 2}, 0);
    d.end_round(0);
    for (uint64_t uid = 1; uid <= 40; ++uid) {
      d.begin_request(uid, "p", Str{9, 1});
      const Draft a = d.propose(uid, 1);
      ASSERT_EQ(a.tokens, (Str{2}));
      if (uid == 1) EXPECT_NEAR(a.probs[0], 1.0, 1e-6);
      d.observe(uid, Str{3});
      d.end_request(uid);
    }
    d.begin_request(99, "p", Str{9, 1});
    const Draft late = d.propose(99, 1);
    ASSERT_EQ(late.tokens, (Str{2}));
    // (0 accepted + 8 prior) / (40 tried + 8 prior) = 0.17; uncalibrated: the count ratio.
    if (calibrate) {
      EXPECT_NEAR(late.probs[0], 8.0 / 48.0, 1e-5);
    } else {
      EXPECT_NEAR(late.probs[0], 1.0, 1e-6);
    }
  }
}

TEST(Drafter, RejectsBadInput) {
  Drafter d;
  EXPECT_THROW(d.begin_request(1, "p", Str{1, -2}), std::invalid_argument);
  EXPECT_FALSE(d.has_request(1));
  d.begin_request(1, "p", Str{1});
  EXPECT_THROW(d.begin_request(1, "p", Str{1}), std::invalid_argument);
  EXPECT_THROW(d.observe(1, Str{-1}), std::invalid_argument);
  EXPECT_THROW(d.observe(2, Str{1}), std::invalid_argument);
  EXPECT_THROW(d.propose(2, 4), std::invalid_argument);
  EXPECT_THROW(d.add_rollout("p", Str{1}, Str{3, -4}, 0), std::invalid_argument);
  std::vector<DraftRequest> reqs{{1, 4}};
  std::vector<Draft> out(2);
  EXPECT_THROW(d.propose_batch(reqs, out), std::invalid_argument);
  d.end_request(1);
  d.end_request(1);  // ignored
  EXPECT_FALSE(d.has_request(1));
  DrafterOptions bad;
  bad.window_rounds = 0;
  EXPECT_THROW(Drafter{bad}, std::invalid_argument);
}

}  // namespace
}  // namespace longtail::drafter
