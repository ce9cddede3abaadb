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

const drafter::Draft& SpeculativeStep::draft_of(size_t chunk) const {
  static const drafter::Draft kNone;
  const int32_t d = draft_index_[chunk];
  return d < 0 ? kNone : drafts_[static_cast<size_t>(d)];
}

// Drafts per chunk of the plan (none where draft_index_ is -1): chains, or token trees when the
// policy asks for them and the backend verifies them. Budgets (tokens or nodes) come from the
// speculation policy, capped by the useful length, the forward's remaining token budget and,
// sequence by sequence in plan order, by what the backend says still fits in the KV cache. (A
// tree's depth never exceeds its node count, so the useful-length cap bounds it as it bounds a chain.)
void SpeculativeStep::plan_drafts(const StepPlan& plan, StepEnvironment& env) {
  draft_index_.assign(plan.chunks.size(), -1);
  if (!env.drafter || !env.policy) return;
  const Clock::time_point t0 = Clock::now();
  decoding_.clear();
  views_.clear();
  for (size_t i = 0; i < plan.chunks.size(); ++i) {
    const ScheduledChunk& c = plan.chunks[i];
    const Sequence& s = *c.seq;
    if (!c.final || c.n_tokens != 1 || s.done || !s.drafter_live) continue;
    decoding_.push_back(i);
    views_.push_back(drafter::SequenceView{s.uid, s.group->request.prompt_id, s.response_len(),
                                           s.group->request.max_new_tokens, s.kv_len});
  }
  if (decoding_.empty()) return;
  const bool trees = env.policy->options().token_trees && env.backend.supports_token_trees();
  if (trees) {
    env.policy->tree_budgets(views_, budgets_, node_floor_);
  } else {
    env.policy->budgets(views_, budgets_);
  }

  // Budgets within the token budget; if the backend takes all of them at once, every per-sequence
  // question below would be answered yes, so it is asked only when they do not fit together.
  auto reset_kv = [&] {
    kv_.clear();
    for (const ScheduledChunk& c : plan.chunks) kv_.push_back({c.seq->kv_handle, c.n_tokens});
  };
  reset_kv();
  capped_.resize(decoding_.size());
  int32_t tokens_left = plan.tokens_left;
  for (size_t k = 0; k < decoding_.size(); ++k) {
    const Sequence& s = *plan.chunks[decoding_[k]].seq;
    capped_[k] = std::max(0, std::min({budgets_[k], useful_draft_cap(s, env.max_position), tokens_left}));
    tokens_left -= capped_[k];
    kv_[decoding_[k]].new_tokens += capped_[k];
  }
  if (!env.backend.can_fit(kv_)) {
    reset_kv();
    tokens_left = plan.tokens_left;
    for (size_t k = 0; k < decoding_.size(); ++k) {
      const Sequence& s = *plan.chunks[decoding_[k]].seq;
      policy::KvGrowth& g = kv_[decoding_[k]];
      const int32_t base = g.new_tokens;
      int32_t lo = 0;
      int32_t hi = std::max(0, std::min({budgets_[k], useful_draft_cap(s, env.max_position), tokens_left}));
      while (lo < hi) {  // the largest budget that still fits
        const int32_t mid = lo + (hi - lo + 1) / 2;
        g.new_tokens = base + mid;
        if (env.backend.can_fit(kv_)) lo = mid;
        else hi = mid - 1;
      }
      g.new_tokens = base + lo;
      capped_[k] = lo;
      tokens_left -= lo;
    }
  }

  requests_.clear();
  for (size_t k = 0; k < decoding_.size(); ++k) {
    if (capped_[k] <= 0) continue;
    draft_index_[decoding_[k]] = static_cast<int32_t>(requests_.size());
    requests_.push_back(drafter::DraftRequest{plan.chunks[decoding_[k]].seq->uid, capped_[k], trees,
                                              trees ? node_floor_[k] : 0.0});
  }
  if (!requests_.empty()) {
    if (drafts_.size() < requests_.size()) drafts_.resize(requests_.size());
    env.drafter->propose_batch(requests_, std::span<drafter::Draft>(drafts_.data(), requests_.size()));
    for (size_t i = 0; i < requests_.size(); ++i) {
      drafter::Draft& d = drafts_[i];
      // Nodes are topological, so a prefix of a tree is a tree.
      const auto budget = static_cast<size_t>(requests_[i].budget);
      if (d.tokens.size() > budget) d.tokens.resize(budget);
      if (d.parents.size() > budget) d.parents.resize(budget);
      result_.stats.tokens_drafted += static_cast<int32_t>(d.tokens.size());
    }
  }
  result_.stats.draft_us = us_since(t0);
}

