// The prompt-file reader (rollout/prompts_jsonl.h) that longtail-demo and longtail-generate share:
// what it accepts, and that every refusal names the file, the line and the field (and the index
// of a bad token).
#include "rollout/prompts_jsonl.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>

#include "testing/temp_dir.h"

namespace longtail::rollout {
namespace {

// The error of reading `text` as a prompt file, with the file's path replaced by "F".
std::string error_of(const std::string& text, Responses responses = Responses::kIgnored) {
  const test::TempDir d("ltprompts");
  const auto f = d.write("p.jsonl", text);
  try {
    read_prompts_jsonl(f, responses);
  } catch (const PromptFormatError& e) {
    const std::string what = e.what();
    return what.rfind(f.string(), 0) == 0 ? "F" + what.substr(f.string().size()) : what;
  }
  return "";
}

TEST(PromptsJsonl, ReadsPromptIdsAndSkipsBlankLines) {
  const test::TempDir d("ltprompts");
  const auto f = d.write("p.jsonl",
                         "{\"prompt_tokens\": [1, 2], \"prompt_id\": \"a\"}\n"
                         "\n  \r\n"
                         "{\"prompt_tokens\": [3], \"prompt_id\": 7, \"extra\": true}\n"
                         // A rollout-JSONL line (examples.task prompts) is a prompt line too.
                         "{\"prompt_id\": \"s1-0\", \"sample\": 0, \"prompt_tokens\": [4], \"response_tokens\": [5]}\n"
                         "{\"prompt_tokens\": [6], \"prompt_id\": null}\n");
  const std::vector<PromptLine> p = read_prompts_jsonl(f);
  ASSERT_EQ(p.size(), 4u);
  EXPECT_EQ(p[0].prompt_tokens, (std::vector<int32_t>{1, 2}));
  EXPECT_EQ(p[0].prompt_id, "a");
  EXPECT_EQ(p[0].source_line, 1);
  EXPECT_EQ(p[1].prompt_id, "7");
  EXPECT_EQ(p[1].source_line, 4);
  EXPECT_EQ(p[2].prompt_id, "s1-0");
  EXPECT_TRUE(p[2].response_tokens.empty());  // responses are ignored unless asked for
  EXPECT_FALSE(p[3].prompt_id.has_value());
  EXPECT_EQ(p[3].source_line, 6);

  const std::vector<PromptLine> scored =
      read_prompts_jsonl(d.write("s.jsonl", "{\"prompt_tokens\": [1], \"response_tokens\": []}\n"
                                            "{\"prompt_tokens\": [1], \"response_tokens\": [8, 9]}\n"),
                         Responses::kRequired);
  ASSERT_EQ(scored.size(), 2u);
  EXPECT_TRUE(scored[0].response_tokens.empty());
  EXPECT_EQ(scored[1].response_tokens, (std::vector<int32_t>{8, 9}));
}

TEST(PromptsJsonl, ErrorsNameTheLineAndTheField) {
  EXPECT_EQ(error_of("{\"prompt_tokens\": [1]}\n\n{\"prompt_id\": \"x\"}\n"), "F:3: missing \"prompt_tokens\"");
  EXPECT_EQ(error_of("{\"prompt_tokens\": 5}\n"), "F:1: \"prompt_tokens\" is not a list");
  EXPECT_EQ(error_of("{\"prompt_tokens\": []}\n"), "F:1: \"prompt_tokens\" is empty");
  EXPECT_EQ(error_of("{\"prompt_tokens\": [1, -2]}\n"), "F:1: \"prompt_tokens\"[1] = -2 is not a token id");
  EXPECT_EQ(error_of("{\"prompt_tokens\": [1, 2, 2147483648]}\n"),
            "F:1: \"prompt_tokens\"[2] = 2147483648 is not a token id");
  EXPECT_EQ(error_of("{\"prompt_tokens\": [1.5]}\n"), "F:1: \"prompt_tokens\"[0] = 1.5 is not a token id");
  EXPECT_EQ(error_of("{\"prompt_tokens\": [1], \"prompt_id\": [1]}\n"),
            "F:1: \"prompt_id\" is not a string or an integer");
  EXPECT_EQ(error_of("[1, 2]\n"), "F:1: expected a JSON object");
  EXPECT_EQ(error_of("{\"prompt_tokens\": [1]}\n{\"prompt_tokens\": [1]\n").rfind("F:2: bad JSON: ", 0), 0u);
  EXPECT_EQ(error_of("{\"prompt_tokens\": [1]}\n", Responses::kRequired), "F:1: missing \"response_tokens\"");
  EXPECT_EQ(error_of("{\"prompt_tokens\": [1], \"response_tokens\": [\"a\"]}\n", Responses::kRequired),
            "F:1: \"response_tokens\"[0] = \"a\" is not a token id");
  EXPECT_EQ(error_of("\n\n"), "F: no prompts");
  try {
    read_prompts_jsonl("/nonexistent/prompts.jsonl");
    FAIL();
  } catch (const PromptFormatError& e) {
    EXPECT_EQ(std::string(e.what()), "/nonexistent/prompts.jsonl: cannot open");
    EXPECT_EQ(e.line(), 0);
  }
}

TEST(PromptsJsonl, TheBadLineIsAlsoGivenAsANumber) {
  const test::TempDir d("ltprompts");
  try {
    read_prompts_jsonl(d.write("p.jsonl", "{\"prompt_tokens\": [1]}\n{}\n"));
    FAIL();
  } catch (const PromptFormatError& e) {
    EXPECT_EQ(e.line(), 2);
  }
}

TEST(PromptsJsonl, VocabularyProblemNamesTheFirstIdOutside) {
  const std::vector<int32_t> ok = {0, 5, 2047}, bad = {1, 2048, 4096};
  EXPECT_EQ(vocabulary_problem(ok, 2048, "prompt"), "");
  EXPECT_EQ(vocabulary_problem(bad, 2048, "response"),
            "response token 2048 at index 1 is outside the model's vocabulary of 2048");
}

}  // namespace
}  // namespace longtail::rollout
