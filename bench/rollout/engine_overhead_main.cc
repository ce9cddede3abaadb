// longtail-bench-engine-overhead: the engine's own host time per step (scheduling, draft budgets,
// drafting, building the forward's inputs, acceptance, rollback, drafter updates, round
// bookkeeping), measured with the deterministic fake backend of testing/ so that the forward
// itself is cheap and is subtracted anyway (StepStats::forward_us). On a GPU a decode step takes
// milliseconds; this overhead must stay well below that at batch 256.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "testing/fake_backend.h"
#include "rollout/engine.h"

using namespace longtail;

namespace {

// Medians per step: the machine may be shared, and a median shrugs off steps where this process
// was descheduled.
struct Result {
  int batch = 0;
  bool speculate = false;
  int64_t steps = 0;
  double overhead_us = 0, overhead_p90_us = 0, draft_us = 0, accept_us = 0, forward_us = 0;
  double tokens_per_step = 0;
};

double quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  const size_t k = static_cast<size_t>(q * double(v.size() - 1) + 0.5);
  std::nth_element(v.begin(), v.begin() + k, v.end());
  return v[k];
}

Result run(int batch, bool speculate, int rounds) {
  rollout::testing::FakeBackendOptions fo;
  fo.vocab = 64;
  fo.max_position = 4096;
  rollout::EngineOptions o;
  o.max_running_sequences = batch;
  if (!speculate) o.budgets.mode = drafter::BudgetMode::kOff;
  o.budgets.max_budget = 16;
  rollout::Engine e(std::make_unique<rollout::testing::FakeBackend>(fo), o);
  Result r;
  r.batch = batch;
  r.speculate = speculate;
  int64_t tokens = 0;
  std::vector<double> overhead, draft, accept, forward;
  for (int round = 0; round < rounds; ++round) {
    for (int g = 0; g < batch / 8; ++g) {
      rollout::GroupRequest req;
      req.group_id = "r" + std::to_string(round) + "-g" + std::to_string(g);
      req.prompt_id = "p" + std::to_string(g);
      for (int i = 0; i < 32; ++i) req.prompt_tokens.push_back((g * 13 + i * 7) % 64);
      req.n = 8;
      req.max_new_tokens = 256;
      req.stop_tokens = {0};
      req.sampling.temperature = 1.0f;
      req.sampling.seed = 3;
      e.submit(req);
    }
    while (true) {
      auto b = e.step();
      const rollout::StepStats& s = e.stats().last_step;
      if (round > 0 && s.sequences >= batch / 2) {  // measured: later rounds, full-ish batches
        ++r.steps;
        overhead.push_back(s.total_us - s.forward_us);
        draft.push_back(s.draft_us);
        accept.push_back(s.sample_us);
        forward.push_back(s.forward_us);
        tokens += s.tokens_emitted;
      }
      if (b) break;
    }
  }
  if (r.steps > 0) {
    r.overhead_us = quantile(overhead, 0.5);
    r.overhead_p90_us = quantile(overhead, 0.9);
    r.draft_us = quantile(draft, 0.5);
    r.accept_us = quantile(accept, 0.5);
    r.forward_us = quantile(forward, 0.5);
    r.tokens_per_step = double(tokens) / r.steps;
  }
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  int rounds = 3;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--rounds") && i + 1 < argc) {
      rounds = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: longtail-bench-engine-overhead [--rounds R]\n");
      return 2;
    }
  }
  if (rounds < 2) {
    std::fprintf(stderr, "--rounds must be >= 2 (round 0 only builds history)\n");
    return 2;
  }
  spdlog::set_level(spdlog::level::warn);
  std::printf("| batch | speculation | measured steps | engine overhead per step, median (us) | p90 (us) | drafting, median (us) | acceptance + drafter updates, median (us) | fake forward, median (us, excluded) | tokens per step |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|\n");
  for (int batch : {64, 256}) {
    for (bool spec : {false, true}) {
      const Result r = run(batch, spec, rounds);
      std::printf("| %d | %s | %lld | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f |\n", r.batch,
                  spec ? "DAS" : "off", static_cast<long long>(r.steps), r.overhead_us,
                  r.overhead_p90_us, r.draft_us, r.accept_us, r.forward_us, r.tokens_per_step);
    }
  }
  return 0;
}
