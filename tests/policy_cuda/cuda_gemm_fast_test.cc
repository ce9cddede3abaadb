// The fast mode's products of a few rows, with LONGTAIL_MATVEC_ROWS=8 (kernels::matvec_bf16 instead
// of cuBLAS up to 8 rows) and with LONGTAIL_SKINNY_ROWS=64 (kernels::skinny_gemm_bf16 up to 64):
// for the shapes of a 1.5B layer and its lm_head, every row of a product of M rows is bitwise the
// row computed alone, and close to cuBLAS (the default); the fused gate/up + SwiGLU is bitwise the
// product followed by kernels::swiglu_bf16; one row past the limit goes back to cuBLAS. And the
// default fast mode's tuned cuBLASLt algorithms (chosen per row range at prepare(), split-K
// included) agree with cuBLAS's own per-call choice, accumulating output included. The normed
// products (normed_f32_out, normed_swiglu) agree with the norm kernel then the product in every
// mode, fold the norm in where skinny_gemm runs with LONGTAIL_NORM_FUSION=1 (the scratch is then
// untouched), and are that exact sequence by default, with the fusion off, and in batch-invariant
// mode.
#include <gtest/gtest.h>

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <ostream>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "gpu_test_util.h"
#include "kernels/kernels.h"
#include "policy/cuda_buffer.h"
#include "policy/cuda_gemm.h"

