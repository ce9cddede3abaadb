// Continuous batching with chunked prefill and preemption by recompute (see scheduler.h).
#include "rollout/scheduler.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <limits>
#include <stdexcept>

namespace longtail::rollout {

namespace {

// The largest m in [0, hi] with fits(m), for fits monotone (true up to some m, false beyond).
template <class Fits>
int32_t largest_fitting(int32_t hi, Fits&& fits) {
  int32_t lo = 0;  // fits(0) holds: no growth
  while (lo < hi) {
    const int32_t mid = lo + (hi - lo + 1) / 2;
    if (fits(mid)) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

}  // namespace

Scheduler::Scheduler(policy::Backend& backend, SchedulerOptions options)
    : backend_(backend), options_(options) {
  if (options_.max_running_sequences < 1) {
    throw std::invalid_argument("max_running_sequences must be >= 1");
  }
  if (options_.max_tokens_per_forward < 2) {
    throw std::invalid_argument("max_tokens_per_forward must be >= 2");
  }
}

void Scheduler::enqueue(Sequence* s) {
  s->state = SeqState::kQueued;
  waiting_.push_back(s);
}

void Scheduler::enqueue_front(Sequence* s) {
  s->state = SeqState::kQueued;
  waiting_.push_front(s);
}

// A chunk that stops inside the response of a sequence owing a re-score must re-feed its last
// token next time (its successor's logprob needs both in one chunk), so such a chunk needs >= 2
// tokens to make progress.
int32_t Scheduler::chunk_size(const Sequence& s, int32_t budget) const {
  const int32_t pending = s.pending();
  int32_t n = std::min(pending, budget);
  if (n <= 0) return 0;
  if (n < pending && s.needs_scoring()) {
    const int32_t boundary_index = s.kv_len + n - s.prompt_len;  // response index of successor
    if (boundary_index >= 0 && boundary_index < s.score_upto && n < 2) return 0;
  }
  return n;
}

int32_t Scheduler::first_output(const Sequence& s, int32_t n, bool final) {
  if (s.needs_scoring()) {
    const int32_t first = std::clamp(s.prompt_len - 1 - s.kv_len, 0, n);
    return final ? std::min(first, n - 1) : first;
  }
  return final ? n - 1 : n;
}

void Scheduler::preempt(Sequence* s) {
  backend_.release_sequence(s->kv_handle);
  s->kv_handle = -1;
  s->kv_len = 0;
  running_.erase(std::find(running_.begin(), running_.end(), s));
  enqueue_front(s);
  ++preemptions_;
  spdlog::debug("scheduler: preempted sequence {} ({} tokens) to free KV", s->uid, s->total_len());
}

void Scheduler::retire(Sequence* s) {
  if (s->kv_handle >= 0) backend_.release_sequence(s->kv_handle);
  s->kv_handle = -1;
  s->kv_len = 0;
  s->state = SeqState::kIdle;
  auto it = std::find(running_.begin(), running_.end(), s);
  if (it != running_.end()) running_.erase(it);
  auto wt = std::find(waiting_.begin(), waiting_.end(), s);
  if (wt != waiting_.end()) waiting_.erase(wt);
}

void Scheduler::drop_all_kv() {
  for (Sequence* s : running_) {
    backend_.truncate(s->kv_handle, 0);
    s->kv_len = 0;
  }
}

int64_t Scheduler::release_all_kv() {
  int64_t dropped = 0;
  for (auto it = running_.rbegin(); it != running_.rend(); ++it) {  // newest first: oldest ends in front
    Sequence* s = *it;
    backend_.release_sequence(s->kv_handle);
    dropped += s->kv_len;
    s->kv_handle = -1;
    s->kv_len = 0;
    enqueue_front(s);
  }
  running_.clear();
  return dropped;
}

// The plan as it would be if every chunk fitted: when the backend accepts all of it at once, every
// check of schedule() would pass, so one call answers them all (the common, unpressured step).
bool Scheduler::everything_fits() {
  std::vector<policy::KvGrowth>& kv = kv_;
  kv.clear();
  int32_t budget = options_.max_tokens_per_forward;
  for (const Sequence* s : running_) {
    const int32_t n = chunk_size(*s, budget);
    if (n == 0) continue;
    kv.push_back({s->kv_handle, n});
    budget -= n;
  }
  size_t running = running_.size();
  for (const Sequence* s : waiting_) {
    if (budget <= 0 || static_cast<int32_t>(running) >= options_.max_running_sequences) break;
    const int32_t n = chunk_size(*s, budget);
    if (n == 0) break;
    kv.push_back({-1, n});
    budget -= n;
    ++running;
  }
  return backend_.can_fit(kv);
}

const StepPlan& Scheduler::schedule() {
  StepPlan& plan = plan_;
  plan.chunks.clear();
  plan.aborted.clear();
  plan.tokens = 0;
  int32_t budget = options_.max_tokens_per_forward;
  int32_t preempted = 0;
  const bool all_fit = everything_fits();
  std::vector<policy::KvGrowth>& kv = kv_;  // growth of the chunks planned so far
  kv.clear();
  auto fits = [&](int64_t seq, int32_t n) {
    if (all_fit || n == 0) return true;
    kv.push_back({seq, n});
    const bool ok = backend_.can_fit(kv);
    kv.pop_back();
    return ok;
  };
  auto add_chunk = [&](Sequence* s, int32_t n) {
    kv.push_back({s->kv_handle, n});
    budget -= n;
    const bool final = n == s->pending();
    plan.chunks.push_back(ScheduledChunk{s, n, first_output(*s, n, final), final});
    plan.tokens += n;
  };

  // Running sequences, oldest first; a sequence that does not fit takes KV from the newest.
  for (size_t i = 0; i < running_.size();) {
    Sequence* s = running_[i];
    int32_t n = chunk_size(*s, budget);
    if (n == 0) {
      ++i;
      continue;
    }
    while (!fits(s->kv_handle, n) && running_.back() != s) {
      preempt(running_.back());
      ++preempted;
    }
    if (n > 1 && !fits(s->kv_handle, n)) {  // the newest sequence: a shorter prefill chunk may fit
      int32_t fit = largest_fitting(n - 1, [&](int32_t m) { return fits(s->kv_handle, m); });
      fit = fit > 0 ? chunk_size(*s, fit) : 0;
      if (fit > 0) n = fit;
    }
    if (!fits(s->kv_handle, n)) {
      if (i == 0) {  // alone and still too big: the cache can never hold it
        plan.aborted.push_back(s);
        ++i;
        continue;
      }
      preempt(s);
      ++preempted;
      continue;
    }
    add_chunk(s, n);
    ++i;
  }

  // Admission, first come first served: a sequence that does not fit blocks the ones behind it.
  while (!waiting_.empty() && budget > 0 &&
         static_cast<int32_t>(running_.size()) < options_.max_running_sequences) {
    Sequence* s = waiting_.front();
    int32_t n = chunk_size(*s, budget);
    if (n == 0) break;
    if (!fits(-1, n)) {
      int32_t fit = largest_fitting(n - 1, [&](int32_t m) { return fits(-1, m); });
      fit = fit > 0 ? chunk_size(*s, fit) : 0;
      if (fit == 0) {
        if (running_.empty() && plan.chunks.empty()) {
          waiting_.pop_front();
          plan.aborted.push_back(s);
          continue;
        }
        break;
      }
      n = fit;
    }
    waiting_.pop_front();
    s->kv_handle = backend_.create_sequence();
    s->kv_len = 0;
    s->state = SeqState::kRunning;
    s->admitted_at = admissions_++;
    running_.push_back(s);
    add_chunk(s, n);
  }

  plan.tokens_left = budget;
  plan.preempted = preempted;
  return plan;
}

}  // namespace longtail::rollout
