// Deterministic mode of the CUDA backend (BackendOptions::deterministic): a sequence's logits at a
// position must be bitwise the same whatever the batch it runs in and its place there, however
// many tokens the forward carries for it (decode, verify of k = 1..16, prefill chunks), with CUDA
// graphs or eagerly, and in another process. Checked on random checkpoints of the three
// architectures (Qwen2 biases, Qwen3 q/k norms, Llama 3 RoPE scaling) with head_dim 64 and 128 so
// the tensor-core attention path runs, and contexts past the 1024-position attention split so the
// split merge runs too. Also the batch-invariant GEMMs on their own, over every row count 1..300,
// and a sleep/wake that keeps their algorithm choice and the logits.
#include <gtest/gtest.h>

#include <cuda_runtime_api.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "gpu_test_util.h"
#include "policy/cuda_gemm.h"
#include "random_checkpoint.h"

namespace longtail::policy::testing {
namespace {

namespace fs = std::filesystem;

SamplingParams temp1() {
  SamplingParams s;
  s.temperature = 1.0f;
  s.seed = 3;
  return s;
}

BackendOptions det_options() {
  BackendOptions o = small_cuda_options(1 << 19);
  o.deterministic = true;
  return o;
}

// Number of rows whose bits differ (0 = identical), comparing rows of `vocab` floats.
int64_t differing_values(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return -1;
  int64_t n = 0;
  for (size_t i = 0; i < a.size(); ++i) n += std::memcmp(&a[i], &b[i], sizeof(float)) != 0;
  return n;
}

std::vector<float> row(const std::vector<float>& logits, int32_t r, int32_t vocab) {
  return std::vector<float>(logits.begin() + static_cast<int64_t>(r) * vocab,
                            logits.begin() + static_cast<int64_t>(r + 1) * vocab);
}

struct Arch {
  std::string name;
  int hidden, heads, kv_heads;
};
const Arch kArchs[] = {{"qwen2", 256, 4, 2}, {"qwen3", 512, 4, 2}, {"llama", 512, 8, 2}};

class CudaDeterministic : public ::testing::TestWithParam<Arch> {
 protected:
  void SetUp() override {
    LT_SKIP_WITHOUT_GPU();
    dir_ = fs::temp_directory_path() /
           ("longtail_cuda_det_" + GetParam().name + "_" + std::to_string(::getpid()));
    RandomCheckpointShape s;
    s.architecture = GetParam().name;
    s.hidden = GetParam().hidden;
    s.heads = GetParam().heads;
    s.kv_heads = GetParam().kv_heads;
    s.inter = 2 * s.hidden;
    s.max_positions = 4096;
    write_random_checkpoint(dir_, s, 21);
    be_ = make_cuda_backend(dir_, det_options());
    vocab_ = be_->config().vocab_size;
  }
  void TearDown() override {
    be_.reset();
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  // Prefills `prompt` alone into a new sequence (the same pass every time) and returns it.
  int64_t prefilled(const std::vector<int32_t>& prompt, uint64_t uid) {
    const int64_t s = be_->create_sequence();
    be_->forward(std::vector<SequenceChunk>{
        make_chunk(s, uid, prompt, static_cast<int32_t>(prompt.size()) - 1, temp1())});
    return s;
  }

  // The logits of `target` decoding `token`, in a batch of `batch` sequences (others with random
  // contexts of 1..1200 positions) at index `place`.
  std::vector<float> decode_in_batch(const std::vector<int32_t>& prompt, int32_t token, int batch,
                                     int place, uint32_t seed) {
    const int64_t target = prefilled(prompt, 1);
    std::mt19937 rng(seed);
    std::vector<int64_t> others;
    std::vector<std::vector<int32_t>> other_prompts;
    std::vector<SequenceChunk> prefill;
    for (int i = 0; i + 1 < batch; ++i) {
      others.push_back(be_->create_sequence());
      other_prompts.push_back(random_tokens(1 + rng() % 1200, seed * 1000 + i));
    }
    for (int i = 0; i + 1 < batch; ++i)
      prefill.push_back(make_chunk(others[i], 100 + i, other_prompts[i],
                                   static_cast<int32_t>(other_prompts[i].size()), temp1()));
    if (!prefill.empty()) be_->forward(prefill);
    const std::vector<int32_t> tok = {token};
    std::vector<std::vector<int32_t>> other_tok(others.size());
    std::vector<SequenceChunk> step;
    size_t next = 0;
    for (int i = 0; i < batch; ++i) {
      if (i == place) {
        step.push_back(make_chunk(target, 1, tok, 0, temp1()));
      } else {
        other_tok[next] = {static_cast<int32_t>(rng() % 1000)};
        step.push_back(make_chunk(others[next], 100 + next, other_tok[next], 0, temp1()));
        ++next;
      }
    }
    be_->forward(step);
    const auto logits = cuda_last_logits(*be_, batch);
    be_->release_sequence(target);
    for (int64_t s : others) be_->release_sequence(s);
    return row(logits, place, vocab_);
  }

  fs::path dir_;
  std::unique_ptr<Backend> be_;
  int32_t vocab_ = 0;
};

TEST_P(CudaDeterministic, LogitsDoNotDependOnTheBatchOrGraphReplay) {
  const auto prompt = random_tokens(1500, 7);
  const auto alone = decode_in_batch(prompt, 42, 1, 0, 1);
  struct Case { int batch, place; };
  for (const Case c : {Case{7, 3}, Case{64, 0}, Case{64, 63}, Case{256, 100}, Case{1, 0}}) {
    for (int rep = 0; rep < 3; ++rep) {  // first sight eager, then captured, then replayed
      EXPECT_EQ(differing_values(decode_in_batch(prompt, 42, c.batch, c.place, 10 + rep), alone), 0)
          << "batch " << c.batch << " place " << c.place << " repetition " << rep;
    }
  }
  const auto stats = cuda_backend_stats(*be_);
  EXPECT_GT(stats.graph_replays, 0u) << "no pass replayed a graph: the graph case was not covered";
}

TEST_P(CudaDeterministic, VerifyOfKTokensEqualsDecodingThemOneByOne) {
  const auto prompt = random_tokens(1015, 8);  // drafts cross the 1024-position split boundary
  const auto drafts = random_tokens(16, 9);
  std::vector<std::vector<float>> want;
  {
    const int64_t s = prefilled(prompt, 1);
    for (int j = 0; j < 16; ++j) {
      const std::vector<int32_t> one = {drafts[j]};
      be_->forward(std::vector<SequenceChunk>{make_chunk(s, 1, one, 0, temp1())});
      want.push_back(row(cuda_last_logits(*be_, 1), 0, vocab_));
    }
    be_->release_sequence(s);
  }
  for (int k = 1; k <= 16; ++k) {
    const int64_t s = prefilled(prompt, 1);
    const int64_t a = prefilled(random_tokens(300, 10 + k), 2);
    const int64_t b = prefilled(random_tokens(2000, 30 + k), 3);
    const std::vector<int32_t> mine(drafts.begin(), drafts.begin() + k);
    const auto ta = random_tokens(static_cast<size_t>(17 - k), 50 + k);
    const auto tb = random_tokens(3, 70 + k);
    be_->forward(std::vector<SequenceChunk>{make_chunk(a, 2, ta, 0, temp1()),
                                            make_chunk(s, 1, mine, 0, temp1()),
                                            make_chunk(b, 3, tb, 0, temp1())});
    const auto logits = cuda_last_logits(*be_, static_cast<int32_t>(ta.size()) + k + 3);
    for (int j = 0; j < k; ++j) {
      EXPECT_EQ(differing_values(row(logits, static_cast<int32_t>(ta.size()) + j, vocab_), want[j]), 0)
          << "verify k " << k << " position " << j;
    }
    for (int64_t q : {s, a, b}) be_->release_sequence(q);
  }
}

TEST_P(CudaDeterministic, PrefillChunkingDoesNotChangeLogits) {
  const auto prompt = random_tokens(1300, 11);
  const std::vector<int32_t> next = {5};
  auto run = [&](const std::vector<int32_t>& cuts) {
    const int64_t s = be_->create_sequence();
    int32_t begin = 0;
    std::vector<float> last;
    for (size_t i = 0; i <= cuts.size(); ++i) {
      const int32_t end = i < cuts.size() ? cuts[i] : static_cast<int32_t>(prompt.size());
      const std::vector<int32_t> part(prompt.begin() + begin, prompt.begin() + end);
      const bool final_chunk = i == cuts.size();
      be_->forward(std::vector<SequenceChunk>{make_chunk(
          s, 1, part, final_chunk ? static_cast<int32_t>(part.size()) - 1 : static_cast<int32_t>(part.size()),
          temp1())});
      begin = end;
    }
    last = row(cuda_last_logits(*be_, 1), 0, vocab_);
    be_->forward(std::vector<SequenceChunk>{make_chunk(s, 1, next, 0, temp1())});
    const auto after = row(cuda_last_logits(*be_, 1), 0, vocab_);
    be_->release_sequence(s);
    last.insert(last.end(), after.begin(), after.end());
    return last;
  };
  const auto whole = run({});
  for (const std::vector<int32_t>& cuts : {std::vector<int32_t>{1}, std::vector<int32_t>{700},
                                           std::vector<int32_t>{1024},
                                           std::vector<int32_t>{100, 200, 300, 400, 500, 600, 700,
                                                                800, 900, 1000, 1100, 1200},
                                           std::vector<int32_t>{1299}}) {
    EXPECT_EQ(differing_values(run(cuts), whole), 0) << "first cut at " << cuts[0];
  }
}

// The child half of the two-process check: writes its logits where the parent asked.
TEST_P(CudaDeterministic, SameLogitsInAnotherProcess) {
  const auto prompt = random_tokens(1100, 12);
  const auto mine = decode_in_batch(prompt, 9, 5, 2, 1);
  if (const char* out = std::getenv("LONGTAIL_DET_CHILD_OUT")) {
    std::ofstream(out, std::ios::binary)
        .write(reinterpret_cast<const char*>(mine.data()),
               static_cast<std::streamsize>(mine.size() * sizeof(float)));
    return;
  }
  const fs::path file = dir_ / "child_logits.bin";
  const std::string self = fs::read_symlink("/proc/self/exe").string();
  const std::string filter = std::string(::testing::UnitTest::GetInstance()->current_test_info()->test_suite_name()) +
                             "." + ::testing::UnitTest::GetInstance()->current_test_info()->name();
  const std::string cmd = "LONGTAIL_DET_CHILD_OUT='" + file.string() + "' '" + self +
                          "' --gtest_filter='" + filter + "' > '" + (dir_ / "child.log").string() +
                          "' 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << "child process failed: see " << (dir_ / "child.log");
  std::vector<float> theirs(mine.size());
  std::ifstream in(file, std::ios::binary);
  in.read(reinterpret_cast<char*>(theirs.data()), static_cast<std::streamsize>(theirs.size() * sizeof(float)));
  ASSERT_TRUE(in) << "child wrote no logits";
  EXPECT_EQ(differing_values(theirs, mine), 0);
}

// SLEEP / WAKE_UP re-create the forward runner, not the GEMM algorithm choice: a wake times no
// candidates on the device (GemmChoices::made_in_process stays put) and the logits after it are
// the logits before it, bit for bit, at level 1 and after a level-2 sleep and a weight reload.
TEST_P(CudaDeterministic, WakeKeepsTheGemmChoiceAndTheLogits) {
  const auto prompt = random_tokens(1100, 13);
  const auto before = decode_in_batch(prompt, 9, 5, 2, 1);
  const size_t chosen = cuda::GemmChoices::made_in_process();
  EXPECT_GE(chosen, 5u) << "the deterministic backend chose no GEMM algorithms at start-up";
  for (int level : {1, 2}) {
    SCOPED_TRACE(::testing::Message() << "sleep level " << level);
    be_->sleep(level);
    if (level == 2) be_->replace_weights(dir_);
    const auto t0 = std::chrono::steady_clock::now();
    be_->wake_up();
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    std::printf("[wake] level %d: wake_up() %.1f ms\n", level, ms);
    EXPECT_EQ(cuda::GemmChoices::made_in_process(), chosen) << "the wake chose GEMM algorithms again";
    EXPECT_EQ(differing_values(decode_in_batch(prompt, 9, 5, 2, 1), before), 0);
  }
}

INSTANTIATE_TEST_SUITE_P(Architectures, CudaDeterministic, ::testing::ValuesIn(kArchs),
                         [](const auto& info) { return info.param.name; });

// The batch-invariant products alone: every row of Y for M = 1..300 (and the largest pass) equals
// the same row computed with M = 1, for the shapes of a 1.5B layer and its lm_head; fp32 out with
// and without accumulation, bf16 out.
TEST(CudaDeterministicGemm, RowsDoNotDependOnTheRowCount) {
  LT_SKIP_WITHOUT_GPU();
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  {
    constexpr int kMaxRows = 4096;
    cuda::Gemm gemm(stream, true, kMaxRows);
    struct Shape { int n, k; };
    for (const Shape sh : {Shape{2048, 1536}, Shape{1536, 8960}, Shape{17920, 1536},
                           Shape{151936, 1536}}) {
      SCOPED_TRACE(::testing::Message() << sh.n << " x " << sh.k);
      std::mt19937 rng(sh.n);
      std::uniform_int_distribution<int> bits(0x3c00, 0x3f80);  // bf16 in about [0.008, 1]
      auto random_bf16 = [&](size_t n) {
        std::vector<uint16_t> v(n);
        for (auto& x : v) x = static_cast<uint16_t>(bits(rng) | ((rng() & 1) << 15));
        return v;
      };
      const auto w = random_bf16(static_cast<size_t>(sh.n) * sh.k);
      const auto x = random_bf16(static_cast<size_t>(kMaxRows) * sh.k);
      cuda::DeviceBuffer dw(w.size() * 2), dx(x.size() * 2), dy(static_cast<size_t>(kMaxRows) * sh.n * 4),
          dy1(static_cast<size_t>(kMaxRows) * sh.n * 4);
      ASSERT_EQ(cudaMemcpy(dw.get(), w.data(), w.size() * 2, cudaMemcpyHostToDevice), cudaSuccess);
      ASSERT_EQ(cudaMemcpy(dx.get(), x.data(), x.size() * 2, cudaMemcpyHostToDevice), cudaSuccess);
      for (int mode = 0; mode < 3; ++mode) {  // f32, f32 accumulate, bf16
        const size_t out_bytes = mode == 2 ? 2 : 4;
        auto product = [&](void* y, int m, const char* x_rows) {
          if (mode == 2) {
            gemm.bf16_out(x_rows, dw.get(), y, m, sh.n, sh.k);
          } else {
            ASSERT_EQ(cudaMemsetAsync(y, 0x3f, static_cast<size_t>(m) * sh.n * 4, stream), cudaSuccess);
            gemm.f32_out(x_rows, dw.get(), static_cast<float*>(y), m, sh.n, sh.k, mode == 1);
          }
        };
        // Reference: each row alone (M = 1) for the first 24 rows and a late one.
        const std::vector<int> probe = {0, 1, 2, 3, 5, 8, 13, 21, 23, 255, 299, kMaxRows - 1};
        std::vector<std::vector<char>> want;
        for (int r : probe) {
          product(dy1.get(), 1, dx.get<char>() + static_cast<size_t>(r) * sh.k * 2);
          std::vector<char> h(static_cast<size_t>(sh.n) * out_bytes);
          ASSERT_EQ(cudaMemcpyAsync(h.data(), dy1.get(), h.size(), cudaMemcpyDeviceToHost, stream), cudaSuccess);
          ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
          want.push_back(std::move(h));
        }
        std::vector<int> counts;
        for (int m = 1; m <= 300; m += (sh.n > 100000 ? 37 : 1)) counts.push_back(m);
        counts.push_back(kMaxRows);
        int64_t bad = 0;
        for (int m : counts) {
          product(dy.get(), m, dx.get<char>());
          for (size_t i = 0; i < probe.size(); ++i) {
            if (probe[i] >= m) continue;
            std::vector<char> h(static_cast<size_t>(sh.n) * out_bytes);
            ASSERT_EQ(cudaMemcpyAsync(h.data(), dy.get<char>() + static_cast<size_t>(probe[i]) * sh.n * out_bytes,
                                      h.size(), cudaMemcpyDeviceToHost, stream), cudaSuccess);
            ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
            if (h != want[i]) {
              if (++bad <= 3) ADD_FAILURE() << "mode " << mode << ": row " << probe[i] << " differs at M = " << m;
            }
          }
        }
        EXPECT_EQ(bad, 0) << "mode " << mode;
      }
      // Control, printed only: how many of the same probes differ in fast mode (cuBLAS choosing
      // its kernel, split-K included, per row count), i.e. what the pinned algorithms fix.
      cuda::Gemm fast(stream, false, kMaxRows);
      int64_t fast_bad = 0, fast_probes = 0;
      std::vector<char> alone(static_cast<size_t>(sh.n) * 4), batched(alone.size());
      for (int m : {2, 16, 64, 256, kMaxRows}) {
        for (int r : {0, m - 1}) {
          fast.f32_out(dx.get<char>() + static_cast<size_t>(r) * sh.k * 2, dw.get(), dy1.get<float>(), 1, sh.n, sh.k, false);
          fast.f32_out(dx.get(), dw.get(), dy.get<float>(), m, sh.n, sh.k, false);
          ASSERT_EQ(cudaMemcpyAsync(alone.data(), dy1.get(), alone.size(), cudaMemcpyDeviceToHost, stream), cudaSuccess);
          ASSERT_EQ(cudaMemcpyAsync(batched.data(), dy.get<char>() + static_cast<size_t>(r) * sh.n * 4,
                                    batched.size(), cudaMemcpyDeviceToHost, stream), cudaSuccess);
          ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
          ++fast_probes;
          fast_bad += alone != batched;
        }
      }
      std::printf("[gemm control] %d x %d fast mode: %lld of %lld probed rows differ from the row alone\n",
                  sh.n, sh.k, static_cast<long long>(fast_bad), static_cast<long long>(fast_probes));
    }
  }
  cudaStreamDestroy(stream);
}

}  // namespace
}  // namespace longtail::policy::testing
