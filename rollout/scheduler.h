// Continuous batching: which sequences run in the next forward and how many of their pending
// tokens each feeds. Running sequences keep their place (oldest first); waiting ones are admitted
// first-come-first-served while the token budget of the forward (chunked prefill) and the KV
// capacity last. When KV runs out, the newest running sequence is preempted by recompute (its KV
// is released and it re-enters the front of the queue with its tokens, to be re-prefilled later),
// so the oldest sequence always progresses and none starves. Whether a chunk fits is the backend's
// answer (policy::Backend::can_fit over everything planned so far), never the scheduler's own block
// arithmetic. Draft tokens are not planned here: the plan reports the token budget left and the
// speculative step spends it, asking the backend in the same way.
#pragma once

#include <cstdint>
#include <deque>
#include <vector>

#include "policy/backend.h"
#include "rollout/sequence.h"

namespace longtail::rollout {

struct SchedulerOptions {
  int32_t max_running_sequences = 256;
  int32_t max_tokens_per_forward = 8192;
};

// One sequence's share of the next forward: tokens [kv_len, kv_len + n_tokens) of seq->tokens.
struct ScheduledChunk {
  Sequence* seq = nullptr;
  int32_t n_tokens = 0;
  int32_t first_output = 0;
  bool final = false;          // covers every pending token: its last output samples a new token
};

struct StepPlan {
  std::vector<ScheduledChunk> chunks;
  int32_t tokens = 0;              // tokens scheduled, drafts excluded
  int32_t tokens_left = 0;         // remaining token budget of the forward
  std::vector<Sequence*> aborted;  // cannot fit in the KV cache even alone: the engine ends them
  int32_t preempted = 0;
};

class Scheduler {
 public:
  Scheduler(policy::Backend& backend, SchedulerOptions options);

  void enqueue(Sequence* s);        // back of the queue (newly activated groups)
  void enqueue_front(Sequence* s);  // front: preempted, carried over, owing a re-score
  // The next forward's plan; it lives (and its buffers are reused) until the next call.
  const StepPlan& schedule();

  // Releases the KV of a sequence that no longer needs it and removes it from the running set.
  void retire(Sequence* s);
  // Drops every running sequence's KV (stale after a weight update): they re-prefill from scratch.
  void drop_all_kv();
  // Releases every running sequence's KV handle (the engine going to sleep): each keeps its tokens
  // and goes back to the front of the queue in admission order, to re-prefill after the wake. Not
  // counted as preemptions. Returns the KV positions dropped.
  int64_t release_all_kv();

  const std::vector<Sequence*>& running() const { return running_; }
  size_t waiting() const { return waiting_.size(); }
  bool empty() const { return running_.empty() && waiting_.empty(); }
  int64_t preemptions() const { return preemptions_; }

 private:
  int32_t chunk_size(const Sequence& s, int32_t budget) const;
  static int32_t first_output(const Sequence& s, int32_t n, bool final);
  bool everything_fits();
  void preempt(Sequence* s);

  policy::Backend& backend_;
  SchedulerOptions options_;
  std::vector<Sequence*> running_;  // admission order
  std::deque<Sequence*> waiting_;
  int64_t admissions_ = 0;
  int64_t preemptions_ = 0;
  StepPlan plan_;                          // schedule()'s result, reused
  std::vector<policy::KvGrowth> kv_;       // growth planned so far, asked of Backend::can_fit
};

}  // namespace longtail::rollout
