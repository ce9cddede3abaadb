// The replay library: a hand-computed trace, the JSON keys, bad lines (skip/stop, line numbers),
// round grouping, trajectory-log input and the no-speculation baseline.
#include "rollout/replay_simulation.h"

#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "rollout/replay_report.h"
#include "rollout/trajectory_log.h"
#include "testing/workload.h"

namespace longtail::rollout {
namespace {

std::string write_file(const std::string& name, const std::string& text) {
  const std::string path = ::testing::TempDir() + "/" + name;
  std::ofstream(path) << text;
  return path;
}

const char* kTiny =
    "{\"prompt_id\": \"p\", \"sample\": 0, \"step\": 0, \"prompt_tokens\": [100, 101], \"response_tokens\": [1, 2, 3, 4, 5]}\n"
    "{\"prompt_id\": \"p\", \"sample\": 1, \"step\": 1, \"prompt_tokens\": [100, 101], \"response_tokens\": [1, 2, 3, 9, 5]}\n";

TEST(Replay, HandComputedTinyTrace) {
  // Round 0 has no history: 5 steps of 1 token. Round 1: from the prompt tail the drafter proposes
  // 1 2 3 4 5; 1 2 3 are accepted and 9 is emitted (4 tokens in step 1); then "9" matches nothing,
  // so step 2 emits 5 without a draft. Steps 5 + 2 = 7, drafted 5, accepted 3.
  const auto in = read_replay_input(write_file("tiny.jsonl", kTiny), 64, OnError::kStop);
  ASSERT_EQ(in.rounds.size(), 2u);
  ReplayOptions o;
  o.drafter.match_length_factor = 0;  // drafts not limited by the match length
  const auto r = run_replay(in, o);
  EXPECT_EQ(r.rollouts, 2);
  EXPECT_EQ(r.response_tokens, 10);
  EXPECT_EQ(r.verify_steps, 7);
  EXPECT_EQ(r.drafted_tokens, 5);
  EXPECT_EQ(r.accepted_tokens, 3);
  EXPECT_EQ(r.engine_steps, 7);
  EXPECT_NEAR(r.tokens_per_step(), 10.0 / 7.0, 1e-12);
  EXPECT_NEAR(r.later_tokens_per_step(), 5.0 / 2.0, 1e-12);
  EXPECT_NEAR(r.acceptance_rate(), 0.6, 1e-12);
  // Cost model 5000 + 20/token: plain 2 x 5 x 5020; speculative 5 x 5020 + (5000 + 6*20) + 5020.
  EXPECT_NEAR(r.plain_makespan_us, 50200, 1e-6);
  EXPECT_NEAR(r.makespan_us, 25100 + 5120 + 5020, 1e-6);
  EXPECT_NEAR(r.projected_speedup(), 50200.0 / 35240.0, 1e-9);
  EXPECT_GT(r.bytes_per_indexed_token, 0);

  // Default rule, drafts <= match length: step 1 drafts 1 2 (match "100 101") and emits 1 2 3;
  // step 2 drafts 4 5 (match length 5), rejected at 4, emits 9; step 3 emits 5. Steps 5 + 3.
  const auto d = run_replay(in, ReplayOptions{});
  EXPECT_EQ(d.verify_steps, 8);
  EXPECT_EQ(d.drafted_tokens, 4);
  EXPECT_EQ(d.accepted_tokens, 2);
  EXPECT_NEAR(d.makespan_us, 25100 + 5060 + 5060 + 5020, 1e-6);
}

TEST(Replay, JsonHasTheRequiredKeys) {
  const auto in = read_replay_input(write_file("tiny2.jsonl", kTiny), 64, OnError::kStop);
  const auto j = nlohmann::json::parse(report_json(run_replay(in, ReplayOptions{})));
  for (const char* k : {"rollouts", "response_tokens", "verify_steps", "drafted_tokens", "accepted_tokens",
                        "tokens_per_step", "acceptance_rate", "projected_speedup", "drafter_us_per_step",
                        "bytes_per_indexed_token"}) {
    EXPECT_TRUE(j.contains(k)) << k;
  }
  EXPECT_EQ(j["verify_steps"], 8);
  const auto svg = report_svg(run_replay(in, ReplayOptions{}));
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  EXPECT_NE(report_table(run_replay(in, ReplayOptions{})).find("tokens per step"), std::string::npos);
}

TEST(Replay, BadLinesNameTheirLineAndAreSkippedOrStop) {
  struct Case {
    std::string line, needle;
  };
  const std::vector<Case> cases = {
      {"{\"prompt_id\": \"p\", \"sample\": 0, \"prompt_tokens\": [1], \"response_tokens\": [2,", "malformed JSON"},
      {"{\"sample\": 0, \"prompt_tokens\": [1], \"response_tokens\": [2]}", "missing field 'prompt_id'"},
      {"{\"prompt_id\": \"p\", \"prompt_tokens\": [1], \"response_tokens\": [2]}", "missing field 'sample'"},
      {"{\"prompt_id\": \"p\", \"sample\": 0, \"response_tokens\": [2]}", "missing field 'prompt_tokens'"},
      {"{\"prompt_id\": \"p\", \"sample\": 0, \"prompt_tokens\": [1], \"response_tokens\": [2, -7]}",
       "response_tokens[1] = -7 is a negative token id"},
      {"{\"prompt_id\": \"p\", \"sample\": 0, \"prompt_tokens\": [1.5], \"response_tokens\": [2]}",
       "prompt_tokens[0] is not an integer"},
      {"{\"prompt_id\": \"p\", \"sample\": 0, \"prompt_tokens\": [1], \"response_tokens\": [4294967296]}",
       "does not fit"},
      {"{\"prompt_id\": \"p\", \"sample\": 0, \"step\": \"x\", \"prompt_tokens\": [1], \"response_tokens\": [2]}",
       "field 'step' is not an integer"},
      {"[1, 2]", "not a JSON object"},
  };
  const std::string good = "{\"prompt_id\": \"p\", \"sample\": 0, \"prompt_tokens\": [1], \"response_tokens\": [2, 3]}\n";
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto path = write_file("bad" + std::to_string(i) + ".jsonl", good + cases[i].line + "\n" + good);
    try {
      read_replay_input(path, 64, OnError::kStop);
      ADD_FAILURE() << "no error for " << cases[i].line;
    } catch (const ReplayInputError& e) {
      EXPECT_EQ(e.line(), 2);
      EXPECT_NE(std::string(e.what()).find(":2: "), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(cases[i].needle), std::string::npos) << e.what();
    }
    const auto skipped = read_replay_input(path, 64, OnError::kSkip);
    ASSERT_EQ(skipped.errors.size(), 1u);
    ASSERT_EQ(skipped.rounds.size(), 1u);
    EXPECT_EQ(skipped.rounds[0].rollouts.size(), 2u);
    EXPECT_EQ(run_replay(skipped, ReplayOptions{}).skipped_lines, 1);
  }
  EXPECT_THROW(read_replay_input("/nonexistent/x.jsonl", 64, OnError::kSkip), ReplayInputError);
}

TEST(Replay, LinesWithoutStepAreGroupedByRoundSize) {
  std::string text;
  for (int p = 0; p < 5; ++p) {
    for (int s = 0; s < 2; ++s) {
      text += "{\"prompt_id\": \"q" + std::to_string(p) + "\", \"sample\": " + std::to_string(s) +
              ", \"prompt_tokens\": [1], \"response_tokens\": [2, 3]}\n";
    }
  }
  const auto in = read_replay_input(write_file("stepless.jsonl", text), 2, OnError::kStop);
  ASSERT_EQ(in.rounds.size(), 3u);
  EXPECT_EQ(in.rounds[0].rollouts.size(), 4u);
  EXPECT_EQ(in.rounds[2].rollouts.size(), 2u);
  EXPECT_EQ(read_replay_input(write_file("stepless1.jsonl", text), 0, OnError::kStop).rounds.size(), 1u);
}

TEST(Replay, TrajectoryLogInputMatchesJsonl) {
  workload::WorkloadOptions w;
  w.prompts = 6;
  w.samples = 4;
  w.rounds = 3;
  w.median_len = 150;
  const auto rollouts = workload::generate_workload(w);
  const std::string jsonl = ::testing::TempDir() + "/wl.jsonl";
  workload::write_jsonl(rollouts, jsonl);
  const std::string log = ::testing::TempDir() + "/wl.ltlog";
  {
    TrajectoryLogWriter writer(log);
    for (int r = 0; r < w.rounds; ++r) {
      for (const auto& x : rollouts) {
        if (x.round != r) continue;
        Trajectory t;
        t.prompt_id = x.prompt_id;
        t.sample_index = x.sample;
        t.prompt_tokens = x.prompt_tokens;
        t.response_tokens = x.response_tokens;
        writer.write(t);
      }
      writer.write_round(r, r);
    }
  }
  const auto a = run_replay(read_replay_input(jsonl, 64, OnError::kStop), ReplayOptions{});
  const auto b = run_replay(read_replay_input(log, 64, OnError::kStop), ReplayOptions{});
  EXPECT_EQ(a.rollouts, 72);
  EXPECT_EQ(a.rollouts, b.rollouts);
  EXPECT_EQ(a.verify_steps, b.verify_steps);
  EXPECT_EQ(a.accepted_tokens, b.accepted_tokens);
  EXPECT_GT(a.tokens_per_step(), 1.5);  // the workload's recurring segments are draftable

  ReplayOptions off;
  off.speculation = false;
  const auto c = run_replay(read_replay_input(jsonl, 64, OnError::kStop), off);
  EXPECT_EQ(c.verify_steps, c.response_tokens);
  EXPECT_EQ(c.drafted_tokens, 0);
  EXPECT_NEAR(c.projected_speedup(), 1.0, 1e-12);
  EXPECT_EQ(c.response_tokens, a.response_tokens);
}

}  // namespace
}  // namespace longtail::rollout