const StepResult& SpeculativeStep::run(const StepPlan& plan, StepEnvironment& env) {
  StepResult& result = result_;
  result.stats = StepStats{};
  result.sequences.clear();
  StepStats& st = result.stats;
  plan_drafts(plan, env);

  // Inputs: pending tokens, then the draft; a tree's root is the last pending token. All chunks'
  // inputs sit back to back in one buffer, sized first so that the spans handed to the backend
  // stay valid.
  const size_t n = plan.chunks.size();
  input_begin_.resize(n + 1);
  size_t total = 0;
  bool any_tree = false;
  for (size_t i = 0; i < n; ++i) {
    input_begin_[i] = total;
    const drafter::Draft& d = draft_of(i);
    total += static_cast<size_t>(plan.chunks[i].n_tokens) + d.tokens.size();
    any_tree = any_tree || d.is_tree();
  }
  input_begin_[n] = total;
  inputs_.resize(total);
  parents_.resize(any_tree ? total : 0);
  chunks_.resize(n);
  double cached_positions = 0;  // what the forward attends besides its inputs (the cost model's term)
  for (size_t i = 0; i < n; ++i) {
    const ScheduledChunk& c = plan.chunks[i];
    const Sequence& s = *c.seq;
    const drafter::Draft& d = draft_of(i);
    int32_t* in = inputs_.data() + input_begin_[i];
    std::copy_n(s.tokens.begin() + s.kv_len, c.n_tokens, in);
    std::copy(d.tokens.begin(), d.tokens.end(), in + c.n_tokens);
    const auto fed = static_cast<size_t>(input_begin_[i + 1] - input_begin_[i]);
    policy::SequenceChunk& pc = chunks_[i];
    pc.parents = {};
    if (d.is_tree()) {
      int32_t* par = parents_.data() + input_begin_[i];
      for (int32_t j = 0; j < c.n_tokens; ++j) par[j] = j - 1;
      for (size_t j = 0; j < d.parents.size(); ++j) par[c.n_tokens + j] = c.n_tokens + d.parents[j];  // -1: the root
      pc.parents = std::span<const int32_t>(par, fed);
    }
    pc.seq = s.kv_handle;
    pc.uid = s.rng_stream;
    pc.tokens = std::span<const int32_t>(in, fed);
    pc.sampling = s.group->rule;
    pc.first_output = c.first_output;
    st.tokens_verified += static_cast<int32_t>(fed);
    cached_positions += s.kv_len;
  }
  st.sequences = static_cast<int32_t>(n);
  st.context_positions = static_cast<int64_t>(cached_positions);
  st.token_trees = any_tree;
  if (n == 0) return result;

  const Clock::time_point tf = Clock::now();
  const std::vector<policy::TokenOutput> outputs = env.backend.forward(chunks_);
  st.forward_us = us_since(tf);
  if (env.refit_cost_model && env.policy) {
    const bool multi = drafter::StepCostModel::multi_token(st.tokens_verified, st.sequences);
    env.policy->observe_step_time(st.tokens_verified, st.forward_us * 1e-6, cached_positions, multi);
  }

  // Emitted tokens (at most one per fed input) and re-scored logprobs (at most one per pending
  // input) go to buffers sized for the worst case, so no span into them moves.
  const Clock::time_point ta = Clock::now();
  emitted_.resize(total);
  logprobs_.resize(total);
  rescored_.resize(total);
  result.sequences.resize(n);
  size_t base = 0;
  for (size_t i = 0; i < n; ++i) {
    const ScheduledChunk& c = plan.chunks[i];
    const Sequence& s = *c.seq;
    const drafter::Draft& draft = draft_of(i);
    const bool tree = draft.is_tree();
    SequenceResult& r = result.sequences[i];
    r = SequenceResult{};
    r.seq = c.seq;
    const int32_t* in = inputs_.data() + input_begin_[i];
    const int32_t fed = static_cast<int32_t>(input_begin_[i + 1] - input_begin_[i]);
    const std::span<const policy::TokenOutput> out(outputs.data() + base, fed - c.first_output);
    base += out.size();
    const int32_t kv0 = s.kv_len;
    r.kv_fed = kv0 + fed;
    r.kv_keep = kv0 + c.n_tokens;

    // Re-score after a weight update: the logprob of each response token under the new weights.
    if (s.needs_scoring()) {
      float* rescored = rescored_.data() + input_begin_[i];
      size_t count = 0;
      for (int32_t in_idx = c.first_output; in_idx + 1 < c.n_tokens; ++in_idx) {
        const int32_t resp = kv0 + in_idx + 1 - s.prompt_len;
        if (resp < 0 || resp >= s.score_upto) continue;
        if (count == 0) r.rescored_from = resp;
        rescored[count++] = out[in_idx - c.first_output].next_input_logprob;
      }
      r.rescored = std::span<const float>(rescored, count);
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
    int32_t* emitted = emitted_.data() + input_begin_[i];
    float* logprobs = logprobs_.data() + input_begin_[i];
    int32_t n_emitted = 0;
    if (tree) path_.clear();
    for (int32_t at = root;;) {
      const policy::TokenOutput& o = out[at - c.first_output];
      int32_t token = o.sampled;
      float lp = o.sampled_logprob;
      if (s.forced) token = (*s.forced)[resp0 + n_emitted];
      int32_t next = -1, first_child = -1;
      if (!tree) {
        if (at + 1 < fed) {
          first_child = at + 1;
          if (in[at + 1] == token) next = at + 1;
        }
      } else {
        for (int32_t j = at + 1; j < fed && next < 0; ++j) {
          if (c.n_tokens + draft.parents[j - c.n_tokens] != at) continue;
          if (first_child < 0) first_child = j;
          if (in[j] == token) next = j;
        }
      }
      if (s.forced && token != o.sampled) {
        lp = next >= 0 && next == first_child
                 ? o.next_input_logprob  // the backend's logprob of the drafted successor
                 : std::numeric_limits<float>::quiet_NaN();
      }
      emitted[n_emitted] = token;
      logprobs[n_emitted] = lp;
      ++n_emitted;
      r.finish = finish_after(s, token, resp0 + n_emitted, env.max_position);
      if (r.finish || next < 0) break;
      if (tree) path_.push_back(next);
      ++r.accepted;
      at = next;
    }
    r.emitted = std::span<const int32_t>(emitted, static_cast<size_t>(n_emitted));
    r.logprobs = std::span<const float>(logprobs, static_cast<size_t>(n_emitted));
    st.tokens_accepted += r.accepted;
    st.tokens_emitted += n_emitted;
    // The KV holds the pending tokens, the accepted drafts and the rejected ones: keep all but the
    // rejected; the last emitted token is the next step's pending input. A tree's accepted path is
    // moved into consecutive rows first, so that the engine's rollback is a truncate, as for chains.
    if (tree && !path_.empty() && path_.back() != root + r.accepted) {
      for (int32_t& p : path_) p -= c.n_tokens;
      env.backend.compact_kv(s.kv_handle, kv0 + c.n_tokens, path_);
      r.kv_fed = kv0 + c.n_tokens + r.accepted;
    }
    r.kv_keep += r.accepted;
    r.retire = r.finish.has_value();
  }
  st.sample_us = us_since(ta);
  return result;
}

}  // namespace longtail::rollout
