// One replay loop for any drafter with the Drafter interface (the automaton drafter and the trie
// baseline), so the benchmarks compare them on identical steps: every rollout of a round drafts at
// each step with a fixed budget (draft tokens, or tree nodes with `tree`), accepts the longest
// root-to-node path matching its recorded response plus one verified token, and the round's
// rollouts join the history afterwards.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <vector>

#include "drafter/drafter.h"
#include "drafter/speculation_policy.h"
#include "rollout/replay_input.h"

namespace longtail::bench {

struct SimResult {
  int64_t tokens = 0, steps = 0, drafted = 0, accepted = 0, engine_steps = 0;
  int64_t later_tokens = 0, later_steps = 0;
  double drafter_us = 0;
  // Projected with a step cost model (each engine step verifies 1 + draft tokens per live
  // sequence; no per-step cap, no policy): makespan with drafts / without.
  double makespan_us = 0, plain_makespan_us = 0;
  double projected_speedup() const { return makespan_us > 0 ? plain_makespan_us / makespan_us : 0; }
  double tokens_per_step() const { return steps ? double(tokens) / steps : 0; }
  double later_tokens_per_step() const { return later_steps ? double(later_tokens) / later_steps : 0; }
  double acceptance() const { return drafted ? double(accepted) / drafted : 0; }
};

template <class D>
SimResult simulate(D& d, const rollout::ReplayInput& in, int32_t budget, bool tree = false,
                   const drafter::StepCostModel& cost = {}) {
  using clock = std::chrono::steady_clock;
  SimResult res;
  uint64_t uid = 1;
  std::vector<drafter::DraftRequest> reqs;
  std::vector<drafter::Draft> drafts;
  for (size_t ri = 0; ri < in.rounds.size(); ++ri) {
    const auto& round = in.rounds[ri];
    struct Live {
      const rollout::RecordedRollout* r;
      uint64_t uid;
      size_t pos = 0;
    };
    std::vector<Live> live;
    for (const auto& r : round.rollouts) {
      if (r.response_tokens.empty()) continue;
      live.push_back({&r, uid++});
      d.begin_request(live.back().uid, r.prompt_id, r.prompt_tokens);
    }
    // Without drafts every live sequence verifies one token per step until it ends.
    std::vector<int64_t> lengths;
    for (const auto& l : live) lengths.push_back(static_cast<int64_t>(l.r->response_tokens.size()));
    std::sort(lengths.begin(), lengths.end());
    for (size_t i = 0, done = 0; i < lengths.size(); ++i) {
      res.plain_makespan_us += static_cast<double>(lengths[i] - static_cast<int64_t>(done)) *
                               cost.step_us(static_cast<double>(lengths.size() - i));
      done = static_cast<size_t>(lengths[i]);
    }
    while (!live.empty()) {
      int64_t verified = 0;
      reqs.clear();
      for (const auto& l : live) reqs.push_back({l.uid, budget, tree});
      drafts.resize(live.size());
      const auto t0 = clock::now();
      d.propose_batch(reqs, drafts);
      std::vector<Live> still;
      for (size_t k = 0; k < live.size(); ++k) {
        auto& l = live[k];
        const auto& resp = l.r->response_tokens;
        const auto& dt = drafts[k].tokens;
        const auto acc = static_cast<size_t>(drafter::longest_accepted_path(
            drafts[k], std::span<const int32_t>(resp.data() + l.pos, resp.size() - l.pos)));
        const size_t emit = std::min(acc + 1, resp.size() - l.pos);
        d.observe(l.uid, std::span<const int32_t>(resp.data() + l.pos, emit));
        l.pos += emit;
        res.steps += 1;
        res.drafted += static_cast<int64_t>(dt.size());
        verified += 1 + static_cast<int64_t>(dt.size());
        res.accepted += static_cast<int64_t>(acc);
        if (ri > 0) res.later_steps += 1;
        if (l.pos < resp.size()) {
          still.push_back(l);
        } else {
          d.end_request(l.uid);
        }
      }
      res.drafter_us += std::chrono::duration<double, std::micro>(clock::now() - t0).count();
      res.engine_steps += 1;
      res.makespan_us += cost.step_us(static_cast<double>(verified));
      live.swap(still);
    }
    for (const auto& r : round.rollouts) {
      res.tokens += static_cast<int64_t>(r.response_tokens.size());
      if (ri > 0) res.later_tokens += static_cast<int64_t>(r.response_tokens.size());
      d.add_rollout(r.prompt_id, r.prompt_tokens, r.response_tokens, round.round);
    }
    d.end_round(round.round);
  }
  return res;
}

}  // namespace longtail::bench
