// Drafting, one verifying forward and lossless acceptance (see speculative_step.h).
#include "rollout/speculative_step.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <span>

namespace longtail::rollout {

namespace {

using Clock = std::chrono::steady_clock;

double us_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
}

// The most draft tokens a decoding sequence can use this step: every accepted draft also emits a
// token, so drafts past max_new_tokens, the context limit or the recording's end are wasted.
int32_t useful_draft_cap(const Sequence& s, int32_t max_position) {
  const GroupRequest& r = s.group->request;
  int32_t cap = r.max_new_tokens - s.response_len() - 1;
  cap = std::min(cap, max_position - s.kv_len - 2);
  if (s.forced) cap = std::min(cap, static_cast<int32_t>(s.forced->size()) - s.response_len() - 1);
  return std::max(cap, 0);
}

// Drafts per chunk of the plan (empty where none): chains, or token trees when the policy asks for
// them and the backend verifies them. Budgets (tokens or nodes) come from the speculation policy,
// capped by the useful length, the forward's remaining token budget and, sequence by sequence in
// plan order, by what the backend says still fits in the KV cache. (A tree's depth never exceeds its
// node count, so the useful-length cap bounds it as it bounds a chain.)
std::vector<drafter::Draft> plan_drafts(const StepPlan& plan, StepEnvironment& env, StepStats& stats) {
  std::vector<drafter::Draft> drafts(plan.chunks.size());
  if (!env.drafter || !env.policy) return drafts;
  const Clock::time_point t0 = Clock::now();
  std::vector<size_t> decoding;  // chunk indices
  std::vector<drafter::SequenceView> views;
  for (size_t i = 0; i < plan.chunks.size(); ++i) {
    const ScheduledChunk& c = plan.chunks[i];
    const Sequence& s = *c.seq;
    if (!c.final || c.n_tokens != 1 || s.done || !s.drafter_live) continue;
    decoding.push_back(i);
    views.push_back(drafter::SequenceView{s.uid, s.group->request.prompt_id, s.response_len(),
                                          s.group->request.max_new_tokens, s.kv_len});
  }
  if (decoding.empty()) return drafts;
  const bool trees = env.policy->options().token_trees && env.backend.supports_token_trees();
  std::vector<int32_t> budgets;
  std::vector<double> node_floor;
  if (trees) {
    env.policy->tree_budgets(views, budgets, node_floor);
  } else {
    env.policy->budgets(views, budgets);
  }

  // Budgets within the token budget; if the backend takes all of them at once, every per-sequence
  // question below would be answered yes, so it is asked only when they do not fit together.
  std::vector<int32_t> b(decoding.size());
  std::vector<policy::KvGrowth> kv = plan.kv_growth();
  int32_t tokens_left = plan.tokens_left;
  for (size_t k = 0; k < decoding.size(); ++k) {
    const Sequence& s = *plan.chunks[decoding[k]].seq;
    b[k] = std::max(0, std::min({budgets[k], useful_draft_cap(s, env.max_position), tokens_left}));
    tokens_left -= b[k];
    kv[decoding[k]].new_tokens += b[k];
  }
  if (!env.backend.can_fit(kv)) {
    kv = plan.kv_growth();
    tokens_left = plan.tokens_left;
    for (size_t k = 0; k < decoding.size(); ++k) {
      const Sequence& s = *plan.chunks[decoding[k]].seq;
      policy::KvGrowth& g = kv[decoding[k]];
      const int32_t base = g.new_tokens;
      int32_t lo = 0;
      int32_t hi = std::max(0, std::min({budgets[k], useful_draft_cap(s, env.max_position), tokens_left}));
      while (lo < hi) {  // the largest budget that still fits
        const int32_t mid = lo + (hi - lo + 1) / 2;
        g.new_tokens = base + mid;
        if (env.backend.can_fit(kv)) lo = mid;
        else hi = mid - 1;
      }
      g.new_tokens = base + lo;
      b[k] = lo;
      tokens_left -= lo;
    }
  }

  std::vector<drafter::DraftRequest> requests;
  std::vector<size_t> drafted;  // chunk indices
  for (size_t k = 0; k < decoding.size(); ++k) {
    if (b[k] <= 0) continue;
    requests.push_back(drafter::DraftRequest{plan.chunks[decoding[k]].seq->uid, b[k], trees,
                                             trees ? node_floor[k] : 0.0});
    drafted.push_back(decoding[k]);
  }
  if (!requests.empty()) {
    std::vector<drafter::Draft> out(requests.size());
    env.drafter->propose_batch(requests, out);
    for (size_t i = 0; i < drafted.size(); ++i) {
      drafter::Draft& d = out[i];
      // Nodes are topological, so a prefix of a tree is a tree.
      const auto budget = static_cast<size_t>(requests[i].budget);
      if (d.tokens.size() > budget) d.tokens.resize(budget);
      if (d.parents.size() > budget) d.parents.resize(budget);
      stats.tokens_drafted += static_cast<int32_t>(d.tokens.size());
      drafts[drafted[i]] = std::move(d);
    }
  }
  stats.draft_us = us_since(t0);
  return drafts;
}

}  // namespace

