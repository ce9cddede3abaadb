// Helpers shared by the engine tests: building prompt groups and driving an Engine round by round.
#pragma once

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "rollout/engine.h"

namespace longtail::rollout::testing {

// Groups "<tag>-<g>" with prompt ids "p<g>", prompts of `prompt_len` ids derived from g.
inline std::vector<GroupRequest> make_groups(const std::string& tag, int groups, int n,
                                             int prompt_len, int max_new, int vocab,
                                             SamplingParams sp) {
  std::vector<GroupRequest> out;
  for (int g = 0; g < groups; ++g) {
    GroupRequest r;
    r.group_id = tag + "-" + std::to_string(g);
    r.prompt_id = "p" + std::to_string(g);
    for (int i = 0; i < prompt_len; ++i) r.prompt_tokens.push_back((g * 7 + i * 3 + 2) % vocab);
    r.n = n;
    r.sampling = sp;
    r.max_new_tokens = max_new;
    r.metadata = "meta-" + r.group_id;
    out.push_back(r);
  }
  return out;
}

struct RunResult {
  std::map<uint64_t, Trajectory> by_uid;
  std::vector<RoundBatch> batches;
  EngineStats stats;
};

// Steps the engine until it has emitted `expect_batches` batches (or fails after max_steps).
inline void drive(Engine& e, RunResult& r, size_t expect_batches, int max_steps = 100000) {
  for (int i = 0; i < max_steps && r.batches.size() < expect_batches; ++i) {
    if (auto b = e.step()) {
      for (const Trajectory& t : b->trajectories) {
        EXPECT_EQ(r.by_uid.count(t.uid), 0u) << "trajectory " << t.uid << " emitted twice";
        r.by_uid[t.uid] = t;
      }
      r.batches.push_back(std::move(*b));
    }
  }
  ASSERT_EQ(r.batches.size(), expect_batches) << "engine did not finish within " << max_steps
                                              << " steps";
}

// Submits each round's groups and steps until that round's batch (round_groups = 0).
inline RunResult run_rounds(Engine& e, const std::vector<std::vector<GroupRequest>>& rounds) {
  RunResult r;
  for (const auto& round : rounds) {
    for (const GroupRequest& g : round) e.submit(g);
    drive(e, r, r.batches.size() + 1);
  }
  r.stats = e.stats();
  return r;
}

inline void expect_same_trajectories(const RunResult& a, const RunResult& b,
                                     bool compare_versions = true) {
  ASSERT_EQ(a.by_uid.size(), b.by_uid.size());
  for (const auto& [uid, ta] : a.by_uid) {
    ASSERT_EQ(b.by_uid.count(uid), 1u) << "uid " << uid;
    const Trajectory& tb = b.by_uid.at(uid);
    EXPECT_EQ(ta.response_tokens, tb.response_tokens) << "uid " << uid;
    ASSERT_EQ(ta.behaviour_logprobs.size(), tb.behaviour_logprobs.size());
    for (size_t i = 0; i < ta.behaviour_logprobs.size(); ++i) {
      // Bitwise: the same logits must give the same logprob.
      EXPECT_EQ(ta.behaviour_logprobs[i], tb.behaviour_logprobs[i]) << "uid " << uid << " token " << i;
    }
    if (compare_versions) EXPECT_EQ(ta.policy_versions, tb.policy_versions);
    EXPECT_EQ(ta.finish_reason, tb.finish_reason) << "uid " << uid;
  }
}

}  // namespace longtail::rollout::testing
