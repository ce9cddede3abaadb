// GPU test of the few-row products (kernels/matvec.h) against ref::matmul_xwt on random bf16
// inputs: every row count 1..8 (matvec) and 1..64 (skinny, tensor cores), the backend's
// projection shapes and odd ones (k not a multiple of the 256 elements a warp covers per pass or
// of the skinny kernel's 32-element chunk, n not a multiple of the 4 columns / 16 features of a
// block), fp32 output with and without accumulation, bf16 output; the fused SwiGLU variants; the
// skinny kernel's row independence (a row alone gives the bits it gets among 64); the argument
// checks. The normed skinny variants (the RMSNorm folded in) against ref::rmsnorm_rows then the
// product, within the one bf16 rounding of the normed input both paths make.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <ostream>
#include <string>
#include <random>
#include <vector>

#include "kernels/matvec.h"
#include "tests/kernels/gpu_test_util.h"

#if LONGTAIL_HAVE_CUDA
namespace longtail::kernels {
namespace {
using testing::DeviceBuffer;
using testing::random_bf16;
using testing::rel_error;
using testing::to_float;

// The two few-row kernels share arguments, outputs and checks; each is tested the same way.
struct FewRowKernel {
  const char* name;
  decltype(&matvec_bf16) product;
  decltype(&matvec_swiglu_bf16) swiglu;
  int32_t max_rows;
  double tol;  // fp32 output against the fp64 reference, relative
};
void PrintTo(const FewRowKernel& k, std::ostream* os) { *os << k.name; }

class KernelsGpuFewRows : public ::testing::TestWithParam<FewRowKernel> {};

TEST_P(KernelsGpuFewRows, MatchesReferenceForEveryRowCountAndShape) {
  LT_REQUIRE_GPU();
  const FewRowKernel& kernel = GetParam();
  std::mt19937_64 rng(41);
  struct Shape {
    int32_t n, k;
  };
  for (const Shape s : {Shape{1536, 1536}, Shape{2048, 1536}, Shape{1536, 8960}, Shape{37, 8},
                        Shape{1001, 264}, Shape{5, 4104}, Shape{17000, 96}}) {
    const auto w = random_bf16(static_cast<size_t>(s.n) * s.k, rng, 0.05f);
    DeviceBuffer<bf16> d_w(w.b);
    for (int32_t rows = 1; rows <= kernel.max_rows; rows += rows < 18 ? 1 : 7) {
      SCOPED_TRACE(::testing::Message() << s.n << "x" << s.k << " rows " << rows);
      const auto x = random_bf16(static_cast<size_t>(rows) * s.k, rng, 1.0f);
      const auto y0 = random_bf16(static_cast<size_t>(rows) * s.n, rng, 1.0f);
      std::vector<float> want(static_cast<size_t>(rows) * s.n);
      ref::matmul_xwt(x.f, w.f, rows, s.n, s.k, want);
      std::vector<float> want_acc = want;
      for (size_t i = 0; i < want.size(); ++i) want_acc[i] += y0.f[i];
      DeviceBuffer<bf16> d_x(x.b), d_yb(want.size());
      DeviceBuffer<float> d_y(want.size()), d_acc(y0.f);
      LT_KERNEL_OK(kernel.product(d_x.get(), d_w.get(), d_y.get(), nullptr, false, rows, s.n, s.k, nullptr));
      EXPECT_LT(rel_error(d_y.download(), want), kernel.tol);
      LT_KERNEL_OK(kernel.product(d_x.get(), d_w.get(), d_acc.get(), nullptr, true, rows, s.n, s.k, nullptr));
      EXPECT_LT(rel_error(d_acc.download(), want_acc), kernel.tol);
      LT_KERNEL_OK(kernel.product(d_x.get(), d_w.get(), nullptr, d_yb.get(), false, rows, s.n, s.k, nullptr));
      EXPECT_LT(rel_error(to_float(d_yb.download()), want), testing::kBf16Tol);
    }
  }
}

// The fused SwiGLU: the bf16 [gate | up] product then ref::swiglu, within one bf16 rounding; and
// bit for bit what the same kernel's product (bf16 out) followed by swiglu_bf16 writes.
TEST_P(KernelsGpuFewRows, SwigluVariantEqualsProductThenSwiglu) {
  LT_REQUIRE_GPU();
  const FewRowKernel& kernel = GetParam();
  std::mt19937_64 rng(43);
  for (const int32_t inter : {8960, 100, 3}) {
    const int32_t k = inter == 3 ? 16 : 1536;
    const auto w = random_bf16(static_cast<size_t>(2) * inter * k, rng, 0.05f);
    DeviceBuffer<bf16> d_w(w.b);
    for (const int32_t rows : {1, 2, 3, 4, 5, 8, 16, 31, 64}) {
      if (rows > kernel.max_rows) break;
      SCOPED_TRACE(::testing::Message() << "inter " << inter << " rows " << rows);
      const auto x = random_bf16(static_cast<size_t>(rows) * k, rng, 1.0f);
      std::vector<float> gu(static_cast<size_t>(rows) * 2 * inter), want(static_cast<size_t>(rows) * inter);
      ref::matmul_xwt(x.f, w.f, rows, 2 * inter, k, gu);
      for (float& v : gu) v = ref::round_bf16(v);
      ref::swiglu(gu, want, rows, inter);
      DeviceBuffer<bf16> d_x(x.b), d_act(want.size()), d_gu(gu.size()), d_two(want.size());
      LT_KERNEL_OK(kernel.swiglu(d_x.get(), d_w.get(), d_act.get(), rows, inter, k, nullptr));
      const auto act = d_act.download();
      EXPECT_LT(rel_error(to_float(act), want), testing::kBf16Tol);
      LT_KERNEL_OK(kernel.product(d_x.get(), d_w.get(), nullptr, d_gu.get(), false, rows, 2 * inter, k, nullptr));
      LT_KERNEL_OK(swiglu_bf16(d_gu.get(), 2 * inter, d_two.get(), inter, rows, inter, nullptr));
      const auto two = d_two.download();
      for (size_t i = 0; i < act.size(); ++i) ASSERT_EQ(act[i].bits, two[i].bits) << i;
    }
  }
}

TEST_P(KernelsGpuFewRows, RefusesBadArguments) {
  LT_REQUIRE_GPU();
  const FewRowKernel& kernel = GetParam();
  const int32_t too_many = kernel.max_rows + 1;
  DeviceBuffer<bf16> x(64), w(64), yb(64);
  DeviceBuffer<float> y(64);
  EXPECT_EQ(kernel.product(x.get(), w.get(), y.get(), nullptr, false, 0, 4, 8, nullptr), Status::kInvalidArgument);
  EXPECT_EQ(kernel.product(x.get(), w.get(), y.get(), nullptr, false, too_many, 4, 8, nullptr), Status::kInvalidArgument);
  EXPECT_EQ(kernel.product(x.get(), w.get(), y.get(), nullptr, false, 1, 4, 12, nullptr), Status::kInvalidArgument);
  EXPECT_EQ(kernel.product(x.get(), w.get(), y.get(), yb.get(), false, 1, 4, 8, nullptr), Status::kInvalidArgument);
  EXPECT_EQ(kernel.product(x.get(), w.get(), nullptr, yb.get(), true, 1, 4, 8, nullptr), Status::kInvalidArgument);
  EXPECT_EQ(kernel.product(x.get() + 1, w.get(), y.get(), nullptr, false, 1, 4, 8, nullptr), Status::kInvalidArgument);
  EXPECT_EQ(kernel.swiglu(x.get(), w.get(), yb.get(), too_many, 4, 8, nullptr), Status::kInvalidArgument);
  EXPECT_EQ(kernel.swiglu(x.get(), w.get(), nullptr, 1, 4, 8, nullptr), Status::kInvalidArgument);
}

// fp32 outputs of tensor-core sums: the MMA's fp32 accumulation truncates the addends it aligns,
// so skinny_gemm sits a little above the 1e-5 matvec's CUDA-core fp32 sums reach.
INSTANTIATE_TEST_SUITE_P(Kernels, KernelsGpuFewRows,
                         ::testing::Values(FewRowKernel{"matvec", &matvec_bf16, &matvec_swiglu_bf16,
                                                        kMatvecMaxRows, 1e-5},
                                           FewRowKernel{"skinny", &skinny_gemm_bf16,
                                                        &skinny_gemm_swiglu_bf16, kSkinnyMaxRows, 3e-5}),
                         [](const auto& info) { return std::string(info.param.name); });

// Random fp32 rows with a spread of scales (the residual stream's rows differ by orders of
// magnitude) and a norm weight around 1.
struct NormedCase {
  std::vector<float> x, weight;
};
NormedCase random_normed(int32_t rows, int32_t k, std::mt19937_64& rng) {
  NormedCase c;
  std::normal_distribution<float> value(0.0f, 1.0f);
  std::uniform_real_distribution<float> scale(-3.0f, 3.0f), weight(0.5f, 1.5f);
  c.x.resize(static_cast<size_t>(rows) * k);
  for (int32_t r = 0; r < rows; ++r) {
    const float s = std::pow(10.0f, scale(rng));
    for (int32_t i = 0; i < k; ++i) c.x[static_cast<size_t>(r) * k + i] = s * value(rng);
  }
  for (int32_t i = 0; i < k; ++i) c.weight.push_back(weight(rng));
  return c;
}

// A row's result is the same bits whether it is alone or one of 64, at every position, for the
// block layouts of both a small projection and a long one (the lm_head's four tiles a block), with
// a bf16 input and a normed one.
TEST(KernelsGpuFewRows, SkinnyRowsDoNotDependOnTheRowCount) {
  LT_REQUIRE_GPU();
  std::mt19937_64 rng(53);
  for (const int32_t n : {2048, 151936}) {
    const int32_t k = 1536;
    const auto w = random_bf16(static_cast<size_t>(n) * k, rng, 0.05f);
    const auto x = random_bf16(static_cast<size_t>(kSkinnyMaxRows) * k, rng, 1.0f);
    const NormedCase in = random_normed(kSkinnyMaxRows, k, rng);
    DeviceBuffer<bf16> d_w(w.b), d_x(x.b);
    DeviceBuffer<float> d_xf(in.x), d_nw(in.weight);
    DeviceBuffer<float> d_all(static_cast<size_t>(kSkinnyMaxRows) * n), d_some(d_all.size());
    const NormedRows normed{d_xf.get(), d_nw.get(), 1e-6f};
    for (const bool norm : {false, true}) {
      auto product = [&](int32_t rows, float* y) {
        return norm ? skinny_gemm_normed_bf16(normed, d_w.get(), y, nullptr, false, rows, n, k, nullptr)
                    : skinny_gemm_bf16(d_x.get(), d_w.get(), y, nullptr, false, rows, n, k, nullptr);
      };
      LT_KERNEL_OK(product(kSkinnyMaxRows, d_all.get()));
      const auto all = d_all.download();
      for (const int32_t rows : {1, 3, 8, 9, 16, 17, 32, 33, 63}) {
        LT_KERNEL_OK(product(rows, d_some.get()));
        const auto some = d_some.download();
        for (size_t i = 0; i < static_cast<size_t>(rows) * n; ++i)
          ASSERT_EQ(std::memcmp(&some[i], &all[i], sizeof(float)), 0)
              << (norm ? "normed " : "") << "n " << n << " rows " << rows << " row " << i / n
              << " column " << i % n;
      }
    }
  }
}

TEST(KernelsGpuFewRows, SkinnyNormedMatchesNormThenProduct) {
  LT_REQUIRE_GPU();
  std::mt19937_64 rng(59);
  constexpr float kEps = 1e-6f;
  struct Shape {
    int32_t n, k;
  };
  // The 1.5B qkv shape (one tile a block) and the lm_head-like wide one (four tiles a block).
  for (const Shape s : {Shape{2048, 1536}, Shape{1001, 264}, Shape{9000, 896}}) {
    const auto w = random_bf16(static_cast<size_t>(s.n) * s.k, rng, 0.05f);
    DeviceBuffer<bf16> d_w(w.b);
    for (const int32_t rows : {1, 2, 7, 8, 9, 16, 17, 33, 64}) {
      SCOPED_TRACE(::testing::Message() << s.n << "x" << s.k << " rows " << rows);
      const NormedCase in = random_normed(rows, s.k, rng);
      std::vector<float> normed(in.x.size()), want(static_cast<size_t>(rows) * s.n);
      ref::rmsnorm_rows(in.x, {}, rows, s.k, in.weight, kEps, normed);
      ref::matmul_xwt(normed, w.f, rows, s.n, s.k, want);
      DeviceBuffer<float> d_x(in.x), d_nw(in.weight), d_y(want.size()), d_acc(want.size());
      const NormedRows x{d_x.get(), d_nw.get(), kEps};
      LT_KERNEL_OK(skinny_gemm_normed_bf16(x, d_w.get(), d_y.get(), nullptr, false, rows, s.n, s.k, nullptr));
      EXPECT_LT(rel_error(d_y.download(), want), testing::kBf16Tol);
      // Accumulating adds the same values to what the output holds.
      LT_KERNEL_OK(skinny_gemm_normed_bf16(x, d_w.get(), d_acc.get(), nullptr, false, rows, s.n, s.k, nullptr));
      LT_KERNEL_OK(skinny_gemm_normed_bf16(x, d_w.get(), d_acc.get(), nullptr, true, rows, s.n, s.k, nullptr));
      const auto once = d_y.download(), twice = d_acc.download();
      for (size_t i = 0; i < once.size(); ++i) ASSERT_EQ(twice[i], once[i] + once[i]) << i;
      // The norm is what the separate kernel computes: the same product of its bf16 output agrees
      // within the one rounding both make of the normed input.
      DeviceBuffer<bf16> d_normed(in.x.size()), d_yb(want.size());
      DeviceBuffer<float> d_two(want.size());
      LT_KERNEL_OK(rmsnorm_rows_f32(d_x.get(), nullptr, rows, s.k, d_nw.get(), kEps, d_normed.get(), nullptr));
      LT_KERNEL_OK(skinny_gemm_bf16(d_normed.get(), d_w.get(), d_two.get(), nullptr, false, rows, s.n, s.k, nullptr));
      EXPECT_LT(rel_error(once, d_two.download()), testing::kBf16Tol);
      LT_KERNEL_OK(skinny_gemm_normed_bf16(x, d_w.get(), nullptr, d_yb.get(), false, rows, s.n, s.k, nullptr));
      const auto yb = d_yb.download();
      for (size_t i = 0; i < yb.size(); ++i) ASSERT_EQ(yb[i].bits, ref::to_bf16(once[i]).bits) << i;
    }
  }
}

TEST(KernelsGpuFewRows, SkinnyNormedSwigluEqualsNormedProductThenSwiglu) {
  LT_REQUIRE_GPU();
  std::mt19937_64 rng(61);
  constexpr float kEps = 1e-5f;
  for (const int32_t inter : {8960, 100}) {
    const int32_t k = 1536;
    const auto w = random_bf16(static_cast<size_t>(2) * inter * k, rng, 0.05f);
    DeviceBuffer<bf16> d_w(w.b);
    for (const int32_t rows : {1, 5, 16, 31, 64}) {
      SCOPED_TRACE(::testing::Message() << "inter " << inter << " rows " << rows);
      const NormedCase in = random_normed(rows, k, rng);
      std::vector<float> normed(in.x.size()), gu(static_cast<size_t>(rows) * 2 * inter),
          want(static_cast<size_t>(rows) * inter);
      ref::rmsnorm_rows(in.x, {}, rows, k, in.weight, kEps, normed);
      ref::matmul_xwt(normed, w.f, rows, 2 * inter, k, gu);
      for (float& v : gu) v = ref::round_bf16(v);
      ref::swiglu(gu, want, rows, inter);
      DeviceBuffer<float> d_x(in.x), d_nw(in.weight);
      DeviceBuffer<bf16> d_act(want.size()), d_gu(gu.size()), d_two(want.size());
      const NormedRows x{d_x.get(), d_nw.get(), kEps};
      LT_KERNEL_OK(skinny_gemm_normed_swiglu_bf16(x, d_w.get(), d_act.get(), rows, inter, k, nullptr));
      const auto act = d_act.download();
      EXPECT_LT(rel_error(to_float(act), want), 2 * testing::kBf16Tol);
      LT_KERNEL_OK(skinny_gemm_normed_bf16(x, d_w.get(), nullptr, d_gu.get(), false, rows, 2 * inter, k, nullptr));
      LT_KERNEL_OK(swiglu_bf16(d_gu.get(), 2 * inter, d_two.get(), inter, rows, inter, nullptr));
      const auto two = d_two.download();
      for (size_t i = 0; i < act.size(); ++i) ASSERT_EQ(act[i].bits, two[i].bits) << i;
    }
  }
}

TEST(KernelsGpuFewRows, SkinnyNormedRefusesBadArguments) {
  LT_REQUIRE_GPU();
  DeviceBuffer<bf16> w(64), act(64);
  DeviceBuffer<float> x(64), nw(64), y(64);
  const NormedRows good{x.get(), nw.get(), 1e-6f};
  EXPECT_EQ(skinny_gemm_normed_bf16(good, w.get(), y.get(), nullptr, false, 1, 4, 8, nullptr), Status::kOk);
  EXPECT_EQ(skinny_gemm_normed_bf16(NormedRows{nullptr, nw.get(), 1e-6f}, w.get(), y.get(), nullptr, false, 1, 4, 8, nullptr),
            Status::kInvalidArgument);
  EXPECT_EQ(skinny_gemm_normed_bf16(NormedRows{x.get(), nullptr, 1e-6f}, w.get(), y.get(), nullptr, false, 1, 4, 8, nullptr),
            Status::kInvalidArgument);
  EXPECT_EQ(skinny_gemm_normed_bf16(NormedRows{x.get() + 1, nw.get(), 1e-6f}, w.get(), y.get(), nullptr, false, 1, 4, 8, nullptr),
            Status::kInvalidArgument);
  EXPECT_EQ(skinny_gemm_normed_bf16(NormedRows{x.get(), nw.get() + 1, 1e-6f}, w.get(), y.get(), nullptr, false, 1, 4, 8, nullptr),
            Status::kInvalidArgument);
  EXPECT_EQ(skinny_gemm_normed_bf16(NormedRows{x.get(), nw.get(), std::nanf("")}, w.get(), y.get(), nullptr, false, 1, 4, 8, nullptr),
            Status::kInvalidArgument);
  EXPECT_EQ(skinny_gemm_normed_bf16(good, w.get(), y.get(), nullptr, false, kSkinnyMaxRows + 1, 4, 8, nullptr),
            Status::kInvalidArgument);
  EXPECT_EQ(skinny_gemm_normed_swiglu_bf16(good, w.get(), nullptr, 1, 4, 8, nullptr), Status::kInvalidArgument);
  EXPECT_EQ(skinny_gemm_normed_swiglu_bf16(good, w.get(), act.get(), 1, 4, 12, nullptr), Status::kInvalidArgument);
}

}  // namespace
}  // namespace longtail::kernels
#else
TEST(KernelsGpuFewRows, All) { GTEST_SKIP() << "built without CUDA (LONGTAIL_HAVE_CUDA off)"; }
#endif
