// Group activation and round completion for partial rollouts (see partial_pool.h).
#include "rollout/partial_pool.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

namespace longtail::rollout {

PartialPool::PartialPool(int32_t round_groups, double overprovision)
    : round_groups_(round_groups), overprovision_(overprovision) {
  if (round_groups < 0) throw std::invalid_argument("round_groups must be >= 0");
  if (!(overprovision >= 1.0) || !std::isfinite(overprovision)) {
    throw std::invalid_argument("overprovision must be a finite number >= 1");
  }
}

int32_t PartialPool::target_in_flight() const {
  if (round_groups_ == 0) return std::numeric_limits<int32_t>::max();
  return static_cast<int32_t>(std::ceil(overprovision_ * round_groups_ - 1e-9));
}

void PartialPool::submit(std::unique_ptr<Group> g) {
  ids_.insert(g->request.group_id);
  g->submitted_at = static_cast<int64_t>(ids_.size());
  queued_.push_back(std::move(g));
}

std::vector<Group*> PartialPool::activate(int64_t round, bool all) {
  std::vector<Group*> out;
  const int32_t target = all ? std::numeric_limits<int32_t>::max() : target_in_flight();
  while (!queued_.empty() && static_cast<int32_t>(active_.size()) < target) {
    std::unique_ptr<Group> g = std::move(queued_.front());
    queued_.pop_front();
    g->activated_at = activations_++;
    g->first_round = round;
    out.push_back(g.get());
    active_.push_back(std::move(g));
  }
  return out;
}

void PartialPool::note_retired(const std::vector<Group*>& groups) {
  std::vector<Group*> now;
  for (Group* g : groups) {
    if (g->complete_counted || !g->complete()) continue;
    g->complete_counted = true;  // also dedups a group listed more than once
    ++complete_;
    now.push_back(g);
  }
  std::sort(now.begin(), now.end(),
            [](const Group* a, const Group* b) { return a->activated_at < b->activated_at; });
  for (Group* g : now) {
    if (g->completed_at < 0) g->completed_at = completions_++;
  }
}

void PartialPool::note_reopened() {
  complete_ = 0;
  for (auto& g : active_) {
    g->complete_counted = g->complete();
    complete_ += g->complete_counted ? 1 : 0;
  }
}

bool PartialPool::round_ready() const {
  if (round_groups_ == 0) {
    return complete_ > 0 && complete_ == static_cast<int32_t>(active_.size()) && queued_.empty();
  }
  return complete_ >= round_groups_;
}

std::vector<std::unique_ptr<Group>> PartialPool::take_round(bool flush) {
  std::vector<Group*> done;
  for (auto& g : active_) {
    if (g->complete_counted) done.push_back(g.get());
  }
  std::sort(done.begin(), done.end(),
            [](const Group* a, const Group* b) { return a->completed_at < b->completed_at; });
  if (!flush && round_groups_ > 0 && static_cast<int32_t>(done.size()) > round_groups_) {
    done.resize(round_groups_);
  }
  std::vector<std::unique_ptr<Group>> out;
  for (Group* d : done) {
    auto it = std::find_if(active_.begin(), active_.end(),
                           [&](const std::unique_ptr<Group>& g) { return g.get() == d; });
    ids_.erase(d->request.group_id);
    --complete_;
    out.push_back(std::move(*it));
    active_.erase(it);
  }
  return out;
}

}  // namespace longtail::rollout
