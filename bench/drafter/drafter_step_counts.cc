// The drafter step of drafter_bench (batch 256, 16-token budgets or 16-node trees, propose +
// observe, synthetic fixture with 4 rounds of history) as a plain loop, for measurements that do
// not depend on how busy the machine is: run it under
//   valgrind --tool=callgrind --instr-atstart=no --cache-sim=yes build/bin/drafter_step_counts 150 [1]
// and callgrind counts instructions and simulated cache misses of the steps alone (the set-up is
// not instrumented). Also prints per-step CPU time (median over steps) and a hash of every draft
// (tokens, probabilities, parents), so a change that must leave drafts alone can be checked.
//   drafter_step_counts [STEPS=600] [TREE=0]
#include <time.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#else
#define CALLGRIND_START_INSTRUMENTATION
#define CALLGRIND_STOP_INSTRUMENTATION
#endif

#include "drafter/drafter.h"
#include "step_loop.h"

using namespace longtail;

namespace {
double cpu_seconds() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}
}  // namespace

int main(int argc, char** argv) {
  const int steps = argc > 1 ? std::max(1, std::atoi(argv[1])) : 600;
  const bool tree = argc > 2 && std::atoi(argv[2]) != 0;
  drafter::Drafter d;
  bench::StepLoop<drafter::Drafter> loop(d, tree);
  std::vector<double> step_s;
  uint64_t hash = 1469598103934665603ull;  // FNV-1a over the drafts
  auto mix = [&](uint64_t v) { hash = (hash ^ v) * 1099511628211ull; };
  auto seen = [&](size_t, const drafter::Draft& draft) {
    for (size_t k = 0; k < draft.tokens.size(); ++k) {
      uint32_t bits;
      std::memcpy(&bits, &draft.probs[k], 4);
      mix(static_cast<uint64_t>(draft.tokens[k]));
      mix(bits);
      mix(static_cast<uint64_t>(draft.parent(k) + 7));
    }
    mix(0xabc);
  };
  CALLGRIND_START_INSTRUMENTATION;
  for (int s = 0; s < steps; ++s) {
    const double t0 = cpu_seconds();
    loop.step(seen);
    step_s.push_back(cpu_seconds() - t0);
  }
  CALLGRIND_STOP_INSTRUMENTATION;
  std::sort(step_s.begin(), step_s.end());
  std::printf("%d steps, %s: median %.1f us CPU per step, tokens per sequence-step %.4f, "
              "bytes per indexed token %.2f, draft hash %016llx\n",
              steps, tree ? "16-node trees" : "16-token chains", 1e6 * step_s[step_s.size() / 2],
              loop.tokens_per_seq_step(), d.memory().bytes_per_indexed_token(),
              static_cast<unsigned long long>(hash));
}
