// Trajectory streaming: a recorded trajectory log becomes BATCH messages (one per recorded round,
// or fixed-size batches) delivered through the publisher at the requested rate, contents intact.
#include <gtest/gtest.h>
#include <unistd.h>

#include <thread>

#include "rollout/trajectory_log.h"
#include "tests/bridge/synthetic.h"
#include "trainer_bridge/trainer_client.h"
#include "trainer_bridge/trajectory_stream.h"

namespace longtail::bridge {
namespace {

using namespace std::chrono_literals;

struct Fixture {
  std::filesystem::path dir;
  Fixture() {
    static int n = 0;
    dir = std::filesystem::temp_directory_path() / ("ltstream-" + std::to_string(::getpid()) + "-" + std::to_string(n++));
    std::filesystem::create_directories(dir);
    rollout::TrajectoryLogWriter w(dir / "log.bin");
    for (uint64_t i = 0; i < 3; ++i) w.write(testing::make_trajectory(i, 5, 7));
    w.write_round(0, 0);
    for (uint64_t i = 3; i < 5; ++i) w.write(testing::make_trajectory(i, 4, 9));
    w.write_round(1, 1);
  }
  ~Fixture() { std::filesystem::remove_all(dir); }
  StreamOptions options() const {
    StreamOptions o;
    o.session.endpoint = "ipc://" + (dir / "s.sock").string();
    o.session.worker_id = "streamer";
    o.wait_for_trainer_s = 10;
    o.ack_wait_s = 10;
    return o;
  }
};

std::vector<Batch> receive(TrainerClient& c, size_t n) {
  std::vector<Batch> out;
  while (out.size() < n) {
    auto m = c.recv(5s);
    if (!m) break;
    if (auto* b = std::get_if<Batch>(&*m)) {
      c.send(Ack{{b->seq}});
      out.push_back(std::move(*b));
    }
  }
  return out;
}

TEST(TrajectoryStream, OneBatchPerRecordedRound) {
  Fixture f;
  auto o = f.options();
  TrainerSession pub(o.session, nullptr);
  StreamResult result;
  std::thread streamer([&] { result = stream_batches(pub, trajectory_log_source(f.dir / "log.bin", 0), o); });
  TrainerClient c(o.session.endpoint, "t");
  c.send(Hello{kProtocolVersion, "t", 10});
  auto batches = receive(c, 2);
  streamer.join();
  ASSERT_EQ(batches.size(), 2u);
  EXPECT_EQ(result.batches, 2u);
  EXPECT_EQ(result.trajectories, 5u);
  EXPECT_TRUE(result.all_acked);
  EXPECT_EQ(batches[0].worker_id, "streamer");
  EXPECT_EQ(batches[0].trajectories.size(), 3u);
  EXPECT_EQ(batches[1].trajectories.size(), 2u);
  EXPECT_EQ(batches[1].round, 1);
  EXPECT_EQ(batches[1].policy_version, 1);
  const auto expect = testing::make_trajectory(4, 4, 9);
  const auto& got = batches[1].trajectories[1];
  EXPECT_EQ(got.uid, 4u);
  EXPECT_EQ(got.response_tokens, expect.response_tokens);
  EXPECT_EQ(got.behaviour_logprobs, expect.behaviour_logprobs);
  EXPECT_EQ(got.metadata, expect.metadata);
  EXPECT_EQ(batches[1].importance.trajectories, 2);
}

TEST(TrajectoryStream, FixedSizeBatchesAtARate) {
  Fixture f;
  auto o = f.options();
  o.trajectories_per_batch = 1;
  o.batches_per_second = 20;
  TrainerSession pub(o.session, nullptr);
  StreamResult result;
  std::thread streamer([&] { result = stream_batches(pub, trajectory_log_source(f.dir / "log.bin", 1), o); });
  TrainerClient c(o.session.endpoint, "t");
  c.send(Hello{kProtocolVersion, "t", 10});
  const auto t0 = std::chrono::steady_clock::now();
  auto batches = receive(c, 5);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  streamer.join();
  ASSERT_EQ(batches.size(), 5u);
  for (size_t i = 0; i < 5; ++i) EXPECT_EQ(batches[i].trajectories.at(0).uid, i);
  EXPECT_GE(s, 0.18) << "5 batches at 20/s take at least 4 intervals";
  EXPECT_TRUE(result.all_acked);
}

TEST(TrajectoryStream, NoTrainerIsAnError) {
  Fixture f;
  auto o = f.options();
  o.wait_for_trainer_s = 0.2;
  TrainerSession pub(o.session, nullptr);
  EXPECT_THROW(stream_batches(pub, trajectory_log_source(f.dir / "log.bin", 0), o), std::runtime_error);
}

TEST(TrajectoryStream, BadLogIsAnError) {
  Fixture f;
  std::ofstream(f.dir / "junk.bin") << "not a log";
  EXPECT_THROW(trajectory_log_source(f.dir / "junk.bin", 0), rollout::TrajectoryLogError);
}

}  // namespace
}  // namespace longtail::bridge
