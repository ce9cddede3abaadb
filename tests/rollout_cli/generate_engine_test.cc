// longtail-generate over the rollout engine: speculation on and off print the same tokens and
// logprobs (greedy and T = 1, several prompts, n > 1) while a history file built from an earlier
// run makes drafts accepted and forward passes drop; the --stats line; clear exit-2 errors.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "testing/cli_run.h"

namespace {

using longtail::test::CliResult;
using longtail::test::run_cli;
using longtail::test::temp_path;
using nlohmann::json;

const std::vector<std::vector<int>> kPrompts = {{1, 2, 3, 4}, {17, 300, 5}, {9, 9, 9, 9, 9, 1000}};

std::string prompt_flags() {
  std::string s;
  for (const auto& p : kPrompts) {
    s += " --prompt ";
    for (size_t i = 0; i < p.size(); ++i) s += (i ? "," : "") + std::to_string(p[i]);
  }
  return s;
}

CliResult generate(const std::string& args) {
  return run_cli(std::string(LONGTAIL_GENERATE_BIN) + " --model " + LONGTAIL_TINY_MODEL + " --threads 1 " + args);
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) out.push_back(line);
  return out;
}

// The replay tool's JSONL format, from a run's output lines: what a trainer would have logged.
std::filesystem::path write_history(const std::vector<std::string>& lines, const std::string& name) {
  const auto path = temp_path(name);
  std::ofstream out(path);
  for (const std::string& l : lines) {
    const json j = json::parse(l);
    const int p = j.at("prompt_index");
    out << json{{"prompt_id", p},
                {"sample", j.at("sample")},
                {"step", 0},
                {"prompt_tokens", kPrompts[p]},
                {"response_tokens", j.at("tokens")}}
               .dump()
        << "\n";
  }
  return path;
}

struct Stats {
  int64_t forward_passes, tokens, drafted, accepted;
};

Stats parse_stats(const std::string& line) {
  const json j = json::parse(line);
  EXPECT_EQ(j.size(), 4u) << line;
  for (const char* k : {"forward_passes", "tokens", "drafted_tokens", "accepted_tokens"}) {
    EXPECT_TRUE(j.contains(k) && j.at(k).is_number_integer()) << k << " in " << line;
  }
  return {j.at("forward_passes"), j.at("tokens"), j.at("drafted_tokens"), j.at("accepted_tokens")};
}

void check_on_off(const std::string& sampling) {
  const std::string base = prompt_flags() + " --n 3 --max-new-tokens 40 --seed 11 " + sampling;
  const CliResult first = generate(base + " --speculation off");
  ASSERT_EQ(first.code, 0) << first.err;
  const std::vector<std::string> first_lines = lines_of(first.out);
  ASSERT_EQ(first_lines.size(), kPrompts.size() * 3);
  for (size_t i = 0; i < first_lines.size(); ++i) {  // (prompt_index, sample) order
    const json j = json::parse(first_lines[i]);
    EXPECT_EQ(j.at("prompt_index"), i / 3);
    EXPECT_EQ(j.at("sample"), i % 3);
  }
  const auto history = write_history(first_lines, "history.jsonl");

  const CliResult off = generate(base + " --speculation off --stats --history " + history.string());
  const CliResult on = generate(base + " --speculation on --stats --history " + history.string());
  const CliResult fixed =
      generate(base + " --speculation on --budget-policy fixed --max-draft 4 --stats --history " + history.string());
  const CliResult cold = generate(base + " --speculation on --stats");
  std::filesystem::remove(history);
  for (const CliResult* r : {&off, &on, &fixed, &cold}) {
    ASSERT_EQ(r->code, 0) << r->err;
    std::vector<std::string> l = lines_of(r->out);
    ASSERT_EQ(l.size(), first_lines.size() + 1) << r->out;
    l.pop_back();
    EXPECT_EQ(l, first_lines) << "speculation or history changed the output";
  }
  const Stats s_off = parse_stats(lines_of(off.out).back());
  const Stats s_on = parse_stats(lines_of(on.out).back());
  const Stats s_fixed = parse_stats(lines_of(fixed.out).back());
  int64_t tokens = 0;
  for (const auto& l : first_lines) tokens += json::parse(l).at("tokens").size();
  for (const Stats& s : {s_off, s_on, s_fixed}) {
    EXPECT_EQ(s.tokens, tokens);
    EXPECT_LE(s.accepted, s.drafted);
  }
  EXPECT_EQ(s_off.drafted, 0);
  EXPECT_GT(s_on.accepted, 0);
  EXPECT_LT(s_on.forward_passes, s_off.forward_passes);
  EXPECT_GT(s_fixed.accepted, 0);
  EXPECT_LT(s_fixed.forward_passes, s_off.forward_passes);
}

