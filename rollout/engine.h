// The rollout engine facade: the one header the trainer bridge, the CLI tools and the demo use to
// drive an engine (its value types live in rollout/types.h).
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
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "policy/backend.h"
#include "rollout/request_validator.h"
#include "rollout/types.h"

namespace longtail::rollout {

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

  // Shutdown at its deadline: every unfinished sequence (running, preempted, carried over, owing a
  // re-score, or in a group not started yet) ends now with finish_reason aborted and the tokens it
  // has, and every group is emitted in one batch, so nothing submitted is lost. Returns nothing
  // when no group is queued or in flight. The engine stays usable afterwards.
  std::optional<RoundBatch> abort_all();

  // Adds the last emitted round's rollouts to the drafter's history, which step() otherwise does
  // first thing: a caller with idle time (the worker, once the batch is sent) calls it so that the
  // indexing is off the trainer's critical path. Returns whether there was anything to add.
  bool index_history();

  // True when no group is queued or running, no sequence is carried over and no complete round
  // waits for step() to emit it (complete groups short of a round stay for flush_round()).
  bool idle() const;

  // Swaps the weights (at a step boundary: call between steps) and sets the policy version. Carried
  // and running sequences are re-prefilled under the new weights, which records the new policy's
  // logprob of each of their earlier tokens. On failure the old weights and version stay live and
  // the policy::LoadError propagates.
  void update_weights(const std::filesystem::path& checkpoint_dir, int64_t version);
  // The same from an open, validated tensor set (e.g. a trainer's shared-memory segment).
  void update_weights(const policy::Checkpoint& weights, int64_t version);
  // The same from a trainer's CUDA tensors (policy/cuda_ipc_weights.h); LoadError, nothing
  // changed, when the backend cannot read them (takes_cuda_ipc_weights() false) or they are bad.
  void update_weights(const policy::CudaIpcTensorSource& source, bool check_finite, int64_t version);
  bool takes_cuda_ipc_weights() const;

  // Sleep (vLLM's sleep mode), for a trainer sharing the device, called between steps. Nothing in
  // flight is lost: every running sequence releases its KV handle and keeps its tokens, logprobs
  // and versions, to re-prefill after the wake (as after a preemption). The backend then frees its
  // KV cache (level 1; policy::Backend::sleep) and its weights too (level 2: an update_weights must
  // come before wake_up). While asleep step() throws std::logic_error; submit (groups wait),
  // add_history, flush_round, abort_all and update_weights work. A level the backend cannot sleep at
  // (outside [1, max_sleep_level()]) throws std::invalid_argument; sleeping at or below the current
  // level changes nothing. wake_up() re-creates the backend's memory with the same KV budget; it
  // throws std::logic_error at level 2 and std::runtime_error when the memory cannot be had, and
  // the engine stays asleep; awake, it does nothing.
  struct SleepReport {
    int level = 0;                   // the level now
    size_t bytes_released = 0;       // what the backend freed (policy::Backend::sleep)
    int32_t sequences_paused = 0;    // running sequences whose KV was dropped, to re-prefill
    int64_t kv_tokens_dropped = 0;   // their cached positions
  };
  SleepReport sleep(int level);
  size_t wake_up();  // bytes re-allocated
  int sleep_level() const;      // 0 = awake
  int max_sleep_level() const;  // 0 = the backend cannot sleep

  // Attaches a reward to a trajectory uid (for the minimum-variance baseline of its batch).
  // Returns false when the uid is unknown.
  bool set_reward(uint64_t uid, double reward);

  // The importance statistics of a recently emitted round (see recent_rounds_kept), recomputed
  // with the rewards attached since; nothing when the round is unknown or too old.
  std::optional<BatchImportance> round_importance(int64_t round) const;

  int64_t policy_version() const;
  EngineStats stats() const;
  // The latest step's statistics (stats().last_step without copying the rest); its `step` is
  // stats().steps - 1 once a step has run.
  const StepStats& last_step() const;
  // The step cost model the speculation budgets price steps with now: the measured one for this
  // GPU and checkpoint (EngineOptions::measured_cost_model), else budgets.cost; refit moves it.
  drafter::StepCostModel step_cost_model() const;
  const policy::ModelConfig& model_config() const;
  bool samples_min_p() const;  // the backend honours SamplingParams::min_p
  // What submit() validates a group against (rollout/request_validator.h), so a caller can check a
  // list of groups before admitting any of them.
  RequestLimits request_limits() const;
  // What the backend's sampler implements (requests needing more are refused at submit):
  // sampling.min_tokens > 0, sampling.logprobs_mode "processed".
  bool samples_min_tokens() const;
  bool samples_processed_logprobs() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace longtail::rollout
