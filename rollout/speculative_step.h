// One engine step after scheduling: draft budgets (length-aware policy, capped by what the forward
// and the KV cache have left) -> drafts for every decoding sequence -> ONE forward that feeds each
// sequence its pending tokens followed by its draft -> acceptance -> rollback of rejected KV ->
// the drafter observes what was accepted.
//
// Lossless acceptance: the backend samples x_t at every fed position from that position's logits
// with an RNG keyed by (seed, uid, position), exactly as plain decoding would. Walking the draft
// d_1..d_k, the step emits x_0, and while x_{j} == d_{j+1} it goes on to emit x_{j+1}; the first
// mismatch ends the step with the sampled token. Every emitted token is therefore the token plain
// decoding would have drawn at that position (given position-wise identical logits, which the CPU
// backend guarantees), so trajectories are identical with speculation on or off.
//
// Trace-forced mode (benchmarks): the emitted token at each position is the recording's instead of
// x_t; drafts are accepted while they match the recording. The forward is real, so the cost is the
// engine's own and the acceptance is that of real data. A forced token's logprob is the backend's
// logprob of it when available (drafted, or equal to the sample), NaN otherwise.
#pragma once

#include <chrono>
#include <cstdint>
#include <vector>

#include "drafter/drafter.h"
#include "drafter/speculation_policy.h"
#include "policy/backend.h"
#include "rollout/scheduler.h"
#include "rollout/sequence.h"
#include "rollout/types.h"

namespace longtail::rollout {

struct StepEnvironment {
  policy::Backend& backend;
  Scheduler& scheduler;
  drafter::Drafter* drafter = nullptr;             // null: no speculation
  drafter::SpeculationPolicy* policy = nullptr;    // null: no speculation
  int64_t policy_version = 0;
  int32_t max_position = 0;                        // the model's context limit
  bool refit_cost_model = false;
};

struct StepResult {
  StepStats stats;
  std::vector<Sequence*> finished;    // sequences that became done this step (KV released)
  std::vector<Sequence*> rescored;    // done sequences whose re-score completed this step
};

// Runs drafting, the forward and acceptance for a schedule. Throws what the backend throws; on a
// throw from the forward no sequence has been modified.
StepResult run_speculative_step(StepPlan& plan, StepEnvironment& env);

// Appends one emitted token to a sequence (logprob, version, current logprob when tracked) and
// decides whether it finishes: stop token, max_new_tokens, context limit, end of the recording.
// Returns true when the sequence is now done.
bool emit_token(Sequence& s, int32_t token, float logprob, int64_t version, int32_t max_position);

}  // namespace longtail::rollout
