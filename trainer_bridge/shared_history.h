// Rollouts other workers of a fleet generated (HISTORY messages, PROTOCOL.md), waiting for this
// worker's next round boundary to join its drafter history. Applying them once per round, not per
// message, keeps the drafter's index rebuilds to one per round and its history window counting this
// worker's own rounds. The wait is bounded: beyond max_tokens the oldest waiting rollouts are dropped
// (more than the drafter's global budget could never be indexed at once anyway).
#pragma once

#include <cstdint>
#include <deque>

#include "rollout/engine.h"
#include "trainer_bridge/protocol.h"

namespace longtail::bridge {

class SharedHistory {
 public:
  // max_tokens: the drafter's global history budget (drafter::DrafterOptions::global_token_budget).
  explicit SharedHistory(int64_t max_tokens) : max_tokens_(max_tokens) {}

  // Checks every token of h against the vocabulary before taking any (ProtocolError
  // INVALID_REQUEST naming the entry otherwise) and queues the rollouts. Returns how many.
  uint64_t take(History&& h, int32_t vocab_size);
  // Hands the queued rollouts to the engine as history of `round` (call at a round boundary).
  void apply(rollout::Engine& engine, int64_t round);
  bool empty() const { return queued_.empty(); }

  uint64_t received = 0, applied = 0, dropped = 0;

 private:
  std::deque<HistoryEntry> queued_;
  int64_t queued_tokens_ = 0;
  int64_t max_tokens_;
};

}  // namespace longtail::bridge