std::optional<FinishReason> finish_after(const Sequence& s, int32_t token, int32_t response_len,
                                         int32_t max_position) {
  const GroupRequest& r = s.group->request;
  if (s.forced) {
    if (response_len >= static_cast<int32_t>(s.forced->size())) return FinishReason::kStop;
  } else if (s.group->is_stop(token)) {
    return FinishReason::kStop;
  }
  if (response_len >= r.max_new_tokens) return FinishReason::kLength;
  if (s.prompt_len + response_len >= max_position) return FinishReason::kContext;
  return std::nullopt;
}

StepResult run_speculative_step(const StepPlan& plan, StepEnvironment& env) {
  StepResult result;
  StepStats& st = result.stats;
  const std::vector<drafter::Draft> drafts = plan_drafts(plan, env, st);

  // Inputs: pending tokens, then the draft; a tree's root is the last pending token. Buffers
  // outlive the spans handed to the backend.
  std::vector<std::vector<int32_t>> inputs(plan.chunks.size()), parents(plan.chunks.size());
  std::vector<policy::SequenceChunk> chunks(plan.chunks.size());
  double cached_positions = 0;  // what the forward attends besides its inputs (the cost model's term)
  for (size_t i = 0; i < plan.chunks.size(); ++i) {
    const ScheduledChunk& c = plan.chunks[i];
    const Sequence& s = *c.seq;
    std::vector<int32_t>& in = inputs[i];
    in.assign(s.tokens.begin() + s.kv_len, s.tokens.begin() + s.kv_len + c.n_tokens);
    in.insert(in.end(), drafts[i].tokens.begin(), drafts[i].tokens.end());
    policy::SequenceChunk& pc = chunks[i];
    if (drafts[i].is_tree()) {
      std::vector<int32_t>& par = parents[i];
      for (int32_t j = 0; j < c.n_tokens; ++j) par.push_back(j - 1);
      for (const int32_t p : drafts[i].parents) par.push_back(c.n_tokens + p);  // -1: the root
      pc.parents = par;
    }
    pc.seq = s.kv_handle;
    pc.uid = s.rng_stream;
    pc.tokens = in;
    pc.sampling = s.group->rule;
    pc.first_output = c.first_output;
    st.tokens_verified += static_cast<int32_t>(in.size());
    cached_positions += s.kv_len;
  }
  st.sequences = static_cast<int32_t>(chunks.size());
  if (chunks.empty()) return result;

  const Clock::time_point tf = Clock::now();
  const std::vector<policy::TokenOutput> outputs = env.backend.forward(chunks);
  st.forward_us = us_since(tf);
  if (env.refit_cost_model && env.policy) {
    env.policy->observe_step_time(st.tokens_verified, st.forward_us * 1e-6, cached_positions);
  }

  const Clock::time_point ta = Clock::now();
  result.sequences.resize(plan.chunks.size());
  size_t base = 0;
  for (size_t i = 0; i < plan.chunks.size(); ++i) {
    const ScheduledChunk& c = plan.chunks[i];
    const Sequence& s = *c.seq;
    const drafter::Draft& draft = drafts[i];
    SequenceResult& r = result.sequences[i];
    r.seq = c.seq;
    const int32_t fed = static_cast<int32_t>(inputs[i].size());
    const std::span<const policy::TokenOutput> out(outputs.data() + base, fed - c.first_output);
    base += out.size();
    const int32_t kv0 = s.kv_len;
    r.kv_fed = kv0 + fed;
    r.kv_keep = kv0 + c.n_tokens;

    // Re-score after a weight update: the logprob of each response token under the new weights.
    if (s.needs_scoring()) {
      for (int32_t in_idx = c.first_output; in_idx + 1 < c.n_tokens; ++in_idx) {
        const int32_t resp = kv0 + in_idx + 1 - s.prompt_len;
        if (resp < 0 || resp >= s.score_upto) continue;
        if (r.rescored.empty()) r.rescored_from = resp;
        r.rescored.push_back(out[in_idx - c.first_output].next_input_logprob);
      }
    }
    if (!c.final) {
      const int32_t resp = r.kv_keep - s.prompt_len;  // the token after this chunk, if in the response
      // Re-fed next time, with its successor, so that the successor gets scored.
      if (s.needs_scoring() && resp >= 0 && resp < s.score_upto) r.kv_keep -= 1;
      continue;
    }
    r.rescore_done = true;
    if (s.done) {  // a finished trajectory that only owed its re-score
      r.retire = true;
      continue;
    }

    // Acceptance: emit the token sampled at the current node (first the root, the last pending
    // token), then move to the child drafted with that token, while there is one. A chain's only
    // child of input j is input j + 1.
    r.decoded = true;
    r.drafted = static_cast<int32_t>(draft.tokens.size());
    const int32_t resp0 = s.response_len();
    const int32_t root = c.n_tokens - 1;
    auto parent_of = [&](int32_t in_idx) {
      return draft.is_tree() ? c.n_tokens + draft.parents[in_idx - c.n_tokens] : in_idx - 1;
    };
    std::vector<int32_t> path;  // accepted inputs (draft nodes), root's child first
    for (int32_t at = root;;) {
      const policy::TokenOutput& o = out[at - c.first_output];
      int32_t token = o.sampled;
      float lp = o.sampled_logprob;
      if (s.forced) token = (*s.forced)[resp0 + static_cast<int32_t>(r.emitted.size())];
      int32_t next = -1, first_child = -1;
      for (int32_t j = at + 1; j < fed && next < 0; ++j) {
        if (parent_of(j) != at) continue;
        if (first_child < 0) first_child = j;
        if (inputs[i][j] == token) next = j;
      }
      if (s.forced && token != o.sampled) {
        lp = next >= 0 && next == first_child
                 ? o.next_input_logprob  // the backend's logprob of the drafted successor
                 : std::numeric_limits<float>::quiet_NaN();
      }
      r.emitted.push_back(token);
      r.logprobs.push_back(lp);
      r.finish = finish_after(s, token, resp0 + static_cast<int32_t>(r.emitted.size()), env.max_position);
      if (r.finish || next < 0) break;
      path.push_back(next);
      at = next;
    }
    r.accepted = static_cast<int32_t>(path.size());
    st.tokens_accepted += r.accepted;
    st.tokens_emitted += static_cast<int32_t>(r.emitted.size());
    // The KV holds the pending tokens, the accepted drafts and the rejected ones: keep all but the
    // rejected; the last emitted token is the next step's pending input. A tree's accepted path is
    // moved into consecutive rows first, so that the engine's rollback is a truncate, as for chains.
    if (draft.is_tree() && !path.empty() && path.back() != root + r.accepted) {
      for (int32_t& p : path) p -= c.n_tokens;
      env.backend.compact_kv(s.kv_handle, kv0 + c.n_tokens, path);
      r.kv_fed = kv0 + c.n_tokens + r.accepted;
    }
    r.kv_keep += r.accepted;
    r.retire = r.finish.has_value();
  }
  st.sample_us = us_since(ta);
  return result;
}

}  // namespace longtail::rollout
