// The speculative step with token trees on the CPU backend: trajectories (tokens, logprobs, finish
// reasons) are bitwise those of plain decoding over the golden fixtures and both bundled models,
// greedy and sampled, with preemption, and so are chains (no longer the default); trees really branch and accepted side branches really get
// compacted (a counting backend proves the comparison is not vacuous); a backend that cannot verify
// trees is sent chains; trace-forced rounds with trees emit the recordings.
#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <set>

#include "engine_test_util.h"
#include "trace_rounds.h"
#include "policy/backend.h"
#include "policy/forwarding_backend.h"
#include "rollout/engine.h"
#include "rollout/forced_trajectories.h"

namespace longtail::rollout {
namespace {

namespace fs = std::filesystem;

struct TreeCounts {
  int64_t tree_chunks = 0;       // chunks with parents
  int64_t branching_chunks = 0;  // ... in which some node has two children
  int64_t moved_paths = 0;       // compact_kv calls that moved rows (a side branch was accepted)
};

// The CPU backend, counting what the speculative step asks of it; supports_trees = false plays a
// backend without tree verification.
class CountingBackend final : public policy::ForwardingBackend {
 public:
  CountingBackend(std::unique_ptr<policy::Backend> inner, TreeCounts* counts, bool supports_trees)
      : policy::ForwardingBackend(std::move(inner)), counts_(counts), trees_(supports_trees) {}
  std::vector<policy::TokenOutput> forward(std::span<const policy::SequenceChunk> chunks) override {
    for (const policy::SequenceChunk& c : chunks) {
      if (c.parents.empty()) continue;
      EXPECT_TRUE(trees_) << "a tree was sent to a backend that does not verify trees";
      ++counts_->tree_chunks;
      std::set<int32_t> parents(c.parents.begin(), c.parents.end());
      if (parents.size() < c.parents.size()) ++counts_->branching_chunks;
    }
    return inner().forward(chunks);
  }
  bool supports_token_trees() const override { return trees_; }
  void compact_kv(int64_t seq, int32_t start, std::span<const int32_t> keep) override {
    for (size_t j = 0; j < keep.size(); ++j) {
      if (keep[j] != static_cast<int32_t>(j)) {
        ++counts_->moved_paths;
        break;
      }
    }
    inner().compact_kv(seq, start, keep);
  }

