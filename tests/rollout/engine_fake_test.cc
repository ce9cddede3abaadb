// Engine behaviour on the deterministic fake backend: lossless speculation for any batch size and
// budget, preemption by recompute, chunked prefill, finish conditions, partial rollouts across a
// weight update (versions, re-scored logprobs, importance statistics), trace-forced mode, the
// trajectory log, rewards and request validation.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <random>
#include <set>

#include "engine_test_util.h"
#include "testing/fake_backend.h"
#include "rollout/engine.h"
#include "rollout/importance.h"
#include "rollout/trajectory_log.h"

namespace longtail::rollout {
namespace {

using testing::FakeBackend;
using testing::FakeBackendOptions;
using testing::make_groups;
using testing::RunResult;

SamplingParams sampling(float temperature, uint64_t seed = 11) {
  SamplingParams p;
  p.temperature = temperature;
  p.seed = seed;
  return p;
}

std::unique_ptr<FakeBackend> fake(FakeBackendOptions o = {}) {
  return std::make_unique<FakeBackend>(o);
}

EngineOptions spec_options(bool enabled, int32_t budget, bool length_aware) {
  EngineOptions o;
  o.budgets.mode = !enabled       ? drafter::BudgetMode::kOff
                  : length_aware ? drafter::BudgetMode::kLengthAware
                                 : drafter::BudgetMode::kFixed;
  o.budgets.max_budget = budget;
  o.budgets.max_tokens_per_step = 4096;  // the test checks tokens, not the cost model's cap
  return o;
}

// Sample keys 1, 1 + n, 1 + 2n, ... in submission order: the RNG streams these rounds drew from
// when the engine keyed them by uid, so the speedup checks below keep their draws.
std::vector<std::vector<GroupRequest>> three_rounds(float temperature, int groups, int n,
                                                    int max_new) {
  std::vector<std::vector<GroupRequest>> rounds;
  uint64_t key = 1;
  for (int r = 0; r < 3; ++r) {
    rounds.push_back(make_groups("r" + std::to_string(r), groups, n, 6, max_new, 64,
                                 sampling(temperature)));
    for (GroupRequest& g : rounds.back()) {
      g.sample_key = key;
      key += static_cast<uint64_t>(n);
    }
  }
  return rounds;
}

TEST(EngineFake, SpeculationIsLosslessForAnyBatchSizeAndBudget) {
  for (float temperature : {0.0f, 1.0f}) {
    const auto rounds = three_rounds(temperature, 3, 3, 48);
    Engine base(fake(), spec_options(false, 0, false));
    const RunResult ref = testing::run_rounds(base, rounds);
    EXPECT_EQ(ref.stats.tokens_drafted, 0);
    for (int32_t max_running : {1, 4, 64}) {
      EngineOptions plain = spec_options(false, 0, false);
      plain.max_running_sequences = max_running;
      Engine same_batch(fake(), plain);
      const RunResult same = testing::run_rounds(same_batch, rounds);
      testing::expect_same_trajectories(ref, same);
      for (int32_t budget : {1, 4, 16}) {
        for (bool length_aware : {false, true}) {
          SCOPED_TRACE(::testing::Message() << "T=" << temperature << " running=" << max_running
                                          << " budget=" << budget << " das=" << length_aware);
          EngineOptions o = spec_options(true, budget, length_aware);
          o.max_running_sequences = max_running;
          Engine e(fake(), o);
          const RunResult got = testing::run_rounds(e, rounds);
          testing::expect_same_trajectories(ref, got);
          EXPECT_GT(got.stats.tokens_accepted, 0) << "drafts never accepted: the test is vacuous";
          EXPECT_LT(got.stats.forward_passes, same.stats.forward_passes);
        }
      }
    }
  }
}

// Random engine configurations (batch bounds, budgets, prefill chunking, KV size, partial rollouts)
// against plain synchronous decoding of the same requests: every trajectory must be identical.
TEST(EngineFake, RandomConfigurationsMatchPlainDecoding) {
  std::mt19937 rng(1234);
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  for (int iter = 0; iter < 60; ++iter) {
    SCOPED_TRACE(::testing::Message() << "iteration " << iter);
    std::vector<GroupRequest> groups;
    const int n_groups = pick(1, 6);
    for (int g = 0; g < n_groups; ++g) {
      GroupRequest r = make_groups("it" + std::to_string(iter), g + 1, pick(1, 3), pick(1, 30),
                                   pick(1, 60), 64, sampling(pick(0, 1) ? 1.0f : 0.0f, iter))[g];
      groups.push_back(r);
    }
    Engine plain(fake(), spec_options(false, 0, false));
    for (const auto& g : groups) plain.submit(g);
    RunResult ref;
    testing::drive(plain, ref, 1);

    EngineOptions o = spec_options(pick(0, 3) > 0, pick(1, 16), pick(0, 1) == 1);
    o.max_running_sequences = pick(1, 12);
    o.max_tokens_per_forward = pick(2, 64);
    o.round_groups = pick(0, n_groups);
    o.overprovision = o.round_groups > 0 ? 1.0 + pick(0, 2) * 0.5 : 1.0;
    FakeBackendOptions fo;
    fo.max_kv_tokens = pick(0, 1) ? 0 : 4 * pick(24, 40);  // >= one prompt + response
    Engine e(fake(fo), o);
    for (const auto& g : groups) e.submit(g);
    RunResult got;
    const size_t rounds = o.round_groups == 0 ? 1 : (n_groups + o.round_groups - 1) / o.round_groups;
    for (int i = 0; i < 100000 && got.by_uid.size() < ref.by_uid.size(); ++i) {
      auto b = e.step();
      if (!b && e.idle()) b = e.flush_round();
      if (b) {
        for (const Trajectory& t : b->trajectories) got.by_uid[t.uid] = t;
        got.batches.push_back(std::move(*b));
      }
    }
    EXPECT_LE(got.batches.size(), rounds);
    testing::expect_same_trajectories(ref, got);
    EXPECT_TRUE(e.idle());
  }
}

// Random weight updates with identical weights ("same-*") at random steps: the re-prefills (of
// running, queued, preempted and finished-but-unemitted sequences, chunked at random bounds) must
// reproduce every behaviour logprob exactly, versions must be non-decreasing, and the tokens must
// be those of plain decoding.
TEST(EngineFake, RandomWeightUpdatesRescoreExactly) {
  std::mt19937 rng(99);
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  int crossed = 0;
  for (int iter = 0; iter < 40; ++iter) {
    SCOPED_TRACE(::testing::Message() << "iteration " << iter);
    const int n_groups = pick(2, 6);
    const auto groups = make_groups("up" + std::to_string(iter), n_groups, pick(1, 3), pick(1, 20),
                                    pick(5, 50), 64, sampling(1.0f, iter));
    Engine plain(fake(), spec_options(false, 0, false));
    for (const auto& g : groups) plain.submit(g);
    RunResult ref;
    testing::drive(plain, ref, 1);

    EngineOptions o = spec_options(pick(0, 1) == 1, pick(1, 8), true);
    o.max_running_sequences = pick(1, 8);
    o.max_tokens_per_forward = pick(2, 24);
    o.round_groups = pick(1, n_groups);
    o.overprovision = 1.0 + pick(0, 4) * 0.5;
    FakeBackendOptions fo;
    fo.max_kv_tokens = pick(0, 1) ? 0 : 4 * pick(20, 40);
    Engine e(fake(fo), o);
    for (const auto& g : groups) e.submit(g);
    RunResult got;
    int64_t version = 0;
    bool updated_this_round = false;  // as a trainer would: at most one update per round
    for (int i = 0; i < 100000 && got.by_uid.size() < ref.by_uid.size(); ++i) {
      if (!updated_this_round && pick(0, 15) == 0) {
        e.update_weights("same-" + std::to_string(version + 1), ++version);
        updated_this_round = true;
      }
      auto b = e.step();
      if (!b && e.idle()) b = e.flush_round();
      if (b) {
        updated_this_round = false;
        for (const Trajectory& t : b->trajectories) got.by_uid[t.uid] = t;
        got.batches.push_back(std::move(*b));
      }
    }
    testing::expect_same_trajectories(ref, got, /*compare_versions=*/false);
    for (const auto& [uid, t] : got.by_uid) {
      for (size_t k = 1; k < t.policy_versions.size(); ++k) {
        EXPECT_LE(t.policy_versions[k - 1], t.policy_versions[k]);
      }
      if (t.current_logprobs.empty()) continue;
      ++crossed;
      ASSERT_EQ(t.current_logprobs.size(), t.behaviour_logprobs.size());
      for (size_t k = 0; k < t.current_logprobs.size(); ++k) {
        ASSERT_EQ(t.current_logprobs[k], t.behaviour_logprobs[k]) << "uid " << uid << " token " << k;
      }
      EXPECT_EQ(t.weight, 1.0);
    }
  }
  EXPECT_GT(crossed, 20);
}

TEST(EngineFake, PreemptionByRecomputeKeepsTrajectoriesAndNeverExceedsKv) {
  const auto rounds = three_rounds(1.0f, 4, 2, 40);
  Engine base(fake(), spec_options(false, 0, false));
  const RunResult ref = testing::run_rounds(base, rounds);
  for (bool spec : {false, true}) {
    FakeBackendOptions fo;
    fo.max_kv_tokens = 96;  // 24 blocks of 4: far less than 8 sequences x ~46 tokens
    EngineOptions o = spec_options(spec, 8, true);
    Engine e(fake(fo), o);
    const RunResult got = testing::run_rounds(e, rounds);  // the fake throws on any overflow
    testing::expect_same_trajectories(ref, got);
    EXPECT_GT(got.stats.preemptions, 0);
  }
}

TEST(EngineFake, RecoversWhenTheBackendHasLessKvThanItReports) {
  const auto rounds = three_rounds(1.0f, 4, 2, 40);
  Engine base(fake(), spec_options(false, 0, false));
  const RunResult ref = testing::run_rounds(base, rounds);
  FakeBackendOptions fo;
  fo.max_kv_tokens = 96;
  fo.overstate_free_tokens = 16;
  auto backend = fake(fo);
  const FakeBackend* raw = backend.get();
  Engine e(std::move(backend), spec_options(true, 8, true));
  const RunResult got = testing::run_rounds(e, rounds);  // the fake throws on any overflow
  testing::expect_same_trajectories(ref, got);
  // The KV cache did run out (the case this test is about): the engine planned by the backend's
  // can_fit answers, not by the overstated kv_capacity(), and preempted instead of overflowing.
  EXPECT_GT(raw->can_fit_refusals, 0);
  EXPECT_GT(got.stats.preemptions, 0);
}

TEST(EngineFake, ChunkedPrefillGivesTheSameTrajectories) {
  std::vector<std::vector<GroupRequest>> rounds = {
      make_groups("long", 3, 2, 37, 20, 64, sampling(1.0f))};
  Engine base(fake(), spec_options(false, 0, false));
  const RunResult ref = testing::run_rounds(base, rounds);
  EngineOptions o = spec_options(true, 4, false);
  o.max_tokens_per_forward = 8;
  FakeBackend* raw = nullptr;
  auto b = fake();
  raw = b.get();
  Engine e(std::move(b), o);
  const RunResult got = testing::run_rounds(e, rounds);
  testing::expect_same_trajectories(ref, got);
  EXPECT_LE(raw->tokens_processed, raw->forward_calls * 8);
}

TEST(EngineFake, FinishesOnStopTokenLengthAndContext) {
  FakeBackendOptions fo;
  fo.max_position = 30;
  Engine e(fake(fo), spec_options(true, 8, false));
  GroupRequest ctx = make_groups("ctx", 1, 2, 20, 100, 64, sampling(1.0f))[0];
  ctx.stop_tokens = {63};
  GroupRequest len = make_groups("len", 1, 2, 5, 7, 64, sampling(1.0f))[0];
  len.stop_tokens = {63};
  e.submit(ctx);
  e.submit(len);
  RunResult r;
  testing::drive(e, r, 1);
  int contexts = 0;
  for (const auto& [uid, t] : r.by_uid) {
    if (t.group_id.rfind("ctx", 0) == 0) {
      if (t.finish_reason == FinishReason::kContext) {
        ++contexts;
        EXPECT_EQ(t.prompt_tokens.size() + t.response_tokens.size(), 30u);
      } else {
        EXPECT_EQ(t.finish_reason, FinishReason::kStop);
        EXPECT_EQ(t.response_tokens.back(), 63);
      }
    } else {
      if (t.finish_reason == FinishReason::kLength) {
        EXPECT_EQ(t.response_tokens.size(), 7u);
      } else {
        EXPECT_EQ(t.finish_reason, FinishReason::kStop);
        EXPECT_EQ(t.response_tokens.back(), 63);
      }
    }
    for (size_t i = 0; i + 1 < t.response_tokens.size(); ++i) EXPECT_NE(t.response_tokens[i], 63);
  }
  EXPECT_GT(contexts, 0) << "no sequence reached the context limit: that case went untested";
  // Greedy with the checkpoint's eos (1): find a sequence that stops on it.
  Engine g(fake(), spec_options(true, 8, false));
  int stops = 0;
  auto groups = make_groups("eos", 12, 1, 4, 200, 64, sampling(0.0f));
  for (auto& gr : groups) g.submit(gr);
  RunResult rg;
  testing::drive(g, rg, 1);
  for (const auto& [uid, t] : rg.by_uid) {
    if (t.finish_reason == FinishReason::kStop) {
      ++stops;
      EXPECT_EQ(t.response_tokens.back(), 1);
    }
  }
  EXPECT_GT(stops, 0);
}

TEST(EngineFake, PartialRolloutsCarryOverAndMatchSynchronousRollouts) {
  const auto groups = make_groups("g", 8, 2, 6, 60, 64, sampling(1.0f));
  Engine sync(fake(), spec_options(true, 8, true));
  for (const auto& g : groups) sync.submit(g);
  RunResult ref;
  testing::drive(sync, ref, 1);

  EngineOptions o = spec_options(true, 8, true);
  o.round_groups = 2;
  o.overprovision = 2.0;
  Engine e(fake(), o);
  for (const auto& g : groups) e.submit(g);
  RunResult got;
  testing::drive(e, got, 4);
  testing::expect_same_trajectories(ref, got);  // same uids, same RNG streams, same tokens
  std::set<std::string> seen;
  int carried_rounds = 0;
  for (const RoundBatch& b : got.batches) {
    EXPECT_EQ(b.stats.groups, 2);
    EXPECT_EQ(b.trajectories.size(), 4u);
    for (const Trajectory& t : b.trajectories) seen.insert(t.group_id);
    carried_rounds += b.stats.carried_over > 0 ? 1 : 0;
  }
  EXPECT_EQ(seen.size(), 8u);
  EXPECT_GT(carried_rounds, 0);
  EXPECT_TRUE(e.idle());
}

// Shutdown at its deadline: whatever is unfinished ends as aborted with the tokens it has (a prefix
// of what it would have generated), groups never started come back empty, and nothing is lost.
TEST(EngineFake, AbortAllEmitsEveryGroupWithItsTokensSoFar) {
  const auto groups = make_groups("a", 4, 2, 6, 60, 64, sampling(1.0f));
  Engine plain(fake(), spec_options(false, 0, false));
  for (const auto& g : groups) plain.submit(g);
  RunResult ref;
  testing::drive(plain, ref, 1);

  EngineOptions o = spec_options(true, 8, true);
  o.round_groups = 1;  // one group in flight at a time: the others wait in the queue
  Engine e(fake(), o);
  for (const auto& g : groups) e.submit(g);
  for (int i = 0; i < 3; ++i) ASSERT_FALSE(e.step().has_value());
  const auto b = e.abort_all();
  ASSERT_TRUE(b.has_value());
  ASSERT_EQ(b->trajectories.size(), 8u);
  int aborted = 0, empty = 0;
  for (const Trajectory& t : b->trajectories) {
    const Trajectory& full = ref.by_uid.at(t.uid);
    ASSERT_LE(t.response_tokens.size(), full.response_tokens.size());
    EXPECT_TRUE(std::equal(t.response_tokens.begin(), t.response_tokens.end(), full.response_tokens.begin()));
    EXPECT_EQ(t.behaviour_logprobs.size(), t.response_tokens.size());
    if (t.finish_reason == FinishReason::kAborted) ++aborted;
    else EXPECT_EQ(t.response_tokens, full.response_tokens);
    empty += t.response_tokens.empty() ? 1 : 0;
  }
  EXPECT_GT(aborted, 0);
  EXPECT_GE(empty, 6);  // the three groups still queued
  EXPECT_TRUE(e.idle());
  EXPECT_FALSE(e.abort_all().has_value());
  // Still usable: a new group runs to its end.
  e.submit(make_groups("after", 1, 1, 4, 5, 64, sampling(1.0f))[0]);
  RunResult r;
  testing::drive(e, r, 1);
  EXPECT_NE(r.batches[0].trajectories[0].finish_reason, FinishReason::kAborted);
}

TEST(EngineFake, ACompleteRoundWaitingForEmissionIsNotIdle) {
  EngineOptions o = spec_options(false, 0, false);
  o.round_groups = 1;
  o.overprovision = 2.0;
  Engine e(fake(), o);
  auto groups = make_groups("same", 2, 1, 4, 3, 64, sampling(1.0f));
  for (auto& g : groups) {
    g.stop_tokens = {63};  // never sampled in 3 tokens here: both groups finish in the same step
    e.submit(g);
  }
  RunResult r;
  testing::drive(e, r, 1);
  ASSERT_EQ(r.by_uid.begin()->second.response_tokens.size(), 3u);
  EXPECT_FALSE(e.idle());  // the second group completed in the same step: its round is ready
  const auto b = e.step();
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->trajectories.size(), 1u);
  EXPECT_TRUE(e.idle());
  EXPECT_FALSE(e.flush_round().has_value());
}

// A round interrupted by a weight update: the carried-over sequences are re-prefilled under the
// new weights, their earlier tokens get the new policy's logprobs, and versions and importance
// statistics follow.
TEST(EngineFake, WeightUpdateMidRolloutRecordsVersionsAndCurrentLogprobs) {
  EngineOptions o = spec_options(true, 4, false);
  o.round_groups = 1;
  o.overprovision = 3.0;
  o.importance_cap = 1e9;
  auto groups = make_groups("w", 3, 2, 6, 80, 64, sampling(1.0f));
  groups[0].max_new_tokens = 5;  // finishes first, before the update
  Engine e(fake(), o);
  for (const auto& g : groups) e.submit(g);
  RunResult r;
  testing::drive(e, r, 1);
  EXPECT_EQ(r.batches[0].trajectories[0].group_id, "w-0");
  EXPECT_EQ(r.batches[0].importance.off_policy_trajectories, 0);

  EXPECT_THROW(e.update_weights("bad-checkpoint", 1), std::runtime_error);
  EXPECT_EQ(e.policy_version(), 0);
  e.update_weights("weights-v1", 1);
  EXPECT_EQ(e.policy_version(), 1);
  testing::drive(e, r, 3);

  FakeBackend scorer;  // recomputes the new policy's logprobs independently
  scorer.replace_weights("weights-v1");
  int crossed = 0;
  for (size_t bi = 1; bi < r.batches.size(); ++bi) {
    const RoundBatch& b = r.batches[bi];
    EXPECT_EQ(b.policy_version, 1);
    int64_t old_tokens = 0, tokens = 0;
    for (const Trajectory& t : b.trajectories) {
      tokens += static_cast<int64_t>(t.response_tokens.size());
      ASSERT_EQ(t.policy_versions.size(), t.response_tokens.size());
      // Versions are 0 up to some point, then 1.
      size_t first_new = t.policy_versions.size();
      for (size_t i = 0; i < t.policy_versions.size(); ++i) {
        if (t.policy_versions[i] == 1 && first_new == t.policy_versions.size()) first_new = i;
        if (i >= first_new) EXPECT_EQ(t.policy_versions[i], 1);
        else EXPECT_EQ(t.policy_versions[i], 0);
      }
      old_tokens += static_cast<int64_t>(first_new);
      if (first_new == 0) {
        EXPECT_TRUE(t.current_logprobs.empty());
        EXPECT_EQ(t.weight, 1.0);
        continue;
      }
      ++crossed;
      ASSERT_EQ(t.current_logprobs.size(), t.response_tokens.size());
      std::vector<int32_t> all = t.prompt_tokens;
      all.insert(all.end(), t.response_tokens.begin(), t.response_tokens.end());
      double log_ratio = 0;
      for (size_t i = 0; i < t.response_tokens.size(); ++i) {
        if (i >= first_new) {
          EXPECT_EQ(t.current_logprobs[i], t.behaviour_logprobs[i]);
          continue;
        }
        // Expected: log softmax of the new weights' logits at the position before the token.
        const int64_t pos = static_cast<int64_t>(t.prompt_tokens.size() + i) - 1;
        const std::vector<float> l = scorer.logits_at(all, pos);
        double m = -1e30, s = 0;
        for (float v : l) m = std::max<double>(m, v);
        for (float v : l) s += std::exp(v - m);
        const double expect = l[t.response_tokens[i]] - m - std::log(s);
        EXPECT_NEAR(t.current_logprobs[i], expect, 1e-5) << "uid " << t.uid << " token " << i;
        log_ratio += double(t.current_logprobs[i]) - double(t.behaviour_logprobs[i]);
      }
      EXPECT_NEAR(t.log_ratio, log_ratio, 1e-6);
      EXPECT_NEAR(t.weight, std::exp(log_ratio), 1e-6 * std::exp(log_ratio));
      ASSERT_EQ(t.token_tis.size(), t.response_tokens.size());
      EXPECT_NEAR(t.token_tis[0],
                  std::min(2.0, std::exp(double(t.current_logprobs[0]) - t.behaviour_logprobs[0])),
                  1e-5);
    }
    EXPECT_NEAR(b.stats.off_policy_token_share, double(old_tokens) / double(tokens), 1e-12);
    const BatchImportance expect = compute_batch_importance(b.trajectories, 1);
    EXPECT_NEAR(b.importance.ess, expect.ess, 1e-9);
    EXPECT_EQ(b.importance.off_policy_trajectories, expect.off_policy_trajectories);
  }
  EXPECT_GT(crossed, 0) << "no trajectory crossed the update: the test is vacuous";
}

TEST(EngineFake, TraceForcedModeEmitsTheRecording) {
  auto groups = make_groups("f", 3, 2, 6, 50, 64, sampling(1.0f));
  Engine plain(fake(), spec_options(false, 0, false));
  for (const auto& g : groups) plain.submit(g);
  RunResult ref;
  testing::drive(plain, ref, 1);

  EngineOptions o = spec_options(true, 8, false);
  // Recordings: sample 0 = what the model generates; sample 1 = an arbitrary repetitive text.
  for (const auto& [uid, t] : ref.by_uid) {
    std::vector<int32_t> rec = t.response_tokens;
    if (t.sample_index == 1) {
      rec.clear();
      for (int i = 0; i < 33; ++i) rec.push_back((i % 5) * 3 + 10);
    }
    o.forced_trajectories[{t.prompt_id, t.sample_index}] = rec;
  }
  Engine forced(fake(), o);
  RunResult got;
  for (int round = 0; round < 2; ++round) {
    for (auto g : groups) {
      g.sample_key = policy::sample_key_of(g.group_id);  // the reference run's draws
      g.group_id += "-" + std::to_string(round);
      g.max_new_tokens = 1000;
      forced.submit(g);
    }
    testing::drive(forced, got, round + 1);
  }
  for (const auto& [uid, t] : got.by_uid) {
    const auto& rec = o.forced_trajectories.at({t.prompt_id, t.sample_index});
    EXPECT_EQ(t.response_tokens, rec);
    EXPECT_EQ(t.finish_reason, FinishReason::kStop);
  }
  EXPECT_GT(got.batches[1].stats.tokens_accepted, 0);
  // Forcing the model's own output reproduces its logprobs where the backend reports them.
  for (const auto& [uid, t] : ref.by_uid) {
    if (t.sample_index != 0) continue;
    const Trajectory& f = got.by_uid.at(uid);
    for (size_t i = 0; i < t.behaviour_logprobs.size(); ++i) {
      EXPECT_EQ(f.behaviour_logprobs[i], t.behaviour_logprobs[i]);
    }
  }
  // A sample without a recording is refused.
  GroupRequest extra = groups[0];
  extra.group_id = "extra";
  extra.n = 3;
  EXPECT_THROW(forced.submit(extra), InvalidRequest);
}

TEST(EngineFake, TrajectoryLogRecordsEveryTrajectoryAndRound) {
  const auto path = std::filesystem::temp_directory_path() /
                    ("longtail_engine_log_" + std::to_string(::getpid()) + ".bin");
  std::filesystem::remove(path);
  EngineOptions o = spec_options(true, 4, true);
  o.trajectory_log = path;
  RunResult r;
  {
    Engine e(fake(), o);
    r = testing::run_rounds(e, three_rounds(1.0f, 2, 2, 20));
  }
  TrajectoryLogReader reader(path);
  LogRecord rec;
  size_t trajectories = 0;
  std::vector<int64_t> rounds;
  while (reader.next(rec)) {
    if (auto* t = std::get_if<Trajectory>(&rec)) {
      ++trajectories;
      ASSERT_EQ(r.by_uid.count(t->uid), 1u);
      EXPECT_EQ(t->response_tokens, r.by_uid.at(t->uid).response_tokens);
      EXPECT_EQ(t->metadata, r.by_uid.at(t->uid).metadata);
    } else {
      rounds.push_back(std::get<RoundBoundary>(rec).round);
    }
  }
  EXPECT_EQ(trajectories, r.by_uid.size());
  EXPECT_EQ(rounds, (std::vector<int64_t>{0, 1, 2}));
  {  // A restarted engine appends instead of erasing.
    Engine again(fake(), o);
    testing::run_rounds(again, {make_groups("again", 1, 1, 4, 5, 64, sampling(1.0f))});
  }
  TrajectoryLogReader reread(path);
  size_t records = 0;
  while (reread.next(rec)) ++records;
  EXPECT_EQ(records, trajectories + 3 + 1 + 1);
  std::filesystem::remove(path);
}

TEST(EngineFake, LoadedHistoryFeedsDraftsFromTheFirstRound) {
  const std::vector<std::vector<GroupRequest>> rounds = {
      make_groups("h", 2, 2, 6, 40, 64, sampling(0.0f))};
  Engine plain(fake(), spec_options(false, 0, false));
  const RunResult ref = testing::run_rounds(plain, rounds);
  Engine cold(fake(), spec_options(true, 8, false));
  const RunResult c = testing::run_rounds(cold, rounds);
  Engine warm(fake(), spec_options(true, 8, false));
  for (const auto& [uid, t] : ref.by_uid) {
    warm.add_history(t.prompt_id, t.prompt_tokens, t.response_tokens, 3);
  }
  const RunResult w = testing::run_rounds(warm, rounds);
  testing::expect_same_trajectories(ref, w);
  // Greedy: the history holds these exact responses, so nearly every draft is accepted.
  EXPECT_GT(w.stats.tokens_accepted, c.stats.tokens_accepted);
  EXPECT_LT(w.stats.forward_passes, c.stats.forward_passes);
}

TEST(EngineFake, RewardsGiveGroupBaselines) {
  Engine e(fake(), spec_options(true, 4, true));
  RunResult r = testing::run_rounds(e, {make_groups("rw", 2, 2, 5, 10, 64, sampling(1.0f))});
  const RoundBatch& b = r.batches[0];
  EXPECT_FALSE(b.importance.baselines[0].valid);
  double rewards = 0;
  for (const Trajectory& t : b.trajectories) {
    if (t.group_id == "rw-0") {
      ASSERT_TRUE(e.set_reward(t.uid, t.sample_index == 0 ? 1.0 : 0.0));
      rewards += t.sample_index == 0 ? 1.0 : 0.0;
    }
  }
  EXPECT_FALSE(e.set_reward(999999, 1.0));
  const auto imp = e.round_importance(b.round);
  ASSERT_TRUE(imp.has_value());
  ASSERT_EQ(imp->baselines.size(), 2u);
  EXPECT_TRUE(imp->baselines[0].valid);
  EXPECT_NEAR(imp->baselines[0].baseline, 0.5, 1e-12);  // on-policy: equal weights, mean reward
  EXPECT_FALSE(imp->baselines[1].valid);
  EXPECT_FALSE(e.round_importance(42).has_value());
}

TEST(EngineFake, StatisticsAddUp) {
  Engine e(fake(), spec_options(true, 8, true));
  RunResult r = testing::run_rounds(e, three_rounds(1.0f, 2, 2, 30));
  int64_t tokens = 0, drafted = 0, accepted = 0, forwards = 0;
  for (const RoundBatch& b : r.batches) {
    tokens += b.stats.response_tokens;
    drafted += b.stats.tokens_drafted;
    accepted += b.stats.tokens_accepted;
    forwards += b.stats.forward_passes;
    EXPECT_GT(b.stats.makespan_s, 0);
    EXPECT_EQ(b.stats.off_policy_token_share, 0);
  }
  EXPECT_EQ(r.stats.tokens_generated, tokens);
  EXPECT_EQ(r.stats.tokens_drafted, drafted);
  EXPECT_EQ(r.stats.tokens_accepted, accepted);
  EXPECT_EQ(r.stats.forward_passes, forwards);
  EXPECT_LE(accepted, drafted);
  EXPECT_EQ(r.stats.recent_rounds.size(), 3u);
  EXPECT_EQ(r.stats.running_sequences, 0);
}

TEST(EngineFake, RejectsBadRequests) {
  Engine e(fake(), EngineOptions{});
  GroupRequest g = make_groups("bad", 1, 1, 4, 8, 64, sampling(1.0f))[0];
  auto expect_bad = [&](GroupRequest r, const std::string& needle) {
    try {
      e.submit(r);
      ADD_FAILURE() << "accepted: " << needle;
    } catch (const InvalidRequest& ex) {
      EXPECT_NE(std::string(ex.what()).find(needle), std::string::npos) << ex.what();
    }
  };
  GroupRequest r = g;
  r.prompt_tokens[2] = 64;
  expect_bad(r, "outside the vocabulary");
  r = g;
  r.prompt_tokens.clear();
  expect_bad(r, "empty prompt");
  r = g;
  r.n = 0;
  expect_bad(r, "n must be");
  r = g;
  r.prompt_tokens.assign(512, 3);
  expect_bad(r, "no room");
  r = g;
  r.max_new_tokens = 0;
  expect_bad(r, "max_new_tokens");
  r = g;
  r.sampling.temperature = -1;
  expect_bad(r, "temperature");
  // The fake backend's sampler has no mask and no processed logprobs: refused by name.
  r = g;
  r.sampling.min_tokens = 2;
  expect_bad(r, "min_tokens 2 > 0 is not implemented by this backend's sampler");
  r = g;
  r.sampling.logprobs_mode = "processed";
  expect_bad(r, "logprobs_mode 'processed' is not implemented by this backend's sampler");
  e.submit(g);
  expect_bad(g, "already in flight");
  EXPECT_THROW(Engine(fake(), [] { EngineOptions o; o.overprovision = 0.5; return o; }()),
               std::invalid_argument);
}

}  // namespace
}  // namespace longtail::rollout
