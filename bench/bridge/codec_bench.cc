// Google Benchmark of the BATCH codec alone (one thread, no sockets): what encoding on the worker
// and decoding on a C++ trainer cost per 1 MiB batch, next to a plain 1 MiB memcpy as the baseline.
#include <benchmark/benchmark.h>

#include <cstring>

#include "trainer_bridge/codec.h"

namespace lb = longtail::bridge;

namespace {

lb::Batch batch_1mib() {
  lb::Batch b;
  for (int i = 0; i < 16; ++i) {
    longtail::rollout::Trajectory t;
    t.uid = i;
    t.group_id = "g" + std::to_string(i / 8);
    t.prompt_id = t.group_id;
    t.prompt_tokens.assign(256, 17);
    t.response_tokens.assign(4032, 5);
    t.behaviour_logprobs.assign(4032, -0.5f);
    t.policy_versions.assign(4032, 3);
    b.trajectories.push_back(std::move(t));
  }
  return b;
}

void BM_Memcpy1MiB(benchmark::State& s) {
  std::vector<uint8_t> src(1 << 20, 1), dst(1 << 20);
  for (auto _ : s) {
    std::memcpy(dst.data(), src.data(), src.size());
    benchmark::DoNotOptimize(dst.data());
  }
  s.SetBytesProcessed(s.iterations() * (1 << 20));
}
BENCHMARK(BM_Memcpy1MiB);

void BM_EncodeBatch1MiB(benchmark::State& s) {
  const lb::Message m = batch_1mib();
  for (auto _ : s) {
    auto f = lb::encode(m);
    benchmark::DoNotOptimize(f.parts.data());
  }
  s.SetBytesProcessed(s.iterations() * (1 << 20));
}
BENCHMARK(BM_EncodeBatch1MiB);

void BM_DecodeBatch1MiB(benchmark::State& s) {
  const lb::Frames f = lb::encode(batch_1mib());
  for (auto _ : s) {
    auto m = lb::decode(f, lb::Direction::kToTrainer);
    benchmark::DoNotOptimize(&m);
  }
  s.SetBytesProcessed(s.iterations() * (1 << 20));
}
BENCHMARK(BM_DecodeBatch1MiB);

}  // namespace

BENCHMARK_MAIN();
