// The rollout engine's value types, apart from the Engine facade (engine.h): what callers put in
// (GroupRequest, EngineOptions) and what comes out (RoundBatch, RoundStats, StepStats,
// EngineStats). The trainer bridge, the tools and the engine's own internals include this header
// without seeing the Engine class or the policy::Backend interface.
//
// Every stats type has ONE field list, for_each_field, which every serializer (wire codec, STATS
// JSON, demo and bench JSON, PROTOCOL.md's table) walks, so a new counter reaches every output by
// being added here once.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "drafter/drafter.h"
#include "drafter/speculation_policy.h"
#include "policy/sampling.h"
#include "rollout/finish_reason.h"
#include "rollout/importance.h"
#include "rollout/trajectory.h"

namespace longtail::rollout {

// A request rejected at submit() (bad token id, prompt longer than the context, n < 1, ...);
// nothing of it was admitted. Thrown by rollout/request_validator.h with the field at fault,
// relative to the group ("n", "sampling.top_p", "prompt_tokens[3]"; empty when no single field
// is), the group's index in its list (-1 when validated alone) and a reason naming the value and
// the allowed range. what() = "group '<group_id>': <reason>".
class InvalidRequest : public std::invalid_argument {
 public:
  InvalidRequest(std::string group_id, std::string field, std::string reason, int32_t index = -1)
      : std::invalid_argument("group '" + group_id + "': " + reason),
        group_id_(std::move(group_id)),
        field_(std::move(field)),
        reason_(std::move(reason)),
        index_(index) {}
  const std::string& group_id() const { return group_id_; }
  const std::string& field() const { return field_; }
  const std::string& reason() const { return reason_; }
  int32_t index() const { return index_; }

