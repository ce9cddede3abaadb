// The rollout engine facade: the one header the trainer bridge, the CLI tools and the demo use.
// Prompt groups go in (submit), rounds of finished trajectories come out (step returns a batch
// when a round is complete), weight updates happen at step boundaries. Everything below this
// header (scheduler, speculative step, partial-rollout pool, importance statistics, trajectory
// log) is an implementation detail of rollout/.
//
// Threading: an Engine is driven by one thread. Callers that need concurrency (the worker daemon)
// own the thread and call step() in a loop.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "policy/backend.h"
#include "rollout/importance.h"
#include "rollout/trajectory.h"

namespace longtail::rollout {

// A request rejected at submit() (bad token id, prompt longer than the context, n < 1, ...). The
// message names the group and what is wrong; nothing of the request was admitted.
class InvalidRequest : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// One prompt sampled n times.
struct GroupRequest {
  std::string group_id;              // caller's id, unique among groups in flight
  std::string prompt_id;             // links rollouts of the same prompt across rounds (drafter
                                     // history, length prediction); empty = group_id
  std::vector<int32_t> prompt_tokens;
  int32_t n = 1;                     // samples in the group
  policy::SamplingParams sampling;
  int32_t max_new_tokens = 256;
  std::vector<int32_t> stop_tokens;  // empty = the checkpoint's eos ids
  std::string metadata;              // opaque bytes, passed through to every trajectory
  // Trace-forced mode only (EngineOptions::forced_trajectories): sample i of this group replays
  // the recording (prompt_id, trace_sample_offset + i), so successive rounds of one prompt can
  // replay successive recorded samples.
  int32_t trace_sample_offset = 0;
};

struct SpeculationOptions {
  bool enabled = true;
  int32_t max_budget = 16;           // draft tokens per sequence per step, upper bound
  int32_t max_tokens_per_step = 0;   // cap on verified tokens per step (0 = from the cost model)
  double cost_base_us = 0;           // step cost model t = c_base + c_tok * tokens (0 = defaults)
  double cost_per_token_us = 0;
  int32_t history_window_rounds = 8; // drafter history kept for this many rounds
  bool length_aware = true;          // DAS budgets by predicted remaining length; false = uniform
  bool acceptance_aware = false;     // shrink budgets where drafts keep failing (speculation_policy.h)
  bool refit_cost_model = false;     // refit c_base/c_tok online from measured forward times
  int32_t drafter_threads = 1;       // threads for batch drafting
};

// Trace-forced mode (benchmarks): recorded response tokens by (prompt_id, sample index).
using ForcedTrajectories = std::map<std::pair<std::string, int32_t>, std::vector<int32_t>>;

struct EngineOptions {
  int32_t round_groups = 0;          // N: groups per emitted batch (0 = every submitted group)
  double overprovision = 1.0;        // f: keep ceil(f * N) groups in flight (APRIL); 1 = off
  int32_t max_running_sequences = 256;
  int32_t max_tokens_per_forward = 8192;  // prefill chunking bound
  SpeculationOptions speculation;
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

// Per-step and per-round statistics (exposed in STATS and printed by the demo).
struct StepStats {
  int64_t step = 0;
  int32_t sequences = 0;             // sequences in the forward
  int32_t tokens_verified = 0;       // tokens fed to the forward (including prefill)
  int32_t tokens_drafted = 0;
  int32_t tokens_accepted = 0;       // accepted draft tokens (not counting the bonus token)
  int32_t tokens_emitted = 0;        // new response tokens this step
  // draft_us: budgets + drafting; forward_us: the backend's forward (which samples every verified
  // position on the device); sample_us: host-side acceptance, rollback and drafter updates.
  double draft_us = 0, forward_us = 0, sample_us = 0, total_us = 0;
  int32_t preempted = 0;             // sequences preempted by this step's scheduling
};

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

class Engine {
 public:
  Engine(std::unique_ptr<policy::Backend> backend, EngineOptions options);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Validates and queues a group. Throws InvalidRequest (nothing admitted) on bad input.
  void submit(GroupRequest group);

  // Loads earlier rollouts into the drafter's history (e.g. from a trajectory log or JSONL).
  void add_history(const std::string& prompt_id, const std::vector<int32_t>& prompt_tokens,
                   const std::vector<int32_t>& response_tokens, int64_t round);

  // Runs one engine step (admission, speculation, one forward, acceptance). Returns the round's
  // batch when N groups have finished; unfinished sequences stay in the pool for the next round.
  std::optional<RoundBatch> step();

  // Emits whatever has finished as a (possibly short) batch and carries the rest over; used by
  // DRAIN and graceful shutdown. Returns nothing when no trajectory has finished.
  std::optional<RoundBatch> flush_round();

  // True when no group is queued or running, no sequence is carried over and no complete round
  // waits for step() to emit it (complete groups short of a round stay for flush_round()).
  bool idle() const;

  // Swaps the weights (at a step boundary: call between steps) and sets the policy version. Carried
  // and running sequences are re-prefilled under the new weights, which records the new policy's
  // logprob of each of their earlier tokens. On failure the old weights and version stay live and
  // the policy::LoadError propagates.
  void update_weights(const std::filesystem::path& checkpoint_dir, int64_t version);

  // Attaches a reward to a trajectory uid (for the minimum-variance baseline of its batch).
  // Returns false when the uid is unknown.
  bool set_reward(uint64_t uid, double reward);

  // The importance statistics of a recently emitted round (see recent_rounds_kept), recomputed
  // with the rewards attached since; nothing when the round is unknown or too old.
  std::optional<BatchImportance> round_importance(int64_t round) const;

  int64_t policy_version() const;
  EngineStats stats() const;
  const policy::ModelConfig& model_config() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace longtail::rollout
