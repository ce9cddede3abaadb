// The engine on the accounting backend (no model) replays a trace-forced run exactly: forwards,
// verified, drafted and accepted tokens, preemptions and emitted tokens per round equal those of the
// same run on the CPU backend, with continuous batching (max_running_sequences below the batch),
// partial rollouts (overprovision), a KV cache small enough to preempt, chains and trees. This is
// what lets a replay model the engine by running it, not by imitating it.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>

#include "engine_test_util.h"
#include "trace_rounds.h"
#include "policy/accounting_backend.h"
#include "policy/backend.h"
#include "policy/model_config.h"
#include "rollout/engine.h"
#include "rollout/forced_trajectories.h"

namespace longtail::rollout {
namespace {

namespace fs = std::filesystem;

const fs::path kTrace = fs::path(LONGTAIL_SOURCE_DIR) / "tests/rollout/data/codet_humaneval_excerpt.jsonl";
const fs::path kModel = fs::path(LONGTAIL_SOURCE_DIR) / "configs/models/tiny-qwen3";

struct Workload {
  const char* name;
  int32_t round_groups;  // 0: every submitted group
  double overprovision;
  int32_t max_running;
  int64_t max_kv_tokens;
  bool trees;
};

testing::RunResult run(const Workload& s, bool accounting, const std::vector<RecordedRollout>& trace) {
  EngineOptions o;
  o.round_groups = s.round_groups;
  o.overprovision = s.overprovision;
  o.max_running_sequences = s.max_running;
  o.budgets.max_tokens_per_step = 1024;
  o.budgets.token_trees = s.trees;
  o.forced_trajectories = forced_from_trace(trace);
  policy::BackendOptions bo;
  bo.num_threads = 2;
  bo.max_kv_tokens = s.max_kv_tokens;
  bo.kv_block_size = 8;
  std::unique_ptr<policy::Backend> backend =
      accounting ? std::make_unique<policy::AccountingBackend>(policy::load_model_config(kModel), bo)
                 : policy::make_backend(kModel, bo);
  Engine e(std::move(backend), o);
  // Every round's groups up front; batches of round_groups groups (all of them when 0).
  size_t groups = 0;
  for (const auto& round : testing::trace_rounds(trace, 4, 64)) {
    for (const GroupRequest& g : round) e.submit(g);
    groups += round.size();
  }
  testing::RunResult out;
  const size_t batches = s.round_groups == 0 ? 1 : (groups + s.round_groups - 1) / s.round_groups;
  testing::drive(e, out, batches);
  out.stats = e.stats();
  return out;
}

TEST(AccountingReplay, EngineCountsEqualTheCpuBackendsInTraceForcedMode) {
  const std::vector<RecordedRollout> trace = load_trace_jsonl(kTrace, 2048);
  for (const Workload& s : {Workload{"one batch, chains", 0, 1.0, 256, 0, false},
                         Workload{"continuous batching, trees", 0, 1.0, 4, 0, true},
                         Workload{"partial rollouts, trees", 3, 2.0, 256, 0, true},
                         Workload{"small KV, trees", 0, 1.0, 256, 160, true}}) {
    SCOPED_TRACE(s.name);
    const testing::RunResult cpu = run(s, false, trace);
    const testing::RunResult acc = run(s, true, trace);
    EXPECT_EQ(acc.stats.forward_passes, cpu.stats.forward_passes);
    EXPECT_EQ(acc.stats.tokens_generated, cpu.stats.tokens_generated);
    EXPECT_EQ(acc.stats.tokens_drafted, cpu.stats.tokens_drafted);
    EXPECT_EQ(acc.stats.tokens_accepted, cpu.stats.tokens_accepted);
    EXPECT_EQ(acc.stats.preemptions, cpu.stats.preemptions);
    EXPECT_GT(cpu.stats.tokens_accepted, 0);
    ASSERT_EQ(acc.batches.size(), cpu.batches.size());
    for (size_t b = 0; b < cpu.batches.size(); ++b) {
      EXPECT_EQ(acc.batches[b].stats.forward_passes, cpu.batches[b].stats.forward_passes) << "batch " << b;
      EXPECT_EQ(acc.batches[b].stats.tokens_verified, cpu.batches[b].stats.tokens_verified) << "batch " << b;
    }
    ASSERT_EQ(acc.by_uid.size(), cpu.by_uid.size());
    for (const auto& [uid, t] : cpu.by_uid) EXPECT_EQ(acc.by_uid.at(uid).response_tokens, t.response_tokens);
    if (s.max_kv_tokens > 0) EXPECT_GT(cpu.stats.preemptions, 0) << "the small KV cache never preempted";
  }
}

}  // namespace
}  // namespace longtail::rollout