TEST(GenerateEngineTest, SpeculationOnAndOffPrintTheSameGreedyOutput) { check_on_off("--temperature 0"); }

TEST(GenerateEngineTest, SpeculationOnAndOffPrintTheSameSampledOutput) {
  check_on_off("--temperature 1 --top-p 0.95");
}

TEST(GenerateEngineTest, PromptIdsLinkHistoryToPrompts) {
  // One history rollout filed under "b", the --prompt-id of the second prompt: its samples draft
  // from it and get drafts accepted; the output is what speculation off printed.
  const CliResult first = generate("--prompt 5,6,7 --prompt 8,9 --prompt-id a --prompt-id b --n 2 "
                                   "--max-new-tokens 24 --temperature 0 --speculation off");
  ASSERT_EQ(first.code, 0) << first.err;
  const auto path = temp_path("ids.jsonl");
  {
    std::ofstream out(path);
    const json j = json::parse(lines_of(first.out)[2]);  // prompt 1, sample 0
    out << json{{"prompt_id", "b"}, {"sample", 0}, {"prompt_tokens", {8, 9}}, {"response_tokens", j.at("tokens")}}
               .dump()
        << "\n";
  }
  const CliResult on = generate("--prompt 5,6,7 --prompt 8,9 --prompt-id a --prompt-id b --n 2 "
                                "--max-new-tokens 24 --temperature 0 --stats --history " + path.string());
  std::filesystem::remove(path);
  ASSERT_EQ(on.code, 0) << on.err;
  auto l = lines_of(on.out);
  const Stats s = parse_stats(l.back());
  l.pop_back();
  EXPECT_EQ(l, lines_of(first.out));
  EXPECT_GT(s.accepted, 0);
}

TEST(GenerateEngineTest, SampleUidIsOnePlusPromptIndexTimesNPlusSample) {
  // The documented rule: sample s of prompt p draws with uid 1 + p*n + s. Prompt B as (p=1, s=0)
  // with n = 2 and as (p=2, s=0) with n = 1 has uid 3 both times, so it samples the same tokens.
  const CliResult two = generate("--prompt 1,2 --prompt 7,8,9 --n 2 --max-new-tokens 12 --seed 3");
  const CliResult one = generate("--prompt 1,2 --prompt 1,2 --prompt 7,8,9 --n 1 --max-new-tokens 12 --seed 3");
  ASSERT_EQ(two.code, 0) << two.err;
  ASSERT_EQ(one.code, 0) << one.err;
  const json a = json::parse(lines_of(two.out).at(2)), b = json::parse(lines_of(one.out).at(2));
  EXPECT_EQ(a.at("tokens"), b.at("tokens"));
  EXPECT_EQ(a.at("logprobs"), b.at("logprobs"));
  // ...and another uid gives another sample (T = 1 over a 2048-token vocabulary).
  EXPECT_NE(json::parse(lines_of(two.out).at(3)).at("tokens"), a.at("tokens"));
}

TEST(GenerateEngineTest, PromptsFileCarriesPromptIds) {
  const auto path = temp_path("prompts.jsonl");
  std::ofstream(path) << "{\"prompt_id\": \"x\", \"prompt_tokens\": [1, 2]}\n{\"prompt_tokens\": [3]}\n";
  const CliResult r = generate("--prompts " + path.string() + " --max-new-tokens 4 --temperature 0");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(lines_of(r.out).size(), 2u);
  std::ofstream(path) << "{\"prompt_id\": [1], \"prompt_tokens\": [1, 2]}\n";
  const CliResult bad = generate("--prompts " + path.string());
  std::filesystem::remove(path);
  EXPECT_EQ(bad.code, 2);
  EXPECT_NE(bad.err.find(path.string() + ":1: \"prompt_id\""), std::string::npos) << bad.err;
}

TEST(GenerateEngineTest, BadTokenIdExitsWithTwoAndSaysWhy) {
  const CliResult r = generate("--prompt 1,2,5000");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("--prompt #1: prompt token 5000 at index 2 is outside the model's vocabulary"),
            std::string::npos)
      << r.err;
  EXPECT_TRUE(r.out.empty());
}

