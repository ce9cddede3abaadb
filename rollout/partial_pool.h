// Groups in flight and round boundaries, with partial-rollout carry-over (APRIL, slime's
// --partial-rollout). A round asks for N groups; ceil(f * N) are kept in flight; the round is
// ready when N of them are complete (all sequences done and re-scored), and its batch takes the
// first N to complete. The others stay in flight with whatever they generated so far: they were
// activated earlier than anything submitted since, so they hold the front of the scheduler's
// queue and resume first in the next round. N = 0: every submitted group is in flight and the
// round is ready when all of them are complete.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

#include "rollout/sequence.h"

namespace longtail::rollout {

class PartialPool {
 public:
  PartialPool(int32_t round_groups, double overprovision);

  void submit(std::unique_ptr<Group> g);
  bool has_group(const std::string& group_id) const { return ids_.count(group_id) != 0; }

  // Moves queued groups in flight until ceil(f * N) are (all of them when N = 0, or with `all`);
  // returns them.
  std::vector<Group*> activate(int64_t round, bool all = false);
  // Sequences of these groups left the running set (finished, re-scored or aborted): the groups
  // that are complete now get their first-completion order, in activation order among those
  // completing together. The engine calls this from each step's retired sequences, so nothing
  // rescans the groups in flight.
  void note_retired(const std::vector<Group*>& groups);
  // A weight update reopened done sequences (they owe a re-score): recounts complete groups.
  void note_reopened();
  bool round_ready() const;
  // Removes the round's groups: the first N complete ones, or every complete one when flushing.
  std::vector<std::unique_ptr<Group>> take_round(bool flush);

  const std::vector<std::unique_ptr<Group>>& in_flight() const { return active_; }
  size_t queued() const { return queued_.size(); }
  int32_t target_in_flight() const;

 private:
  int32_t round_groups_;
  double overprovision_;
  std::deque<std::unique_ptr<Group>> queued_;
  std::vector<std::unique_ptr<Group>> active_;  // activation order
  std::unordered_set<std::string> ids_;
  int64_t activations_ = 0;
  int64_t completions_ = 0;
  int32_t complete_ = 0;  // groups in flight with complete_counted set
};

}  // namespace longtail::rollout