namespace longtail::policy::testing {
namespace {

std::vector<uint16_t> random_bf16(size_t n, std::mt19937& rng) {
  std::uniform_int_distribution<int> bits(0x3c00, 0x3f80);  // bf16 in about [0.008, 1]
  std::vector<uint16_t> v(n);
  for (auto& x : v) x = static_cast<uint16_t>(bits(rng) | ((rng() & 1) << 15));
  return v;
}

template <typename T>
std::vector<T> download(const cuda::DeviceBuffer& b, size_t n, cudaStream_t s) {
  std::vector<T> h(n);
  EXPECT_EQ(cudaMemcpyAsync(h.data(), b.get(), n * sizeof(T), cudaMemcpyDeviceToHost, s), cudaSuccess);
  EXPECT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  return h;
}

// Over y's entries (ref may hold more rows).
double relative_rms(const std::vector<float>& y, const std::vector<float>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    num += (static_cast<double>(y[i]) - ref[i]) * (static_cast<double>(y[i]) - ref[i]);
    den += static_cast<double>(ref[i]) * ref[i];
  }
  return std::sqrt(num / den);
}

std::vector<float> bf16_to_float(const std::vector<uint16_t>& v) {
  std::vector<float> f(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    const uint32_t bits = static_cast<uint32_t>(v[i]) << 16;
    std::memcpy(&f[i], &bits, 4);
  }
  return f;
}

struct FewRowKernel {
  const char* name;
  const char* env;  // the variable that sends up to kRows rows to it
  int rows;
  double tol;       // against cuBLAS, relative (tensor-core sums truncate a little more)
};
void PrintTo(const FewRowKernel& k, std::ostream* os) { *os << k.name; }

class CudaFastGemm : public ::testing::TestWithParam<FewRowKernel> {};

TEST_P(CudaFastGemm, FewRowProductsMatchCublasAndDoNotDependOnTheRowCount) {
  LT_SKIP_WITHOUT_GPU();
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  {
    const int kRows = GetParam().rows;
    setenv(GetParam().env, std::to_string(kRows).c_str(), 1);
    cuda::Gemm fast(stream, false, 4096);
    unsetenv(GetParam().env);
    cuda::Gemm cublas(stream, false, 4096);
    struct Shape {
      int n, k;
    };
    for (const Shape sh : {Shape{2048, 1536}, Shape{1536, 8960}, Shape{151936, 1536}}) {
      SCOPED_TRACE(::testing::Message() << sh.n << " x " << sh.k);
      std::mt19937 rng(sh.n);
      const auto w = random_bf16(static_cast<size_t>(sh.n) * sh.k, rng);
      const auto x = random_bf16(static_cast<size_t>(kRows) * sh.k, rng);
      const size_t out = static_cast<size_t>(kRows) * sh.n;
      cuda::DeviceBuffer dw(w.size() * 2), dx(x.size() * 2), dy(out * 4), dref(out * 4);
      ASSERT_EQ(cudaMemcpy(dw.get(), w.data(), w.size() * 2, cudaMemcpyHostToDevice), cudaSuccess);
      ASSERT_EQ(cudaMemcpy(dx.get(), x.data(), x.size() * 2, cudaMemcpyHostToDevice), cudaSuccess);
      cublas.f32_out(dx.get(), dw.get(), dref.get<float>(), kRows, sh.n, sh.k, false);
      const auto ref = download<float>(dref, out, stream);
      std::vector<float> alone;
      for (int m = 1; m <= kRows; ++m) {
        fast.f32_out(dx.get(), dw.get(), dy.get<float>(), m, sh.n, sh.k, false);
        const auto y = download<float>(dy, static_cast<size_t>(m) * sh.n, stream);
        if (m == 1) alone = y;
        EXPECT_EQ(std::memcmp(y.data(), alone.data(), alone.size() * 4), 0) << "row 0 at M = " << m;
        EXPECT_LT(relative_rms(y, ref), GetParam().tol) << "M = " << m;
      }
    }
    // The fused SwiGLU of a 1.5B MLP: bitwise bf16_out then swiglu_bf16, for every row count.
    const int inter = 8960, k = 1536;
    std::mt19937 rng(7);
    const auto w = random_bf16(static_cast<size_t>(2) * inter * k, rng);
    const auto x = random_bf16(static_cast<size_t>(kRows) * k, rng);
    cuda::DeviceBuffer dw(w.size() * 2), dx(x.size() * 2), dgu(static_cast<size_t>(kRows) * 2 * inter * 2),
        dact(static_cast<size_t>(kRows) * inter * 2), dtwo(static_cast<size_t>(kRows) * inter * 2);
    ASSERT_EQ(cudaMemcpy(dw.get(), w.data(), w.size() * 2, cudaMemcpyHostToDevice), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(dx.get(), x.data(), x.size() * 2, cudaMemcpyHostToDevice), cudaSuccess);
    for (int m = 1; m <= kRows; ++m) {
      ASSERT_TRUE(fast.swiglu_out(dx.get(), dw.get(), dact.get(), m, inter, k)) << "M = " << m;
      EXPECT_FALSE(cublas.swiglu_out(dx.get(), dw.get(), dact.get(), m, inter, k));
      fast.bf16_out(dx.get(), dw.get(), dgu.get(), m, 2 * inter, k);
      ASSERT_EQ(kernels::swiglu_bf16(dgu.get<kernels::bf16>(), 2 * inter, dtwo.get<kernels::bf16>(),
                                     inter, m, inter, stream),
                kernels::Status::kOk);
      const auto a = download<uint16_t>(dact, static_cast<size_t>(m) * inter, stream);
      const auto b = download<uint16_t>(dtwo, static_cast<size_t>(m) * inter, stream);
      EXPECT_EQ(a, b) << "M = " << m;
    }
    EXPECT_FALSE(fast.swiglu_out(dx.get(), dw.get(), dact.get(), kRows + 1, inter, k));
  }
  cudaStreamDestroy(stream);
}

INSTANTIATE_TEST_SUITE_P(Kernels, CudaFastGemm,
                         ::testing::Values(FewRowKernel{"matvec", "LONGTAIL_MATVEC_ROWS", 8, 1e-5},
                                           FewRowKernel{"skinny", "LONGTAIL_SKINNY_ROWS", 64, 3e-5}),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(CudaFastGemm, TunedAlgorithmsAgreeWithCublasAtEveryRowRange) {
  LT_SKIP_WITHOUT_GPU();
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  {
    constexpr int kMaxRows = 3000;
    cuda::Gemm tuned(stream, false, kMaxRows);
    setenv("LONGTAIL_GEMM_TUNE", "0", 1);
    cuda::Gemm untuned(stream, false, kMaxRows);
    unsetenv("LONGTAIL_GEMM_TUNE");
    struct Shape {
      int n, k;
      bool f32, accumulate;
    };
    // qkv, down (into the residual), gate_up (bf16 out): small, long-K and wide products.
    for (const Shape sh : {Shape{2048, 1536, true, false}, Shape{1536, 8960, true, true},
                           Shape{17920, 1536, false, false}}) {
      SCOPED_TRACE(::testing::Message() << sh.n << " x " << sh.k);
      tuned.prepare(sh.n, sh.k, sh.f32);
      std::mt19937 rng(sh.k);
      const auto w = random_bf16(static_cast<size_t>(sh.n) * sh.k, rng);
      const auto x = random_bf16(static_cast<size_t>(kMaxRows) * sh.k, rng);
      std::vector<float> start(static_cast<size_t>(kMaxRows) * sh.n);
      std::uniform_real_distribution<float> u(-1.0f, 1.0f);
      for (auto& v : start) v = u(rng);
      const size_t ybytes = sh.f32 ? 4 : 2;
      cuda::DeviceBuffer dw(w.size() * 2), dx(x.size() * 2), dy(start.size() * ybytes),
          dref(start.size() * ybytes);
      ASSERT_EQ(cudaMemcpy(dw.get(), w.data(), w.size() * 2, cudaMemcpyHostToDevice), cudaSuccess);
      ASSERT_EQ(cudaMemcpy(dx.get(), x.data(), x.size() * 2, cudaMemcpyHostToDevice), cudaSuccess);
      // Both ends of every range and of the halves it may be cut into.
      for (int m : {1, 3, 8, 13, 16, 24, 64, 100, 129, 144, 192, 193, 256, 300, 400, 777, 1500,
                    2048, kMaxRows}) {
        const size_t out = static_cast<size_t>(m) * sh.n;
        if (sh.f32) {
          for (auto* d : {&dy, &dref})
            ASSERT_EQ(cudaMemcpy(d->get(), start.data(), out * 4, cudaMemcpyHostToDevice), cudaSuccess);
          tuned.f32_out(dx.get(), dw.get(), dy.get<float>(), m, sh.n, sh.k, sh.accumulate);
          untuned.f32_out(dx.get(), dw.get(), dref.get<float>(), m, sh.n, sh.k, sh.accumulate);
          EXPECT_LT(relative_rms(download<float>(dy, out, stream), download<float>(dref, out, stream)),
                    1e-5)
              << "M = " << m;
        } else {
          tuned.bf16_out(dx.get(), dw.get(), dy.get(), m, sh.n, sh.k);
          untuned.bf16_out(dx.get(), dw.get(), dref.get(), m, sh.n, sh.k);
          EXPECT_LT(relative_rms(bf16_to_float(download<uint16_t>(dy, out, stream)),
                                 bf16_to_float(download<uint16_t>(dref, out, stream))),
                    4e-3)
              << "M = " << m;
        }
      }
    }
  }
  cudaStreamDestroy(stream);
}

TEST(CudaFastGemm, NormedProductsAreTheNormThenTheProduct) {
  LT_SKIP_WITHOUT_GPU();
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  {
    constexpr int kMaxRows = 300, n = 2048, k = 1536, inter = 8960;
    constexpr float kEps = 1e-6f;
    std::mt19937 rng(11);
    const auto w = random_bf16(static_cast<size_t>(n) * k, rng);
    const auto wgu = random_bf16(static_cast<size_t>(2) * inter * k, rng);
    std::normal_distribution<float> value(0.0f, 3.0f);
    std::uniform_real_distribution<float> weight(0.5f, 1.5f);
    std::vector<float> x(static_cast<size_t>(kMaxRows) * k), nw(k);
    for (auto& v : x) v = value(rng);
    for (auto& v : nw) v = weight(rng);
    cuda::DeviceBuffer dw(w.size() * 2), dwgu(wgu.size() * 2), dx(x.size() * 4), dnw(nw.size() * 4),
        normed(x.size() * 2), gate_up(static_cast<size_t>(kMaxRows) * 2 * inter * 2),
        dy(static_cast<size_t>(kMaxRows) * n * 4), dref(dy.bytes()),
        dact(static_cast<size_t>(kMaxRows) * inter * 2), dact_ref(dact.bytes());
    ASSERT_EQ(cudaMemcpy(dw.get(), w.data(), w.size() * 2, cudaMemcpyHostToDevice), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(dwgu.get(), wgu.data(), wgu.size() * 2, cudaMemcpyHostToDevice), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(dx.get(), x.data(), x.size() * 4, cudaMemcpyHostToDevice), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(dnw.get(), nw.data(), nw.size() * 4, cudaMemcpyHostToDevice), cudaSuccess);
    const kernels::NormedRows in{dx.get<float>(), dnw.get<float>(), kEps};

    // The reference sequence: the norm kernel, then cuBLAS's own choice of product.
    setenv("LONGTAIL_GEMM_TUNE", "0", 1);
    cuda::Gemm plain(stream, false, kMaxRows);
    unsetenv("LONGTAIL_GEMM_TUNE");
    auto reference = [&](int m) {
      EXPECT_EQ(kernels::rmsnorm_rows_f32(in.x, nullptr, m, k, in.weight, kEps,
                                          normed.get<kernels::bf16>(), stream),
                kernels::Status::kOk);
      plain.f32_out(normed.get(), dw.get(), dref.get<float>(), m, n, k, false);
      plain.bf16_out(normed.get(), dwgu.get(), gate_up.get(), m, 2 * inter, k);
      EXPECT_EQ(kernels::swiglu_bf16(gate_up.get<kernels::bf16>(), 2 * inter,
                                     dact_ref.get<kernels::bf16>(), inter, m, inter, stream),
                kernels::Status::kOk);
    };
    struct Mode {
      const char* name;
      std::vector<std::pair<const char*, const char*>> env;  // set while the Gemm is made
      bool invariant;
      int fused_rows;      // products of up to this many rows must fold the norm in (-1: the
                           // tuner decides)
      bool never_fused;    // then the norm kernel and the same Gemm's product, bit for bit
    };
    // Each mode sets the switches it needs; "default" is the built-in setting, whatever the
    // process was started with (the suite is also run with LONGTAIL_NORM_FUSION=1).
    const ScopedEnv built_in("LONGTAIL_NORM_FUSION", nullptr);
    for (const Mode& mode :
         {Mode{"default", {}, false, 0, true},
          Mode{"fused, tuned", {{"LONGTAIL_NORM_FUSION", "1"}}, false, -1, false},
          Mode{"fused, skinny", {{"LONGTAIL_NORM_FUSION", "1"}, {"LONGTAIL_SKINNY_ROWS", "64"}},
               false, 64, false},
          Mode{"skinny, fusion off", {{"LONGTAIL_NORM_FUSION", "0"}, {"LONGTAIL_SKINNY_ROWS", "64"}},
               false, 0, true},
          Mode{"invariant", {{"LONGTAIL_NORM_FUSION", "1"}}, true, 0, true}}) {
      SCOPED_TRACE(mode.name);
      for (const auto& [var, value] : mode.env) setenv(var, value, 1);
      cuda::Gemm gemm(stream, mode.invariant, kMaxRows);
      for (const auto& [var, value] : mode.env) unsetenv(var);
      gemm.prepare(n, k, true, cuda::Gemm::Fusion::kNormIn);
      gemm.prepare(2 * inter, k, false, cuda::Gemm::Fusion::kNormInSwiglu);
      for (int m : {1, 8, 16, 64, 65, kMaxRows}) {
        SCOPED_TRACE(::testing::Message() << "M = " << m);
        reference(m);
        const auto want = download<float>(dref, static_cast<size_t>(m) * n, stream);
        const auto want_act = download<uint16_t>(dact_ref, static_cast<size_t>(m) * inter, stream);
        ASSERT_EQ(cudaMemset(normed.get(), 0xff, normed.bytes()), cudaSuccess);  // NaN rows
        gemm.normed_f32_out(in, normed.get(), dw.get(), dy.get<float>(), m, n, k);
        gemm.normed_swiglu(in, normed.get(), gate_up.get(), dwgu.get(), dact.get(), m, inter, k);
        const auto y = download<float>(dy, static_cast<size_t>(m) * n, stream);
        const auto act = download<uint16_t>(dact, static_cast<size_t>(m) * inter, stream);
        EXPECT_LT(relative_rms(y, want), 8e-3);
        EXPECT_LT(relative_rms(bf16_to_float(act), bf16_to_float(want_act)), 1.6e-2);
        const auto scratch = download<uint16_t>(normed, static_cast<size_t>(m) * k, stream);
        const bool untouched = std::all_of(scratch.begin(), scratch.end(),
                                           [](uint16_t v) { return v == 0xffff; });
        if (mode.fused_rows >= 0)
          EXPECT_EQ(untouched, m <= mode.fused_rows) << "the norm was folded in, or not";
      }
      if (mode.never_fused) {
        for (int m : {1, 16, 64, kMaxRows}) {
          SCOPED_TRACE(::testing::Message() << "exact, M = " << m);
          gemm.normed_f32_out(in, normed.get(), dw.get(), dy.get<float>(), m, n, k);
          const auto y = download<float>(dy, static_cast<size_t>(m) * n, stream);
          gemm.f32_out(normed.get(), dw.get(), dref.get<float>(), m, n, k, false);
          const auto want = download<float>(dref, static_cast<size_t>(m) * n, stream);
          EXPECT_EQ(std::memcmp(y.data(), want.data(), y.size() * 4), 0);
        }
      }
    }
  }
  cudaStreamDestroy(stream);
}

}  // namespace
}  // namespace longtail::policy::testing