 private:
  std::string group_id_, field_, reason_;
  int32_t index_;
};

// A group's sampling parameters, named as vLLM's SamplingParams (rules in policy/sampling.h and
// kernels/reference.h's sample_row; ranges in rollout/request_validator.h). The engine resolves
// them into the backend's policy::SamplingParams (seed, RNG stream, min_tokens mask) per sequence.
struct SamplingParams {
  float temperature = 1.0f;  // 0 = greedy
  int32_t top_k = 0;         // <= 0: no top-k cut
  float top_p = 1.0f;        // in (0, 1]; 1: no nucleus cut
  float min_p = 0.0f;        // in [0, 1]; 0: off; else drop tokens less likely than min_p x the top one
  // Per-request seed: sample i of the group draws from stream (key + i) under this seed, key =
  // GroupRequest::sample_key, else a hash of group_id, so its tokens do not depend on batch,
  // submission order, run or worker. Absent: no reproducibility promised (the engine's sequence
  // counter gives the streams). The whole rule: policy/sampling.h.
  std::optional<uint64_t> seed;
  // Stop tokens (the EOS set and stop_token_ids) cannot end a sample before it has min_tokens
  // response tokens: the sampler masks them at those positions (vLLM's min_tokens). 0 = off;
  // at most max_new_tokens.
  int32_t min_tokens = 0;
  // Which behaviour logprob each response token carries, and so what the importance statistics
  // use: "raw" (default: log softmax(logits / T) over the full vocabulary, T = 1 when greedy) or
  // "processed" (under the masked, min-p/top-k/top-p truncated and renormalised distribution the
  // token was drawn from; greedy: 0). policy::LogprobsMode documents both.
  std::string logprobs_mode = "raw";
};

// The backend's parameters for a request's sampling: the same temperature, top_k, top_p, min_p,
// logprobs_mode (an unknown name reads as raw: the validator refuses it first), seed or 0; no
// mask (the engine adds the min_tokens mask per sequence).
policy::SamplingParams sampling_rule(const SamplingParams& s);

// One prompt sampled n times.
struct GroupRequest {
  std::string group_id;              // caller's id, unique among groups in flight
  std::string prompt_id;             // links rollouts of the same prompt across rounds (drafter
                                     // history, length prediction); empty = group_id
  std::vector<int32_t> prompt_tokens;
  int32_t n = 1;                     // samples in the group
  SamplingParams sampling;
  int32_t max_new_tokens = 256;
  std::vector<int32_t> stop_tokens;  // the EOS set: empty = the checkpoint's eos ids
  std::vector<int32_t> stop_token_ids;  // also end a sample, beside the EOS set (vLLM's stop_token_ids)
  bool ignore_eos = false;           // the EOS set does not end a sample (stop_token_ids still do)
  std::string metadata;              // opaque bytes, passed through to every trajectory
  // RNG stream key of the group's samples (sample i draws from stream sample_key + i; see
  // SamplingParams::seed and policy/sampling.h). Absent: sample_key_of(group_id) when the group
  // has a seed. Give two groups one key (and seed) to make them sample alike.
  std::optional<uint64_t> sample_key;
  // Trace-forced mode only (EngineOptions::forced_trajectories): sample i of this group replays
  // the recording (prompt_id, trace_sample_offset + i), so successive rounds of one prompt can
  // replay successive recorded samples.
  int32_t trace_sample_offset = 0;
};

// Trace-forced mode (benchmarks): recorded response tokens by (prompt_id, sample index).
using ForcedTrajectories = std::map<std::pair<std::string, int32_t>, std::vector<int32_t>>;

struct EngineOptions {
  int32_t round_groups = 0;          // N: groups per emitted batch (0 = every submitted group)
  double overprovision = 1.0;        // f: keep ceil(f * N) groups in flight (APRIL); 1 = off
  int32_t max_running_sequences = 256;
  int32_t max_tokens_per_forward = 8192;  // prefill chunking bound, tokens per forward
  // Speculation. The drafter's and the speculation policy's own option structs (their headers
  // document every field, unit and default). Speculation is off (no drafter is built) when
  // budgets.mode is kOff or budgets.max_budget is 0; budgets.mode kLengthAware (default) is DAS,
  // kFixed gives every sequence max_budget. effective_budgets() says how the engine applies them.
  drafter::DrafterOptions drafter;            // history index: window_rounds (8), threads (1), ...
  drafter::SpeculationPolicyOptions budgets;  // max_budget (16), max_tokens_per_step (0 = cost
                                              // model), cost (c_base, c_tok in us), ...
  bool refit_cost_model = false;     // refit budgets.cost online from measured forward times
  // Replace budgets.cost by the compiled-in measurement of the backend's GPU and checkpoint shape
  // when one exists (rollout/measured_cost_model.h); any explicit speculation.cost_* option
  // clears it, so a user's model is never overridden.
  bool measured_cost_model = true;
  double importance_cap = 8.0;       // C in min(w, C) for sequence weights (VCPO)
  double token_ratio_cap = 2.0;      // C for token-level truncated importance sampling (TIS)
  // Empty = no log; else every emitted trajectory and round boundary, appended when the file
  // already holds a log (rollout/trajectory_log.h format).
  std::filesystem::path trajectory_log;
  // Non-empty: every submitted sample must have a recording; the verify forward runs on the real
  // drafts but the emitted tokens are the recording's, and a sequence ends where it ends
  // (rollout/forced_trajectories.h loads them from a JSONL trace).
  ForcedTrajectories forced_trajectories;
  int32_t recent_rounds_kept = 16;   // rounds whose trajectories stay reachable by set_reward
};

// True when the engine builds a drafter and speculates: budgets.mode != kOff and max_budget > 0.
bool speculation_enabled(const EngineOptions& o);
// The speculation policy options the engine runs with: budgets, with the medium class never
// above the long one (medium_budget = min(medium_budget, max_budget)).
drafter::SpeculationPolicyOptions effective_budgets(const EngineOptions& o);
// Throws std::invalid_argument naming the first out-of-range option ("EngineOptions: ...").
void validate_engine_options(const EngineOptions& o);

// Per-step statistics (STATS last_step; printed by the demo).
struct StepStats {
  int64_t step = 0;
  int32_t sequences = 0;             // sequences in the forward
  int32_t tokens_verified = 0;       // tokens fed to the forward (including prefill)
  int32_t tokens_drafted = 0;
  int32_t tokens_accepted = 0;       // accepted draft tokens (not counting the bonus token)
  int32_t tokens_emitted = 0;        // new response tokens this step
  // Cached positions the forward attended besides its inputs, summed over its sequences (the
  // cost model's context term), and whether any sequence verified a token tree: with
  // tokens_verified and forward_us, what a cost model fit needs of a real step.
  int64_t context_positions = 0;
  bool token_trees = false;
  // draft_us: budgets + drafting; forward_us: the backend's forward (which samples every verified
  // position on the device); sample_us: host-side acceptance, rollback and drafter updates.
  double draft_us = 0, forward_us = 0, sample_us = 0, total_us = 0;
  int32_t preempted = 0;             // sequences preempted by this step's scheduling
};

// Per-round statistics (BATCH stats, STATS recent_rounds).
struct RoundStats {
  int64_t round = 0;
  int32_t groups = 0;
  int32_t trajectories = 0;
  int64_t response_tokens = 0;
  int64_t steps = 0;
  int64_t forward_passes = 0;
  int64_t tokens_drafted = 0;
  int64_t tokens_accepted = 0;
  double makespan_s = 0;             // wall time from the round's start to its batch
  double off_policy_token_share = 0; // tokens produced by an older policy version than the batch's
  int32_t carried_over = 0;          // sequences left in the partial-rollout pool
  int64_t tokens_verified = 0;       // tokens fed to forwards (prefill, pending and drafts)
  int64_t preemptions = 0;           // sequences preempted (KV recomputed later) during the round
  double draft_s = 0, forward_s = 0, sample_s = 0;  // time in drafting, forwards, acceptance
};

struct EngineStats {
  int64_t policy_version = 0;
  int64_t steps = 0;
  int64_t forward_passes = 0;
  int64_t tokens_generated = 0;
  int64_t tokens_drafted = 0;
  int64_t tokens_accepted = 0;
  int32_t running_sequences = 0;
  int32_t waiting_groups = 0;
  int32_t carried_sequences = 0;
  int64_t preemptions = 0;
  int64_t kv_total_tokens = 0;       // the backend's KV cache capacity, in positions
  int64_t kv_free_tokens = 0;        // positions not reserved by any sequence
  StepStats last_step;
  std::vector<RoundStats> recent_rounds;  // newest last, bounded
};

// A round's output.
struct RoundBatch {
  int64_t round = 0;
  int64_t policy_version = 0;        // version live when the batch was emitted
  std::vector<Trajectory> trajectories;
  BatchImportance importance;
  RoundStats stats;
};

// The field lists: f("wire_name", member) for every field, in this order. S may be const.
template <class S, class F>
  requires std::is_same_v<std::remove_const_t<S>, StepStats>
void for_each_field(S& s, F&& f) {
  f("step", s.step);
  f("sequences", s.sequences);
  f("tokens_verified", s.tokens_verified);
  f("tokens_drafted", s.tokens_drafted);
  f("tokens_accepted", s.tokens_accepted);
  f("tokens_emitted", s.tokens_emitted);
  f("context_positions", s.context_positions);
  f("token_trees", s.token_trees);
  f("draft_us", s.draft_us);
  f("forward_us", s.forward_us);
  f("sample_us", s.sample_us);
  f("total_us", s.total_us);
  f("preempted", s.preempted);
}

template <class S, class F>
  requires std::is_same_v<std::remove_const_t<S>, RoundStats>
void for_each_field(S& s, F&& f) {
  f("round", s.round);
  f("groups", s.groups);
  f("trajectories", s.trajectories);
  f("response_tokens", s.response_tokens);
  f("steps", s.steps);
  f("forward_passes", s.forward_passes);
  f("tokens_drafted", s.tokens_drafted);
  f("tokens_accepted", s.tokens_accepted);
  f("makespan_s", s.makespan_s);
  f("off_policy_token_share", s.off_policy_token_share);
  f("carried_over", s.carried_over);
  f("tokens_verified", s.tokens_verified);
  f("preemptions", s.preemptions);
  f("draft_s", s.draft_s);
  f("forward_s", s.forward_s);
  f("sample_s", s.sample_s);
}

// The scalar fields of EngineStats; last_step and recent_rounds are visited through their own
// lists by the caller.
template <class S, class F>
  requires std::is_same_v<std::remove_const_t<S>, EngineStats>
void for_each_field(S& s, F&& f) {
  f("policy_version", s.policy_version);
  f("steps", s.steps);
  f("forward_passes", s.forward_passes);
  f("tokens_generated", s.tokens_generated);
  f("tokens_drafted", s.tokens_drafted);
  f("tokens_accepted", s.tokens_accepted);
  f("running_sequences", s.running_sequences);
  f("waiting_groups", s.waiting_groups);
  f("carried_sequences", s.carried_sequences);
  f("preemptions", s.preemptions);
  f("kv_total_tokens", s.kv_total_tokens);
  f("kv_free_tokens", s.kv_free_tokens);
}

}  // namespace longtail::rollout
