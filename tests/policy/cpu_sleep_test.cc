// The CPU backend's sleep mode (policy::Backend::sleep / wake_up): refused with live sequences or
// an unknown level, nothing served while asleep, level 2 frees the weights until replace_weights
// loads new ones, and a backend woken up gives bitwise the outputs it gave before the sleep.
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "policy/checkpoint.h"
#include "policy/cpu_backend.h"

namespace lp = longtail::policy;
namespace fs = std::filesystem;

namespace {

const fs::path kQwen3 = fs::path(LONGTAIL_GOLDEN_DIR) / "qwen3_qknorm_bf16";

lp::BackendOptions opts() {
  lp::BackendOptions o;
  o.num_threads = 2;
  o.max_kv_tokens = 4096;
  return o;
}

// Prefill of a fixed prompt and 8 sampled tokens; returns every token and logprob produced.
std::vector<float> rollout(lp::Backend& b) {
  lp::SamplingParams s;
  s.temperature = 1.0f;
  s.seed = 11;
  std::vector<int32_t> prompt = {3, 17, 99, 250, 7, 42};
  const int64_t h = b.create_sequence();
  std::vector<float> out;
  lp::SequenceChunk c;
  c.seq = h;
  c.uid = 5;
  c.sampling = s;
  c.tokens = prompt;
  c.first_output = static_cast<int32_t>(prompt.size()) - 1;
  std::vector<int32_t> next(1);
  for (int i = 0; i < 8; ++i) {
    const auto r = b.forward(std::span<const lp::SequenceChunk>(&c, 1));
    out.push_back(static_cast<float>(r.back().sampled));
    out.push_back(r.back().sampled_logprob);
    next[0] = r.back().sampled;
    c.tokens = next;
    c.first_output = 0;
  }
  b.release_sequence(h);
  return out;
}

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

TEST(CpuSleep, RefusedWithLiveSequencesAndOutsideTheLevels) {
  lp::CpuBackend b(kQwen3, opts());
  EXPECT_EQ(b.max_sleep_level(), 2);
  const int64_t h1 = b.create_sequence();
  const int64_t h2 = b.create_sequence();
  const std::string live = message_of([&] { b.sleep(1); });
  EXPECT_NE(live.find("2 live sequences"), std::string::npos) << live;
  EXPECT_EQ(b.sleep_level(), 0);
  b.release_sequence(h1);
  b.release_sequence(h2);
  EXPECT_THROW(b.sleep(0), std::logic_error);
  EXPECT_THROW(b.sleep(3), std::logic_error);
  EXPECT_EQ(b.sleep_level(), 0);
}

TEST(CpuSleep, NothingIsServedAsleepAndWakingRestoresTheSameOutputs) {
  lp::CpuBackend b(kQwen3, opts());
  const std::vector<float> before = rollout(b);
  const lp::KvCapacity cap = b.kv_capacity();
  EXPECT_EQ(b.sleep(1), 0u);  // level 1 keeps the weights; the KV arrays went with their sequences
  EXPECT_EQ(b.sleep_level(), 1);
  EXPECT_EQ(b.sleep(1), 0u);  // again: a no-op
  EXPECT_EQ(b.kv_capacity().total_tokens, 0);
  EXPECT_EQ(b.kv_capacity().free_tokens, 0);
  const lp::KvGrowth g{-1, 4};
  EXPECT_FALSE(b.can_fit(std::span<const lp::KvGrowth>(&g, 1)));
  const std::string asleep = message_of([&] { b.create_sequence(); });
  EXPECT_NE(asleep.find("asleep"), std::string::npos) << asleep;
  EXPECT_THROW(b.forward({}), std::logic_error);
  b.wake_up();
  EXPECT_EQ(b.sleep_level(), 0);
  EXPECT_EQ(b.wake_up(), 0u);  // awake: a no-op
  EXPECT_EQ(b.kv_capacity().total_tokens, cap.total_tokens);
  EXPECT_EQ(rollout(b), before);
}

TEST(CpuSleep, LevelTwoFreesTheWeightsUntilNewOnesAreLoaded) {
  lp::CpuBackend b(kQwen3, opts());
  const std::vector<float> before = rollout(b);
  b.sleep(1);
  const size_t freed = b.sleep(2);  // deeper: the weights go too
  EXPECT_GT(freed, 100000u);
  EXPECT_EQ(b.sleep_level(), 2);
  EXPECT_EQ(b.sleep(1), 0u);  // shallower than now: nothing changes
  EXPECT_EQ(b.sleep_level(), 2);
  EXPECT_EQ(b.config().num_layers, lp::Checkpoint::open(kQwen3).config().num_layers);  // still known
  const std::string no_weights = message_of([&] { b.wake_up(); });
  EXPECT_NE(no_weights.find("replace_weights first"), std::string::npos) << no_weights;
  EXPECT_EQ(b.sleep_level(), 2);
  b.replace_weights(kQwen3);  // works asleep
  EXPECT_EQ(b.sleep_level(), 1);
  b.wake_up();
  EXPECT_EQ(rollout(b), before);
}

}  // namespace
