// Drafter step cost (Google Benchmark): one engine step at batch 256 = propose (16-token budgets,
// chains or 16-node token trees) + observe of the accepted tokens for all 256 sequences, on the
// synthetic workload with 4 rounds of history; the automaton drafter against the depth-64 suffix
// trie baseline. Counters: bytes per indexed token and tokens per sequence-step.
#include <benchmark/benchmark.h>

#include <memory>

#include "drafter/drafter.h"
#include "suffix_trie_baseline.h"
#include "testing/workload.h"

using namespace longtail;

namespace {
struct Fixture {
  std::vector<workload::WorkloadRollout> rollouts;
  std::vector<const workload::WorkloadRollout*> live_src;
};

const Fixture& fixture() {
  static const Fixture f = [] {
    Fixture x;
    workload::WorkloadOptions w;
    w.prompts = 16;
    w.samples = 16;
    w.rounds = 5;
    w.median_len = 800;
    x.rollouts = workload::generate_workload(w);
    for (const auto& r : x.rollouts) {
      if (r.round == 4) x.live_src.push_back(&r);
    }
    return x;
  }();
  return f;
}

template <class D>
void step_loop(benchmark::State& state, D& d, bool tree = false) {
  const auto& f = fixture();
  for (const auto& r : f.rollouts) {
    if (r.round < 4) d.add_rollout(r.prompt_id, r.prompt_tokens, r.response_tokens, r.round);
  }
  d.end_round(3);
  const size_t batch = f.live_src.size();  // 256
  std::vector<uint64_t> uid(batch);
  std::vector<size_t> pos(batch, 0);
  uint64_t next_uid = 1;
  for (size_t i = 0; i < batch; ++i) {
    uid[i] = next_uid++;
    d.begin_request(uid[i], f.live_src[i]->prompt_id, f.live_src[i]->prompt_tokens);
  }
  std::vector<drafter::DraftRequest> reqs(batch);
  std::vector<drafter::Draft> drafts(batch);
  int64_t emitted = 0, seq_steps = 0;
  for (auto _ : state) {
    for (size_t i = 0; i < batch; ++i) reqs[i] = {uid[i], 16, tree};
    d.propose_batch(reqs, drafts);
    for (size_t i = 0; i < batch; ++i) {
      const auto& resp = f.live_src[i]->response_tokens;
      const auto acc = static_cast<size_t>(drafter::longest_accepted_path(
          drafts[i], std::span<const int32_t>(resp.data() + pos[i], resp.size() - pos[i])));
      const size_t emit = std::min(acc + 1, resp.size() - pos[i]);
      d.observe(uid[i], std::span<const int32_t>(resp.data() + pos[i], emit));
      pos[i] += emit;
      emitted += static_cast<int64_t>(emit);
      ++seq_steps;
      if (pos[i] == resp.size()) {  // finished: the slot restarts the rollout as a new request
        d.end_request(uid[i]);
        uid[i] = next_uid++;
        pos[i] = 0;
        d.begin_request(uid[i], f.live_src[i]->prompt_id, f.live_src[i]->prompt_tokens);
      }
    }
  }
  state.counters["tokens_per_seq_step"] = seq_steps ? double(emitted) / double(seq_steps) : 0;
  state.counters["batch"] = static_cast<double>(batch);
}

void BM_AutomatonDrafterStepBatch256(benchmark::State& state) {
  drafter::Drafter d;
  step_loop(state, d);
  state.counters["bytes_per_indexed_token"] = d.memory().bytes_per_indexed_token();
}
BENCHMARK(BM_AutomatonDrafterStepBatch256)->Unit(benchmark::kMicrosecond)->MinTime(1.0);

void BM_AutomatonDrafterTreeStepBatch256(benchmark::State& state) {
  drafter::Drafter d;
  step_loop(state, d, /*tree=*/true);
  state.counters["bytes_per_indexed_token"] = d.memory().bytes_per_indexed_token();
}
BENCHMARK(BM_AutomatonDrafterTreeStepBatch256)->Unit(benchmark::kMicrosecond)->MinTime(1.0);

void BM_TrieBaselineStepBatch256(benchmark::State& state) {
  bench::TrieDrafter d;
  step_loop(state, d);
  state.counters["bytes_per_indexed_token"] = double(d.index_bytes()) / double(d.indexed_tokens());
}
BENCHMARK(BM_TrieBaselineStepBatch256)->Unit(benchmark::kMicrosecond)->MinTime(1.0);

void BM_AutomatonHistoryRebuild(benchmark::State& state) {
  // end_round cost: the window's shards rebuilt from scratch (every shard dirty).
  const auto& f = fixture();
  for (auto _ : state) {
    drafter::Drafter d;
    for (const auto& r : f.rollouts) d.add_rollout(r.prompt_id, r.prompt_tokens, r.response_tokens, 0);
    d.end_round(0);
    benchmark::DoNotOptimize(d.memory().indexed_tokens);
    state.counters["indexed_tokens"] = static_cast<double>(d.memory().indexed_tokens);
  }
}
BENCHMARK(BM_AutomatonHistoryRebuild)->Unit(benchmark::kMillisecond);
}  // namespace

BENCHMARK_MAIN();
