// longtail-demo end to end, on a small workload: every mode emits the same trajectories, the JSON
// summary has the documented fields and consistent counts, and bad flags exit with 2.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <string>

#include "testing/cli_run.h"

namespace {

using longtail::test::CliResult;
using longtail::test::run_cli;
using nlohmann::json;

CliResult demo(const std::string& args) {
  return run_cli(std::string(LONGTAIL_DEMO_BIN) + " --model " + LONGTAIL_TINY_MODEL + " --threads 1 " + args);
}

TEST(DemoTest, ModesAgreeAndTheSummaryAddsUp) {
  const CliResult r = demo("--rounds 2 --groups 2 --samples 2 --max-new-tokens 48 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  const json j = json::parse(r.out);
  EXPECT_TRUE(j.at("identical").get<bool>());
  EXPECT_EQ(j.at("mismatched_trajectories"), 0);
  const json& modes = j.at("modes");
  ASSERT_EQ(modes.size(), 3u);
  EXPECT_EQ(modes[0].at("name"), "off");
  EXPECT_EQ(modes[0].at("drafted_tokens"), 0);
  for (const json& m : modes) {
    EXPECT_EQ(m.at("response_tokens"), modes[0].at("response_tokens")) << m.at("name");
    EXPECT_EQ(m.at("rounds").size(), 2u);
    EXPECT_LE(m.at("accepted_tokens"), m.at("drafted_tokens"));
    EXPECT_GT(m.at("forward_passes"), 0);
    const json& len = m.at("response_length");
    EXPECT_LE(len.at("min"), len.at("median"));
    EXPECT_LE(len.at("median"), len.at("max"));
    EXPECT_LE(len.at("max"), 48);
    const double share = m.at("off_policy_token_share");
    EXPECT_TRUE(share >= 0 && share <= 1);
  }
  // Nothing is carried over in synchronous rounds, so nothing is off-policy there.
  EXPECT_EQ(modes[0].at("off_policy_token_share"), 0.0);
  const json& sample = j.at("sample");
  EXPECT_EQ(sample.at("tokens").size(), sample.at("logprobs").size());
  EXPECT_LE(sample.at("tokens").size(), 24u);
}

TEST(DemoTest, PrintsAReadableSummary) {
  const CliResult r = demo("--rounds 1 --groups 1 --samples 2 --max-new-tokens 16 --overprovision 1");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("tokens/s"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("sample trajectory"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("trajectories das vs off: identical"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("das+partial"), std::string::npos) << "f = 1 skips the partial-rollout mode";
}

TEST(DemoTest, BadFlagsExitWithTwo) {
  for (const char* args : {"--rounds 0", "--samples 100", "--temperature -1", "--overprovision 0.5",
                           "--model /nonexistent/model", "--max-new-tokens 5000", "--no-such-flag"}) {
    const CliResult r = demo(args);
    EXPECT_EQ(r.code, 2) << args << ": " << r.err;
    EXPECT_NE(r.err.find("error"), std::string::npos) << args << ": " << r.err;
  }
}

}  // namespace
