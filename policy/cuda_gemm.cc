// cuBLAS products for the CUDA backend (see cuda_gemm.h). Row-major Y = X W^T is column-major
// Y^T = W^T' X^T', i.e. one product with op(A) = T on the weight.
#include "policy/cuda_gemm.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/kernels.h"
#include "kernels/matvec.h"

namespace longtail::policy::cuda {
namespace {

// Row counts at which cuBLASLt's heuristic proposes the two algorithms of a shape: one for
// decode/verify-sized products, and one for products of kLargeFrom rows or more (verify of long
// drafts at large batch, prefill), kept only where it gives exactly the first one's bits.
constexpr int kReferenceRows = 64;
constexpr int kLargeReferenceRows = 2048;
constexpr int kLargeFrom = 512;

struct Layout {
  cublasLtMatrixLayout_t h = nullptr;
  Layout(cudaDataType_t type, uint64_t rows, uint64_t cols, int64_t ld) {
    LT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&h, type, rows, cols, ld));
  }
  ~Layout() {
    if (h) cublasLtMatrixLayoutDestroy(h);
  }
  Layout(const Layout&) = delete;
  Layout& operator=(const Layout&) = delete;
};

// Row counts a candidate runs with on random data before it is pinned: each row of every product
// must equal the same row computed alone by the small-row algorithm. cuBLASLt promises no split-K
// for the algorithms kept, but a kernel could still divide work by problem size (stream-K style),
// so the property is checked, not assumed. The probe is deterministic, so every process pins the
// same algorithms.
constexpr int kSmallProbe[] = {1, 7, 64, 263};
constexpr int kLargeProbe[] = {kLargeFrom, 1031};

template <typename T>
T algo_config(const cublasLtMatmulAlgo_t& algo, cublasLtMatmulAlgoConfigAttributes_t attr) {
  T v{};
  size_t written = 0;
  LT_CUBLAS_CHECK(cublasLtMatmulAlgoConfigGetAttribute(&algo, attr, &v, sizeof(v), &written));
  return v;
}

}  // namespace

Gemm::Gemm(cudaStream_t stream, bool batch_invariant, int max_rows, size_t workspace_bytes)
    : stream_(stream),
      batch_invariant_(batch_invariant),
      max_rows_(std::max(1, max_rows)),
      workspace_(workspace_bytes) {
  LT_CUBLAS_CHECK(cublasCreate(&handle_));
  LT_CUBLAS_CHECK(cublasSetStream(handle_, stream));
  LT_CUBLAS_CHECK(cublasSetWorkspace(handle_, workspace_.get(), workspace_.bytes()));
  LT_CUBLAS_CHECK(cublasSetMathMode(handle_, CUBLAS_DEFAULT_MATH));
  if (const char* v = std::getenv("LONGTAIL_MATVEC_ROWS"))
    matvec_rows_ = std::clamp(std::atoi(v), 0, static_cast<int>(kernels::kMatvecMaxRows));
  if (const char* v = std::getenv("LONGTAIL_MATVEC_SWIGLU")) matvec_swiglu_ = std::string(v) != "0";
  if (batch_invariant_) LT_CUBLAS_CHECK(cublasLtCreate(&lt_));
}

Gemm::~Gemm() {
  for (auto& [key, p] : pinned_) {
    if (p.w_layout) cublasLtMatrixLayoutDestroy(p.w_layout);
    if (p.desc) cublasLtMatmulDescDestroy(p.desc);
  }
  if (lt_) cublasLtDestroy(lt_);
  if (handle_) cublasDestroy(handle_);
}

std::vector<cublasLtMatmulAlgo_t> Gemm::candidates(const Pinned& p, int n, int k,
                                                   cudaDataType_t ytype, int reference_rows) {
  cublasLtMatmulPreference_t pref = nullptr;
  LT_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  const uint64_t ws = workspace_.bytes();
  LT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
  constexpr int kWanted = 16;
  cublasLtMatmulHeuristicResult_t results[kWanted] = {};
  int found = 0;
  {
    Layout x(CUDA_R_16BF, k, reference_rows, k), y(ytype, n, reference_rows, n);
    LT_CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(lt_, p.desc, p.w_layout, x.h, y.h, y.h, pref,
                                                   kWanted, results, &found));
  }
  cublasLtMatmulPreferenceDestroy(pref);
  // The heuristic's (deterministic) order, those without split-K first, then those with split-K
  // forced off.
  std::vector<cublasLtMatmulAlgo_t> out;
  for (int pass = 0; pass < 2; ++pass) {
    for (int i = 0; i < found; ++i) {
      if (results[i].state != CUBLAS_STATUS_SUCCESS) continue;
      cublasLtMatmulAlgo_t algo = results[i].algo;
      const bool split = algo_config<int32_t>(algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM) > 1;
      if (split != (pass == 1)) continue;
      if (split) {
        const int32_t one = 1;
        const uint32_t none = CUBLASLT_REDUCTION_SCHEME_NONE;
        if (cublasLtMatmulAlgoConfigSetAttribute(&algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &one,
                                                 sizeof(one)) != CUBLAS_STATUS_SUCCESS ||
            cublasLtMatmulAlgoConfigSetAttribute(&algo, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME,
                                                 &none, sizeof(none)) != CUBLAS_STATUS_SUCCESS)
          continue;
      }
      out.push_back(algo);
    }
  }
  return out;
}

