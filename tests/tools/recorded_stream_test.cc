// The in-process streamer of recorded rollouts (tools/recorded_stream.h): rollout JSONL becomes one
// batch per recorded step, and a streamer whose trainer has no credit waits without burning a core.
#include "tools/recorded_stream.h"

#include <gtest/gtest.h>
#include <time.h>
#include <unistd.h>

#include <cmath>
#include <fstream>
#include <thread>

#include "rollout/rollout_jsonl.h"
#include "trainer_bridge/trainer_client.h"

namespace longtail::tools {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

struct Dir {
  fs::path path;
  explicit Dir(const std::string& name)
      : path(fs::temp_directory_path() / ("longtail_rs_" + std::to_string(::getpid()) + "_" + name)) {
    fs::remove_all(path);
    fs::create_directories(path);
    std::ofstream out(path / "trace.jsonl");
    for (int step = 0; step < 3; ++step) {
      for (int p = 0; p < 2; ++p) {
        out << rollout::rollout_jsonl_line({"p" + std::to_string(p), step, step, {1, 2, p}, {4, 5, 6, step}, 0}) << "\n";
      }
    }
  }
  ~Dir() { fs::remove_all(path); }
  bridge::StreamOptions options() const {
    bridge::StreamOptions o;
    o.session.endpoint = "ipc://" + (path / "s.sock").string();
    o.wait_for_trainer_s = 10;
    o.ack_wait_s = 10;
    return o;
  }
};

double thread_cpu_s() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

TEST(RecordedStream, JsonlRoundsBecomeBatchesWithUnknownLogprobs) {
  Dir d("jsonl");
  const auto o = d.options();
  bridge::StreamResult result;
  std::thread streamer([&] { result = stream_recorded(d.path / "trace.jsonl", o, 64, rollout::OnError::kStop, nullptr); });
  std::vector<bridge::Batch> got;
  {
    bridge::TrainerClient c(o.session.endpoint, "t");
    c.send(bridge::Hello{bridge::kProtocolVersion, "t", 8});
    while (got.size() < 3) {
      auto m = c.recv(10s);
      if (!m) break;
      if (auto* b = std::get_if<bridge::Batch>(&*m)) {
        c.send(bridge::Ack{{b->seq}});
        got.push_back(std::move(*b));
      }
    }
    streamer.join();
  }
  ASSERT_EQ(got.size(), 3u);
  EXPECT_TRUE(result.all_acked);
  for (int step = 0; step < 3; ++step) {
    const auto& b = got[static_cast<size_t>(step)];
    EXPECT_EQ(b.round, step);
    ASSERT_EQ(b.trajectories.size(), 2u);
    const auto& t = b.trajectories[1];
    EXPECT_EQ(t.prompt_id, "p1");
    EXPECT_EQ(t.sample_index, step);
    EXPECT_EQ(t.response_tokens, (std::vector<int32_t>{4, 5, 6, step}));
    EXPECT_EQ(t.policy_versions, (std::vector<int64_t>(4, step)));
    ASSERT_EQ(t.behaviour_logprobs.size(), 4u);
    EXPECT_TRUE(std::isnan(t.behaviour_logprobs[0]));
  }
}

TEST(RecordedStream, WaitsForCreditWithoutSpinning) {
  // A trainer that says HELLO with no credit: the streamer has batches ready and must block in poll
  // until credit comes, not poll(0) in a loop (which took a whole core).
  Dir d("credit");
  const auto o = d.options();
  std::atomic<bool> stop{false};
  double cpu_s = 0, wall_s = 0;
  std::thread streamer([&] {
    const double c0 = thread_cpu_s();
    const auto t0 = std::chrono::steady_clock::now();
    try {
      stream_recorded(d.path / "trace.jsonl", o, 64, rollout::OnError::kStop, &stop);
    } catch (const std::exception&) {
    }
    cpu_s = thread_cpu_s() - c0;
    wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  });
  bridge::TrainerClient c(o.session.endpoint, "t");
  c.send(bridge::Hello{bridge::kProtocolVersion, "t", 0});
  const bool welcomed = c.wait_for(bridge::MessageType::kWelcome, 10s).has_value();
  std::this_thread::sleep_for(1500ms);  // the interval being measured, not a wait for an event
  stop = true;
  streamer.join();
  ASSERT_TRUE(welcomed);
  EXPECT_GE(wall_s, 1.5);
  // Blocking polls cost well under 10 ms a second; a spinning loop gets whatever share of a core
  // the scheduler gives it, which is far more even on a loaded machine.
  EXPECT_LT(cpu_s, 0.08) << "streamer used " << cpu_s << " s of CPU in " << wall_s << " s without credit";
}

}  // namespace
}  // namespace longtail::tools
