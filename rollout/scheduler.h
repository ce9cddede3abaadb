// Continuous batching: which sequences run in the next forward and how many of their pending
// tokens each feeds. Running sequences keep their place (oldest first); waiting ones are admitted
// first-come-first-served while the token budget of the forward (chunked prefill) and the KV
// capacity last. When KV runs out, the newest running sequence is preempted by recompute (its KV
// is released and it re-enters the front of the queue with its tokens, to be re-prefilled later),
// so the oldest sequence always progresses and none starves. Draft tokens are not planned here:
// the plan reports what is left (tokens and KV blocks) and the speculative step spends it.
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
  std::vector<int32_t> draft;  // filled by the speculative step (final decode chunks only)
};

struct StepPlan {
  std::vector<ScheduledChunk> chunks;
  int32_t tokens = 0;              // tokens scheduled, drafts excluded
  int32_t tokens_left = 0;         // remaining token budget of the forward
  int64_t free_blocks_left = 0;    // KV blocks still free after the scheduled tokens
  std::vector<Sequence*> aborted;  // cannot fit in the KV cache even alone: the engine ends them
  int32_t preempted = 0;
};

class Scheduler {
 public:
  Scheduler(policy::Backend& backend, SchedulerOptions options);

  void enqueue(Sequence* s);        // back of the queue (newly activated groups)
  void enqueue_front(Sequence* s);  // front: preempted, carried over, owing a re-score
  StepPlan schedule();

  // Releases the KV of a sequence that no longer needs it and removes it from the running set.
  void retire(Sequence* s);
  // Drops every running sequence's KV (stale after a weight update): they re-prefill from scratch.
  void drop_all_kv();
  // The backend refused a forward for lack of KV although the plan fitted kv_capacity(): from
  // now on keep a safety margin of blocks (doubled at every such event) and preempt the newest
  // running sequence (never the oldest, which always progresses). False when the margin would
  // exceed the whole cache: the backend's capacity reports cannot be trusted at all.
  bool on_capacity_error();
  int64_t headroom_blocks() const { return headroom_blocks_; }

  // KV blocks needed to grow a sequence from kv_len by n tokens.
  int64_t blocks_for(int32_t kv_len, int32_t n) const;
  int32_t block_size() const { return block_size_; }

  const std::vector<Sequence*>& running() const { return running_; }
  size_t waiting() const { return waiting_.size(); }
  bool empty() const { return running_.empty() && waiting_.empty(); }
  int64_t preemptions() const { return preemptions_; }

 private:
  int32_t chunk_size(const Sequence& s, int32_t budget) const;
  static int32_t first_output(const Sequence& s, int32_t n, bool final);
  int64_t free_blocks() const;
  int64_t preempt(Sequence* s);  // returns the blocks freed

  policy::Backend& backend_;
  SchedulerOptions options_;
  int32_t block_size_ = 1;
  std::vector<Sequence*> running_;  // admission order
  std::deque<Sequence*> waiting_;
  int64_t admissions_ = 0;
  int64_t preemptions_ = 0;
  int64_t headroom_blocks_ = 0;
};

}  // namespace longtail::rollout
