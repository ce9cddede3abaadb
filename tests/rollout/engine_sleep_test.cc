// The engine's sleep mode on the CPU backend: sleeping mid-round (and with partial rollouts carried
// over) loses no sequence and changes no token or logprob, since the paused sequences re-prefill
// after the wake; nothing steps while asleep but groups are admitted; a level-2 sleep needs a
// weight update before the wake; levels the backend does not serve are refused.
#include <gtest/gtest.h>

#include <filesystem>
#include <stdexcept>
#include <string>

#include "engine_test_util.h"
#include "policy/backend.h"
#include "rollout/engine.h"
#include "testing/fake_backend.h"

namespace longtail::rollout {
namespace {

namespace fs = std::filesystem;
using testing::make_groups;
using testing::RunResult;

const fs::path kModel = fs::path(LONGTAIL_SOURCE_DIR) / "configs/models/tiny-qwen3";

std::unique_ptr<Engine> make_engine(double overprovision = 1.0, int32_t round_groups = 0) {
  policy::BackendOptions b;
  b.kind = "cpu";
  b.num_threads = 2;
  b.kv_block_size = 4;
  EngineOptions o;
  o.round_groups = round_groups;
  o.overprovision = overprovision;
  o.budgets.mode = drafter::BudgetMode::kFixed;
  o.budgets.max_budget = 4;
  return std::make_unique<Engine>(policy::make_backend(kModel, b), o);
}

// Groups of 3 samples whose lengths differ (8, 14, 20, ... tokens), so that rounds end unevenly.
std::vector<GroupRequest> groups(const std::string& tag, int count) {
  SamplingParams sp;
  sp.temperature = 1.0f;
  sp.seed = 7;
  std::vector<GroupRequest> out = make_groups(tag, count, 3, 6, 20, 200, sp);
  for (size_t i = 0; i < out.size(); ++i) out[i].max_new_tokens = 8 + 6 * static_cast<int32_t>(i);
  return out;
}

void collect(RunResult& r, std::optional<RoundBatch> b) {
  if (!b) return;
  for (const Trajectory& t : b->trajectories) r.by_uid[t.uid] = t;
  r.batches.push_back(std::move(*b));
}

TEST(EngineSleep, MidRoundSleepLosesNothingAndChangesNoToken) {
  auto plain = make_engine();
  const RunResult want = testing::run_rounds(*plain, {groups("g", 4)});

  auto e = make_engine();
  for (const auto& g : groups("g", 4)) e->submit(g);
  RunResult got;
  for (int i = 0; i < 4; ++i) collect(got, e->step());
  ASSERT_TRUE(got.batches.empty()) << "the round must still be running when the engine sleeps";
  const Engine::SleepReport r = e->sleep(1);
  EXPECT_EQ(r.level, 1);
  EXPECT_EQ(r.sequences_paused, 12);
  EXPECT_GT(r.kv_tokens_dropped, 12 * 6);
  EXPECT_EQ(e->sleep_level(), 1);
  EXPECT_EQ(e->stats().kv_total_tokens, 0);
  const Engine::SleepReport again = e->sleep(1);  // a no-op
  EXPECT_EQ(again.level, 1);
  EXPECT_EQ(again.sequences_paused, 0);
  EXPECT_THROW(e->step(), std::logic_error);
  EXPECT_FALSE(e->idle());
  e->wake_up();
  EXPECT_EQ(e->sleep_level(), 0);
  testing::drive(*e, got, 1);
  testing::expect_same_trajectories(want, got);
}

TEST(EngineSleep, CarriedPartialRolloutsSurviveASleep) {
  // f = 2: two groups per round, four in flight, so sequences are carried over at every batch.
  auto plain = make_engine(2.0, 2);
  for (const auto& g : groups("p", 6)) plain->submit(g);
  RunResult want;
  testing::drive(*plain, want, 3);

  auto e = make_engine(2.0, 2);
  for (const auto& g : groups("p", 6)) e->submit(g);
  RunResult got;
  testing::drive(*e, got, 1);
  ASSERT_GT(e->stats().running_sequences, 0) << "sequences of the next round must be in flight";
  const Engine::SleepReport r = e->sleep(1);
  EXPECT_GT(r.sequences_paused, 0);
  e->wake_up();
  testing::drive(*e, got, 3);
  testing::expect_same_trajectories(want, got);
}

TEST(EngineSleep, GroupsSubmittedAsleepWaitAndLevelTwoNeedsAWeightUpdate) {
  auto plain = make_engine();
  RunResult want = testing::run_rounds(*plain, {groups("a", 2)});
  plain->update_weights(kModel, 1);
  const RunResult want2 = testing::run_rounds(*plain, {groups("b", 2)});

  auto e = make_engine();
  RunResult got = testing::run_rounds(*e, {groups("a", 2)});
  testing::expect_same_trajectories(want, got);
  EXPECT_EQ(e->sleep(2).level, 2);
  for (const auto& g : groups("b", 2)) e->submit(g);  // admitted, generated after the wake
  EXPECT_EQ(e->stats().waiting_groups, 2);
  EXPECT_THROW(e->wake_up(), std::logic_error);  // no weights to serve
  EXPECT_EQ(e->sleep_level(), 2);
  e->update_weights(kModel, 1);
  EXPECT_EQ(e->sleep_level(), 1);
  EXPECT_EQ(e->policy_version(), 1);
  e->wake_up();
  RunResult got2;
  testing::drive(*e, got2, 1);
  testing::expect_same_trajectories(want2, got2);
}

TEST(EngineSleep, LevelsTheBackendDoesNotServeAreRefused) {
  auto e = make_engine();
  EXPECT_EQ(e->max_sleep_level(), 2);
  EXPECT_THROW(e->sleep(0), std::invalid_argument);
  EXPECT_THROW(e->sleep(3), std::invalid_argument);
  EXPECT_EQ(e->sleep_level(), 0);
  EXPECT_EQ(e->wake_up(), 0u);  // awake: nothing to do

  Engine fake(std::make_unique<testing::FakeBackend>(), EngineOptions{});
  EXPECT_EQ(fake.max_sleep_level(), 0);
  try {
    fake.sleep(1);
    FAIL() << "a backend that cannot sleep must refuse";
  } catch (const std::invalid_argument& err) {
    EXPECT_NE(std::string(err.what()).find("cannot sleep"), std::string::npos) << err.what();
  }
}

}  // namespace
}  // namespace longtail::rollout
