// Products of a few activation rows with a weight matrix (decode at batch <= 8): Y = X W^T with
// W [n, k] row-major bf16. At these sizes a product only streams W once, and cuBLAS's tiled
// kernels leave most of the bandwidth unused (too few CTAs for the small projections, split-K
// plus a reduce kernel for the long ones). Here one warp owns one output column (one row of W):
// each lane issues 16-byte streaming loads of that row, several in flight before the first use,
// multiplies them with the matching 16 bytes of every activation row (read through L1, shared by
// all warps), and a warp reduction finishes the column. fp32 accumulation; the reduction order of
// an element depends on k only, not on the row count. Not batch-invariant against cuBLAS: the
// backend uses it only in the fast mode, where LONGTAIL_MATVEC_ROWS asks for it (policy/cuda_gemm.h). The SwiGLU variant gives a warp the gate and the up row
// of one output column and writes silu(gate) * up, rounding as gate_up_bf16 + swiglu_bf16 do, so
// the [gate | up] product never reaches memory and the SwiGLU launch goes away.
#include "kernels/matvec.h"

#include "kernels/common.cuh"
#include "kernels/few_row_checks.cuh"

namespace longtail::kernels {
using namespace detail;

namespace {

constexpr int kWarpsPerBlock = 4;
constexpr int kInFlight = 8;  // 16-byte loads of W per lane issued before the first use

// One warp owns kCols output columns: kCols (SwiGLU: 2 kCols) rows of W, each activation piece
// loaded and converted once for all of them. Several rows of activations use kCols = 2, so the
// conversions and L1 reads of X are shared by two columns; one row uses kCols = 1, which keeps
// more warps in flight. Every element is reduced in the same order whatever kCols and the row
// count: per lane over i = lane, lane + 32, ... (8-product FMA chains), then the warp butterfly.
// kSwiglu: W holds 2n rows ([gate | up]); output column c is swiglu(X W[c], X W[n + c]).
template <int kMaxRows, int kCols, bool kSwiglu>
__global__ void __launch_bounds__(kWarpsPerBlock * 32)
    matvec_kernel(const __nv_bfloat16* __restrict__ x, const __nv_bfloat16* __restrict__ w,
                  float* __restrict__ y_f32, __nv_bfloat16* __restrict__ y_bf16, bool accumulate,
                  int rows, int n, int k) {
  constexpr int kParts = kSwiglu ? 2 : 1;
  constexpr int kW = kCols * kParts;                         // rows of W per warp
  constexpr int kLoads = kInFlight / kW > 0 ? kInFlight / kW : 1;  // per row of W
  const int col0 =
      (static_cast<int>(blockIdx.x) * kWarpsPerBlock + static_cast<int>(threadIdx.x >> 5)) * kCols;
  if (col0 >= n) return;
  const int lane = static_cast<int>(threadIdx.x & 31);
  const int kv = k / 8;  // 16-byte pieces per row
  const uint4* wr[kW];
  bool live[kW];
#pragma unroll
  for (int j = 0; j < kW; ++j) {
    const int c = col0 + j / kParts;
    live[j] = c < n;
    wr[j] = reinterpret_cast<const uint4*>(w) + (static_cast<int64_t>(live[j] ? c : 0) + (j % kParts) * n) * kv;
  }
  const uint4* xr = reinterpret_cast<const uint4*>(x);
  float acc[kW][kMaxRows];
#pragma unroll
  for (int j = 0; j < kW; ++j)
#pragma unroll
    for (int r = 0; r < kMaxRows; ++r) acc[j][r] = 0.0f;
  uint4 wv[kW][kLoads];
  auto load_w = [&](int base) {
#pragma unroll
    for (int j = 0; j < kW; ++j)
#pragma unroll
      for (int u = 0; u < kLoads; ++u) {
        const int i = base + 32 * u;
        wv[j][u] = live[j] && i < kv ? __ldcs(wr[j] + i) : make_uint4(0, 0, 0, 0);
      }
  };
  // The previous kernel does not write W (matvec.h), so W's first loads go out before the wait
  // for the kernel that writes X: the weight stream starts while that kernel finishes.
  load_w(lane);
  wait_for_prior_kernels();
  for (int base = lane; base < kv; base += 32 * kLoads) {
    if (base != lane) load_w(base);
#pragma unroll
    for (int u = 0; u < kLoads; ++u) {
      const int i = base + 32 * u;
      if (i >= kv) break;
      float wf[kW][8];
#pragma unroll
      for (int j = 0; j < kW; ++j) unpack8(wv[j][u], wf[j]);
#pragma unroll
      for (int r = 0; r < kMaxRows; ++r) {
        if (r >= rows) continue;
        float xf[8];
        unpack8(__ldg(xr + static_cast<int64_t>(r) * kv + i), xf);
#pragma unroll
        for (int j = 0; j < kW; ++j) {
          float s = 0.0f;
#pragma unroll
          for (int e = 0; e < 8; ++e) s = fmaf(wf[j][e], xf[e], s);
          acc[j][r] += s;
        }
      }
    }
  }
#pragma unroll
  for (int j = 0; j < kW; ++j)
#pragma unroll
    for (int r = 0; r < kMaxRows; ++r) acc[j][r] = warp_sum(acc[j][r]);
  if (lane >= rows || lane >= kMaxRows) return;
#pragma unroll
  for (int c = 0; c < kCols; ++c) {
    if (col0 + c >= n) break;
    float v[kParts] = {};
#pragma unroll
    for (int r = 0; r < kMaxRows; ++r)
      if (r == lane)
#pragma unroll
        for (int h = 0; h < kParts; ++h) v[h] = acc[c * kParts + h][r];
    const int64_t at = static_cast<int64_t>(lane) * n + col0 + c;
    if constexpr (kSwiglu) {
      const float g = to_f32(to_bf(v[0])), u = to_f32(to_bf(v[kParts - 1]));  // as the bf16 [gate | up]
      y_bf16[at] = to_bf(g / (1.0f + expf(-g)) * u);
    } else if (y_f32 != nullptr) {
      y_f32[at] = accumulate ? y_f32[at] + v[0] : v[0];
    } else {
      y_bf16[at] = to_bf(v[0]);
    }
  }
}

template <int kMaxRows, int kCols, bool kSwiglu>
void launch_one(const __nv_bfloat16* x, const __nv_bfloat16* w, float* y_f32, __nv_bfloat16* y_bf16,
                bool accumulate, int rows, int n, int k, Stream stream) {
  const unsigned blocks = blocks_for((n + kCols - 1) / kCols, kWarpsPerBlock);
  launch(matvec_kernel<kMaxRows, kCols, kSwiglu>, blocks, kWarpsPerBlock * 32, 0, stream, x, w,
         y_f32, y_bf16, accumulate, rows, n, k);
}

template <bool kSwiglu>
void launch_rows(const __nv_bfloat16* x, const __nv_bfloat16* w, float* y_f32, __nv_bfloat16* y_bf16,
                 bool accumulate, int rows, int n, int k, Stream stream) {
  if (rows == 1) {
    launch_one<1, 1, kSwiglu>(x, w, y_f32, y_bf16, accumulate, rows, n, k, stream);
  } else if (rows == 2) {
    launch_one<2, 2, kSwiglu>(x, w, y_f32, y_bf16, accumulate, rows, n, k, stream);
  } else if (rows <= 4) {
    launch_one<4, 2, kSwiglu>(x, w, y_f32, y_bf16, accumulate, rows, n, k, stream);
  } else {
    launch_one<8, 2, kSwiglu>(x, w, y_f32, y_bf16, accumulate, rows, n, k, stream);
  }
}

}  // namespace

Status matvec_bf16(const bf16* x, const bf16* w, float* y_f32, bf16* y_bf16, bool accumulate,
                   int32_t rows, int32_t n, int32_t k, Stream stream) {
  constexpr const char* kName = "matvec_bf16";
  const std::string e = few_row_product_error(x, w, y_f32, y_bf16, accumulate, rows, kMatvecMaxRows, n, k);
  if (!e.empty()) return invalid(kName, e.c_str());
  launch_rows<false>(dev(x), dev(w), y_f32, dev(y_bf16), accumulate, rows, n, k, stream);
  return launched(kName);
}

Status matvec_swiglu_bf16(const bf16* x, const bf16* w_gate_up, bf16* act, int32_t rows,
                          int32_t inter, int32_t k, Stream stream) {
  constexpr const char* kName = "matvec_swiglu_bf16";
  const std::string e = few_row_swiglu_error(x, w_gate_up, act, rows, kMatvecMaxRows, inter, k);
  if (!e.empty()) return invalid(kName, e.c_str());
  launch_rows<true>(dev(x), dev(w_gate_up), nullptr, dev(act), false, rows, inter, k, stream);
  return launched(kName);
}

}  // namespace longtail::kernels
