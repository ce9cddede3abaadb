// Trace-forced mode on the CPU backend with a real trace excerpt (CodeT HumanEval samples, Qwen
// token ids mapped modulo the tiny vocabulary): the engine emits the recordings exactly, drafts
// from the history of earlier rounds get accepted, and the JSONL loader reports bad lines.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "engine_test_util.h"
#include "policy/backend.h"
#include "rollout/engine.h"
#include "rollout/forced_trajectories.h"

namespace longtail::rollout {
namespace {

namespace fs = std::filesystem;

const fs::path kTrace = fs::path(LONGTAIL_SOURCE_DIR) / "tests/rollout/data/codet_humaneval_excerpt.jsonl";
const fs::path kModel = fs::path(LONGTAIL_SOURCE_DIR) / "configs/models/tiny-qwen3";

testing::RunResult run_forced(bool speculate, const std::vector<RecordedRollout>& trace) {
  EngineOptions o;
  if (!speculate) o.budgets.mode = drafter::BudgetMode::kOff;
  o.budgets.max_tokens_per_step = 1024;
  o.forced_trajectories = forced_from_trace(trace);
  policy::BackendOptions bo;
  bo.num_threads = 2;
  Engine e(policy::make_backend(kModel, bo), o);
  std::vector<std::string> prompts;
  std::map<std::string, std::vector<int32_t>> prompt_tokens;
  for (const RecordedRollout& r : trace) {
    if (!prompt_tokens.count(r.prompt_id)) prompts.push_back(r.prompt_id);
    prompt_tokens[r.prompt_id] = r.prompt_tokens;
  }
  std::vector<std::vector<GroupRequest>> rounds;
  for (int32_t step = 0; step < 4; ++step) {  // round s replays sample s of every prompt
    std::vector<GroupRequest> round;
    for (const std::string& p : prompts) {
      GroupRequest g;
      g.group_id = p + "/" + std::to_string(step);
      g.prompt_id = p;
      g.prompt_tokens = prompt_tokens[p];
      g.max_new_tokens = 64;
      g.trace_sample_offset = step;
      round.push_back(g);
    }
    rounds.push_back(round);
  }
  return testing::run_rounds(e, rounds);
}

TEST(TraceForced, EmitsTheRecordedTokensAndAcceptsDraftsFromHistory) {
  const std::vector<RecordedRollout> trace = load_trace_jsonl(kTrace, 2048);
  ASSERT_EQ(trace.size(), 12u);
  const ForcedTrajectories forced = forced_from_trace(trace);
  const testing::RunResult spec = run_forced(true, trace);
  const testing::RunResult plain = run_forced(false, trace);
  ASSERT_EQ(spec.by_uid.size(), 12u);
  for (const auto& [uid, t] : spec.by_uid) {
    const int32_t offset = std::stoi(t.group_id.substr(t.group_id.find('/') + 1));
    EXPECT_EQ(t.response_tokens, forced.at({t.prompt_id, offset})) << t.group_id;
    EXPECT_EQ(t.finish_reason, FinishReason::kStop);
    EXPECT_EQ(t.response_tokens, plain.by_uid.at(uid).response_tokens);
  }
  EXPECT_GT(spec.stats.tokens_accepted, 0);
  EXPECT_LT(spec.stats.forward_passes, plain.stats.forward_passes);
  EXPECT_EQ(plain.stats.tokens_drafted, 0);
}

TEST(TraceForced, LoaderNamesTheBadLine) {
  const fs::path dir = fs::temp_directory_path() / ("longtail_trace_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string good = R"({"prompt_id": "a", "sample": 0, "prompt_tokens": [1, 2], "response_tokens": [3]})";
  const std::pair<std::string, std::string> cases[] = {
      {"{not json", "malformed JSON"},
      {R"({"sample": 0, "prompt_tokens": [1], "response_tokens": [3]})", "prompt_id"},
      {R"({"prompt_id": "a", "sample": 0, "prompt_tokens": [1, -4], "response_tokens": [3]})", "-4 is a negative token id"},
      {R"({"prompt_id": "a", "sample": 0, "prompt_tokens": [1], "response_tokens": "x"})", "response_tokens"},
      {R"({"prompt_id": "a", "sample": -1, "prompt_tokens": [1], "response_tokens": [3]})", "sample"},
  };
  for (const auto& [line, needle] : cases) {
    const fs::path f = dir / "t.jsonl";
    std::ofstream(f) << good << "\n\n" << line << "\n";
    try {
      load_trace_jsonl(f);
      ADD_FAILURE() << "accepted: " << line;
    } catch (const std::runtime_error& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("t.jsonl:3"), std::string::npos) << what;
      EXPECT_NE(what.find(needle), std::string::npos) << what;
    }
  }
  EXPECT_THROW(load_trace_jsonl(dir / "missing.jsonl"), std::runtime_error);
  const auto mapped = load_trace_jsonl(kTrace, 100);
  for (const auto& r : mapped) {
    for (int32_t t : r.response_tokens) EXPECT_LT(t, 100);
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace longtail::rollout
