// Weights from a shared-memory segment: the same tensors give the same logits as their checkpoint
// directory, and every kind of bad segment or manifest is a LoadError naming what was wrong while
// the old weights keep serving.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "policy/checkpoint.h"
#include "policy/cpu_backend.h"
#include "policy/shared_tensors.h"

namespace lp = longtail::policy;
namespace fs = std::filesystem;

namespace {

const fs::path kQwen3 = fs::path(LONGTAIL_GOLDEN_DIR) / "qwen3_qknorm_bf16";

// A segment holding a checkpoint's tensors back to back, removed when the test ends.
struct Segment {
  std::string name = "longtail-test-" + std::to_string(::getpid());
  lp::SharedTensorSource source;
  std::vector<std::byte> bytes;

  explicit Segment(const lp::Checkpoint& ck) {
    source.segment = name;
    for (const auto& [tname, v] : ck.tensors()) {
      lp::TensorEntry e{tname, lp::dtype_name(v.dtype), v.shape, bytes.size(), bytes.size() + v.bytes.size()};
      bytes.insert(bytes.end(), v.bytes.begin(), v.bytes.end());
      source.tensors.push_back(e);
    }
    source.size = bytes.size();
  }
  ~Segment() { ::shm_unlink(name.c_str()); }
  void write() const {
    const int fd = ::shm_open(name.c_str(), O_CREAT | O_RDWR | O_TRUNC, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::write(fd, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
    ::close(fd);
  }
  lp::TensorEntry& entry(const std::string& tname) {
    for (auto& e : source.tensors)
      if (e.name == tname) return e;
    throw std::out_of_range(tname);
  }
};

std::vector<float> logits(lp::CpuBackend& be) {
  const std::vector<int32_t> p = {5, 17, 42, 99, 3};
  const int64_t s = be.create_sequence();
  lp::SequenceChunk c;
  c.seq = s;
  c.uid = 1;
  c.tokens = p;
  c.first_output = 4;
  std::vector<float> out;
  be.forward_with_logits(std::span(&c, 1), &out);
  be.release_sequence(s);
  return out;
}

void expect_refused(lp::CpuBackend& be, const lp::SharedTensorSource& src, const std::string& needle,
                    bool finite = false) {
  try {
    const lp::Checkpoint ck = lp::open_shared_tensors(src, be.config());
    if (finite) lp::check_finite(ck);
    be.replace_weights(ck);
    ADD_FAILURE() << "accepted; expected an error containing: " << needle;
  } catch (const lp::LoadError& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(SharedTensorsTest, SameTensorsGiveTheSameLogitsAsTheDirectory) {
  lp::CpuBackend be(kQwen3, {});
  const auto before = logits(be);
  const lp::Checkpoint dir = lp::Checkpoint::open(kQwen3);
  Segment seg(dir);
  // Perturb the final norm: the update must change the logits, and back again.
  const auto& norm = seg.entry("model.norm.weight");
  for (uint64_t i = norm.begin; i < norm.end; i += 2) seg.bytes[i + 1] ^= std::byte{0x01};
  seg.write();
  {
    const lp::Checkpoint ck = lp::open_shared_tensors(seg.source, be.config());
    be.replace_weights(ck);
  }
  EXPECT_NE(logits(be), before);
  for (uint64_t i = norm.begin; i < norm.end; i += 2) seg.bytes[i + 1] ^= std::byte{0x01};
  seg.write();
  be.replace_weights(lp::open_shared_tensors(seg.source, be.config()));
  EXPECT_EQ(logits(be), before);
}

TEST(SharedTensorsTest, BadSegmentsAndManifestsAreRefusedAndTheOldWeightsServe) {
  lp::CpuBackend be(kQwen3, {});
  const auto before = logits(be);
  Segment seg(lp::Checkpoint::open(kQwen3));
  auto bad = seg.source;
  bad.segment = "other-segment";
  expect_refused(be, bad, "must start with 'longtail-'");
  bad.segment = "longtail-../etc";
  expect_refused(be, bad, "no '/'");
  expect_refused(be, seg.source, "does not exist");
  seg.write();
  bad = seg.source;
  bad.size += 1;
  expect_refused(be, bad, "the request declares");
  bad = seg.source;
  bad.tensors.push_back({"model.no_such.weight", "F32", {0}, 0, 0});
  expect_refused(be, bad, "\"model.no_such.weight\": unexpected tensor");
  bad = seg.source;
  for (auto& e : bad.tensors)
    if (e.name == "model.norm.weight") e.shape[0] *= 2;
  expect_refused(be, bad, "does not match shape");
  bad = seg.source;
  for (auto& e : bad.tensors)
    if (e.name == "model.embed_tokens.weight") std::swap(e.shape[0], e.shape[1]);
  expect_refused(be, bad, "\"model.embed_tokens.weight\": wrong shape");
  bad = seg.source;
  for (auto& e : bad.tensors)
    if (e.name == "model.norm.weight") e.dtype = "I8";
  expect_refused(be, bad, "unsupported dtype");
  bad = seg.source;
  bad.tensors[1].end = bad.tensors[0].begin + (bad.tensors[1].end - bad.tensors[1].begin);  // same size,
  bad.tensors[1].begin = bad.tensors[0].begin;  // inside the (larger) embedding's bytes
  expect_refused(be, bad, "overlaps");
  bad = seg.source;
  bad.tensors.pop_back();
  expect_refused(be, bad, "missing tensor");
  // A NaN is refused on request only.
  const auto& norm = seg.entry("model.norm.weight");
  seg.bytes[norm.begin] = std::byte{0xC0};
  seg.bytes[norm.begin + 1] = std::byte{0x7F};  // bf16 quiet NaN
  seg.write();
  expect_refused(be, seg.source, "non-finite value at flat index 0", /*finite=*/true);
  EXPECT_EQ(logits(be), before);
}

}  // namespace
