// The replay's engine model (rollout/replay_engine.h): its counts are those of the engine on the
// CPU backend for the same trace-forced workload (continuous batching, partial rollouts, chains
// and trees), speculation off is the plain baseline, every forward is priced by the cost model,
// max_running_sequences shapes the forwards, and fleet mode runs on it.
#include "rollout/replay_engine.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "policy/backend.h"
#include "rollout/engine.h"
#include "rollout/forced_trajectories.h"
#include "rollout/replay_fleet.h"

namespace longtail::rollout {
namespace {

namespace fs = std::filesystem;

const fs::path kTrace = fs::path(LONGTAIL_SOURCE_DIR) / "tests/rollout/data/codet_humaneval_excerpt.jsonl";
const fs::path kModel = fs::path(LONGTAIL_SOURCE_DIR) / "configs/models/tiny-qwen3";
constexpr int32_t kVocab = 2048;  // tiny-qwen3's vocabulary: the trace's ids are mapped into it

// The excerpt as the replay reads it (round s = sample s of every prompt), ids mod kVocab.
ReplayInput excerpt() {
  ReplayInput in = read_replay_input(kTrace, 64, OnError::kStop);
  for (auto& round : in.rounds) {
    for (auto& r : round.rollouts) {
      for (auto& t : r.prompt_tokens) t %= kVocab;
      for (auto& t : r.response_tokens) t %= kVocab;
    }
  }
  return in;
}

struct Workload {
  const char* name;
  int32_t max_running;
  double overprovision;
  bool trees;
};

// The engine on the CPU backend, fed the groups the replay's rule makes: one per prompt and round
// (here one sample each), every round submitted up front, batches of one round's groups.
RoundStats cpu_engine(const Workload& w, const ReplayInput& in, size_t& batches) {
  EngineOptions o;
  o.round_groups = static_cast<int32_t>(in.rounds.front().rollouts.size());
  o.overprovision = w.overprovision;
  o.max_running_sequences = w.max_running;
  o.budgets.max_tokens_per_step = 1024;
  o.budgets.token_trees = w.trees;
  o.forced_trajectories = forced_from_trace(load_trace_jsonl(kTrace, kVocab));
  policy::BackendOptions bo;
  bo.num_threads = 2;
  Engine e(policy::make_backend(kModel, bo), o);
  for (const auto& round : in.rounds) {
    for (const auto& r : round.rollouts) {
      GroupRequest g;
      g.group_id = r.prompt_id + "/" + std::to_string(round.round);
      g.prompt_id = r.prompt_id;
      g.prompt_tokens = r.prompt_tokens;
      g.max_new_tokens = 64;
      g.trace_sample_offset = static_cast<int32_t>(r.sample);
      e.submit(g);
    }
  }
  RoundStats total;
  batches = 0;
  for (int guard = 0; guard < 100000; ++guard) {
    std::optional<RoundBatch> b = e.step();
    if (!b && e.idle()) b = e.flush_round();
    if (!b) {
      if (e.idle()) break;
      continue;
    }
    ++batches;
    total.forward_passes += b->stats.forward_passes;
    total.tokens_verified += b->stats.tokens_verified;
    total.tokens_drafted += b->stats.tokens_drafted;
    total.tokens_accepted += b->stats.tokens_accepted;
    total.response_tokens += b->stats.response_tokens;
  }
  return total;
}

TEST(EngineReplay, CountsEqualTheEngineOnTheCpuBackend) {
  const ReplayInput in = excerpt();
  ASSERT_EQ(in.rounds.size(), 4u);
  for (const Workload& w : {Workload{"continuous batching, chains", 2, 1.0, false},
                            Workload{"continuous batching, trees", 2, 1.0, true},
                            Workload{"partial rollouts, trees", 256, 2.0, true}}) {
    SCOPED_TRACE(w.name);
    ReplayOptions ro;
    ro.policy.max_tokens_per_step = 1024;
    ro.policy.token_trees = w.trees;
    EngineReplayOptions eo;
    eo.model = kModel;
    eo.max_running_sequences = w.max_running;
    eo.overprovision = w.overprovision;
    eo.max_new_tokens = 64;
    const ReplayReport rep = run_engine_replay(in, ro, eo);
    size_t batches = 0;
    const RoundStats cpu = cpu_engine(w, in, batches);
    EXPECT_EQ(rep.engine_steps, cpu.forward_passes);
    EXPECT_EQ(rep.verified_tokens, cpu.tokens_verified);
    EXPECT_EQ(rep.drafted_tokens, cpu.tokens_drafted);
    EXPECT_EQ(rep.accepted_tokens, cpu.tokens_accepted);
    EXPECT_EQ(rep.response_tokens, cpu.response_tokens);
    EXPECT_EQ(rep.rounds.size(), batches);
    EXPECT_GT(rep.accepted_tokens, 0);
    EXPECT_EQ(rep.simulation, "engine");
  }
}

TEST(EngineReplay, SpeculationOffIsThePlainBaseline) {
  ReplayOptions off;
  off.speculation = false;
  const ReplayReport r = run_engine_replay(excerpt(), off, {});
  EXPECT_EQ(r.drafted_tokens, 0);
  EXPECT_EQ(r.verify_steps, r.response_tokens);  // one token per sequence and forward
  EXPECT_DOUBLE_EQ(r.makespan_us, r.plain_makespan_us);
  EXPECT_EQ(r.rollouts, 12);
}

TEST(EngineReplay, EveryForwardIsPricedByTheCostModel) {
  ReplayOptions ro;
  ro.policy.max_tokens_per_step = 1024;
  ro.policy.cost = {1000, 2, 0, 0, 0};
  const ReplayReport linear = run_engine_replay(excerpt(), ro, {});
  EXPECT_NEAR(linear.makespan_us, 1000.0 * linear.engine_steps + 2.0 * linear.verified_tokens, 1e-6);
  EXPECT_GT(linear.plain_makespan_us, linear.makespan_us);
  double rounds = 0;
  for (const auto& s : linear.rounds) rounds += s.makespan_us;
  EXPECT_NEAR(rounds, linear.makespan_us, 1e-6);
  // Cached positions cost on top (every forward after the prompts' prefill attends some).
  ro.policy.cost.per_context_us = 0.5;
  const ReplayReport ctx = run_engine_replay(excerpt(), ro, {});
  EXPECT_GT(ctx.makespan_us, 1000.0 * ctx.engine_steps + 2.0 * ctx.verified_tokens);
}

TEST(EngineReplay, APriceModelCostsTheForwardsWhileTheBudgetsKeepTheirs) {
  ReplayOptions ro;
  ro.policy.max_tokens_per_step = 1024;
  ro.policy.cost = {1000, 2, 0, 0, 0};
  const ReplayReport believed = run_engine_replay(excerpt(), ro, {});
  EngineReplayOptions priced;
  priced.price = drafter::StepCostModel{3000, 5, 0, 0, 0};
  const ReplayReport real = run_engine_replay(excerpt(), ro, priced);
  // The same drafts and forwards (the budgets saw the same model), priced by the other one.
  EXPECT_EQ(real.engine_steps, believed.engine_steps);
  EXPECT_EQ(real.drafted_tokens, believed.drafted_tokens);
  EXPECT_NEAR(real.makespan_us, 3000.0 * real.engine_steps + 5.0 * real.verified_tokens, 1e-6);
  EXPECT_DOUBLE_EQ(real.cost.base_us, 1000);  // the report names the budgets' model
}

TEST(EngineReplay, TheEnginesBudgetsPriceCachedPositions) {
  // The speculative step tells the policy each sequence's cached positions (SequenceView::
  // context_len): a per-position cost makes the plain step dearer, so the cap of (1 + 5%) x the
  // plain step leaves room for more draft tokens.
  ReplayOptions ro;
  ro.policy.mode = drafter::BudgetMode::kFixed;
  ro.policy.max_budget = 32;
  ro.policy.max_step_overhead = 0.05;
  ro.policy.cost = {1000, 10, 0, 0, 0};
  const ReplayReport flat = run_engine_replay(excerpt(), ro, {});
  ro.policy.cost.per_context_us = 20;
  const ReplayReport priced = run_engine_replay(excerpt(), ro, {});
  EXPECT_GT(priced.drafted_tokens, flat.drafted_tokens);
  EXPECT_EQ(priced.response_tokens, flat.response_tokens);
}

TEST(EngineReplay, MaxRunningSequencesShapesTheForwards) {
  EngineReplayOptions one;
  one.max_running_sequences = 1;
  const ReplayReport serial = run_engine_replay(excerpt(), ReplayOptions{}, one);
  const ReplayReport batched = run_engine_replay(excerpt(), ReplayOptions{}, {});
  // One sequence per forward: every forward is one step of one sequence.
  EXPECT_EQ(serial.engine_steps, serial.verify_steps);
  EXPECT_LT(batched.engine_steps, batched.verify_steps);
  EXPECT_EQ(serial.response_tokens, batched.response_tokens);
  EXPECT_GT(serial.makespan_us, batched.makespan_us);
}

TEST(EngineReplay, FleetRunsOnTheEngineModel) {
  const ReplayInput in = excerpt();
  const ReplayReport plain = run_engine_replay(in, ReplayOptions{}, {});
  FleetReplayOptions one;
  const auto fleet = run_fleet_replay(in, one, [](const ReplayInput& part) {
    return run_engine_replay(part, ReplayOptions{}, {});
  });
  EXPECT_EQ(fleet.verify_steps, plain.verify_steps);
  EXPECT_DOUBLE_EQ(fleet.makespan_us, plain.makespan_us);
  FleetReplayOptions three;
  three.workers = 3;
  const auto split = run_fleet_replay(in, three, [](const ReplayInput& part) {
    return run_engine_replay(part, ReplayOptions{}, {});
  });
  EXPECT_EQ(split.response_tokens, plain.response_tokens);
  EXPECT_EQ(split.workers.size(), 3u);
}

TEST(EngineReplay, HistoryOnlyLinesAreIndexedNotReplayed) {
  // Round 0: one replayed rollout and one history-only line (another worker's); round 1 replays
  // the same response, which the engine then drafts from that history. A round with only history
  // lines before the first replayed round is indexed before anything runs.
  ReplayInput in;
  RecordedRollout r;
  r.prompt_id = "p";
  r.prompt_tokens = {1, 2};  // two tokens: the prefill forward drafts nothing
  r.response_tokens = {5, 6, 7, 8, 9, 10, 11, 12};
  ReplayRound warm, first, second;
  warm.round = 0;
  warm.history = {r};
  first.round = 1;
  first.rollouts = {r};
  first.history = {r};
  second.round = 2;
  second.rollouts = {r};
  in.rounds = {warm, first, second};
  ReplayOptions ro;
  ro.drafter.match_length_factor = 0;  // drafts as long as the history continues
  const ReplayReport rep = run_engine_replay(in, ro, {});
  EXPECT_EQ(rep.rollouts, 2);
  EXPECT_EQ(rep.response_tokens, 16);
  ASSERT_EQ(rep.rounds.size(), 2u);
  EXPECT_EQ(rep.rounds[0].round, 1);
  // With the warm history the first replayed round drafts 6..12 after the prefill emitted 5: two
  // forwards. Without it, the prefill and seven undrafted decodes.
  EXPECT_EQ(rep.rounds[0].engine_steps, 2);
  EXPECT_GT(rep.accepted_tokens, 0);
  in.rounds = {first, second};
  in.rounds[0].history.clear();
  EXPECT_EQ(run_engine_replay(in, ro, {}).rounds[0].engine_steps, 8);
}

TEST(EngineReplay, RefusesWhatTheEngineRefusesByName) {
  EngineReplayOptions bad;
  bad.overprovision = 0.5;
  try {
    run_engine_replay(excerpt(), ReplayOptions{}, bad);
    ADD_FAILURE() << "no error for overprovision 0.5";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("overprovision"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace longtail::rollout
