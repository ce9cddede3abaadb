// Continuous batching with chunked prefill and preemption by recompute (see scheduler.h).
#include "rollout/scheduler.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <limits>
#include <stdexcept>

namespace longtail::rollout {

namespace {
constexpr int64_t kUnlimitedBlocks = std::numeric_limits<int64_t>::max() / 4;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
}  // namespace

Scheduler::Scheduler(policy::Backend& backend, SchedulerOptions options)
    : backend_(backend), options_(options) {
  if (options_.max_running_sequences < 1) {
    throw std::invalid_argument("max_running_sequences must be >= 1");
  }
  if (options_.max_tokens_per_forward < 2) {
    throw std::invalid_argument("max_tokens_per_forward must be >= 2");
  }
  block_size_ = std::max<int32_t>(1, backend_.kv_capacity().block_size);
}

void Scheduler::enqueue(Sequence* s) {
  s->state = SeqState::kQueued;
  waiting_.push_back(s);
}

void Scheduler::enqueue_front(Sequence* s) {
  s->state = SeqState::kQueued;
  waiting_.push_front(s);
}

int64_t Scheduler::blocks_for(int32_t kv_len, int32_t n) const {
  return ceil_div(kv_len + n, block_size_) - ceil_div(kv_len, block_size_);
}

int64_t Scheduler::free_blocks() const {
  const policy::KvCapacity cap = backend_.kv_capacity();
  if (cap.total_tokens <= 0) return kUnlimitedBlocks;  // backend without a KV bound
  return std::max<int64_t>(0, cap.free_tokens / block_size_ - headroom_blocks_);
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

int64_t Scheduler::preempt(Sequence* s) {
  const int64_t freed = ceil_div(s->kv_len, block_size_);
  backend_.release_sequence(s->kv_handle);
  s->kv_handle = -1;
  s->kv_len = 0;
  running_.erase(std::find(running_.begin(), running_.end(), s));
  enqueue_front(s);
  ++preemptions_;
  spdlog::debug("scheduler: preempted sequence {} ({} tokens) to free {} KV blocks", s->uid,
                s->total_len(), freed);
  return freed;
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

bool Scheduler::on_capacity_error() {
  headroom_blocks_ = std::max<int64_t>(1, 2 * headroom_blocks_);
  const policy::KvCapacity cap = backend_.kv_capacity();
  if (cap.total_tokens <= 0 || headroom_blocks_ > cap.total_tokens / block_size_) return false;
  if (running_.size() >= 2) preempt(running_.back());
  return true;
}

StepPlan Scheduler::schedule() {
  StepPlan plan;
  int64_t free = free_blocks();
  int32_t budget = options_.max_tokens_per_forward;
  int32_t preempted = 0;

  // Running sequences, oldest first; a sequence that does not fit takes KV from the newest.
  for (size_t i = 0; i < running_.size();) {
    Sequence* s = running_[i];
    int32_t n = chunk_size(*s, budget);
    if (n == 0) {
      ++i;
      continue;
    }
    int64_t need = blocks_for(s->kv_len, n);
    while (need > free && running_.back() != s) {
      free += preempt(running_.back());
      ++preempted;
    }
    if (need > free && n > 1) {  // the newest sequence: a shorter prefill chunk may still fit
      int32_t fit = static_cast<int32_t>(std::min<int64_t>(
          n, (ceil_div(s->kv_len, block_size_) + free) * block_size_ - s->kv_len));
      fit = fit > 0 ? chunk_size(*s, fit) : 0;
      if (fit > 0) {
        n = fit;
        need = blocks_for(s->kv_len, n);
      }
    }
    if (need > free) {
      if (i == 0) {  // alone and still too big: the cache can never hold it
        plan.aborted.push_back(s);
        ++i;
        continue;
      }
      free += preempt(s);
      ++preempted;
      continue;
    }
    free -= need;
    budget -= n;
    const bool final = n == s->pending();
    plan.chunks.push_back(ScheduledChunk{s, n, first_output(*s, n, final), final, {}});
    plan.tokens += n;
    ++i;
  }

  // Admission, first come first served: a sequence that does not fit blocks the ones behind it.
  while (!waiting_.empty() && budget > 0 &&
         static_cast<int32_t>(running_.size()) < options_.max_running_sequences) {
    Sequence* s = waiting_.front();
    int32_t n = chunk_size(*s, budget);
    if (n == 0) break;
    if (blocks_for(0, n) > free) {
      const int32_t fit = chunk_size(*s, static_cast<int32_t>(std::min<int64_t>(n, free * block_size_)));
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
    free -= blocks_for(0, n);
    budget -= n;
    const bool final = n == s->pending();
    plan.chunks.push_back(ScheduledChunk{s, n, first_output(*s, n, final), final, {}});
    plan.tokens += n;
  }

  plan.tokens_left = budget;
  plan.free_blocks_left = free;
  plan.preempted = preempted;
  return plan;
}

}  // namespace longtail::rollout
