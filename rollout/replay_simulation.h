// Offline replay of recorded rollouts through the drafter alone, without a model or the engine
// (longtail-replay --simulation static; the tool's default is the engine model, replay_engine.h;
// input in replay_input.h, reports in replay_report.h). Kept for the drafter studies that isolate
// drafting from scheduling (bench/drafter/drafter_policy) and as the hand-checkable reference. Each rollout is "generated"
// again: at every step the drafter proposes from the history of earlier rounds plus the rollout's
// own context, the longest draft prefix matching the recorded response is accepted and one more
// recorded token is emitted, exactly what lossless verification would do (token trees, on by
// default as in the engine: the longest matching root-to-node path; SpeculationPolicyOptions::
// token_trees). Rollouts of one round run as one batch, so the batch
// drafting API and the speculation policy's budgets are exercised; round makespans are projected
// with the step cost model t = c_base + c_tok * tokens verified by the live batch.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "drafter/drafter.h"
#include "drafter/speculation_policy.h"
#include "rollout/replay_input.h"

namespace longtail::rollout {

struct ReplayOptions {
  drafter::DrafterOptions drafter;
  drafter::SpeculationPolicyOptions policy;  // mode, budgets, cost model
  bool speculation = true;                   // false: the no-speculation baseline
};

struct ReplayBucket {
  int64_t lo = 0, hi = 0;                    // response length in [lo, hi); hi = 0: no bound
  int64_t rollouts = 0, response_tokens = 0, verify_steps = 0, drafted_tokens = 0, accepted_tokens = 0;
};

struct ReplayRoundStats {
  int64_t round = 0;
  int64_t rollouts = 0;
  int64_t engine_steps = 0;                  // batch steps until the longest rollout finished
  int64_t plain_steps = 0;                   // longest response = steps without speculation
  double makespan_us = 0;                    // projected, with speculation
  double plain_makespan_us = 0;              // projected, without speculation
};

struct ReplayReport {
  int64_t rollouts = 0;
  int64_t response_tokens = 0;
  int64_t verify_steps = 0;                  // per-sequence verification steps
  int64_t drafted_tokens = 0;
  int64_t accepted_tokens = 0;
  int64_t verified_tokens = 0;               // tokens fed to forwards (drafts and the pending ones;
                                             // the engine model also counts prefill)
  int64_t engine_steps = 0;                  // batch steps (forwards) over all rounds
  // the same counts for rounds after the first (history available), as the traces README reports
  int64_t later_response_tokens = 0, later_verify_steps = 0;
  double makespan_us = 0, plain_makespan_us = 0;
  double drafter_us = 0;                     // wall time in propose_batch + observe
  double bytes_per_indexed_token = 0;        // at the end of the replay (full window)
  int64_t indexed_tokens = 0;
  int64_t skipped_lines = 0;
  std::string budget_policy;
  std::string simulation = "static";        // "static" (run_replay) or "engine" (replay_engine.h)
  // The engine model's batching as it ran (0 for the static model): groups per batch N (the first
  // round's when not given), max running sequences, over-provision f, every group's max_new_tokens.
  int32_t round_groups = 0, max_running_sequences = 0, max_new_tokens = 0;
  double overprovision = 0;
  drafter::StepCostModel cost;
  std::vector<ReplayRoundStats> rounds;
  std::vector<ReplayBucket> buckets;

  // Adds one replayed rollout of len response tokens verified in steps steps to the totals, the
  // later-rounds totals (when later) and its length bucket (buckets must be length_buckets()).
  // drafted / accepted go to the bucket only: the two models count the run's totals differently.
  void count_rollout(int64_t len, int64_t steps, int64_t drafted, int64_t accepted, bool later);

  double tokens_per_step() const { return verify_steps ? double(response_tokens) / verify_steps : 0; }
  double later_tokens_per_step() const {
    return later_verify_steps ? double(later_response_tokens) / later_verify_steps : 0;
  }
  double acceptance_rate() const { return drafted_tokens ? double(accepted_tokens) / drafted_tokens : 0; }
  double projected_speedup() const { return makespan_us > 0 ? plain_makespan_us / makespan_us : 1; }
  double drafter_us_per_step() const { return engine_steps ? drafter_us / engine_steps : 0; }
};

// The reports' response-length buckets, empty: [0, 256), [256, 1K), [1K, 4K), [4K, 16K), >= 16K;
// and the index of the one holding a response of len tokens.
std::vector<ReplayBucket> length_buckets();
size_t length_bucket_of(int64_t len);

// progress(rounds_done, rounds_total) is called after each round when set.
ReplayReport run_replay(const ReplayInput& input, const ReplayOptions& options,
                        const std::function<void(size_t, size_t)>& progress = {});

}  // namespace longtail::rollout