TEST(GenerateEngineTest, BadHistoryLineNamesItsLine) {
  const auto path = temp_path("bad_history.jsonl");
  std::ofstream(path) << "{\"prompt_id\": \"0\", \"sample\": 0, \"prompt_tokens\": [1], \"response_tokens\": [2]}\n"
                      << "\n"
                      << "{\"prompt_id\": \"0\", \"sample\": 1, \"prompt_tokens\": [1]}\n";
  CliResult r = generate("--prompt 1,2 --history " + path.string());
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find(path.string() + ":3: missing field 'response_tokens'"), std::string::npos) << r.err;

  std::ofstream(path) << "{\"prompt_id\": \"0\", \"sample\": 0, \"prompt_tokens\": [1], \"response_tokens\": [2, 4096]}\n";
  r = generate("--prompt 1,2 --history " + path.string());
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find(path.string() + ":1: response token 4096"), std::string::npos) << r.err;

  std::ofstream(path) << "not json\n";
  r = generate("--prompt 1,2 --history " + path.string());
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find(path.string() + ":1: malformed JSON"), std::string::npos) << r.err;
  std::filesystem::remove(path);

  r = generate("--prompt 1,2 --history /nonexistent/history.jsonl");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("cannot open"), std::string::npos) << r.err;
}

TEST(GenerateEngineTest, BadFlagsExitWithTwo) {
  for (const char* args : {"--prompt 1 --speculation maybe", "--prompt 1 --budget-policy greedy",
                           "--prompt 1 --max-draft -1", "--prompt 1 --prompt 2 --prompt-id a",
                           "--prompt 1 --history-window 0", "--prompt 1 --n 0"}) {
    const CliResult r = generate(args);
    EXPECT_EQ(r.code, 2) << args << ": " << r.err;
    EXPECT_NE(r.err.find("error"), std::string::npos) << args << ": " << r.err;
  }
}

TEST(GenerateEngineTest, ContextLimitReadsLength) {
  // 4090 prompt tokens in a 4096-token context: at most 6 new tokens, reported as "length" as the
  // plain decode loop did (the engine's own reason is "context").
  std::string prompt = "1";
  for (int i = 1; i < 4090; ++i) prompt += "," + std::to_string(3 + i % 2000);
  const CliResult r = generate("--prompt " + prompt + " --max-new-tokens 50 --temperature 0 --stop-token 0");
  ASSERT_EQ(r.code, 0) << r.err;
  const json j = json::parse(lines_of(r.out).at(0));
  EXPECT_EQ(j.at("finish_reason"), "length");
  EXPECT_LE(j.at("tokens").size(), 6u);
  EXPECT_GE(j.at("tokens").size(), 1u);
}

TEST(GenerateEngineTest, ZeroNewTokensPrintsEmptyResponses) {
  const CliResult r = generate("--prompt 1,2 --n 2 --max-new-tokens 0 --stats");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto l = lines_of(r.out);
  ASSERT_EQ(l.size(), 3u);
  EXPECT_TRUE(json::parse(l[0]).at("tokens").empty());
  EXPECT_EQ(json::parse(l[0]).at("finish_reason"), "length");
  EXPECT_EQ(parse_stats(l[2]).forward_passes, 0);
}

