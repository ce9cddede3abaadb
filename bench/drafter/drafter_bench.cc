// Drafter step cost (Google Benchmark): one engine step at batch 256 = propose (16-token budgets,
// chains or 16-node token trees) + observe of the accepted tokens for all 256 sequences, on the
// synthetic workload with 4 rounds of history; the automaton drafter against the depth-64 suffix
// trie baseline. Counters: bytes per indexed token and tokens per sequence-step.
#include <benchmark/benchmark.h>

#include <memory>

#include "drafter/drafter.h"
#include "step_loop.h"
#include "suffix_trie_baseline.h"
#include "testing/workload.h"

using namespace longtail;

namespace {
template <class D>
void step_loop(benchmark::State& state, D& d, bool tree = false) {
  bench::StepLoop<D> loop(d, tree);
  for (auto _ : state) loop.step();
  state.counters["tokens_per_seq_step"] = loop.tokens_per_seq_step();
  state.counters["batch"] = static_cast<double>(loop.batch());
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
  const auto& f = bench::StepFixture::get();
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
