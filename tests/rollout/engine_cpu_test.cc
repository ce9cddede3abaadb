// The engine on the real fp32 CPU backend: the numerical premise of lossless speculation (logits of
// a position do not depend on batch composition or on how many tokens a forward feeds), and
// identical trajectories with speculation on and off over several checkpoints (the golden fixtures
// and the bundled tiny-qwen3), sampling settings, batch sizes, budgets and a small KV cache.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "engine_test_util.h"
#include "policy/backend.h"
#include "policy/cpu_backend.h"
#include "rollout/engine.h"

namespace longtail::rollout {
namespace {

namespace fs = std::filesystem;

std::vector<fs::path> checkpoints() {
  const fs::path root = LONGTAIL_SOURCE_DIR;
  std::vector<fs::path> out;
  for (const char* name : {"llama_rope_llama3", "llama_tied_sharded", "qwen2_bias_f16",
                           "qwen3_qknorm_bf16"}) {
    out.push_back(root / "tests/golden/fixtures" / name);
  }
  out.push_back(root / "configs/models/tiny-qwen3");
  return out;
}

policy::BackendOptions cpu_options(int64_t max_kv_tokens = 0) {
  policy::BackendOptions o;
  o.kind = "cpu";
  o.num_threads = 2;
  o.max_kv_tokens = max_kv_tokens;
  o.kv_block_size = 4;
  return o;
}

// Logits of every position of one sequence, fed in chunks of the given sizes, optionally inside a
// batch with two other sequences.
std::vector<float> logits_of(const fs::path& dir, const std::vector<int32_t>& tokens,
                             const std::vector<int>& chunk_sizes, bool with_neighbours) {
  policy::CpuBackend b(dir, cpu_options());
  const int64_t seq = b.create_sequence();
  const int64_t n1 = b.create_sequence(), n2 = b.create_sequence();
  std::vector<int32_t> other1(9, 5), other2 = {7, 3, 11};
  std::vector<float> all, part;
  size_t pos = 0;
  for (int c : chunk_sizes) {
    std::vector<policy::SequenceChunk> chunks;
    if (with_neighbours) chunks.push_back({n1, 101, other1, {}, 0});
    chunks.push_back({seq, 7, std::span<const int32_t>(tokens.data() + pos, c), {}, 0});
    if (with_neighbours) chunks.push_back({n2, 102, std::span<const int32_t>(other2.data(), 2), {}, 1});
    b.forward_with_logits(chunks, &part);
    const size_t vocab = b.config().vocab_size;
    const size_t skip = with_neighbours ? other1.size() * vocab : 0;
    all.insert(all.end(), part.begin() + skip, part.begin() + skip + c * vocab);
    pos += c;
    if (with_neighbours) {
      b.truncate(n1, 0);
      b.truncate(n2, 0);
    }
  }
  return all;
}

TEST(EngineCpu, LogitsDoNotDependOnBatchOrChunking) {
  const std::vector<int32_t> tokens = {3, 17, 42, 5, 99, 8, 250, 31, 64, 12, 77, 1, 9, 200, 15, 4};
  for (const fs::path& dir : checkpoints()) {
    SCOPED_TRACE(dir.filename().string());
    const std::vector<float> ref = logits_of(dir, tokens, {16}, false);
    const std::vector<float> one = logits_of(dir, tokens, std::vector<int>(16, 1), true);
    const std::vector<float> mixed = logits_of(dir, tokens, {3, 1, 8, 4}, true);
    ASSERT_EQ(ref.size(), one.size());
    ASSERT_EQ(ref.size(), mixed.size());
    const size_t vocab = ref.size() / tokens.size();
    for (size_t i = 0; i < ref.size(); ++i) {
      // Bitwise equality; the first difference names the position and vocabulary entry.
      ASSERT_EQ(std::memcmp(&ref[i], &one[i], sizeof(float)), 0)
          << "one-token steps differ at position " << i / vocab << " entry " << i % vocab << ": "
          << ref[i] << " vs " << one[i];
      ASSERT_EQ(std::memcmp(&ref[i], &mixed[i], sizeof(float)), 0)
          << "mixed chunks differ at position " << i / vocab << " entry " << i % vocab << ": "
          << ref[i] << " vs " << mixed[i];
    }
  }
}

struct Setting {
  const char* name;
  float temperature;
  int32_t top_k;
  float top_p;
};

TEST(EngineCpu, SpeculationIsLosslessAcrossCheckpointsAndSettings) {
  const Setting settings[] = {{"greedy", 0.0f, 0, 1.0f},
                              {"T=1", 1.0f, 0, 1.0f},
                              {"top-k", 0.8f, 5, 1.0f},
                              {"top-p", 1.0f, 0, 0.9f}};
  int64_t accepted = 0;
  for (const fs::path& dir : checkpoints()) {
    for (const Setting& s : settings) {
      SCOPED_TRACE(dir.filename().string() + " " + s.name);
      policy::SamplingParams sp;
      sp.temperature = s.temperature;
      sp.top_k = s.top_k;
      sp.top_p = s.top_p;
      sp.seed = 5;
      std::vector<std::vector<GroupRequest>> rounds;
      for (int r = 0; r < 2; ++r) {
        rounds.push_back(testing::make_groups("r" + std::to_string(r), 2, 2, 5, 20, 256, sp));
      }
      EngineOptions off;
      off.budgets.mode = drafter::BudgetMode::kOff;
      Engine base(policy::make_backend(dir, cpu_options()), off);
      const testing::RunResult ref = testing::run_rounds(base, rounds);

      struct Variant {
        int32_t running, budget;
        bool das;
        int64_t kv;
      };
      for (const Variant v : {Variant{1, 4, false, 0}, Variant{64, 16, true, 0},
                              Variant{64, 8, true, 64}}) {
        EngineOptions o;
        o.max_running_sequences = v.running;
        o.budgets.max_budget = v.budget;
        o.budgets.mode = v.das ? drafter::BudgetMode::kLengthAware : drafter::BudgetMode::kFixed;
        o.budgets.max_tokens_per_step = 1024;
        Engine e(policy::make_backend(dir, cpu_options(v.kv)), o);
        const testing::RunResult got = testing::run_rounds(e, rounds);
        testing::expect_same_trajectories(ref, got);
        accepted += got.stats.tokens_accepted;
        if (v.kv > 0) EXPECT_GT(got.stats.preemptions, 0) << "the small KV cache never preempted";
      }
    }
  }
  EXPECT_GT(accepted, 0) << "no draft was ever accepted: the comparison is vacuous";
}

// Reloading the same checkpoint as a new version mid-round: the re-prefill (chunked, with the
// boundary tokens re-fed) must reproduce every behaviour logprob bit for bit, so the importance
// weights are exactly 1 while the versions record the crossing; tokens match a run without update.
TEST(EngineCpu, ReprefillAfterWeightUpdateReproducesLogprobs) {
  const fs::path dir = checkpoints().back();
  policy::SamplingParams sp;
  sp.temperature = 1.0f;
  sp.seed = 9;
  const auto groups = testing::make_groups("u", 3, 2, 11, 40, 256, sp);
  EngineOptions o;
  o.round_groups = 1;
  o.overprovision = 3.0;
  o.max_tokens_per_forward = 7;  // re-prefill of ~50 tokens takes several chunks
  o.budgets.max_tokens_per_step = 64;

  Engine plain(policy::make_backend(dir, cpu_options()), o);
  for (const auto& g : groups) plain.submit(g);
  testing::RunResult ref;
  testing::drive(plain, ref, 3);

  Engine e(policy::make_backend(dir, cpu_options()), o);
  for (const auto& g : groups) e.submit(g);
  testing::RunResult got;
  testing::drive(e, got, 1);
  e.update_weights(dir, 1);
  testing::drive(e, got, 3);
  testing::expect_same_trajectories(ref, got, /*compare_versions=*/false);
  int crossed = 0;
  for (size_t b = 1; b < got.batches.size(); ++b) {
    for (const Trajectory& t : got.batches[b].trajectories) {
      if (t.current_logprobs.empty()) continue;
      ++crossed;
      ASSERT_EQ(t.current_logprobs.size(), t.behaviour_logprobs.size());
      for (size_t i = 0; i < t.current_logprobs.size(); ++i) {
        ASSERT_EQ(t.current_logprobs[i], t.behaviour_logprobs[i]) << "uid " << t.uid << " token " << i;
      }
      EXPECT_EQ(t.log_ratio, 0.0);
      EXPECT_EQ(t.weight, 1.0);
      EXPECT_EQ(t.policy_versions.front(), 0);
    }
    EXPECT_GT(got.batches[b].stats.off_policy_token_share, 0.0);
  }
  EXPECT_GT(crossed, 0);
}

}  // namespace
}  // namespace longtail::rollout
