// The CUDA-IPC weight manifest is validated with a checkpoint's own rules before a byte is copied:
// here host buffers stand in for the trainer's opened GPU allocations, so every refusal runs in CI
// without a GPU; and a backend that cannot read CUDA IPC handles refuses by name, keeping its weights.
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "policy/checkpoint.h"
#include "policy/cpu_backend.h"
#include "policy/cuda_ipc_weights.h"

namespace lp = longtail::policy;
namespace fs = std::filesystem;

namespace {

const fs::path kQwen3 = fs::path(LONGTAIL_GOLDEN_DIR) / "qwen3_qknorm_bf16";

// A checkpoint's tensors spread over two "allocations" (alternating), as a trainer's parameters
// are spread over its allocator's blocks.
struct Buffers {
  lp::CudaIpcTensorSource source;
  std::vector<std::vector<std::byte>> bytes{2};

  explicit Buffers(const lp::Checkpoint& ck) {
    size_t i = 0;
    for (const auto& [name, v] : ck.tensors()) {
      std::vector<std::byte>& b = bytes[i++ % 2];
      const uint64_t begin = (b.size() + 255) / 256 * 256;
      b.resize(begin);
      b.insert(b.end(), v.bytes.begin(), v.bytes.end());
      source.tensors.push_back({name, lp::dtype_name(v.dtype), v.shape, (i - 1) % 2, begin, begin + v.bytes.size()});
    }
    for (size_t k = 0; k < 2; ++k) source.buffers.push_back({std::string(lp::kCudaIpcHandleBytes, char('a' + k)), bytes[k].size()});
  }
  lp::Checkpoint views(const lp::ModelConfig& config) const {
    const std::vector<const std::byte*> bases = {bytes[0].data(), bytes[1].data()};
    return lp::cuda_ipc_views(source, config, bases);
  }
  lp::CudaIpcTensor& entry(const std::string& name) {
    for (auto& t : source.tensors)
      if (t.name == name) return t;
    throw std::out_of_range(name);
  }
};

std::string refusal(const Buffers& b, const lp::ModelConfig& config) {
  try {
    (void)b.views(config);
  } catch (const lp::LoadError& e) {
    return e.what();
  }
  return "(accepted)";
}

}  // namespace

TEST(CudaIpcWeightsTest, AGoodManifestGivesTheCheckpointsTensors) {
  const lp::Checkpoint ck = lp::Checkpoint::open(kQwen3);
  const Buffers b(ck);
  const lp::Checkpoint views = b.views(ck.config());
  ASSERT_EQ(views.tensors().size(), ck.tensors().size());
  for (const auto& [name, v] : ck.tensors()) {
    const lp::TensorView& w = views.tensor(name);
    EXPECT_EQ(w.shape, v.shape) << name;
    EXPECT_EQ(w.dtype, v.dtype) << name;
    ASSERT_EQ(w.bytes.size(), v.bytes.size()) << name;
    EXPECT_EQ(std::memcmp(w.bytes.data(), v.bytes.data(), v.bytes.size()), 0) << name;
  }
}

TEST(CudaIpcWeightsTest, EveryBadManifestIsRefusedNamingWhatIsWrong) {
  const lp::Checkpoint ck = lp::Checkpoint::open(kQwen3);
  const lp::ModelConfig& config = ck.config();
  const std::string some = ck.tensors().begin()->first;
  const auto with = [&](auto change) {
    Buffers b(ck);
    change(b);
    return refusal(b, config);
  };
  const std::map<std::string, std::string> cases = {
      {with([](Buffers& b) { b.source.buffers.clear(); }), "no buffers"},
      {with([](Buffers& b) { b.source.tensors.clear(); }), "no tensors"},
      {with([](Buffers& b) { b.source.buffers[1].handle.resize(10); }), "buffer[1]: handle has 10 bytes"},
      {with([](Buffers& b) { b.source.buffers[1].handle = b.source.buffers[0].handle; }),
       "buffer[1]: same handle as cuda-ipc buffer[0]"},
      {with([&](Buffers& b) { b.entry(some).buffer = 2; }), "buffer 2 does not exist"},
      {with([&](Buffers& b) { b.entry(some).dtype = "F64"; }), "unsupported dtype \"F64\""},
      {with([&](Buffers& b) { b.entry(some).end += 2; }), "does not match shape"},
      {with([&](Buffers& b) { b.source.buffers[b.entry(some).buffer].size = b.entry(some).end - 1; }),
       "end beyond the data"},
      {with([&](Buffers& b) { b.entry(some).shape[0] += 1; }), "byte range of"},
      {with([&](Buffers& b) { b.entry(some).name = "model.layers.99.mlp.weight"; }), "missing tensor"},
      {with([&](Buffers& b) {  // the same name in the other buffer, at its end
         lp::CudaIpcTensor copy = b.entry(some);
         copy.buffer ^= 1;
         auto& other = b.bytes[copy.buffer];
         copy.begin = other.size();
         copy.end = copy.begin + (b.entry(some).end - b.entry(some).begin);
         other.resize(copy.end);
         b.source.buffers[copy.buffer].size = copy.end;
         b.source.tensors.push_back(copy);
       }),
       "listed twice"},
      {with([&](Buffers& b) {
         auto extra = b.entry(some);
         extra.name = "model.extra.weight";
         extra.buffer = 0;
         extra.begin = extra.end = b.source.buffers[0].size;
         extra.shape = {0};
         b.source.tensors.push_back(extra);
       }),
       "unexpected tensor"},
  };
  // Every refusal above is distinct and says what it should (a map keyed by message collapses
  // identical texts, so count as well).
  EXPECT_EQ(cases.size(), 12u);
  for (const auto& [message, needle] : cases) EXPECT_NE(message.find(needle), std::string::npos) << message;
  // Overlapping tensors in one buffer.
  Buffers b(ck);
  auto& t0 = b.source.tensors[0];
  auto& t2 = b.source.tensors[2];  // same buffer as t0 (alternating)
  ASSERT_EQ(t0.buffer, t2.buffer);
  if (t2.end - t2.begin == t0.end - t0.begin) {
    t2.begin = t0.begin;
    t2.end = t0.end;
    EXPECT_NE(refusal(b, config).find("overlaps"), std::string::npos) << refusal(b, config);
  }
  // A wrong shape of the right byte size is the architecture check's refusal.
  Buffers s(ck);
  auto& e = s.entry("model.norm.weight");
  e.shape = {1, e.shape[0]};
  EXPECT_NE(refusal(s, config).find("wrong shape"), std::string::npos) << refusal(s, config);
}

TEST(CudaIpcWeightsTest, TheCpuBackendRefusesByNameAndKeepsServing) {
  lp::BackendOptions o;
  o.num_threads = 1;
  lp::CpuBackend be(kQwen3, o);
  EXPECT_FALSE(be.takes_cuda_ipc_weights());
  const Buffers b(lp::Checkpoint::open(kQwen3));
  try {
    be.replace_weights_from_cuda_ipc(b.source, false);
    ADD_FAILURE() << "accepted";
  } catch (const lp::LoadError& e) {
    EXPECT_NE(std::string(e.what()).find("the cpu backend cannot read CUDA IPC handles"), std::string::npos) << e.what();
  }
}
