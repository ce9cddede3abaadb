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
#include <span>
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

// What the step's forward produced for one scheduled sequence. The spans point into the
// SpeculativeStep's buffers and live until its next run().
struct SequenceResult {
  Sequence* seq = nullptr;
  int32_t kv_fed = 0;       // positions the backend holds after the step
  int32_t kv_keep = 0;      // positions to keep (fewer: rejected drafts, a boundary token re-fed)
  // Re-prefill after a weight update: the latest policy's logprobs of response tokens
  // [rescored_from, rescored_from + rescored.size()).
  int32_t rescored_from = 0;
  std::span<const float> rescored;
  bool rescore_done = false;          // a final chunk: the sequence owes no more re-scoring
  std::span<const int32_t> emitted;   // new response tokens
  std::span<const float> logprobs;    // their behaviour logprobs
  bool decoded = false;               // sampled this step: drafted/accepted go to the policy
  int32_t drafted = 0, accepted = 0;  // draft tokens verified, accepted
  std::optional<FinishReason> finish;  // set when the sequence finished this step
  bool retire = false;                // leaves the running set: finished, or done and re-scored
};

struct StepResult {
  StepStats stats;
  std::vector<SequenceResult> sequences;  // plan order
};

// One engine step's drafting, forward and acceptance. The engine keeps one across steps: every
// buffer of the step (drafts, the forward's inputs, emitted tokens and logprobs) is reused, so a
// warm step allocates nothing on the host besides what the backend and the drafter allocate.
class SpeculativeStep {
 public:
  // Runs drafting, the forward and acceptance for a schedule. Throws what the backend throws; no
  // sequence is modified either way. The result lives until the next run().
  const StepResult& run(const StepPlan& plan, StepEnvironment& env);

 private:
  void plan_drafts(const StepPlan& plan, StepEnvironment& env);
  const drafter::Draft& draft_of(size_t chunk) const;

  StepResult result_;
  // Drafting: decoding chunks, their views, budgets (and tree node floors), KV growth asked about.
  std::vector<size_t> decoding_;
  std::vector<drafter::SequenceView> views_;
  std::vector<int32_t> budgets_, capped_;
  std::vector<double> node_floor_;
  std::vector<policy::KvGrowth> kv_;
  std::vector<drafter::DraftRequest> requests_;
  std::vector<drafter::Draft> drafts_;     // drafts_[draft_index_[chunk]]; -1: no draft
  std::vector<int32_t> draft_index_;
  // The forward: every chunk's inputs (pending tokens, then its draft) and tree parents, back to back.
  std::vector<int32_t> inputs_, parents_;
  std::vector<size_t> input_begin_;       // per chunk, into inputs_ (and parents_ for trees)
  std::vector<policy::SequenceChunk> chunks_;
  // Acceptance: emitted tokens, their logprobs, re-scored logprobs, a tree's accepted path.
  std::vector<int32_t> emitted_;
  std::vector<float> logprobs_, rescored_;
  std::vector<int32_t> path_;
};

// Why a sequence ends once `token` becomes its response token number response_len (1-based):
// stop token (or the recording's end), max_new_tokens, context limit; nothing when it goes on.
std::optional<FinishReason> finish_after(const Sequence& s, int32_t token, int32_t response_len,
                                         int32_t max_position);

}  // namespace longtail::rollout
