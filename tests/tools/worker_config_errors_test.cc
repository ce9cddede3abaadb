// The worker configuration's errors come early and precise (issue 15 item 6): every key of the
// engine: and backend: sections goes through the engine option table, so a wrong type or a value out
// of range names the YAML path, what the key expects and the value found; the worker's own sections
// have the same shape; what needs the filesystem (model, weights.allowed_dirs) is checked before
// the model loads; longtail-worker exits 2 with that message without loading anything.
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>

#include "testing/cli_run.h"
#include "testing/temp_dir.h"
#include "trainer_bridge/worker_config.h"

namespace longtail::bridge {
namespace {

using test::TempDir;

// The ConfigError of loading `yaml`, without the file name prefix.
std::string load_error(const std::string& yaml) {
  TempDir d;
  const auto f = d.write("w.yaml", yaml);
  try {
    load_worker_config(f);
  } catch (const ConfigError& e) {
    const std::string what = e.what();
    return what.substr(f.string().size() + 2);
  }
  return "";
}

TEST(WorkerConfigErrors, EngineKeysNameTheYamlPathTheExpectedTypeAndTheValue) {
  EXPECT_EQ(load_error("engine:\n  speculation:\n    max_budget: lots\n"),
            "configuration key 'engine.speculation.max_budget' expects an integer in [0, 1024] (tokens), got 'lots'");
  EXPECT_EQ(load_error("engine:\n  speculation:\n    max_budget: 5000\n"),
            "configuration key 'engine.speculation.max_budget' expects an integer in [0, 1024] (tokens), got '5000'");
  EXPECT_EQ(load_error("engine:\n  overprovision: 0.5\n"),
            "configuration key 'engine.overprovision' expects a number in [1, 64] (x N), got '0.5'");
  EXPECT_EQ(load_error("backend:\n  kind: tpu\n"), "configuration key 'backend.kind' expects one of cpu, cuda, got 'tpu'");
  EXPECT_EQ(load_error("backend:\n  deterministic: maybe\n"),
            "configuration key 'backend.deterministic' expects a bool (true/false, on/off, yes/no, 1/0), got 'maybe'");
  EXPECT_EQ(load_error("engine:\n  drafter:\n    min_prob: [1]\n"),
            "configuration key 'engine.drafter.min_prob' expects a number in [0, 1], got a list");
  EXPECT_EQ(load_error("engine:\n  speculation:\n    max_bugdet: 3\n"),
            "unknown configuration key 'engine.speculation.max_bugdet' (did you mean 'engine.speculation.max_budget'?)");
  // The halves of the table stay in their sections.
  EXPECT_EQ(load_error("engine:\n  backend:\n    kind: cpu\n"), "unknown configuration key 'engine.backend.kind'");
  EXPECT_EQ(load_error("backend:\n  round_groups: 2\n"), "unknown configuration key 'backend.round_groups'");
  EXPECT_EQ(load_error("engine: 3\n"), "configuration key 'engine' expects a mapping, got '3'");
  // Cross-field rules name their keys.
  EXPECT_NE(load_error("engine:\n  speculation:\n    short_frac: 0.9\n    long_frac: 0.2\n").find("speculation.short_frac"),
            std::string::npos);
}

TEST(WorkerConfigErrors, EveryTableKeyIsReachableFromTheYaml) {
  TempDir d;
  const auto f = d.write("w.yaml",
                         "backend:\n  deterministic: true\n  kv_block_size: 32\n"
                         "engine:\n  trajectory_log: t.ltlog\n  drafter:\n    min_prob: 0.25\n    calibrate: false\n"
                         "  speculation:\n    mode: fixed\n    token_trees: true\n    history_window_rounds: 3\n"
                         "    cost_base_us: 1000\n");
  const WorkerConfig c = load_worker_config(f);
  EXPECT_TRUE(c.worker.backend.deterministic);
  EXPECT_EQ(c.worker.backend.kv_block_size, 32);
  EXPECT_EQ(c.worker.engine.trajectory_log, d.path / "t.ltlog");  // relative to the file
  EXPECT_DOUBLE_EQ(c.worker.engine.drafter.min_prob, 0.25);
  EXPECT_FALSE(c.worker.engine.drafter.calibrate);
  EXPECT_EQ(c.worker.engine.budgets.mode, drafter::BudgetMode::kFixed);
  EXPECT_TRUE(c.worker.engine.budgets.token_trees);
  EXPECT_EQ(c.worker.engine.drafter.window_rounds, 3);
  EXPECT_DOUBLE_EQ(c.worker.engine.budgets.cost.base_us, 1000);
}

TEST(WorkerConfigErrors, BridgeShutdownAndMetricsRanges) {
  EXPECT_EQ(load_error("bridge:\n  heartbeat_interval_s: -1\n"),
            "configuration key 'bridge.heartbeat_interval_s' expects a number in (0, 3600], got '-1'");
  EXPECT_EQ(load_error("bridge:\n  peer_timeout_s: 0\n"),
            "configuration key 'bridge.peer_timeout_s' expects a number in (0, 1000000], got '0'");
  EXPECT_EQ(load_error("bridge:\n  max_outbox_batches: -3\n"),
            "configuration key 'bridge.max_outbox_batches' expects a non-negative integer, got '-3'");
  EXPECT_EQ(load_error("bridge:\n  ack_timeout_s: soon\n"),
            "configuration key 'bridge.ack_timeout_s' expects a number, got 'soon'");
  EXPECT_EQ(load_error("metrics:\n  port: 70000\n"), "configuration key 'metrics.port' expects an integer in [0, 65535], got '70000'");
  EXPECT_EQ(load_error("shutdown:\n  timeout_s: .nan\n"), "configuration key 'shutdown.timeout_s' expects a finite number, got '.nan'");
  EXPECT_EQ(load_error("bridge:\n  journal_fsync: often\n"),
            "configuration key 'bridge.journal_fsync' expects a bool (true/false), got 'often'");
}

TEST(WorkerConfigErrors, FilesystemAndCrossChecksComeBeforeTheModelLoads) {
  TempDir d;
  std::filesystem::create_directories(d.path / "model");
  std::filesystem::create_directories(d.path / "ckpts");
  const WorkerConfig ok = load_worker_config(d.write("ok.yaml", "model: model\nweights:\n  allowed_dirs: [ckpts]\n"));
  EXPECT_NO_THROW(check_worker_config(ok));
  auto error_of = [&](const WorkerConfig& c) {
    try {
      check_worker_config(c);
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  const WorkerConfig missing_dir =
      load_worker_config(d.write("a.yaml", "model: model\nweights:\n  allowed_dirs: [ckpts, nowhere]\n"));
  EXPECT_EQ(error_of(missing_dir), "weights.allowed_dirs: " + (d.path / "nowhere").string() + " is not an existing directory");
  const WorkerConfig no_model = load_worker_config(d.write("b.yaml", "model: absent\n"));
  EXPECT_EQ(error_of(no_model), "model: " + (d.path / "absent").string() + " is not a directory");
  WorkerConfig level = ok;
  level.log_level = "loud";
  EXPECT_NE(error_of(level).find("log_level expects one of trace"), std::string::npos);
  WorkerConfig port = ok;
  port.worker.metrics_port = 70000;  // as --metrics-port sets it
  EXPECT_NE(error_of(port).find("1..65535"), std::string::npos);
  WorkerConfig hb = ok;
  hb.worker.bridge.peer_timeout_s = 0;
  EXPECT_NE(error_of(hb).find("bridge.peer_timeout_s"), std::string::npos);
}

TEST(WorkerConfigErrors, TheWorkerRefusesABadConfigWithExitCode2BeforeLoading) {
  TempDir d;
  const auto f = d.write("w.yaml", "model: " + std::string(LONGTAIL_SOURCE_DIR) +
                                       "/configs/models/tiny-qwen3\nbridge:\n  peer_timeout_s: 0\n");
  const test::CliResult r = test::run_cli(std::string(LONGTAIL_WORKER_BIN) + " --config " + f.string());
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("configuration key 'bridge.peer_timeout_s' expects a number in (0, 1000000], got '0'"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(r.err.find("loading"), std::string::npos) << "nothing may load before the config is checked";
  const test::CliResult flag = test::run_cli(std::string(LONGTAIL_WORKER_BIN) + " --model " + LONGTAIL_SOURCE_DIR +
                                             "/configs/models/tiny-qwen3 --speculation-max-budget lots");
  EXPECT_EQ(flag.code, 2);
  EXPECT_NE(flag.err.find("--speculation-max-budget: option 'speculation.max_budget' expects an integer in [0, 1024] "
                          "(tokens), got 'lots'"),
            std::string::npos)
      << flag.err;
}

}  // namespace
}  // namespace longtail::bridge