bool Gemm::accepts(const Pinned& p, const cublasLtMatmulAlgo_t& algo, int n, int k,
                   cudaDataType_t ytype, std::initializer_list<int> rows) {
  for (int m : rows) {
    Layout x(CUDA_R_16BF, k, m, k), y(ytype, n, m, n);
    cublasLtMatmulHeuristicResult_t check{};
    if (cublasLtMatmulAlgoCheck(lt_, p.desc, p.w_layout, x.h, y.h, y.h, &algo, &check) !=
            CUBLAS_STATUS_SUCCESS ||
        check.workspaceSize > workspace_.bytes())
      return false;
  }
  return true;
}

const Gemm::Pinned& Gemm::pinned(int n, int k, cudaDataType_t ytype) {
  const auto key = std::make_tuple(n, k, static_cast<int>(ytype));
  if (auto it = pinned_.find(key); it != pinned_.end()) return it->second;
  Pinned p;
  LT_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  LT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
  LT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
  LT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.w_layout, CUDA_R_16BF, k, n, k));
  const std::string shape = std::to_string(n) + " x " + std::to_string(k) +
                            (ytype == CUDA_R_32F ? " (f32 out)" : " (bf16 out)");

  // Small-row algorithm: valid for every row count up to max_rows, invariant over kSmallProbe.
  bool chosen = false;
  for (const auto& algo : candidates(p, n, k, ytype, kReferenceRows)) {
    if (!accepts(p, algo, n, k, ytype, {1, 7, kReferenceRows, max_rows_}) ||
        !same_rows_on_device(p, algo, algo, n, k, ytype, kSmallProbe))
      continue;
    p.algo = algo;
    chosen = true;
    break;
  }
  if (!chosen) {
    cublasLtMatrixLayoutDestroy(p.w_layout);
    cublasLtMatmulDescDestroy(p.desc);
    throw std::runtime_error("deterministic mode: cuBLASLt offers no batch-invariant algorithm for "
                             "a " + shape + " product valid for 1.." + std::to_string(max_rows_) +
                             " rows");
  }
  // Large-row algorithm: only if it differs from the small one and reproduces its bits exactly.
  if (max_rows_ >= kLargeFrom) {
    for (const auto& algo : candidates(p, n, k, ytype, kLargeReferenceRows)) {
      if (std::memcmp(&algo, &p.algo, sizeof(algo)) == 0) break;  // the same kernel: nothing to gain
      if (!accepts(p, algo, n, k, ytype, {kLargeFrom, max_rows_}) ||
          !same_rows_on_device(p, algo, p.algo, n, k, ytype, kLargeProbe))
        continue;
      p.algo_large = algo;
      p.has_large = true;
      break;
    }
  }
  spdlog::info("deterministic gemm {}: cuBLASLt algo {} tile {}{}", shape,
               algo_config<int32_t>(p.algo, CUBLASLT_ALGO_CONFIG_ID),
               algo_config<uint32_t>(p.algo, CUBLASLT_ALGO_CONFIG_TILE_ID),
               p.has_large ? ", from " + std::to_string(kLargeFrom) + " rows algo " +
                                 std::to_string(algo_config<int32_t>(p.algo_large, CUBLASLT_ALGO_CONFIG_ID)) +
                                 " tile " +
                                 std::to_string(algo_config<uint32_t>(p.algo_large, CUBLASLT_ALGO_CONFIG_TILE_ID))
                           : std::string());
  return pinned_.emplace(key, p).first->second;
}

