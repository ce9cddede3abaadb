// cuBLAS products for the CUDA backend (see cuda_gemm.h). Row-major Y = X W^T is column-major
// Y^T = W^T' X^T', i.e. one product with op(A) = T on the weight.
#include "policy/cuda_gemm.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/kernels.h"

namespace longtail::policy::cuda {
namespace {

// The row count at which the batch-invariant algorithm of a shape is chosen: a middle of the
// decode/verify range, where the backend spends its steps.
constexpr int kReferenceRows = 64;

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

// Row counts the candidate algorithm is run with on random data before it is pinned: each row of
// every product must equal the same row computed alone. cuBLASLt documents no split-K for the
// algorithms kept, but a kernel could still divide work by problem size (stream-K style), so the
// property is checked, not assumed. The probe is deterministic, so every process pins the same
// algorithm.
constexpr int kProbeRows[] = {1, 7, 64, 263};

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

const Gemm::Pinned& Gemm::pinned(int n, int k, cudaDataType_t ytype) {
  const auto key = std::make_tuple(n, k, static_cast<int>(ytype));
  if (auto it = pinned_.find(key); it != pinned_.end()) return it->second;
  Pinned p;
  LT_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
  LT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
  LT_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
  LT_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.w_layout, CUDA_R_16BF, k, n, k));

  cublasLtMatmulPreference_t pref = nullptr;
  LT_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  const uint64_t ws = workspace_.bytes();
  LT_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
  constexpr int kWanted = 16;
  cublasLtMatmulHeuristicResult_t results[kWanted] = {};
  int found = 0;
  {
    Layout x(CUDA_R_16BF, k, kReferenceRows, k), y(ytype, n, kReferenceRows, n);
    LT_CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(lt_, p.desc, p.w_layout, x.h, y.h, y.h, pref,
                                                   kWanted, results, &found));
  }
  cublasLtMatmulPreferenceDestroy(pref);
  // The first candidate, in the heuristic's (deterministic) order, that runs without split-K
  // (candidates that use it are tried again with it forced off), accepts every row count from 1 to
  // max_rows, and passes the invariance probe.
  bool chosen = false;
  for (int i = 0; i < 2 * found && !chosen; ++i) {
    if (results[i % found].state != CUBLAS_STATUS_SUCCESS) continue;
    cublasLtMatmulAlgo_t algo = results[i % found].algo;
    const bool split = algo_config<int32_t>(algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM) > 1;
    if (split != (i >= found)) continue;  // first pass: no split-K; second: split-K ones, forced
    if (split) {
      const int32_t one = 1;
      const uint32_t none = CUBLASLT_REDUCTION_SCHEME_NONE;
      if (cublasLtMatmulAlgoConfigSetAttribute(&algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &one,
                                               sizeof(one)) != CUBLAS_STATUS_SUCCESS ||
          cublasLtMatmulAlgoConfigSetAttribute(&algo, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME, &none,
                                               sizeof(none)) != CUBLAS_STATUS_SUCCESS)
        continue;
    }
    bool ok = true;
    for (int m : {1, 7, kReferenceRows, max_rows_}) {
      Layout x(CUDA_R_16BF, k, m, k), y(ytype, n, m, n);
      cublasLtMatmulHeuristicResult_t check{};
      if (cublasLtMatmulAlgoCheck(lt_, p.desc, p.w_layout, x.h, y.h, y.h, &algo, &check) !=
              CUBLAS_STATUS_SUCCESS ||
          check.workspaceSize > ws) {
        ok = false;
        break;
      }
    }
    if (!ok || !invariant_on_device(p, algo, n, k, ytype)) continue;
    p.algo = algo;
    chosen = true;
    spdlog::debug("gemm {}x{} ({}): pinned cuBLASLt algo id {} tile {} stages {}", n, k,
                  ytype == CUDA_R_32F ? "f32" : "bf16",
                  algo_config<int32_t>(algo, CUBLASLT_ALGO_CONFIG_ID),
                  algo_config<uint32_t>(algo, CUBLASLT_ALGO_CONFIG_TILE_ID),
                  algo_config<uint32_t>(algo, CUBLASLT_ALGO_CONFIG_STAGES_ID));
  }
  if (!chosen) {
    cublasLtMatrixLayoutDestroy(p.w_layout);
    cublasLtMatmulDescDestroy(p.desc);
    throw std::runtime_error("deterministic mode: cuBLASLt offers no split-K-free algorithm for a " +
                             std::to_string(n) + " x " + std::to_string(k) +
                             " product valid for 1.." + std::to_string(max_rows_) + " rows");
  }
  return pinned_.emplace(key, p).first->second;
}

