// Outbox bookkeeping; see outbox.h.
#include "trainer_bridge/outbox.h"

namespace longtail::bridge {

void Outbox::add(uint64_t seq, std::shared_ptr<const Frames> frames, bool earlier_run) {
  Entry e;
  e.seq = seq;
  e.sends = earlier_run ? 1 : 0;
  e.bytes = frames->total_bytes();
  e.frames = std::move(frames);
  auto [it, inserted] = entries_.emplace(seq, std::move(e));
  if (inserted) {
    ++unsent_;
    bytes_ += it->second.bytes;
  }
}

const Outbox::Entry* Outbox::next_to_send(Clock::time_point now, Clock::duration ack_timeout) const {
  const Entry* overdue = nullptr;
  for (const auto& [seq, e] : entries_) {
    if (!e.sent) return &e;
    if (!overdue && ack_timeout.count() > 0 && now - e.sent_at >= ack_timeout) overdue = &e;
  }
  return overdue;
}

void Outbox::mark_sent(uint64_t seq, Clock::time_point now) {
  auto it = entries_.find(seq);
  if (it == entries_.end()) return;
  if (!it->second.sent) --unsent_;
  it->second.sent = true;
  it->second.sent_at = now;
  ++it->second.sends;
}

std::vector<uint64_t> Outbox::ack(const std::vector<uint64_t>& seqs) {
  std::vector<uint64_t> removed;
  for (uint64_t s : seqs) {
    auto it = entries_.find(s);
    if (it == entries_.end()) continue;
    if (!it->second.sent) --unsent_;
    bytes_ -= it->second.bytes;
    entries_.erase(it);
    removed.push_back(s);
  }
  return removed;
}

void Outbox::requeue_all() {
  for (auto& [seq, e] : entries_) e.sent = false;
  unsent_ = entries_.size();
}

}  // namespace longtail::bridge
