// The decoder fuzz target's committed seed corpus (trainer_bridge/fuzz/corpus) must cover every
// message type and stay decodable as the protocol evolves. Set LONGTAIL_WRITE_FUZZ_SEEDS=<dir> to
// (re)write the seeds from the current encoder.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

#include "tests/bridge/synthetic.h"
#include "trainer_bridge/fuzz/fuzz_input.h"

#ifndef LONGTAIL_FUZZ_CORPUS_DIR
#error "LONGTAIL_FUZZ_CORPUS_DIR must point at trainer_bridge/fuzz/corpus"
#endif

namespace longtail::bridge {
namespace {

std::vector<std::pair<Direction, Message>> seeds() {
  Submit s;
  s.req = 1;
  rollout::GroupRequest g;
  g.group_id = "g";
  g.prompt_tokens = {1, 2, 3};
  g.n = 2;
  g.stop_tokens = {7};
  g.metadata = "m";
  s.groups = {g, g};
  s.groups[1].group_id = "h";
  Welcome w;
  w.worker_id = "w";
  w.model.architecture = "Qwen3ForCausalLM";
  w.capabilities = {"speculation", "journal"};
  Batch b = testing::make_batch(3, 4, 5);
  // Protocol 2 additions: limits and weights in HELLO, REWARDS_OK groups, ERROR limit/retryable,
  // every sampling field.
  Welcome w2 = w;
  w2.weights = "/ckpt/v2";
  w2.run = 3;
  w2.limits.max_pending_samples = 64;
  w2.limits.peer_timeout_s = 10;
  RewardsOk r2{7, {}, {}};
  r2.groups.push_back({"g", 2, 0.5, true, {1, 2}, {1, 0.5}, {1, 0}, {0.5, -0.5}});
  Submit s2 = s;
  s2.groups[0].sampling = {0.7f, 20, 0.9f, 0.05f, 42};
  // Weights without a directory: a shared-memory segment, and CUDA IPC handles (opaque bytes).
  UpdateWeights from_shm{9, 6, "", policy::SharedTensorSource{"longtail-x", 64, {{"w", "BF16", {2, 3}, 0, 12}}}, true};
  UpdateWeights from_ipc{10, 7};
  from_ipc.cuda_ipc.buffers = {{std::string(policy::kCudaIpcHandleBytes, '\x07'), 256}};
  from_ipc.cuda_ipc.tensors = {{"w", "F32", {4, 4}, 0, 0, 64}, {"b", "F16", {4}, 0, 64, 72}};
  return {
      {Direction::kToWorker, Hello{kProtocolVersion, "t", 4}},
      {Direction::kToWorker, s},
      {Direction::kToWorker, Credit{3}},
      {Direction::kToWorker, Ack{{1, 2}}},
      {Direction::kToWorker, UpdateWeights{2, 5, "/ckpt"}},
      {Direction::kToWorker, Rewards{3, {1, 2}, {0.5, 1}}},
      {Direction::kToWorker, StatsRequest{4}},
      {Direction::kToWorker, Drain{5}},
      {Direction::kToWorker, Shutdown{6}},
      {Direction::kToWorker, Heartbeat{}},
      {Direction::kToTrainer, w},
      {Direction::kToTrainer, b},
      {Direction::kToTrainer, SubmitOk{1, 2}},
      {Direction::kToTrainer, WeightsOk{2, 5}},
      {Direction::kToTrainer, RewardsOk{3, {9}}},
      {Direction::kToTrainer, StatsReply{4, {{"a", {1, 2.5, "x"}}}}},
      {Direction::kToTrainer, DrainOk{5, 3}},
      {Direction::kToTrainer, ShutdownOk{6}},
      {Direction::kToTrainer, Error{"BAD_FIELD", "x", 1, "SUBMIT"}},
      {Direction::kToTrainer, w2},
      {Direction::kToTrainer, r2},
      {Direction::kToTrainer, Error{"QUEUE_FULL", "y", 2, "SUBMIT", "max_pending_samples", true}},
      {Direction::kToWorker, s2},
      {Direction::kToWorker, Hello{kOldestProtocolVersion, "old", 1}},
      // A fleet's shared history.
      {Direction::kToWorker, History{8, {{"p0", {1, 2, 3}, {4, 5}}, {"p1", {9}, {}}}}},
      {Direction::kToTrainer, HistoryOk{8, 2}},
      {Direction::kToWorker, from_shm},
      {Direction::kToWorker, from_ipc},
      // Sleep mode.
      {Direction::kToWorker, Sleep{11, 2}},
      {Direction::kToWorker, WakeUp{12}},
      {Direction::kToTrainer, SleepOk{11, 2, 0, 1 << 30, 24, 0.05}},
      {Direction::kToTrainer, WakeUpOk{12, 2, 1 << 30, 0.2}},
  };
}

TEST(FuzzCorpus, CoversEveryMessageTypeAndDecodes) {
  if (const char* out = std::getenv("LONGTAIL_WRITE_FUZZ_SEEDS")) {
    int i = 0;
    for (const auto& [dir, m] : seeds()) {
      std::ofstream f(std::filesystem::path(out) / ("seed-" + std::to_string(i++) + "-" + type_name(message_type(m))),
                      std::ios::binary);
      f << fuzz::join(dir, encode(m));
    }
  }
  std::set<int> types;
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(LONGTAIL_FUZZ_CORPUS_DIR)) {
    std::ifstream in(e.path(), std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string bytes = ss.str();
    const auto input = fuzz::split(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
    ++files;
    try {
      types.insert(static_cast<int>(message_type(decode(input.frames, input.dir))));
    } catch (const ProtocolError& err) {
      ADD_FAILURE() << e.path() << " no longer decodes: " << err.what();
    }
  }
  EXPECT_GE(files, 24);
  EXPECT_EQ(types.size(), std::variant_size_v<Message>) << "every message type has a seed";
}

}  // namespace
}  // namespace longtail::bridge
