// Drafting, one verifying forward, lossless acceptance and KV rollback (see speculative_step.h).
#include "rollout/speculative_step.h"

#include <spdlog/spdlog.h>

#include <algorithm>
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

void plan_drafts(StepPlan& plan, StepEnvironment& env, StepStats& stats) {
  if (!env.drafter || !env.policy) return;
  const Clock::time_point t0 = Clock::now();
  std::vector<ScheduledChunk*> decoding;
  std::vector<drafter::SequenceView> views;
  for (ScheduledChunk& c : plan.chunks) {
    Sequence& s = *c.seq;
    if (!c.final || c.n_tokens != 1 || s.done || !s.drafter_live) continue;
    decoding.push_back(&c);
    views.push_back(drafter::SequenceView{s.uid, s.group->request.prompt_id, s.response_len(),
                                          s.group->request.max_new_tokens});
  }
  if (decoding.empty()) return;
  std::vector<int32_t> budgets = env.policy->budgets(views);
  std::vector<drafter::DraftRequest> requests;
  std::vector<ScheduledChunk*> drafted;
  int32_t tokens_left = plan.tokens_left;
  int64_t blocks_left = plan.free_blocks_left;
  for (size_t i = 0; i < decoding.size(); ++i) {
    const Sequence& s = *decoding[i]->seq;
    int32_t b = std::min({budgets[i], useful_draft_cap(s, env.max_position), tokens_left});
    // Extra KV blocks beyond the one verified token the plan already reserved.
    while (b > 0 && env.scheduler.blocks_for(s.kv_len, 1 + b) -
                            env.scheduler.blocks_for(s.kv_len, 1) > blocks_left) {
      --b;
    }
    if (b <= 0) continue;
    tokens_left -= b;
    blocks_left -= env.scheduler.blocks_for(s.kv_len, 1 + b) - env.scheduler.blocks_for(s.kv_len, 1);
    requests.push_back(drafter::DraftRequest{s.uid, b});
    drafted.push_back(decoding[i]);
  }
  if (!requests.empty()) {
    std::vector<drafter::Draft> drafts(requests.size());
    env.drafter->propose_batch(requests, drafts);
    for (size_t i = 0; i < drafted.size(); ++i) {
      std::vector<int32_t>& d = drafts[i].tokens;
      if (static_cast<int32_t>(d.size()) > requests[i].budget) d.resize(requests[i].budget);
      drafted[i]->draft = std::move(d);
      stats.tokens_drafted += static_cast<int32_t>(drafted[i]->draft.size());
    }
  }
  plan.tokens_left = tokens_left;
  plan.free_blocks_left = blocks_left;
  stats.draft_us = us_since(t0);
}

}  // namespace

bool emit_token(Sequence& s, int32_t token, float logprob, int64_t version, int32_t max_position) {
  s.tokens.push_back(token);
  s.behaviour_logprobs.push_back(logprob);
  s.policy_versions.push_back(version);
  if (!s.current_logprobs.empty()) s.current_logprobs.push_back(logprob);
  const GroupRequest& r = s.group->request;
  if (s.forced) {
    if (s.response_len() >= static_cast<int32_t>(s.forced->size())) {
      s.done = true;
      s.finish_reason = FinishReason::kStop;
    }
  } else if (s.group->is_stop(token)) {
    s.done = true;
    s.finish_reason = FinishReason::kStop;
  }
  if (!s.done && s.response_len() >= r.max_new_tokens) {
    s.done = true;
    s.finish_reason = FinishReason::kLength;
  }
  if (!s.done && s.total_len() >= max_position) {
    s.done = true;
    s.finish_reason = FinishReason::kContext;
  }
  return s.done;
}

