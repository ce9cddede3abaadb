// One engine step after scheduling: draft budgets (length-aware policy, capped by the forward's
// token budget and by what the backend says still fits) -> drafts for every decoding sequence ->
// ONE forward that feeds each sequence its pending tokens followed by its draft -> acceptance.
// The step changes neither the plan nor any sequence: it returns, per scheduled sequence, what the
// forward produced (tokens to emit, their logprobs, re-scored logprobs, KV positions to keep,
// whether it finished), and the engine applies that in one place (engine.cc, apply_step), which
// also rolls back rejected KV, tells the drafter what was accepted and tears finished sequences down.
//
// Lossless acceptance: the backend samples x_t at every fed position from that position's logits
// with an RNG keyed by (seed, uid, position), exactly as plain decoding would. Walking the draft
// d_1..d_k, the step emits x_0, and while x_{j} == d_{j+1} it goes on to emit x_{j+1}; the first
// mismatch ends the step with the sampled token. Every emitted token is therefore the token plain
// decoding would have drawn at that position (given position-wise identical logits, which the CPU
// backend guarantees), so trajectories are identical with speculation on or off.
// Token trees (SpeculationPolicyOptions::token_trees, on a backend that supports_token_trees()):
// the same walk from the root (the last pending token) down the child drafted with the token
// sampled at the current node, i.e. the longest root-to-node path matching what the sampling rule
// draws, plus the next sampled token. Each node's logits are those of its root path as a chain
// (tree attention), so the walk emits what plain decoding would. The accepted path's KV rows are
// moved into consecutive positions (Backend::compact_kv) within the step; the rest is dropped.
//
// Trace-forced mode (benchmarks): the emitted token at each position is the recording's instead of
// x_t; drafts are accepted while they match the recording. The forward is real, so the cost is the
// engine's own and the acceptance is that of real data. A forced token's logprob is the backend's
// logprob of it when available (drafted, or equal to the sample), NaN otherwise.
#pragma once

#include <cstdint>
#include <optional>
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
  drafter::Drafter* drafter = nullptr;             // null: no speculation
  drafter::SpeculationPolicy* policy = nullptr;    // null: no speculation
  int64_t policy_version = 0;
  int32_t max_position = 0;                        // the model's context limit
  bool refit_cost_model = false;
};

// What the step's forward produced for one scheduled sequence.
struct SequenceResult {
  Sequence* seq = nullptr;
  int32_t kv_fed = 0;       // positions the backend holds after the step
  int32_t kv_keep = 0;      // positions to keep (fewer: rejected drafts, a boundary token re-fed)
  // Re-prefill after a weight update: the latest policy's logprobs of response tokens
  // [rescored_from, rescored_from + rescored.size()).
  int32_t rescored_from = 0;
  std::vector<float> rescored;
  bool rescore_done = false;          // a final chunk: the sequence owes no more re-scoring
  std::vector<int32_t> emitted;       // new response tokens
  std::vector<float> logprobs;        // their behaviour logprobs
  bool decoded = false;               // sampled this step: drafted/accepted go to the policy
  int32_t drafted = 0, accepted = 0;  // draft tokens verified, accepted
  std::optional<FinishReason> finish;  // set when the sequence finished this step
  bool retire = false;                // leaves the running set: finished, or done and re-scored
};

struct StepResult {
  StepStats stats;
  std::vector<SequenceResult> sequences;  // plan order
};

// Runs drafting, the forward and acceptance for a schedule. Throws what the backend throws; no
// sequence is modified either way.
StepResult run_speculative_step(const StepPlan& plan, StepEnvironment& env);

// Why a sequence ends once `token` becomes its response token number response_len (1-based):
// stop token (or the recording's end), max_new_tokens, context limit; nothing when it goes on.
std::optional<FinishReason> finish_after(const Sequence& s, int32_t token, int32_t response_len,
                                         int32_t max_position);

}  // namespace longtail::rollout
