// The bounded set of batches published but not yet acknowledged by the trainer, in sequence order.
// It decides what to send next: never-sent (or re-queued) batches first, then batches whose ack is
// overdue. Pure bookkeeping, no I/O, so the exactly-once logic is testable on its own.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "trainer_bridge/codec.h"

namespace longtail::bridge {

class Outbox {
 public:
  using Clock = std::chrono::steady_clock;
  struct Entry {
    uint64_t seq = 0;
    std::shared_ptr<const Frames> frames;
    size_t bytes = 0;
    bool sent = false;          // sent in the current session and not yet overdue
    Clock::time_point sent_at;
    int sends = 0;              // sends so far; 1 for a batch recovered from an earlier run's journal
  };

  explicit Outbox(size_t capacity) : capacity_(capacity) {}

  size_t capacity() const { return capacity_; }
  size_t size() const { return entries_.size(); }
  size_t unsent() const { return unsent_; }
  size_t bytes() const { return bytes_; }
  bool full() const { return entries_.size() >= capacity_; }
  bool empty() const { return entries_.empty(); }
  bool contains(uint64_t seq) const { return entries_.count(seq) != 0; }

  // Adds an un-acked batch. Recovered journal entries (earlier_run: published, and perhaps sent, by
  // an earlier run, so sending it is a re-send) may push the size past capacity (full() then stops
  // new production until acks bring it back).
  void add(uint64_t seq, std::shared_ptr<const Frames> frames, bool earlier_run = false);

  // The batch to send next: the lowest unsent seq, else the oldest sent batch whose ack is overdue
  // (older than ack_timeout; zero disables resends on timeout). nullptr when nothing is due.
  const Entry* next_to_send(Clock::time_point now, Clock::duration ack_timeout) const;
  void mark_sent(uint64_t seq, Clock::time_point now);

  // Removes acked batches; returns the seqs that were present (acks are idempotent).
  std::vector<uint64_t> ack(const std::vector<uint64_t>& seqs);

  // A new trainer session: everything un-acked must be sent again.
  void requeue_all();

 private:
  size_t capacity_;
  std::map<uint64_t, Entry> entries_;
  size_t unsent_ = 0;
  size_t bytes_ = 0;
};

}  // namespace longtail::bridge
