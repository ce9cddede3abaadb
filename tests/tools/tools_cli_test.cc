// The executables as a user runs them: --version on every one, longtail-keygen refusing to replace
// a key pair, longtail-replay keeping stdout machine-readable, exporting logs as JSONL and streaming
// without leaving files behind.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "rollout/engine_options_io.h"
#include "rollout/rollout_jsonl.h"
#include "rollout/trajectory_log.h"
#include "testing/cli_run.h"
#include "trainer_bridge/trainer_client.h"

namespace longtail {
namespace {

using test::run_cli;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

// A fresh empty directory per test.
fs::path fresh_dir(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("longtail_tools_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(ToolsCli, EveryExecutablePrintsItsVersionAndCommit) {
  std::stringstream names(LONGTAIL_TOOLS_BINS);
  std::string name;
  int n = 0;
  const fs::path dir = fresh_dir("version");
  while (std::getline(names, name, ',')) {
    const std::string bin = std::string(LONGTAIL_BIN_DIR) + "/" + name;
    ++n;
    // From an empty directory: --version must not create anything (keygen once wrote
    // "--version.key").
    const auto r = run_cli("cd " + dir.string() + " && " + bin + " --version");
    EXPECT_EQ(r.code, 0) << bin << ": " << r.err;
    EXPECT_EQ(r.out.rfind(name + " " + LONGTAIL_PROJECT_VERSION + " (commit ", 0), 0u) << r.out;
    EXPECT_EQ(fs::directory_iterator(dir), fs::directory_iterator()) << bin << " wrote files";
  }
  EXPECT_EQ(n, 7);
}

// longtail-bench-rounds takes every key of the engine option table as a flag (with its older
// spellings as aliases), and --backend accounting for its trace-forced runs; the tools whose
// outputs are real samples refuse accounting by the table's rule.
TEST(ToolsCli, BenchRoundsTakesTheEngineTableAndTheAccountingBackend) {
  const std::string bench = std::string(LONGTAIL_BIN_DIR) + "/longtail-bench-rounds --model " + LONGTAIL_SOURCE_DIR +
                            "/configs/models/tiny-qwen3";
  const std::string trace = std::string(" --trace ") + LONGTAIL_REPLAY_DATA + "/tiny.jsonl -R 1 -G 1 --n 2";
  const auto r = run_cli(bench + " --backend accounting" + trace +
                         " --json --drafter-min-prob 0.5 --speculation-mode fixed --budget 3");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j.at("config").at("backend"), "accounting");
  EXPECT_EQ(j.at("config").at("budget"), 3);
  ASSERT_EQ(j.at("modes").size(), 3u);
  for (const auto& m : j.at("modes")) EXPECT_EQ(m.at("response_tokens"), 10) << m.at("mode");  // 5 + 5 forced

  const auto out_of_range = run_cli(bench + trace + " --speculation-max-budget 5000");
  EXPECT_EQ(out_of_range.code, 2);
  EXPECT_NE(out_of_range.err.find("--speculation-max-budget: option 'speculation.max_budget' expects an integer in "
                                  "[0, 1024] (tokens), got '5000'"),
            std::string::npos)
      << out_of_range.err;
  const auto bad_trace = run_cli(bench + " --backend accounting --trace " + LONGTAIL_REPLAY_DATA + "/bad_lines.jsonl");
  EXPECT_EQ(bad_trace.code, 2);
  EXPECT_NE(bad_trace.err.find("bad_lines.jsonl:2: malformed JSON"), std::string::npos) << bad_trace.err;
  const auto no_model = run_cli(std::string(LONGTAIL_BIN_DIR) + "/longtail-bench-rounds --model /nonexistent/model");
  EXPECT_EQ(no_model.code, 2);
  EXPECT_NE(no_model.err.find("/nonexistent/model"), std::string::npos) << no_model.err;
  const auto untraced = run_cli(bench + " --backend accounting");
  EXPECT_EQ(untraced.code, 2);
  EXPECT_NE(untraced.err.find("--backend accounting needs --trace"), std::string::npos) << untraced.err;
  const auto demo = run_cli(std::string(LONGTAIL_BIN_DIR) + "/longtail-demo --backend accounting");
  EXPECT_EQ(demo.code, 2);
  EXPECT_NE(demo.err.find("option 'backend.kind' expects one of cpu, cuda, got 'accounting'"), std::string::npos)
      << demo.err;
}

// --steps-jsonl: one line per forward of every mode, whose counts add up to the modes' totals; a
// path that cannot be written is refused before anything runs.
TEST(ToolsCli, BenchRoundsWritesEveryForwardsStatistics) {
  const std::string bench = std::string(LONGTAIL_BIN_DIR) + "/longtail-bench-rounds --model " + LONGTAIL_SOURCE_DIR +
                            "/configs/models/tiny-qwen3 --backend accounting --trace " + LONGTAIL_REPLAY_DATA +
                            "/tiny.jsonl -R 1 -G 1 --n 2 --json";
  const fs::path dir = fresh_dir("steps");
  const fs::path log = dir / "steps.jsonl";
  const auto r = run_cli(bench + " --steps-jsonl " + log.string());
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  std::map<std::string, int64_t> forwards, verified;
  std::ifstream in(log);
  std::string line;
  while (std::getline(in, line)) {
    const auto s = nlohmann::json::parse(line);
    const std::string mode = s.at("mode");
    ++forwards[mode];
    verified[mode] += s.at("tokens_verified").get<int64_t>();
    EXPECT_GT(s.at("sequences").get<int>(), 0);
    EXPECT_GE(s.at("context_positions").get<int64_t>(), 0);
    EXPECT_GE(s.at("forward_us").get<double>(), 0.0);
    EXPECT_TRUE(s.at("token_trees").is_boolean());
  }
  ASSERT_EQ(j.at("modes").size(), 3u);
  for (const auto& m : j.at("modes")) {
    const std::string mode = m.at("mode");
    EXPECT_EQ(forwards[mode], m.at("forward_passes").get<int64_t>()) << mode;
    EXPECT_EQ(verified[mode], m.at("tokens_verified").get<int64_t>()) << mode;
  }
  const auto unwritable = run_cli(bench + " --steps-jsonl " + (dir / "missing" / "steps.jsonl").string());
  EXPECT_EQ(unwritable.code, 2);
  EXPECT_NE(unwritable.err.find("--steps-jsonl: cannot write"), std::string::npos) << unwritable.err;
  fs::remove_all(dir);
}

// Every key of the engine option table is a flag of every tool that runs the engine, but for the
// keys a tool sets itself (its modes or its one round), so no tool exposes a hand-picked subset.
TEST(ToolsCli, EveryEngineRunningToolTakesEveryTableKey) {
  const std::map<std::string, std::set<std::string>> set_by_the_tool = {
      {"longtail-demo", {"round_groups", "overprovision", "speculation.enabled"}},
      {"longtail-generate", {"round_groups", "overprovision"}},
      {"longtail-bench-rounds", {"round_groups", "overprovision", "speculation.enabled", "speculation.cost_model"}},
      {"longtail-worker", {}}};
  for (const auto& [tool, own] : set_by_the_tool) {
    const auto r = run_cli(std::string(LONGTAIL_BIN_DIR) + "/" + tool + " --help");
    ASSERT_EQ(r.code, 0) << tool << ": " << r.err;
    for (const rollout::OptionSpec& s : rollout::engine_option_table()) {
      std::string flag = "--" + s.key;
      std::replace(flag.begin(), flag.end(), '.', '-');
      std::replace(flag.begin(), flag.end(), '_', '-');
      // (An own key may still have a flag of the tool's: the demo's --overprovision is its third mode's f.)
      if (!own.count(s.key)) EXPECT_NE(r.out.find(flag + " "), std::string::npos) << tool << " lacks " << flag;
    }
  }
}

TEST(ToolsCli, KeygenRefusesToReplaceAKeyPairUnlessForced) {
  const fs::path dir = fresh_dir("keygen");
  const std::string prefix = (dir / "worker").string();
  const auto first = run_cli(std::string(LONGTAIL_KEYGEN_BIN) + " " + prefix);
  ASSERT_EQ(first.code, 0) << first.err;
  const std::string secret = read_file(prefix + ".key"), pub = read_file(prefix + ".pub");
  EXPECT_EQ(pub, first.out);
  struct stat st {};
  ASSERT_EQ(::stat((prefix + ".key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  const auto again = run_cli(std::string(LONGTAIL_KEYGEN_BIN) + " " + prefix);
  EXPECT_EQ(again.code, 2);
  EXPECT_NE(again.err.find("exists"), std::string::npos) << again.err;
  EXPECT_NE(again.err.find("--force"), std::string::npos) << again.err;
  EXPECT_EQ(read_file(prefix + ".key"), secret) << "the secret key was replaced";
  EXPECT_EQ(read_file(prefix + ".pub"), pub);

  fs::remove(prefix + ".key");  // half a pair is refused too: the public key may be trusted
  EXPECT_EQ(run_cli(std::string(LONGTAIL_KEYGEN_BIN) + " " + prefix).code, 2);

  const auto forced = run_cli(std::string(LONGTAIL_KEYGEN_BIN) + " --force " + prefix);
  ASSERT_EQ(forced.code, 0) << forced.err;
  EXPECT_NE(read_file(prefix + ".pub"), pub);
  EXPECT_EQ(read_file(prefix + ".pub"), forced.out);
  ASSERT_EQ(::stat((prefix + ".key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(run_cli(std::string(LONGTAIL_KEYGEN_BIN) + " --bogus " + prefix).code, 2);
  EXPECT_EQ(run_cli(std::string(LONGTAIL_KEYGEN_BIN)).code, 2);
}

TEST(ToolsCli, ReplayJsonStaysParseableWhenLinesAreSkipped) {
  // Without --quiet the skip warnings are printed: they belong on stderr, not in the JSON.
  const auto r = run_cli(std::string(LONGTAIL_REPLAY_BIN) + " " + LONGTAIL_REPLAY_DATA + "/bad_lines.jsonl --json");
  ASSERT_EQ(r.code, 0) << r.err;
  nlohmann::json j;
  ASSERT_NO_THROW(j = nlohmann::json::parse(r.out)) << r.out;
  EXPECT_EQ(j["skipped_lines"], 4);
  EXPECT_EQ(j["rollouts"], 2);
  EXPECT_NE(r.err.find("skipped"), std::string::npos) << r.err;
}

TEST(ToolsCli, ReplayStopsOnABadLineWithAnErrorExit) {
  const auto r = run_cli(std::string(LONGTAIL_REPLAY_BIN) + " " + LONGTAIL_REPLAY_DATA +
                         "/bad_lines.jsonl --on-error stop --quiet");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("bad_lines.jsonl:2: malformed JSON"), std::string::npos) << r.err;
  EXPECT_EQ(r.out, "");
}

rollout::Trajectory logged(uint64_t uid, const std::string& prompt, int32_t sample, int len) {
  rollout::Trajectory t;
  t.uid = uid;
  t.group_id = prompt + "/g";
  t.prompt_id = prompt;
  t.sample_index = sample;
  t.prompt_tokens = {1, 2, 3};
  for (int i = 0; i < len; ++i) {
    t.response_tokens.push_back(10 + i);
    t.behaviour_logprobs.push_back(-0.5f * static_cast<float>(i));
    t.policy_versions.push_back(4);
  }
  t.finish_reason = rollout::FinishReason::kStop;
  t.reward = 0.75;
  t.has_reward = true;
  return t;
}

TEST(ToolsCli, ReplayExportsATrajectoryLogAsJsonlThatReplaysTheSame) {
  const fs::path dir = fresh_dir("export");
  const fs::path log = dir / "run.ltlog";
  {
    rollout::TrajectoryLogWriter w(log);
    w.write(logged(1, "p", 0, 5));
    w.write(logged(2, "q", 0, 3));
    w.write_round(0, 4);
    w.write(logged(3, "p", 1, 6));
    w.write_round(1, 5);
  }
  const auto r = run_cli(std::string(LONGTAIL_REPLAY_BIN) + " " + log.string() + " --export jsonl");
  ASSERT_EQ(r.code, 0) << r.err;
  std::ofstream(dir / "run.jsonl") << r.out;
  const auto rows = rollout::read_rollout_jsonl(dir / "run.jsonl");
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].prompt_id, "p");
  EXPECT_EQ(rows[0].step, std::optional<int64_t>(0));
  EXPECT_EQ(rows[2].step, std::optional<int64_t>(1));
  EXPECT_EQ(rows[2].response_tokens, logged(3, "p", 1, 6).response_tokens);
  std::stringstream lines(r.out);
  std::string first;
  std::getline(lines, first);
  const auto j = nlohmann::json::parse(first);
  EXPECT_EQ(j["uid"], 1);
  EXPECT_EQ(j["finish_reason"], "stop");
  EXPECT_EQ(j["reward"], 0.75);
  EXPECT_EQ(j["policy_version"], 4);
  EXPECT_EQ(j["behaviour_logprobs"].size(), 5u);
  EXPECT_EQ(j["policy_versions"][0], 4);

  // The export replays exactly like the log it came from.
  const auto a = run_cli(std::string(LONGTAIL_REPLAY_BIN) + " " + log.string() + " --json --quiet");
  const auto b = run_cli(std::string(LONGTAIL_REPLAY_BIN) + " " + (dir / "run.jsonl").string() + " --json --quiet");
  ASSERT_EQ(a.code, 0) << a.err;
  ASSERT_EQ(b.code, 0) << b.err;
  auto ja = nlohmann::json::parse(a.out), jb = nlohmann::json::parse(b.out);
  for (const char* k : {"rollouts", "response_tokens", "verify_steps", "drafted_tokens", "accepted_tokens"}) {
    EXPECT_EQ(ja[k], jb[k]) << k;
  }
  EXPECT_EQ(run_cli(std::string(LONGTAIL_REPLAY_BIN) + " " + log.string() + " --export csv").code, 2);
}

TEST(ToolsCli, ReplayStreamDeliversJsonlAndLeavesNoFileBehind) {
  const fs::path dir = fresh_dir("stream");
  const fs::path tmp = dir / "tmp";
  fs::create_directories(tmp);
  {
    std::ofstream out(dir / "trace.jsonl");
    for (int s = 0; s < 2; ++s) {
      for (int p = 0; p < 3; ++p) {
        out << rollout::rollout_jsonl_line({"p" + std::to_string(p), s, s, {1, 2}, {5, 6, 7}, 0}) << "\n";
      }
    }
  }
  const std::string endpoint = "ipc://" + (dir / "s.sock").string();
  test::CliResult result;
  std::thread replay([&] {
    result = run_cli("TMPDIR=" + tmp.string() + " " + LONGTAIL_REPLAY_BIN + " " + (dir / "trace.jsonl").string() +
                     " --stream " + endpoint);
  });
  size_t trajectories = 0, batches = 0;
  {
    bridge::TrainerClient c(endpoint, "t");
    c.send(bridge::Hello{bridge::kProtocolVersion, "t", 8});
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    while (trajectories < 6 && std::chrono::steady_clock::now() < deadline) {
      auto m = c.recv(1s);
      if (!m) continue;
      if (auto* b = std::get_if<bridge::Batch>(&*m)) {
        c.send(bridge::Ack{{b->seq}});
        trajectories += b->trajectories.size();
        ++batches;
      }
    }
    replay.join();
  }
  EXPECT_EQ(result.code, 0) << result.err;
  EXPECT_EQ(trajectories, 6u);
  EXPECT_EQ(batches, 2u);  // one per recorded step
  EXPECT_EQ(fs::directory_iterator(tmp), fs::directory_iterator()) << "a temporary file was left in TMPDIR";
}

}  // namespace
}  // namespace longtail
