// Worker configuration and weight-path policy: the shipped configs/worker.yaml parses, unknown or
// mistyped keys are refused with the key named, and UPDATE_WEIGHTS paths cannot escape the allowed
// directories (.., symlinks).
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>

#include "testing/temp_dir.h"
#include "trainer_bridge/worker_config.h"

#ifndef LONGTAIL_SOURCE_DIR
#error "LONGTAIL_SOURCE_DIR must be defined"
#endif

namespace longtail::bridge {
namespace {

using test::TempDir;

TEST(WorkerConfig, ShippedConfigParses) {
  const auto c = load_worker_config(std::filesystem::path(LONGTAIL_SOURCE_DIR) / "configs" / "worker.yaml");
  EXPECT_EQ(c.worker.bridge.worker_id, "worker-0");
  EXPECT_EQ(c.worker.backend.kind, "cpu");
  EXPECT_EQ(c.worker.model_dir.filename(), "tiny-qwen3");
  EXPECT_EQ(c.worker.bridge.max_message_bytes, 64u << 20);
  EXPECT_TRUE(c.worker.allowed_weight_dirs.empty());
  EXPECT_FALSE(c.worker.bridge.curve.enabled);
}

TEST(WorkerConfig, ValuesAndRelativePaths) {
  TempDir d;
  const auto f = d.write("w.yaml", "model: m\nbridge:\n  journal_dir: j\n  max_outbox_batches: 7\n"
                                   "engine:\n  speculation:\n    enabled: false\nweights:\n  allowed_dirs: [ck, /abs]\n");
  const auto c = load_worker_config(f);
  EXPECT_EQ(c.worker.model_dir, d.path / "m");
  EXPECT_EQ(c.worker.bridge.journal_dir, d.path / "j");
  EXPECT_EQ(c.worker.bridge.max_outbox_batches, 7u);
  EXPECT_EQ(c.worker.engine.budgets.mode, drafter::BudgetMode::kOff);
  ASSERT_EQ(c.worker.allowed_weight_dirs.size(), 2u);
  EXPECT_EQ(c.worker.allowed_weight_dirs[1], "/abs");
}

TEST(WorkerConfig, UnknownAndMistypedKeysAreNamed) {
  TempDir d;
  try {
    load_worker_config(d.write("a.yaml", "bridge:\n  endpont: tcp://x:1\n"));
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("bridge.endpont"), std::string::npos) << e.what();
  }
  try {
    load_worker_config(d.write("b.yaml", "bridge:\n  max_outbox_batches: lots\n"));
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("bridge.max_outbox_batches"), std::string::npos) << e.what();
  }
  EXPECT_THROW(load_worker_config(d.path / "missing.yaml"), ConfigError);
  EXPECT_THROW(load_worker_config(d.write("c.yaml", "a: [unclosed\n")), ConfigError);
  auto c = load_worker_config(d.write("e.yaml", "bridge:\n  curve:\n    enabled: true\n"));
  EXPECT_THROW(resolve_curve_keys(c), ConfigError);
}

TEST(WeightPaths, MustStayInsideAllowedDirectories) {
  TempDir d;
  std::filesystem::create_directories(d.path / "allowed" / "v1");
  std::filesystem::create_directories(d.path / "other");
  std::filesystem::create_symlink(d.path / "other", d.path / "allowed" / "link");
  const std::vector<std::filesystem::path> allowed{d.path / "allowed"};
  EXPECT_TRUE(path_inside(d.path / "allowed" / "v1", allowed));
  EXPECT_TRUE(path_inside(d.path / "allowed" / "not-yet", allowed));
  EXPECT_FALSE(path_inside(d.path / "other", allowed));
  EXPECT_FALSE(path_inside(d.path / "allowed" / ".." / "other", allowed));
  EXPECT_FALSE(path_inside(d.path / "allowed" / "link", allowed));  // symlink out
  EXPECT_FALSE(path_inside(d.path / "allowedx", allowed));          // prefix is not containment
  EXPECT_FALSE(path_inside(d.path / "allowed" / "v1", {}));
}

}  // namespace
}  // namespace longtail::bridge