bool Gemm::invariant_on_device(const Pinned& p, const cublasLtMatmulAlgo_t& algo, int n, int k,
                               cudaDataType_t ytype) {
  const int rows = kProbeRows[std::size(kProbeRows) - 1];
  const size_t ybytes = ytype == CUDA_R_32F ? 4 : 2;
  const size_t row_bytes = static_cast<size_t>(n) * ybytes;
  DeviceBuffer w(static_cast<size_t>(n) * k * 2), x(static_cast<size_t>(rows) * k * 2),
      y(static_cast<size_t>(rows) * row_bytes), y_alone(row_bytes);
  LT_KERNEL_CHECK(kernels::fill_uniform_bf16(w.get<kernels::bf16>(), static_cast<int64_t>(n) * k,
                                             0.05f, 91, stream_));
  LT_KERNEL_CHECK(kernels::fill_uniform_bf16(x.get<kernels::bf16>(),
                                             static_cast<int64_t>(rows) * k, 1.0f, 92, stream_));
  const float alpha = 1.0f, beta = 0.0f;
  auto product = [&](const void* xs, void* ys, int m) {
    Layout xl(CUDA_R_16BF, k, m, k), yl(ytype, n, m, n);
    return cublasLtMatmul(lt_, p.desc, &alpha, w.get(), p.w_layout, xs, xl.h, &beta, ys, yl.h, ys,
                          yl.h, &algo, workspace_.get(), workspace_.bytes(),
                          stream_) == CUBLAS_STATUS_SUCCESS;
  };
  std::vector<char> alone(row_bytes), batched(row_bytes);
  for (int m : kProbeRows) {
    if (!product(x.get(), y.get(), m)) return false;
    for (int r : {0, m / 2, m - 1}) {
      if (!product(x.get<char>() + static_cast<size_t>(r) * k * 2, y_alone.get(), 1)) return false;
      LT_CUDA_CHECK(cudaMemcpyAsync(alone.data(), y_alone.get(), row_bytes, cudaMemcpyDeviceToHost,
                                    stream_));
      LT_CUDA_CHECK(cudaMemcpyAsync(batched.data(), y.get<char>() + r * row_bytes, row_bytes,
                                    cudaMemcpyDeviceToHost, stream_));
      LT_CUDA_CHECK(cudaStreamSynchronize(stream_));
      if (std::memcmp(alone.data(), batched.data(), row_bytes) != 0) {
        spdlog::info("gemm {}x{}: a candidate algorithm is not batch-invariant (row {} of {}); "
                     "trying the next", n, k, r, m);
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
  Layout xl(CUDA_R_16BF, k, m, k), yl(ytype, n, m, n);
  LT_CUBLAS_CHECK(cublasLtMatmul(lt_, p.desc, &alpha, w, p.w_layout, x, xl.h, &beta, y, yl.h, y,
                                 yl.h, &p.algo, workspace_.get(), workspace_.bytes(), stream_));
}

void Gemm::bf16_out(const void* x, const void* w, void* y, int m, int n, int k) {
  run(x, w, y, CUDA_R_16BF, m, n, k, 0.0f);
}

void Gemm::f32_out(const void* x, const void* w, float* y, int m, int n, int k, bool accumulate) {
  run(x, w, y, CUDA_R_32F, m, n, k, accumulate ? 1.0f : 0.0f);
}

}  // namespace longtail::policy::cuda