bool Gemm::same_rows_on_device(const Pinned& p, const cublasLtMatmulAlgo_t& batched,
                               const cublasLtMatmulAlgo_t& alone, int n, int k,
                               cudaDataType_t ytype, std::span<const int> row_counts) {
  const int rows = *std::max_element(row_counts.begin(), row_counts.end());
  const size_t ybytes = ytype == CUDA_R_32F ? 4 : 2;
  const size_t row_bytes = static_cast<size_t>(n) * ybytes;
  DeviceBuffer w(static_cast<size_t>(n) * k * 2), x(static_cast<size_t>(rows) * k * 2),
      y(static_cast<size_t>(rows) * row_bytes), y_alone(row_bytes);
  LT_KERNEL_CHECK(kernels::fill_uniform_bf16(w.get<kernels::bf16>(), static_cast<int64_t>(n) * k,
                                             0.05f, 91, stream_));
  LT_KERNEL_CHECK(kernels::fill_uniform_bf16(x.get<kernels::bf16>(),
                                             static_cast<int64_t>(rows) * k, 1.0f, 92, stream_));
  const float alpha = 1.0f, beta = 0.0f;
  auto product = [&](const cublasLtMatmulAlgo_t& algo, const void* xs, void* ys, int m) {
    Layout xl(CUDA_R_16BF, k, m, k), yl(ytype, n, m, n);
    return cublasLtMatmul(lt_, p.desc, &alpha, w.get(), p.w_layout, xs, xl.h, &beta, ys, yl.h, ys,
                          yl.h, &algo, workspace_.get(), workspace_.bytes(),
                          stream_) == CUBLAS_STATUS_SUCCESS;
  };
  std::vector<char> one(row_bytes), many(row_bytes);
  for (int m : row_counts) {
    if (!product(batched, x.get(), y.get(), m)) return false;
    for (int r : {0, m / 2, m - 1}) {
      if (!product(alone, x.get<char>() + static_cast<size_t>(r) * k * 2, y_alone.get(), 1))
        return false;
      LT_CUDA_CHECK(cudaMemcpyAsync(one.data(), y_alone.get(), row_bytes, cudaMemcpyDeviceToHost,
                                    stream_));
      LT_CUDA_CHECK(cudaMemcpyAsync(many.data(), y.get<char>() + r * row_bytes, row_bytes,
                                    cudaMemcpyDeviceToHost, stream_));
      LT_CUDA_CHECK(cudaStreamSynchronize(stream_));
      if (std::memcmp(one.data(), many.data(), row_bytes) != 0) {
        spdlog::debug("gemm {}x{}: candidate rejected, row {} of {} differs", n, k, r, m);
        return false;
      }
    }
  }
  return true;
}

void Gemm::prepare(int n, int k, bool f32_out) {
  if (batch_invariant_) pinned(n, k, f32_out ? CUDA_R_32F : CUDA_R_16BF);
}

void Gemm::run(const void* x, const void* w, void* y, cudaDataType_t ytype, int m, int n, int k,
               float beta) {
  const float alpha = 1.0f;
  if (!batch_invariant_ && m >= 1 && m <= matvec_rows_ && k % 8 == 0 &&
      (reinterpret_cast<uintptr_t>(x) & 15u) == 0 && (reinterpret_cast<uintptr_t>(w) & 15u) == 0) {
    const bool f32 = ytype == CUDA_R_32F;
    LT_KERNEL_CHECK(kernels::matvec_bf16(
        static_cast<const kernels::bf16*>(x), static_cast<const kernels::bf16*>(w),
        f32 ? static_cast<float*>(y) : nullptr, f32 ? nullptr : static_cast<kernels::bf16*>(y),
        beta != 0.0f, m, n, k, stream_));
    return;
  }
  if (!batch_invariant_) {
    LT_CUBLAS_CHECK(cublasGemmEx(handle_, CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, &alpha, w,
                                 CUDA_R_16BF, k, x, CUDA_R_16BF, k, &beta, y, ytype, n,
                                 CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return;
  }
  if (m > max_rows_)
    throw std::logic_error("gemm: " + std::to_string(m) + " rows exceed the " +
                           std::to_string(max_rows_) + " the pinned algorithms were checked for");
  const Pinned& p = pinned(n, k, ytype);
  const cublasLtMatmulAlgo_t& algo = p.has_large && m >= kLargeFrom ? p.algo_large : p.algo;
  Layout xl(CUDA_R_16BF, k, m, k), yl(ytype, n, m, n);
  LT_CUBLAS_CHECK(cublasLtMatmul(lt_, p.desc, &alpha, w, p.w_layout, x, xl.h, &beta, y, yl.h, y,
                                 yl.h, &algo, workspace_.get(), workspace_.bytes(), stream_));
}

void Gemm::bf16_out(const void* x, const void* w, void* y, int m, int n, int k) {
  run(x, w, y, CUDA_R_16BF, m, n, k, 0.0f);
}

void Gemm::f32_out(const void* x, const void* w, float* y, int m, int n, int k, bool accumulate) {
  run(x, w, y, CUDA_R_32F, m, n, k, accumulate ? 1.0f : 0.0f);
}

bool Gemm::swiglu_out(const void* x, const void* w_gate_up, void* act, int m, int inter, int k) {
  if (batch_invariant_ || !matvec_swiglu_ || m < 1 || m > matvec_rows_ || k % 8 != 0 ||
      (reinterpret_cast<uintptr_t>(x) & 15u) != 0 || (reinterpret_cast<uintptr_t>(w_gate_up) & 15u) != 0)
    return false;
  LT_KERNEL_CHECK(kernels::matvec_swiglu_bf16(static_cast<const kernels::bf16*>(x),
                                              static_cast<const kernels::bf16*>(w_gate_up),
                                              static_cast<kernels::bf16*>(act), m, inter, k, stream_));
  return true;
}

}  // namespace longtail::policy::cuda
