// The engine on the real fp32 CPU backend: the numerical premise of lossless speculation (logits of
// a position do not depend on batch composition or on how many tokens a forward feeds), and
// identical trajectories with speculation on and off over several checkpoints (the golden fixtures
// and the bundled tiny-qwen3), sampling settings, batch sizes, budgets and a small KV cache; per-
// request seeds, min_tokens and processed logprobs on a real model.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <utility>

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
      SamplingParams sp;
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
// Both logprob modes: processed re-scores under the same truncation and min_tokens mask.
TEST(EngineCpu, ReprefillAfterWeightUpdateReproducesLogprobs) {
  for (const bool processed : {false, true}) {
    SCOPED_TRACE(processed ? "processed" : "raw");
    const fs::path dir = checkpoints().back();
    SamplingParams sp;
    sp.temperature = 1.0f;
    sp.seed = 9;
    if (processed) {
      sp.logprobs_mode = "processed";
      sp.top_p = 0.9f;
      sp.min_tokens = 8;
    }
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
}


// Every trajectory of a run by (group_id, sample_index): submits the groups in order, then steps
// (flushing short rounds) until every submitted sample has come back.
using ByKey = std::map<std::pair<std::string, int32_t>, Trajectory>;
ByKey run_all(Engine& e, const std::vector<GroupRequest>& groups) {
  size_t want = 0;
  for (const GroupRequest& g : groups) {
    e.submit(g);
    want += static_cast<size_t>(g.n);
  }
  ByKey out;
  for (int i = 0; i < 100000 && out.size() < want; ++i) {
    auto b = e.step();
    if (!b && e.idle()) b = e.flush_round();
    if (b) {
      for (const Trajectory& t : b->trajectories) out[{t.group_id, t.sample_index}] = t;
    }
  }
  EXPECT_EQ(out.size(), want);
  return out;
}

void expect_same_samples(const Trajectory& a, const Trajectory& b) {
  EXPECT_EQ(a.response_tokens, b.response_tokens) << a.group_id << " / " << b.group_id;
  ASSERT_EQ(a.behaviour_logprobs.size(), b.behaviour_logprobs.size());
  for (size_t i = 0; i < a.behaviour_logprobs.size(); ++i) {
    EXPECT_EQ(a.behaviour_logprobs[i], b.behaviour_logprobs[i]) << a.group_id << " token " << i;
  }
  EXPECT_EQ(a.finish_reason, b.finish_reason);
}

// Per-request seeds (policy/sampling.h): a seeded group's samples are a function of its seed, its
// group_id (or sample_key) and the sample index, whatever else is in flight, the submission order,
// the batch bounds, speculation or the engine instance.
TEST(EngineCpu, SeededGroupSamplesDoNotDependOnOrderBatchOrRun) {
  const fs::path dir = checkpoints().back();
  SamplingParams sp;
  sp.temperature = 1.0f;
  sp.top_p = 0.95f;
  sp.seed = 21;
  const auto groups = testing::make_groups("s", 4, 3, 6, 24, 256, sp);
  EngineOptions off;
  off.budgets.mode = drafter::BudgetMode::kOff;
  Engine first(policy::make_backend(dir, cpu_options()), off);
  const ByKey ref = run_all(first, groups);

  // Another engine: unrelated groups first (the uid counter moves on), the groups in reverse order
  // and split over two submissions, one sequence running at a time, speculation on.
  EngineOptions o;
  o.max_running_sequences = 2;
  o.max_tokens_per_forward = 5;
  o.round_groups = 1;
  o.budgets.max_tokens_per_step = 1024;
  Engine second(policy::make_backend(dir, cpu_options()), o);
  SamplingParams other = sp;
  other.seed = 99;
  run_all(second, testing::make_groups("x", 2, 2, 4, 8, 256, other));
  std::vector<GroupRequest> reversed(groups.rbegin(), groups.rend());
  ByKey got = run_all(second, {reversed.begin(), reversed.begin() + 2});
  got.merge(run_all(second, {reversed.begin() + 2, reversed.end()}));
  ASSERT_EQ(got.size(), ref.size());
  for (const auto& [key, t] : ref) expect_same_samples(t, got.at(key));

  // An explicit sample_key reproduces a group under another id; another id alone samples anew.
  GroupRequest again = groups[0], fresh = groups[0];
  again.group_id = "s-0-again";
  again.sample_key = policy::sample_key_of("s-0");
  fresh.group_id = "s-0-fresh";
  Engine third(policy::make_backend(dir, cpu_options()), off);
  const ByKey alias = run_all(third, {fresh, again});
  int differ = 0;
  for (int32_t i = 0; i < groups[0].n; ++i) {
    expect_same_samples(ref.at({"s-0", i}), alias.at({"s-0-again", i}));
    differ += ref.at({"s-0", i}).response_tokens != alias.at({"s-0-fresh", i}).response_tokens;
  }
  EXPECT_GT(differ, 0) << "a different group id drew the same samples";
}

// Without a seed (and key) the streams are the engine's sequence numbers: the same submissions on
// a fresh engine reproduce, a group submitted after another does not draw like it did first.
TEST(EngineCpu, UnseededGroupsDependOnSubmissionOrder) {
  const fs::path dir = checkpoints().back();
  SamplingParams sp;
  sp.temperature = 1.0f;
  const auto groups = testing::make_groups("u", 2, 2, 6, 16, 256, sp);
  EngineOptions off;
  off.budgets.mode = drafter::BudgetMode::kOff;
  Engine a(policy::make_backend(dir, cpu_options()), off), b(policy::make_backend(dir, cpu_options()), off),
      c(policy::make_backend(dir, cpu_options()), off);
  const ByKey ra = run_all(a, groups), rb = run_all(b, groups);
  for (const auto& [key, t] : ra) expect_same_samples(t, rb.at(key));
  const ByKey rc = run_all(c, {groups[1], groups[0]});
  int differ = 0;
  for (const auto& [key, t] : ra) differ += t.response_tokens != rc.at(key).response_tokens;
  EXPECT_GT(differ, 0);
}

// min_tokens (vLLM's): the stop tokens (EOS set and stop_token_ids) are masked in the sampler until
// a sample has min_tokens response tokens, so they can neither end it nor appear in it earlier,
// and speculation, whose drafts here propose the stop token at masked positions, changes nothing.
TEST(EngineCpu, MinTokensMasksStopTokensUntilReachedAndStaysLossless) {
  const fs::path dir = checkpoints().back();
  for (const float temperature : {0.0f, 1.0f}) {
    SCOPED_TRACE(temperature);
    SamplingParams sp;
    sp.temperature = temperature;
    sp.seed = 3;
    GroupRequest probe = testing::make_groups("m", 1, 1, 6, 12, 256, sp)[0];
    probe.stop_tokens = {255};
    EngineOptions off;
    off.budgets.mode = drafter::BudgetMode::kOff;
    Engine e0(policy::make_backend(dir, cpu_options()), off);
    const Trajectory first = run_all(e0, {probe}).begin()->second;
    const int32_t stop = first.response_tokens.at(0);  // what the sample draws first

    GroupRequest g = testing::make_groups("m", 1, 4, 6, 12, 256, sp)[0];
    if (temperature == 0.0f) {
      g.stop_tokens = {stop};  // as the EOS set
    } else {
      g.ignore_eos = true;  // as vLLM's stop_token_ids, beside no EOS set
      g.stop_token_ids = {stop};
    }
    Engine e1(policy::make_backend(dir, cpu_options()), off);
    const ByKey unmasked = run_all(e1, {g});
    EXPECT_EQ(unmasked.at({"m-0", 0}).response_tokens, std::vector<int32_t>{stop});  // ends at once

    g.sampling.min_tokens = 5;
    Engine e2(policy::make_backend(dir, cpu_options()), off);
    const ByKey masked = run_all(e2, {g});
    for (const auto& [key, t] : masked) {
      ASSERT_GE(t.response_tokens.size(), 5u);
      for (size_t i = 0; i < 5; ++i) EXPECT_NE(t.response_tokens[i], stop) << "token " << i;
      const bool stopped = t.finish_reason == FinishReason::kStop;
      EXPECT_EQ(stopped, t.response_tokens.back() == stop);
      EXPECT_EQ(std::count(t.response_tokens.begin(), t.response_tokens.end(), stop), stopped ? 1 : 0);
    }

    // Drafts from a history that starts with the stop token, on every sample and position.
    EngineOptions on;
    on.budgets.mode = drafter::BudgetMode::kFixed;
    on.budgets.max_budget = 6;
    on.budgets.max_tokens_per_step = 1024;
    Engine e3(policy::make_backend(dir, cpu_options()), on);
    for (const auto& [key, t] : masked) {
      std::vector<int32_t> h = t.response_tokens;
      h.insert(h.begin() + 2, stop);
      h.insert(h.begin(), stop);
      e3.add_history(g.prompt_id, g.prompt_tokens, h, 0);
    }
    const ByKey spec = run_all(e3, {g});
    for (const auto& [key, t] : masked) expect_same_samples(t, spec.at(key));
    EXPECT_GT(e3.stats().tokens_drafted, 0);
  }
}

// logprobs_mode processed: the same draws as raw, each token's logprob under the truncated,
// masked, renormalised distribution it was drawn from: >= the raw one (a subset's normaliser is
// smaller), 0 where the cut leaves one candidate (greedy, top_k = 1); lossless under speculation.
TEST(EngineCpu, ProcessedLogprobsAreThoseOfTheDistributionDrawnFrom) {
  const fs::path dir = checkpoints().back();
  struct Setting {
    float temperature;
    int32_t top_k;
    float top_p;
    bool certain;  // every processed logprob is exactly 0
  };
  for (const Setting s : {Setting{0.8f, 5, 1.0f, false}, Setting{1.0f, 0, 0.7f, false},
                          Setting{0.0f, 0, 1.0f, true}, Setting{1.0f, 1, 1.0f, true}}) {
    SCOPED_TRACE(::testing::Message() << "T " << s.temperature << " top_k " << s.top_k << " top_p " << s.top_p);
    SamplingParams sp;
    sp.temperature = s.temperature;
    sp.top_k = s.top_k;
    sp.top_p = s.top_p;
    sp.seed = 8;
    sp.min_tokens = 4;
    const auto raw_groups = testing::make_groups("q", 2, 3, 6, 16, 256, sp);
    auto groups = raw_groups;
    for (auto& g : groups) g.sampling.logprobs_mode = "processed";
    EngineOptions off;
    off.budgets.mode = drafter::BudgetMode::kOff;
    Engine a(policy::make_backend(dir, cpu_options()), off), b(policy::make_backend(dir, cpu_options()), off);
    const ByKey raw = run_all(a, raw_groups), processed = run_all(b, groups);
    int strictly = 0;
    for (const auto& [key, t] : processed) {
      const Trajectory& r = raw.at(key);
      ASSERT_EQ(t.response_tokens, r.response_tokens);
      for (size_t i = 0; i < t.behaviour_logprobs.size(); ++i) {
        const float lp = t.behaviour_logprobs[i];
        if (s.certain) {
          EXPECT_EQ(lp, 0.0f) << "token " << i;
          continue;
        }
        EXPECT_LE(lp, 0.0f);
        EXPECT_GE(lp, r.behaviour_logprobs[i] - 1e-6f) << "token " << i;
        strictly += lp > r.behaviour_logprobs[i] + 1e-4f;
      }
    }
    if (!s.certain) EXPECT_GT(strictly, 0);
    EngineOptions on;
    on.budgets.max_budget = 8;
    on.budgets.max_tokens_per_step = 1024;
    Engine c(policy::make_backend(dir, cpu_options()), on);
    for (const auto& [key, t] : processed) c.add_history(t.prompt_id, t.prompt_tokens, t.response_tokens, 0);
    const ByKey spec = run_all(c, groups);
    for (const auto& [key, t] : processed) expect_same_samples(t, spec.at(key));
    EXPECT_GT(c.stats().tokens_accepted, 0);
  }
}

}  // namespace
}  // namespace longtail::rollout