TEST(GenerateEngineTest, VllmNames) {
  // --max-tokens is vLLM's name for --max-new-tokens; -1 is vLLM's "no top-k"; --stop-token-ids
  // adds to the checkpoint's eos ids instead of replacing them.
  const CliResult a = generate("--prompt 1,2,3 --n 2 --max-tokens 12 --seed 5 --top-k=-1 --min-p 0");
  const CliResult b = generate("--prompt 1,2,3 --n 2 --max-new-tokens 12 --seed 5 --top-k 0");
  ASSERT_EQ(a.code, 0) << a.err;
  ASSERT_EQ(b.code, 0) << b.err;
  EXPECT_EQ(a.out, b.out);
  EXPECT_EQ(json::parse(lines_of(a.out).at(0)).at("tokens").size() <= 12, true);
  EXPECT_EQ(generate("--prompt 1 --max-tokens 4 --max-new-tokens 5").code, 2);

  // Greedy tokens of a plain run; a stop id taken from its response ends the response there, and
  // eos still ends it (added, not replaced).
  const CliResult plain = generate("--prompt 1,2,3 --max-tokens 16 --temperature 0");
  ASSERT_EQ(plain.code, 0) << plain.err;
  const std::vector<int> tokens = json::parse(lines_of(plain.out).at(0)).at("tokens");
  ASSERT_GE(tokens.size(), 3u);
  const int stop = tokens[2];
  const CliResult stopped =
      generate("--prompt 1,2,3 --max-tokens 16 --temperature 0 --stop-token-ids " + std::to_string(stop));
  ASSERT_EQ(stopped.code, 0) << stopped.err;
  const json s = json::parse(lines_of(stopped.out).at(0));
  const std::vector<int> st = s.at("tokens");
  EXPECT_EQ(s.at("finish_reason"), "stop");
  EXPECT_EQ(st.back(), stop);
  EXPECT_LE(st.size(), 3u);

  // --ignore-eos: the eos set (here --stop-token, which replaces it) no longer ends the response;
  // --stop-token-ids still do.
  const std::string first = std::to_string(tokens[0]);
  const CliResult eos = generate("--prompt 1,2,3 --max-tokens 16 --temperature 0 --stop-token " + first);
  ASSERT_EQ(eos.code, 0) << eos.err;
  EXPECT_EQ(json::parse(lines_of(eos.out).at(0)).at("tokens").size(), 1u);
  const CliResult ignored = generate("--prompt 1,2,3 --max-tokens 16 --temperature 0 --ignore-eos --stop-token " + first);
  ASSERT_EQ(ignored.code, 0) << ignored.err;
  const json ig = json::parse(lines_of(ignored.out).at(0));
  const std::vector<int> ig_tokens = ig.at("tokens");
  EXPECT_EQ(ig_tokens.size(), 16u);
  EXPECT_TRUE(std::equal(tokens.begin(), tokens.end(), ig_tokens.begin())) << "ignoring eos must not change what is sampled";
  EXPECT_EQ(ig.at("finish_reason"), "length");
  const CliResult still = generate("--prompt 1,2,3 --max-tokens 16 --temperature 0 --ignore-eos --stop-token " + first +
                                   " --stop-token-ids " + std::to_string(stop));
  ASSERT_EQ(still.code, 0) << still.err;
  EXPECT_EQ(json::parse(lines_of(still.out).at(0)).at("finish_reason"), "stop");

  // --min-tokens: the same stop token can no longer end the response before 4 tokens (vLLM's
  // min_tokens masks the stop set there), and still ends it once allowed or at the length limit.
  const CliResult least = generate("--prompt 1,2,3 --max-tokens 16 --temperature 0 --stop-token " + first +
                                   " --min-tokens 4");
  ASSERT_EQ(least.code, 0) << least.err;
  const std::vector<int> least_tokens = json::parse(lines_of(least.out).at(0)).at("tokens");
  EXPECT_GE(least_tokens.size(), 4u);
  for (size_t i = 0; i < 3 && i < least_tokens.size(); ++i) EXPECT_NE(least_tokens[i], tokens[0]) << "position " << i;

  // Out of range is refused by the flag's name, never ignored.
  for (const char* args : {"--prompt 1 --min-tokens -1", "--prompt 1 --max-tokens 4 --min-tokens 5",
                           "--prompt 1 --top-k=-2", "--prompt 1 --min-p 1.5"}) {
    const CliResult r = generate(args);
    EXPECT_EQ(r.code, 2) << args;
  }
  EXPECT_NE(generate("--prompt 1 --max-tokens 4 --min-tokens 5").err.find("--min-tokens"), std::string::npos);
}

TEST(GenerateEngineTest, EveryEngineOptionIsAFlag) {
  // Keys of rollout/engine_options_io.h as flags, with typed errors naming the key.
  const CliResult ok = generate("--prompt 1,2 --max-tokens 6 --drafter-min-prob 0.2 --speculation-mode fixed "
                                "--backend-kv-block-size 8 --stats");
  EXPECT_EQ(ok.code, 0) << ok.err;
  const CliResult bad = generate("--prompt 1 --speculation-max-budget lots");
  EXPECT_EQ(bad.code, 2);
  EXPECT_NE(bad.err.find("option 'speculation.max_budget' expects an integer in [0, 1024] (tokens), got 'lots'"),
            std::string::npos)
      << bad.err;
}

}  // namespace
