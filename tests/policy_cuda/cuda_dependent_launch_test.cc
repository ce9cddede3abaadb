// Programmatic dependent launch (kernels::set_dependent_launch) lets each kernel start while the
// one before it finishes; every kernel waits inside for its predecessor's writes, so the bits
// must not change. A kernel that read its input before that wait would show up here as logits
// that differ between the two settings (or from one replay to the next). Checked through the
// whole backend — prefill, batched decode with CUDA graphs captured and replayed, a verify of
// several tokens per sequence past the attention's split merge — in fast mode with cuBLAS, fast
// mode with each of the few-row kernels (whose weight loads start before the wait), and
// deterministic mode.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <ostream>
#include <string>
#include <vector>

#include "gpu_test_util.h"
#include "kernels/kernels.h"
#include "random_checkpoint.h"

namespace longtail::policy::testing {
namespace {

namespace fs = std::filesystem;

struct Mode {
  std::string name;
  bool deterministic;
  const char* products_env;  // a variable sending the backend's few-row products to a kernel
  const char* products_rows;
};
void PrintTo(const Mode& m, std::ostream* os) { *os << m.name; }

class CudaDependentLaunch : public ::testing::TestWithParam<Mode> {
 protected:
  void SetUp() override {
    LT_SKIP_WITHOUT_GPU();
    dir_ = fs::temp_directory_path() /
           ("longtail_cuda_pdl_" + GetParam().name + "_" + std::to_string(::getpid()));
    RandomCheckpointShape s;
    s.architecture = "qwen3";  // head_dim 128: the tensor-core attention and its split merge
    s.hidden = 512;
    s.heads = 4;
    s.kv_heads = 2;
    s.inter = 1024;
    s.max_positions = 4096;
    write_random_checkpoint(dir_, s, 33);
  }
  void TearDown() override {
    kernels::set_dependent_launch(true);
    if (GetParam().products_env != nullptr) ::unsetenv(GetParam().products_env);
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  // Sampled tokens, their logprobs and every step's logits of one fixed workload, on a new
  // backend built with dependent launch `on`.
  struct Trace {
    std::vector<int32_t> tokens;
    std::vector<float> values;
  };
  Trace run(bool on) {
    kernels::set_dependent_launch(on);
    if (GetParam().products_env != nullptr)
      ::setenv(GetParam().products_env, GetParam().products_rows, 1);
    BackendOptions o = small_cuda_options(1 << 16);
    o.deterministic = GetParam().deterministic;
    auto be = make_cuda_backend(dir_, o);
    SamplingParams t1;
    t1.temperature = 1.0f;
    t1.seed = 5;
    Trace out;
    auto record = [&](const std::vector<TokenOutput>& outs, int32_t rows) {
      for (const auto& x : outs) {
        out.tokens.push_back(x.sampled);
        out.values.push_back(x.sampled_logprob);
      }
      const auto logits = cuda_last_logits(*be, rows);
      out.values.insert(out.values.end(), logits.begin(), logits.end());
    };
    constexpr int kSeqs = 5;
    std::vector<int64_t> seqs;
    std::vector<int32_t> last;
    for (int i = 0; i < kSeqs; ++i) {
      seqs.push_back(be->create_sequence());
      const auto prompt = random_tokens(600 + 250 * i, 40 + i);
      const auto outs = be->forward(std::vector<SequenceChunk>{make_chunk(
          seqs.back(), 10 + i, prompt, static_cast<int32_t>(prompt.size()) - 1, t1)});
      record(outs, 1);
      last.push_back(outs.back().sampled);
    }
    // SequenceChunk::tokens is a view: the token vectors outlive each forward.
    std::vector<std::vector<int32_t>> inputs(kSeqs);
    for (int step = 0; step < 6; ++step) {  // first sight, capture, then replays
      std::vector<SequenceChunk> chunks;
      for (int i = 0; i < kSeqs; ++i) {
        inputs[i] = {last[i]};
        chunks.push_back(make_chunk(seqs[i], 10 + i, inputs[i], 0, t1));
      }
      const auto outs = be->forward(chunks);
      record(outs, kSeqs);
      for (int i = 0; i < kSeqs; ++i) last[i] = outs[static_cast<size_t>(i)].sampled;
    }
    std::vector<SequenceChunk> verify;
    for (int i = 0; i < kSeqs; ++i) {
      inputs[i] = random_tokens(static_cast<size_t>(2 + 3 * i), 90 + i);
      inputs[i].insert(inputs[i].begin(), last[i]);
      verify.push_back(make_chunk(seqs[i], 10 + i, inputs[i], 0, t1));
    }
    const auto outs = be->forward(verify);
    record(outs, static_cast<int32_t>(outs.size()));
    return out;
  }

  fs::path dir_;
};

TEST_P(CudaDependentLaunch, DoesNotChangeABit) {
  const Trace off = run(false);
  const Trace on = run(true);
  EXPECT_EQ(on.tokens, off.tokens);
  ASSERT_EQ(on.values.size(), off.values.size());
  int64_t differing = 0;
  for (size_t i = 0; i < on.values.size(); ++i)
    differing += std::memcmp(&on.values[i], &off.values[i], sizeof(float)) != 0;
  EXPECT_EQ(differing, 0) << "of " << on.values.size() << " logits and logprobs";
}

INSTANTIATE_TEST_SUITE_P(Modes, CudaDependentLaunch,
                         ::testing::Values(Mode{"fast", false, nullptr, nullptr},
                                           Mode{"fast_matvec", false, "LONGTAIL_MATVEC_ROWS", "8"},
                                           Mode{"fast_skinny", false, "LONGTAIL_SKINNY_ROWS", "64"},
                                           Mode{"deterministic", true, nullptr, nullptr}),
                         [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace longtail::policy::testing
