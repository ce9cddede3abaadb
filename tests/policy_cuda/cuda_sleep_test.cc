// The CUDA backend's sleep mode, as a colocated trainer sees it: cudaMemGetInfo's free memory rises
// by at least the KV buffer on sleep(1) (and by the weights too on sleep(2)) and falls back on
// wake_up(); nothing runs while asleep; after the wake (and after a level-2 sleep and a reload of
// the same checkpoint) the same requests give bitwise the same tokens and logprobs as before.
// Deterministic mode, random Qwen2 checkpoint (head_dim 64).
#include <gtest/gtest.h>

#include <cuda_runtime_api.h>
#include <unistd.h>

#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "gpu_test_util.h"
#include "random_checkpoint.h"

namespace longtail::policy::testing {
namespace {

namespace fs = std::filesystem;

size_t free_bytes() {
  size_t f = 0, t = 0;
  EXPECT_EQ(cudaMemGetInfo(&f, &t), cudaSuccess);
  return f;
}

// Four sequences: prefill, then 12 decode steps at T = 1 (seeded); every token and logprob.
std::vector<float> rollout(Backend& b) {
  SamplingParams s;
  s.temperature = 1.0f;
  s.seed = 5;
  std::vector<int64_t> seqs;
  std::vector<std::vector<int32_t>> inputs;
  for (int i = 0; i < 4; ++i) {
    seqs.push_back(b.create_sequence());
    inputs.push_back(random_tokens(20 + 3 * i, 40 + i));
  }
  std::vector<float> out;
  for (int step = 0; step < 13; ++step) {
    std::vector<SequenceChunk> chunks;
    for (int i = 0; i < 4; ++i)
      chunks.push_back(make_chunk(seqs[i], 100 + i, inputs[i], static_cast<int32_t>(inputs[i].size()) - 1, s));
    const std::vector<TokenOutput> r = b.forward(chunks);
    for (int i = 0; i < 4; ++i) {
      out.push_back(static_cast<float>(r[i].sampled));
      out.push_back(r[i].sampled_logprob);
      inputs[i] = {r[i].sampled};
    }
  }
  for (int64_t h : seqs) b.release_sequence(h);
  return out;
}

class CudaSleep : public ::testing::Test {
 protected:
  void SetUp() override {
    LT_SKIP_WITHOUT_GPU();
    dir_ = fs::temp_directory_path() / ("longtail_cuda_sleep_" + std::to_string(::getpid()));
    RandomCheckpointShape shape;
    shape.layers = 4;
    write_random_checkpoint(dir_, shape, 17);
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }
  std::unique_ptr<Backend> backend() {
    BackendOptions o = small_cuda_options(1 << 20);  // 1M positions: 2 GiB of KV at this shape
    o.deterministic = true;
    return make_backend(dir_, o);
  }
  fs::path dir_;
};

TEST_F(CudaSleep, FreesTheKvBufferAndGivesTheSameOutputsAfterTheWake) {
  auto b = backend();
  ASSERT_EQ(b->max_sleep_level(), 2);
  const std::vector<float> before = rollout(*b);
  const CudaBackendStats st = cuda_backend_stats(*b);
  const size_t kv_bytes = st.kv_bytes_per_token * static_cast<size_t>(st.kv_blocks) * b->kv_capacity().block_size;
  const KvCapacity cap = b->kv_capacity();

  const int64_t live = b->create_sequence();
  try {
    b->sleep(1);
    FAIL() << "sleep with a live sequence";
  } catch (const std::logic_error& e) {
    EXPECT_NE(std::string(e.what()).find("1 live sequences"), std::string::npos) << e.what();
  }
  b->release_sequence(live);

  const size_t free0 = free_bytes();
  const size_t released = b->sleep(1);
  const size_t free1 = free_bytes();
  EXPECT_GE(free1 - free0, kv_bytes) << "cudaMemGetInfo must show the KV buffer free";
  EXPECT_GE(released, kv_bytes);
  EXPECT_EQ(b->sleep_level(), 1);
  EXPECT_EQ(b->kv_capacity().total_tokens, 0);
  EXPECT_THROW(b->create_sequence(), std::logic_error);

  const size_t allocated = b->wake_up();
  const size_t free2 = free_bytes();
  EXPECT_GE(free1 - free2, kv_bytes);
  EXPECT_GE(allocated, kv_bytes);
  EXPECT_EQ(b->kv_capacity().total_tokens, cap.total_tokens);
  EXPECT_EQ(rollout(*b), before);
}

TEST_F(CudaSleep, LevelTwoFreesTheWeightsAndAReloadServesThemAgain) {
  auto b = backend();
  const std::vector<float> before = rollout(*b);
  const CudaBackendStats st = cuda_backend_stats(*b);
  const size_t kv_bytes = st.kv_bytes_per_token * static_cast<size_t>(st.kv_blocks) * b->kv_capacity().block_size;
  const size_t free0 = free_bytes();
  b->sleep(2);
  EXPECT_GT(free_bytes() - free0, kv_bytes + st.weight_bytes_per_step / 2);
  EXPECT_THROW(b->wake_up(), std::logic_error);  // no weights to serve
  EXPECT_EQ(b->sleep_level(), 2);
  b->replace_weights(dir_);  // asleep, into a fresh allocation
  EXPECT_EQ(b->sleep_level(), 1);
  b->wake_up();
  EXPECT_EQ(rollout(*b), before);
}

}  // namespace
}  // namespace longtail::policy::testing
