// longtail-generate end to end on the bundled tiny checkpoint: valid JSON lines with the documented
// keys, reproducible runs, and exit code 2 with the line number for bad input.
#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <sys/wait.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace {

struct Result {
  int code;
  std::string out;
};

Result run(const std::string& args) {
  const std::string cmd = std::string(LONGTAIL_GENERATE_BIN) + " --model " + LONGTAIL_TINY_MODEL + " " + args + " 2>&1";
  FILE* f = popen(cmd.c_str(), "r");
  std::string out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), f)) > 0) out.append(buf.data(), n);
  const int status = pclose(f);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

TEST(GenerateCliTest, PrintsOneJsonLinePerSample) {
  const auto r = run("--prompt 1,2,3 --prompt 4,5 --n 2 --max-new-tokens 16 --seed 7");
  ASSERT_EQ(r.code, 0) << r.out;
  std::istringstream in(r.out);
  std::string line;
  int lines = 0;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line);
    EXPECT_EQ(j.at("prompt_index"), lines / 2);
    EXPECT_EQ(j.at("sample"), lines % 2);
    EXPECT_EQ(j.at("tokens").size(), j.at("logprobs").size());
    const std::string fr = j.at("finish_reason");
    EXPECT_TRUE(fr == "length" ? j.at("tokens").size() == 16 : fr == "stop");
    ++lines;
  }
  EXPECT_EQ(lines, 4);
  EXPECT_EQ(run("--prompt 1,2,3 --prompt 4,5 --n 2 --max-new-tokens 16 --seed 7").out, r.out);
}

TEST(GenerateCliTest, ScoresResponses) {
  const auto path = std::filesystem::temp_directory_path() / ("longtail_score_" + std::to_string(::getpid()) + ".jsonl");
  std::ofstream(path) << "{\"prompt_tokens\": [1, 2], \"response_tokens\": [5, 6, 7]}\n";
  const auto r = run("--score " + path.string());
  ASSERT_EQ(r.code, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j.at("logprobs").size(), 3u);
  std::filesystem::remove(path);
}

TEST(GenerateCliTest, BadInputExitsWithTwoAndNamesTheLine) {
  const auto path = std::filesystem::temp_directory_path() / ("longtail_bad_" + std::to_string(::getpid()) + ".jsonl");
  std::ofstream(path) << "{\"prompt_tokens\": [1, 2]}\n\n{\"prompt_tokens\": [1, 99999]}\n";
  auto r = run("--prompts " + path.string());
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find(path.string() + ":3"), std::string::npos) << r.out;
  std::ofstream(path) << "{\"prompt_tokens\": [1, 2]\n";
  r = run("--prompts " + path.string());
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find(":1: bad JSON"), std::string::npos) << r.out;
  EXPECT_EQ(run("--prompt 1,-2").code, 2);
  EXPECT_EQ(run("--prompts /nonexistent.jsonl").code, 2);
  std::filesystem::remove(path);
}

}  // namespace
