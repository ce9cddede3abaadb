// longtail-replay's engine model: the recorded rollouts are generated again by the real rollout
// Engine over policy::AccountingBackend (the engine without a model) in trace-forced mode, so
// continuous batching under max_running_sequences, admissions as sequences finish, partial
// rollouts (over-provision f), preemption under a KV bound, drafts, budgets and token trees are the
// engine's own, not a model of them. What the engine does not have is time: every forward is
// priced by the step cost model (drafter::StepCostModel: base + per cached position + per verified
// token, piecewise) from the tokens it fed and the positions its sequences had cached, and a
// round's projected makespan is the price of the forwards between its batch and the one before.
// The no-speculation baseline is a second run of the same engine with speculation off.
//
// The static-batch simulation (replay_simulation.h, run_replay) stays for the drafter studies that
// isolate the drafter from scheduling (bench/drafter/drafter_policy, the hand-computed tests).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>

#include "rollout/replay_input.h"
#include "rollout/replay_simulation.h"

namespace longtail::rollout {

struct EngineReplayOptions {
  // The modelled checkpoint's directory (its config.json only: vocabulary, context limit, EOS
  // ids). Empty: a config that holds every recorded token and length (vocabulary = largest id + 1,
  // context = longest prompt + max_new_tokens, no EOS: a sequence ends where its recording ends).
  std::filesystem::path model;
  int32_t max_running_sequences = 256;  // EngineOptions::max_running_sequences
  double overprovision = 1.0;           // f: ceil(f * N) groups in flight (partial rollouts); 1 = off
  // N: groups per emitted batch; 0 = the groups of the first replayed round.
  int32_t round_groups = 0;
  int32_t max_new_tokens = 0;           // every group's limit; 0 = the longest recorded response
  int64_t max_kv_tokens = 0;            // KV capacity in positions (0 = unlimited)
  int32_t kv_block_size = 16;           // KV block size in positions
  // What the forwards cost, when it is not the model the budgets price with (ReplayOptions::
  // policy.cost): how budgets that believe one model fare on a device that follows another.
  // Unset: the budgets' model.
  std::optional<drafter::StepCostModel> price;
};

// Replays `input` (rounds in order; every round's groups are submitted up front, as a trainer's
// queue would hold them, and each round's shared-history lines are indexed when its batch is
// emitted). Fills the same report as run_replay; per-rollout counts for the length buckets come
// from the forwards each sequence took part in (a sequence's accepted tokens there are its
// response tokens minus its steps, which undercounts by one a rollout whose last step accepted a
// draft up to its recorded end; the totals are the engine's exact counts). Throws
// std::invalid_argument for options the engine refuses.
ReplayReport run_engine_replay(const ReplayInput& input, const ReplayOptions& options,
                               const EngineReplayOptions& engine,
                               const std::function<void(size_t, size_t)>& progress = {});

}  // namespace longtail::rollout
