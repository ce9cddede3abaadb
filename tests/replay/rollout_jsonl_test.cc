// The one rollout-JSONL parser (rollout/rollout_jsonl.h): each rule of the header, line numbers in
// errors, skip/stop, and the writer's lines reading back unchanged.
#include "rollout/rollout_jsonl.h"

#include <gtest/gtest.h>

#include <fstream>

namespace longtail::rollout {
namespace {

std::string error_of(const std::string& line) {
  try {
    parse_rollout_line(line, 7);
  } catch (const RolloutFormatError& e) {
    EXPECT_EQ(e.line(), 7);
    return e.what();
  }
  return "";
}

TEST(RolloutJsonl, TheRuleFieldByField) {
  const auto r = parse_rollout_line(
      R"({"prompt_id": 12, "sample": 3, "step": 5, "prompt_tokens": [1, 2], "response_tokens": [2147483647], "extra": {"x": 1}})",
      4);
  EXPECT_EQ(r.prompt_id, "12");  // an integer id is kept as its decimal text
  EXPECT_EQ(r.sample, 3);
  ASSERT_TRUE(r.step.has_value());
  EXPECT_EQ(*r.step, 5);
  EXPECT_EQ(r.prompt_tokens, (std::vector<int32_t>{1, 2}));
  EXPECT_EQ(r.response_tokens, (std::vector<int32_t>{2147483647}));
  EXPECT_EQ(r.source_line, 4);
  EXPECT_FALSE(parse_rollout_line(R"({"prompt_id": "a", "sample": 0, "step": null, "prompt_tokens": [], "response_tokens": []})", 1)
                   .step.has_value());

  EXPECT_NE(error_of(R"({"prompt_id": "a", "sample": -1, "prompt_tokens": [1], "response_tokens": [2]})").find("'sample' = -1"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"prompt_id": "a", "sample": 2147483648, "prompt_tokens": [1], "response_tokens": [2]})").find("sample"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"prompt_id": "a", "sample": 0, "step": -2, "prompt_tokens": [1], "response_tokens": [2]})").find("'step' = -2 is negative"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"prompt_id": 1.5, "sample": 0, "prompt_tokens": [1], "response_tokens": [2]})").find("'prompt_id' is not a string or an integer"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"prompt_id": "a", "sample": 0, "prompt_tokens": [1], "response_tokens": [2147483648]})").find("does not fit"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"prompt_id": "a", "sample": 0, "prompt_tokens": [1], "response_tokens": "12"})").find("'response_tokens' is not an array"),
            std::string::npos);
  EXPECT_EQ(error_of("{}").rfind("line 7: missing field 'prompt_id'", 0), 0u);
}

TEST(RolloutJsonl, FilesNameTheLineAndSkipOrStop) {
  const std::string path = ::testing::TempDir() + "/rollout_jsonl_test.jsonl";
  RecordedRollout a{"p", 0, 2, {1, 2}, {3, 4, 5}, 0};
  RecordedRollout b{"q", 1, std::nullopt, {7}, {}, 0};
  std::ofstream(path) << rollout_jsonl_line(a) << "\n\n{\"prompt_id\": \"x\"\n" << rollout_jsonl_line(b) << "\n";
  try {
    read_rollout_jsonl(path);
    ADD_FAILURE() << "a malformed line was accepted";
  } catch (const RolloutFormatError& e) {
    EXPECT_EQ(e.line(), 3);
    EXPECT_EQ(std::string(e.what()).rfind(path + ":3: malformed JSON", 0), 0u) << e.what();
  }
  std::vector<RecordedRollout> got;
  std::vector<std::string> skipped;
  read_rollout_jsonl(
      path, OnError::kSkip, [&](RecordedRollout&& r) { got.push_back(std::move(r)); },
      [&](const RolloutFormatError& e) { skipped.push_back(e.what()); });
  ASSERT_EQ(got.size(), 2u);
  ASSERT_EQ(skipped.size(), 1u);
  EXPECT_EQ(got[0].prompt_id, "p");
  EXPECT_EQ(got[0].step, std::optional<int64_t>(2));
  EXPECT_EQ(got[0].response_tokens, a.response_tokens);
  EXPECT_EQ(got[0].source_line, 1);
  EXPECT_EQ(got[1].prompt_id, "q");
  EXPECT_FALSE(got[1].step.has_value());
  EXPECT_EQ(got[1].source_line, 4);
  EXPECT_THROW(read_rollout_jsonl("/nonexistent/x.jsonl"), RolloutFormatError);
}

}  // namespace
}  // namespace longtail::rollout
