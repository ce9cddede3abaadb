// Engine-internal state of one sampled sequence and of its group (a prompt sampled n times).
// A sequence's tokens are prompt + response; the backend's KV cache holds the first kv_len of them
// and the rest are "pending": fed by the next forward(s). A running sequence in steady state has
// exactly one pending token (the last one it emitted), so prefill, recompute after preemption,
// re-prefill after a weight update and decode are all the same operation: feed the pending tokens.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "rollout/types.h"
#include "rollout/trajectory.h"

namespace longtail::rollout {

struct Group;

enum class SeqState : uint8_t {
  kQueued,   // not holding KV: waiting for admission (fresh, preempted or needing a re-score)
  kRunning,  // admitted: holds a KV handle
  kIdle,     // done and holding nothing; waits for its group to complete
};

struct Sequence {
  uint64_t uid = 0;                       // unique over the engine's life (trajectories, rewards)
  uint64_t rng_stream = 0;                // the sampler's stream (policy/sampling.h's rule)
  Group* group = nullptr;
  int32_t sample_index = 0;
  int32_t prompt_len = 0;
  std::vector<int32_t> tokens;            // prompt followed by response
  std::vector<float> behaviour_logprobs;  // one per response token
  std::vector<int64_t> policy_versions;   // one per response token
  std::vector<float> current_logprobs;    // empty, or one per response token (NaN = not scored yet)
  SeqState state = SeqState::kQueued;
  bool done = false;                      // finish_reason is final
  FinishReason finish_reason = FinishReason::kLength;
  // Response tokens [0, score_upto) still need the latest policy's logprob from a re-prefill.
  int32_t score_upto = 0;
  int64_t kv_handle = -1;                 // backend sequence, -1 when none
  int32_t kv_len = 0;                     // positions in the KV cache
  int64_t admitted_at = -1;               // admission counter: older = smaller (preemption order)
  bool drafter_live = false;              // begin_request was called and end_request not yet
  const std::vector<int32_t>* forced = nullptr;  // trace-forced mode: the recorded response

  int32_t response_len() const { return static_cast<int32_t>(tokens.size()) - prompt_len; }
  int32_t total_len() const { return static_cast<int32_t>(tokens.size()); }
  int32_t pending() const { return total_len() - kv_len; }
  bool needs_scoring() const { return score_upto > 0; }
  // Schedulable: still generating, or done but owing a re-score to its group's batch.
  bool wants_compute() const { return !done || needs_scoring(); }
};

struct Group {
  GroupRequest request;                   // prompt_id resolved (never empty)
  // The resolved stop set: (ignore_eos ? {} : stop_tokens, else the checkpoint's eos ids) +
  // stop_token_ids.
  std::vector<int32_t> stop_tokens;
  // The backend's sampling parameters of every sequence of the group: the request's, its seed or
  // 0, and the min_tokens mask (stop_tokens at positions [prompt, prompt + min_tokens)), whose
  // span points into stop_tokens (set once, at submit).
  policy::SamplingParams rule;
  std::vector<std::unique_ptr<Sequence>> sequences;
  int64_t submitted_at = 0;               // submission order
  int64_t activated_at = -1;              // in-flight order (-1 = still queued)
  int64_t first_round = -1;               // round in which the group became active
  int64_t completed_at = -1;              // first-completion order (-1 = not complete yet)
  bool complete_counted = false;          // PartialPool counts it complete (see note_retired)

  bool complete() const {
    for (const auto& s : sequences) {
      if (s->wants_compute()) return false;
    }
    return true;
  }
  bool is_stop(int32_t token) const;
};

// The trajectory record of a sequence as it stands (finished or carried over).
Trajectory make_trajectory(const Sequence& s);

}  // namespace longtail::rollout
