// The few-row products: kernels/matvec.cu (CUDA cores, up to 8 rows) and kernels/skinny_gemm.cu
// (tensor cores, up to 64 rows), declared apart from kernels.h because only a product dispatcher,
// the tests and the benchmark use them.
//
// All of them read W before they wait for the kernel launched just before them on the stream
// (dependent launch, kernels.h): that kernel must not write W. X and Y are touched only after.
#pragma once

#include <cstdint>

#include "kernels/kernels.h"

namespace longtail::kernels {

constexpr int32_t kMatvecMaxRows = 8;

// Y[r, c] = sum_i X[r, i] * W[c, i] for r < rows <= kMatvecMaxRows, c < n: X [rows, k] and W [n, k]
// row-major bf16, both 16-byte aligned, k a multiple of 8; fp32 accumulation. Exactly one output:
// y_f32 ([rows, n] fp32; accumulate adds the product to what it holds) or y_bf16 ([rows, n], one
// rounding, no accumulate).
Status matvec_bf16(const bf16* x, const bf16* w, float* y_f32, bf16* y_bf16, bool accumulate,
                   int32_t rows, int32_t n, int32_t k, Stream stream);

// act[r, c] = swiglu_bf16 of the bf16 product X [gate | up]^T for r < rows, c < inter: W_gate_up
// [2 inter, k] (gate rows, then up rows), each product rounded to bf16 before the SwiGLU exactly as
// matvec_bf16 (bf16 out) followed by swiglu_bf16 computes it; act [rows, inter] bf16.
Status matvec_swiglu_bf16(const bf16* x, const bf16* w_gate_up, bf16* act, int32_t rows,
                          int32_t inter, int32_t k, Stream stream);

constexpr int32_t kSkinnyMaxRows = 64;

// The same products as matvec_bf16 / matvec_swiglu_bf16 (same arguments, outputs and rounding of
// the SwiGLU) for 1 <= rows <= kSkinnyMaxRows, on tensor cores. A row's result is bitwise the same
// whatever `rows` is (it depends on that row of X alone); a row does not see the others.
// The summation order differs from matvec_bf16's, so the two do not agree bit for bit.
Status skinny_gemm_bf16(const bf16* x, const bf16* w, float* y_f32, bf16* y_bf16, bool accumulate,
                        int32_t rows, int32_t n, int32_t k, Stream stream);
Status skinny_gemm_swiglu_bf16(const bf16* x, const bf16* w_gate_up, bf16* act, int32_t rows,
                               int32_t inter, int32_t k, Stream stream);

// An input given as the fp32 rows whose RMSNorm the product takes: x [rows, k] fp32 dense,
// weight [k] fp32, both 16-byte aligned.
struct NormedRows {
  const float* x = nullptr;
  const float* weight = nullptr;
  float eps = 0.0f;
};

// skinny_gemm_bf16 / skinny_gemm_swiglu_bf16 of the RMSNorm of x.x, without the normed rows ever
// being written: with s_r = rsqrt(sum_i x[r, i]^2 / k + eps) (an fp32 sum in a fixed order),
//   Y[r, c] = s_r * sum_i bf16(x[r, i] * weight[i]) * W[c, i],
// the SwiGLU variant rounding s_r * (its gate and up sums) to bf16 before the SwiGLU. The rounding
// of the normed input differs from rmsnorm_rows_f32's bf16(x * s_r * weight) (s_r is applied after
// the sum), within the same one bf16 rounding of each element; a row still depends on that row of
// x alone. The other arguments, outputs and checks are skinny_gemm_bf16's.
Status skinny_gemm_normed_bf16(NormedRows x, const bf16* w, float* y_f32, bf16* y_bf16,
                               bool accumulate, int32_t rows, int32_t n, int32_t k, Stream stream);
Status skinny_gemm_normed_swiglu_bf16(NormedRows x, const bf16* w_gate_up, bf16* act, int32_t rows,
                                      int32_t inter, int32_t k, Stream stream);

}  // namespace longtail::kernels
