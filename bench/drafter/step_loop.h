// The drafter step that drafter_bench times and drafter_step_counts counts: the synthetic fixture
// of 2026-11-23 (16 prompts x 16 samples, rounds 0-3 as history, round 4's 256 rollouts live) and
// one engine step = propose for every live sequence (16-token budgets or 16-node trees), then
// observe of what verification would emit (the longest accepted path + the next recorded token);
// a finished sequence restarts its rollout as a new request. Works with any drafter of the
// automaton drafter's interface (the suffix trie baseline too).
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

#include "drafter/drafter.h"
#include "testing/workload.h"

namespace longtail::bench {

struct StepFixture {
  std::vector<workload::WorkloadRollout> rollouts;
  std::vector<const workload::WorkloadRollout*> live_src;
  static const StepFixture& get() {
    static const StepFixture f = [] {
      StepFixture x;
      workload::WorkloadOptions w;
      w.prompts = 16;
      w.samples = 16;
      w.rounds = 5;
      w.median_len = 800;
      x.rollouts = workload::generate_workload(w);
      for (const auto& r : x.rollouts) {
        if (r.round == 4) x.live_src.push_back(&r);
      }
      return x;
    }();
    return f;
  }
};

template <class D>
class StepLoop {
 public:
  // Loads the history into d and begins the live requests.
  StepLoop(D& d, bool tree) : d_(d), f_(StepFixture::get()), tree_(tree) {
    for (const auto& r : f_.rollouts) {
      if (r.round < 4) d_.add_rollout(r.prompt_id, r.prompt_tokens, r.response_tokens, r.round);
    }
    d_.end_round(3);
    const size_t batch = f_.live_src.size();
    uid_.resize(batch);
    pos_.assign(batch, 0);
    for (size_t i = 0; i < batch; ++i) {
      uid_[i] = next_uid_++;
      d_.begin_request(uid_[i], f_.live_src[i]->prompt_id, f_.live_src[i]->prompt_tokens);
    }
    reqs_.resize(batch);
    drafts_.resize(batch);
  }
  // One step; seen(i, draft) looks at each draft before it is verified.
  template <class Seen>
  void step(Seen&& seen) {
    const size_t batch = uid_.size();
    for (size_t i = 0; i < batch; ++i) reqs_[i] = {uid_[i], 16, tree_};
    d_.propose_batch(reqs_, drafts_);
    for (size_t i = 0; i < batch; ++i) {
      seen(i, drafts_[i]);
      const auto& resp = f_.live_src[i]->response_tokens;
      const auto acc = static_cast<size_t>(drafter::longest_accepted_path(
          drafts_[i], std::span<const int32_t>(resp.data() + pos_[i], resp.size() - pos_[i])));
      const size_t emit = std::min(acc + 1, resp.size() - pos_[i]);
      d_.observe(uid_[i], std::span<const int32_t>(resp.data() + pos_[i], emit));
      pos_[i] += emit;
      emitted_ += static_cast<int64_t>(emit);
      ++seq_steps_;
      if (pos_[i] == resp.size()) {  // finished: the slot restarts the rollout as a new request
        d_.end_request(uid_[i]);
        uid_[i] = next_uid_++;
        pos_[i] = 0;
        d_.begin_request(uid_[i], f_.live_src[i]->prompt_id, f_.live_src[i]->prompt_tokens);
      }
    }
  }
  void step() {
    step([](size_t, const drafter::Draft&) {});
  }
  size_t batch() const { return uid_.size(); }
  double tokens_per_seq_step() const { return seq_steps_ ? double(emitted_) / double(seq_steps_) : 0; }

 private:
  D& d_;
  const StepFixture& f_;
  bool tree_;
  std::vector<uint64_t> uid_;
  std::vector<size_t> pos_;
  uint64_t next_uid_ = 1;
  std::vector<drafter::DraftRequest> reqs_;
  std::vector<drafter::Draft> drafts_;
  int64_t emitted_ = 0, seq_steps_ = 0;
};

}  // namespace longtail::bench
