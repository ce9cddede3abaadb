// Fleet replay (rollout/replay_fleet.h): the router's hash matches the Python fleet's, affine
// routing keeps each prompt on one worker across rounds, splits lose and duplicate nothing, shared
// history reaches the other workers, and one worker is the plain replay.
#include "rollout/replay_fleet.h"

#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <set>

namespace longtail::rollout {
namespace {

ReplayInput synthetic(int prompts, int rounds, int samples) {
  ReplayInput in;
  for (int r = 0; r < rounds; ++r) {
    ReplayRound rr;
    rr.round = r;
    for (int p = 0; p < prompts; ++p) {
      for (int s = 0; s < samples; ++s) {
        RecordedRollout x;
        x.prompt_id = "q" + std::to_string(p);
        x.sample = r * samples + s;
        x.prompt_tokens = {100 + p, 7, 8};
        x.response_tokens = {1, 2, 3, p, 4, 5, 6, r % 3, 9};
        rr.rollouts.push_back(x);
      }
    }
    in.rounds.push_back(rr);
  }
  return in;
}

TEST(FleetReplay, RingHashMatchesThePythonRouter) {
  // trainer_bridge/python/tests/test_fleet_routing.py pins the same values.
  EXPECT_EQ(ring_hash(""), 0xF52A15E9A9B5E89Bull);
  EXPECT_EQ(ring_hash("prompt-1"), 0x782ABBD3AF766853ull);
}

TEST(FleetReplay, AffineKeepsPromptsOnOneWorkerAndLosesNothing) {
  const auto in = synthetic(30, 4, 2);
  FleetReplayOptions o;
  o.workers = 3;
  const auto parts = split_for_fleet(in, o);
  ASSERT_EQ(parts.size(), 3u);
  std::map<std::string, std::set<size_t>> where;
  std::multiset<std::pair<std::string, int64_t>> seen;
  for (size_t w = 0; w < parts.size(); ++w) {
    for (const auto& rr : parts[w].rounds) {
      EXPECT_TRUE(rr.history.empty());
      for (const auto& x : rr.rollouts) {
        where[x.prompt_id].insert(w);
        seen.insert({x.prompt_id, x.sample});
      }
    }
  }
  EXPECT_EQ(seen.size(), 30u * 4 * 2);
  const std::set<std::pair<std::string, int64_t>> distinct(seen.begin(), seen.end());
  EXPECT_EQ(distinct.size(), seen.size());
  int single = 0;
  std::set<size_t> used;
  for (const auto& [p, ws] : where) {
    single += ws.size() == 1;
    used.insert(ws.begin(), ws.end());
  }
  EXPECT_GE(single, 29);  // a prompt moved by the load bound stays where it moved
  EXPECT_EQ(used.size(), 3u);

  o.routing = FleetRouting::kRandom;
  where.clear();
  const auto scattered_parts = split_for_fleet(in, o);
  for (size_t w = 0; w < 3; ++w) {
    for (const auto& rr : scattered_parts[w].rounds) {
      for (const auto& x : rr.rollouts) where[x.prompt_id].insert(w);
    }
  }
  int scattered = 0;
  for (const auto& [p, ws] : where) scattered += ws.size() > 1;
  EXPECT_GT(scattered, 15);
}

TEST(FleetReplay, SharedHistoryReachesTheOtherWorkersAndHelps) {
  const auto in = synthetic(12, 3, 1);
  FleetReplayOptions o;
  o.workers = 4;
  o.routing = FleetRouting::kRandom;
  o.shared_history = true;
  const auto parts = split_for_fleet(in, o);
  size_t own = 0, hist = 0;
  for (const auto& p : parts) {
    for (const auto& rr : p.rounds) {
      own += rr.rollouts.size();
      hist += rr.history.size();
    }
  }
  EXPECT_EQ(own, 36u);
  EXPECT_EQ(hist, 36u * 3);
  ReplayOptions ro;
  const auto with = run_fleet_replay(in, ro, o);
  o.shared_history = false;
  const auto without = run_fleet_replay(in, ro, o);
  EXPECT_EQ(with.response_tokens, without.response_tokens);
  EXPECT_LT(with.verify_steps, without.verify_steps);  // scattered prompts find their history
}

TEST(FleetReplay, OneWorkerIsThePlainReplay) {
  const auto in = synthetic(8, 3, 2);
  ReplayOptions ro;
  const auto plain = run_replay(in, ro);
  FleetReplayOptions o;
  const auto fleet = run_fleet_replay(in, ro, o);
  EXPECT_EQ(fleet.verify_steps, plain.verify_steps);
  EXPECT_EQ(fleet.response_tokens, plain.response_tokens);
  EXPECT_DOUBLE_EQ(fleet.makespan_us, plain.makespan_us);
  EXPECT_DOUBLE_EQ(fleet.plain_makespan_us, plain.plain_makespan_us);
}

TEST(FleetReplay, HistoryOnlyLinesAreIndexedNotReplayed) {
  const std::string path = ::testing::TempDir() + "/history_only.jsonl";
  std::ofstream(path)
      << "{\"prompt_id\": \"p\", \"sample\": 0, \"step\": 0, \"prompt_tokens\": [1], \"response_tokens\": [5, 6, 7, 8]}\n"
         "{\"prompt_id\": \"p\", \"sample\": 1, \"step\": 0, \"prompt_tokens\": [1], \"response_tokens\": [5, 6, 7, 8], \"history_only\": true}\n"
         "{\"prompt_id\": \"p\", \"sample\": 2, \"step\": 1, \"prompt_tokens\": [1], \"response_tokens\": [5, 6, 7, 8]}\n";
  const auto in = read_replay_input(path, 64, OnError::kStop);
  ASSERT_EQ(in.rounds.size(), 2u);
  EXPECT_EQ(in.rounds[0].rollouts.size(), 1u);
  EXPECT_EQ(in.rounds[0].history.size(), 1u);
  const auto r = run_replay(in, ReplayOptions{});
  EXPECT_EQ(r.rollouts, 2);
  EXPECT_EQ(r.response_tokens, 8);
  const std::string bad = ::testing::TempDir() + "/history_only_bad.jsonl";
  std::ofstream(bad) << "{\"prompt_id\": \"p\", \"sample\": 0, \"prompt_tokens\": [1], \"response_tokens\": [5], "
                        "\"history_only\": 1}\n";
  EXPECT_THROW(read_replay_input(bad, 64, OnError::kStop), ReplayInputError);
}

TEST(FleetReplay, BadOptionsAreRefused) {
  FleetReplayOptions o;
  o.workers = 0;
  EXPECT_THROW(split_for_fleet(synthetic(1, 1, 1), o), std::invalid_argument);
  o.workers = 2;
  o.eps = -1;
  EXPECT_THROW(split_for_fleet(synthetic(1, 1, 1), o), std::invalid_argument);
}

}  // namespace
}  // namespace longtail::rollout