 private:
  TreeCounts* counts_;
  bool trees_;
};

policy::BackendOptions cpu_options(int64_t max_kv_tokens = 0) {
  policy::BackendOptions o;
  o.num_threads = 2;
  o.max_kv_tokens = max_kv_tokens;
  o.kv_block_size = 4;
  return o;
}

std::unique_ptr<policy::Backend> counting(const fs::path& dir, TreeCounts* counts, int64_t kv = 0,
                                          bool trees = true) {
  return std::make_unique<CountingBackend>(policy::make_backend(dir, cpu_options(kv)), counts, trees);
}

struct Model {
  fs::path dir;
  int vocab;  // prompt ids are taken modulo this
};

std::vector<Model> models() {
  const fs::path root = LONGTAIL_SOURCE_DIR;
  std::vector<Model> out;
  for (const char* name : {"llama_rope_llama3", "qwen2_bias_f16", "qwen3_qknorm_bf16"}) {
    out.push_back({root / "tests/golden/fixtures" / name, 256});
  }
  out.push_back({root / "configs/models/tiny-qwen3", 256});
  out.push_back({root / "configs/models/chain-qwen3", 32});
  return out;
}

TEST(SpeculativeTrees, TreesAreLosslessOnTheCpuBackend) {
  struct Setting {
    const char* name;
    float temperature;
    int32_t top_k;
  };
  TreeCounts counts;
  int64_t accepted = 0;
  for (const Model& m : models()) {
    for (const Setting s : {Setting{"greedy", 0.0f, 0}, Setting{"T=1", 1.0f, 0}, Setting{"top-k", 0.8f, 5}}) {
      SCOPED_TRACE(m.dir.filename().string() + " " + s.name);
      SamplingParams sp;
      sp.temperature = s.temperature;
      sp.top_k = s.top_k;
      sp.seed = 11;
      std::vector<std::vector<GroupRequest>> rounds;
      for (int r = 0; r < 3; ++r) {
        rounds.push_back(testing::make_groups("r" + std::to_string(r), 2, 3, 5, 24, m.vocab, sp));
      }
      EngineOptions off;
      off.budgets.mode = drafter::BudgetMode::kOff;
      Engine base(policy::make_backend(m.dir, cpu_options()), off);
      const testing::RunResult ref = testing::run_rounds(base, rounds);

      struct Variant {
        drafter::BudgetMode mode;
        int32_t budget;
        int64_t kv;  // 0 = unlimited; small: preemption mid-round
        bool trees;  // false: chains, the special case, through the same walk
      };
      for (const Variant v : {Variant{drafter::BudgetMode::kFixed, 16, 0, true},
                              Variant{drafter::BudgetMode::kLengthAware, 8, 72, true},
                              Variant{drafter::BudgetMode::kFixed, 16, 0, false}}) {
        EngineOptions o;
        o.budgets.mode = v.mode;
        o.budgets.max_budget = v.budget;
        o.budgets.max_tokens_per_step = 1024;
        o.budgets.token_trees = v.trees;
        Engine e(counting(m.dir, &counts, v.kv), o);
        const testing::RunResult got = testing::run_rounds(e, rounds);
        testing::expect_same_trajectories(ref, got);
        accepted += got.stats.tokens_accepted;
      }
    }
  }
  EXPECT_GT(accepted, 0) << "no draft was ever accepted: the comparison is vacuous";
  EXPECT_GT(counts.branching_chunks, 0) << "no tree ever branched";
  EXPECT_GT(counts.moved_paths, 0) << "no side branch was ever accepted, so compaction went untested";
}

TEST(SpeculativeTrees, ABackendWithoutTreesGetsChains) {
  const fs::path model = fs::path(LONGTAIL_SOURCE_DIR) / "configs/models/chain-qwen3";
  SamplingParams sp;
  sp.temperature = 1.0f;
  sp.seed = 3;
  std::vector<std::vector<GroupRequest>> rounds;
  for (int r = 0; r < 3; ++r) rounds.push_back(testing::make_groups("r" + std::to_string(r), 2, 3, 5, 24, 32, sp));
  EngineOptions off;
  off.budgets.mode = drafter::BudgetMode::kOff;
  Engine base(policy::make_backend(model, cpu_options()), off);
  const testing::RunResult ref = testing::run_rounds(base, rounds);
  EngineOptions o;
  o.budgets.mode = drafter::BudgetMode::kFixed;
  o.budgets.token_trees = true;
  TreeCounts counts;
  Engine e(counting(model, &counts, 0, /*trees=*/false), o);
  const testing::RunResult got = testing::run_rounds(e, rounds);
  testing::expect_same_trajectories(ref, got);
  EXPECT_EQ(counts.tree_chunks, 0);
  EXPECT_GT(got.stats.tokens_accepted, 0);
}

// Trace-forced rounds (the benchmark mode) with trees: the recordings come out exactly, and trees
// verified from the recorded history get accepted.
TEST(SpeculativeTrees, TraceForcedRoundsWithTreesEmitTheRecordings) {
  const fs::path root = LONGTAIL_SOURCE_DIR;
  const std::vector<RecordedRollout> trace =
      load_trace_jsonl(root / "tests/rollout/data/codet_humaneval_excerpt.jsonl", 2048);
  const ForcedTrajectories forced = forced_from_trace(trace);
  EngineOptions o;
  o.budgets.mode = drafter::BudgetMode::kFixed;
  o.budgets.max_tokens_per_step = 1024;
  o.budgets.token_trees = true;
  o.forced_trajectories = forced;
  TreeCounts counts;
  Engine e(counting(root / "configs/models/tiny-qwen3", &counts), o);
  const testing::RunResult got = testing::run_rounds(e, testing::trace_rounds(trace, 4, 64));
  ASSERT_EQ(got.by_uid.size(), trace.size());
  for (const auto& [uid, t] : got.by_uid) {
    const int32_t offset = std::stoi(t.group_id.substr(t.group_id.find('/') + 1));
    EXPECT_EQ(t.response_tokens, forced.at({t.prompt_id, offset})) << t.group_id;
  }
  EXPECT_GT(counts.tree_chunks, 0);
  EXPECT_GT(got.stats.tokens_accepted, 0);
}

}  // namespace
}  // namespace longtail::rollout