StepResult run_speculative_step(StepPlan& plan, StepEnvironment& env) {
  StepResult result;
  StepStats& st = result.stats;
  plan_drafts(plan, env, st);

  // Inputs: pending tokens, then the draft. Buffers outlive the spans handed to the backend.
  std::vector<std::vector<int32_t>> inputs(plan.chunks.size());
  std::vector<policy::SequenceChunk> chunks(plan.chunks.size());
  for (size_t i = 0; i < plan.chunks.size(); ++i) {
    const ScheduledChunk& c = plan.chunks[i];
    const Sequence& s = *c.seq;
    std::vector<int32_t>& in = inputs[i];
    in.assign(s.tokens.begin() + s.kv_len, s.tokens.begin() + s.kv_len + c.n_tokens);
    in.insert(in.end(), c.draft.begin(), c.draft.end());
    policy::SequenceChunk& pc = chunks[i];
    pc.seq = s.kv_handle;
    pc.uid = s.uid;
    pc.tokens = in;
    pc.sampling = s.group->request.sampling;
    pc.first_output = c.first_output;
    st.tokens_verified += static_cast<int32_t>(in.size());
  }
  st.sequences = static_cast<int32_t>(chunks.size());
  if (chunks.empty()) return result;

  const Clock::time_point tf = Clock::now();
  const std::vector<policy::TokenOutput> outputs = env.backend.forward(chunks);
  st.forward_us = us_since(tf);
  if (env.refit_cost_model && env.policy) {
    env.policy->observe_step_time(st.tokens_verified, st.forward_us * 1e-6);
  }

  const Clock::time_point ta = Clock::now();
  size_t base = 0;
  std::vector<int32_t> emitted;
  for (size_t i = 0; i < plan.chunks.size(); ++i) {
    const ScheduledChunk& c = plan.chunks[i];
    Sequence& s = *c.seq;
    const int32_t fed = static_cast<int32_t>(inputs[i].size());
    const std::span<const policy::TokenOutput> out(outputs.data() + base, fed - c.first_output);
    base += out.size();
    const int32_t kv0 = s.kv_len;

    // Re-score after a weight update: the logprob of each response token under the new weights.
    if (s.needs_scoring()) {
      for (int32_t in_idx = c.first_output; in_idx + 1 < c.n_tokens; ++in_idx) {
        const int32_t r = kv0 + in_idx + 1 - s.prompt_len;
        if (r >= 0 && r < s.score_upto) s.current_logprobs[r] = out[in_idx - c.first_output].next_input_logprob;
      }
    }
    s.kv_len = kv0 + c.n_tokens;
    if (!c.final) {
      const int32_t r = s.kv_len - s.prompt_len;  // the token after this chunk, if in the response
      if (s.needs_scoring() && r >= 0 && r < s.score_upto) {
        s.kv_len -= 1;  // re-fed next time, with its successor, so that successor gets scored
        env.backend.truncate(s.kv_handle, s.kv_len);
      }
      continue;
    }
    s.score_upto = 0;
    if (s.done) {  // a finished trajectory that only owed its re-score
      env.scheduler.retire(&s);
      result.rescored.push_back(&s);
      continue;
    }

    // Acceptance: emit x_0, then x_{j+1} while x_j matched d_{j+1}.
    emitted.clear();
    int32_t accepted = 0;
    for (int32_t j = 0;; ++j) {
      const policy::TokenOutput& o = out[c.n_tokens - 1 + j - c.first_output];
      int32_t token = o.sampled;
      float lp = o.sampled_logprob;
      if (s.forced) {
        token = (*s.forced)[s.response_len()];
        if (token != o.sampled) {
          lp = j < static_cast<int32_t>(c.draft.size()) && c.draft[j] == token
                   ? o.next_input_logprob  // the backend's logprob of the drafted successor
                   : std::numeric_limits<float>::quiet_NaN();
        }
      }
      emitted.push_back(token);
      if (emit_token(s, token, lp, env.policy_version, env.max_position)) break;
      if (j < static_cast<int32_t>(c.draft.size()) && c.draft[j] == token) {
        ++accepted;
        continue;
      }
      break;
    }
    st.tokens_accepted += accepted;
    if (env.policy) {  // acceptance-aware budgets: every decoding step counts, drafted or not
      env.policy->observe_acceptance(s.uid, s.group->request.prompt_id,
                                     static_cast<int32_t>(c.draft.size()), accepted);
    }
    st.tokens_emitted += static_cast<int32_t>(emitted.size());
    // The KV holds the pending tokens, the accepted drafts and the rejected ones: keep all but the
    // rejected; the last emitted token is the next step's pending input.
    s.kv_len += accepted;
    if (accepted < static_cast<int32_t>(c.draft.size()) && !s.done) {
      env.backend.truncate(s.kv_handle, s.kv_len);
    }
    if (s.done) {
      if (env.drafter && s.drafter_live) env.drafter->end_request(s.uid);
      s.drafter_live = false;
      if (env.policy) {
        env.policy->record_finished(s.group->request.prompt_id, s.response_len());
        env.policy->end_sequence(s.uid);
      }
      env.scheduler.retire(&s);
      result.finished.push_back(&s);
    } else if (env.drafter && s.drafter_live) {
      env.drafter->observe(s.uid, emitted);
    }
  }
  st.sample_us = us_since(ta);
  return result;
}

}  // namespace longtail::rollout
