// Products of up to 64 activation rows with a weight matrix on tensor cores: Y = X W^T, W [n, k]
// row-major bf16. At these sizes a product streams W once, and what
// decides its time is how soon and how densely the weight bytes are in flight: cuBLAS's tiles
// give the small projections too few blocks and the long ones a split-K reduce kernel.
//
// Layout: a warp owns 16 rows of W (16 output features) and a slice of K; FW warps of a block
// own adjacent 16-feature tiles and KW = 8 / FW warps split K between them (FW = 1 for the small
// projections, so that they still spread over the machine; FW = 4 for the long ones, so that
// each X piece read from L2 serves four tiles). Each lane loads whole 16-byte pieces of its two W
// rows straight from memory into registers (streaming, kDepth pieces in flight before the first
// use) and uses them as the A operand of mma.m16n8k16 without a trip through shared memory.
// That needs a permutation of k inside each 32-element chunk, applied to W and X alike (a sum
// does not care): lane t's piece covers chunk elements 8t..8t+7, whose four bf16 pairs play the
// MMA's k pairs (2t, 8 + 2t) of the first k-step and of the second. X (row-major [rows, k]) is
// the B operand, 8 rows of X per n-tile, read through L1.
//
// Bits: a row's result depends only on that row of X, never on how many rows the call
// has: each MMA column is its own dot product, the chunks are summed in one fixed order per warp
// and the warps' partial sums in warp order. So a row gets the same bits in a call of 1 row or
// of 64. The first W pieces are loaded before the wait for the kernel that writes X
// (common.cuh's dependent launch; matvec.h states what that asks of the caller), so the weight
// stream starts while that kernel finishes.
//
// The normed variants (kNormed) take X as the fp32 rows whose RMSNorm the product wants: each
// 8-element piece of a row is loaded as fp32, multiplied by the norm weight and rounded to bf16
// for the MMA, and its squares are summed on the way, so the row's 1 / rms (a fixed-order sum over
// the block's warps) scales the outputs at the end. The norm then costs no launch and no trip of
// the normed rows through memory; it only reads X in fp32, from L2, as the bf16 X is read now.
#include "kernels/matvec.h"

#include "kernels/common.cuh"
#include "kernels/few_row_checks.cuh"

namespace longtail::kernels {
using namespace detail;

namespace {

constexpr int kWarps = 8;
constexpr int kChunk = 32;  // k elements per chunk: two m16n8k16 k-steps

// NT: n-tiles of 8 rows of X the instance can hold (rows <= 8 NT). kSwiglu: W holds 2n rows
// ([gate | up]); a warp then owns the gate and the up rows of its 16 features and the output is
// swiglu of the two bf16-rounded products. FW: 16-feature tiles per block. kNormed: X is
// `normed` (fp32 rows and the norm's weight and eps) instead of x.
template <int NT, bool kSwiglu, int FW, bool kNormed>
__global__ void __launch_bounds__(kWarps * 32)
    skinny_kernel(const __nv_bfloat16* __restrict__ x, NormedRows normed,
                  const __nv_bfloat16* __restrict__ w, float* __restrict__ y_f32,
                  __nv_bfloat16* __restrict__ y_bf16, bool accumulate, int rows, int n, int k) {
  constexpr int KW = kWarps / FW;
  constexpr int kParts = kSwiglu ? 2 : 1;
  // Chunks per load round: 8 KB of W per warp in flight for up to 16 rows, 4 KB above (the
  // accumulators need the registers). The order of the sums does not depend on it.
  constexpr int kDepth = (kSwiglu ? 2 : 4) * (NT <= 2 ? 2 : 1);
  constexpr int kElems = FW * NT * 128;                            // outputs of the block
  constexpr int kPer = (kElems + kWarps * 32 - 1) / (kWarps * 32);  // per thread and part
  __shared__ float red[kWarps][NT * 128];

  const int warp = static_cast<int>(threadIdx.x >> 5), lane = static_cast<int>(threadIdx.x & 31);
  const int fw = warp / KW, kw = warp % KW;
  const int g = lane >> 2, t = lane & 3;
  const int f0 = (static_cast<int>(blockIdx.x) * FW + fw) * 16;
  const int nchunks = (k + kChunk - 1) / kChunk;
  const int kv = k / 8;  // 16-byte pieces per row
  const int tiles = (rows + 7) / 8;

  const uint4* wrow[kParts][2];
  bool wlive[kParts][2];
#pragma unroll
  for (int p = 0; p < kParts; ++p)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int feature = f0 + g + 8 * h;
      wlive[p][h] = feature < n;
      wrow[p][h] = reinterpret_cast<const uint4*>(w) +
                   (static_cast<int64_t>(wlive[p][h] ? feature : 0) + static_cast<int64_t>(p) * n) * kv;
    }
  uint4 wv[kDepth][kParts][2];
  auto load_w = [&](int c0) {
#pragma unroll
    for (int d = 0; d < kDepth; ++d) {
      const int piece = (c0 + d * KW) * (kChunk / 8) + t;
#pragma unroll
      for (int p = 0; p < kParts; ++p)
#pragma unroll
        for (int h = 0; h < 2; ++h)
          wv[d][p][h] = wlive[p][h] && piece < kv ? __ldcs(wrow[p][h] + piece) : make_uint4(0, 0, 0, 0);
    }
  };
  float acc[kParts][NT][4];
#pragma unroll
  for (int p = 0; p < kParts; ++p)
#pragma unroll
    for (int j = 0; j < NT; ++j)
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[p][j][i] = 0.0f;

  float squares[NT];  // kNormed: this lane's share of the sum of squares of X row 8 j + g
#pragma unroll
  for (int j = 0; j < NT; ++j) squares[j] = 0.0f;

  load_w(kw);  // before the wait: the previous kernel does not write W (matvec.h)
  wait_for_prior_kernels();
  const uint4* xr = reinterpret_cast<const uint4*>(x);
  const float4* xf = reinterpret_cast<const float4*>(normed.x);           // 2 per piece
  const float4* nw = reinterpret_cast<const float4*>(normed.weight);      // 2 per piece
  for (int c0 = kw; c0 < nchunks; c0 += kDepth * KW) {
    if (c0 != kw) load_w(c0);
#pragma unroll
    for (int d = 0; d < kDepth; ++d) {
      const int piece = (c0 + d * KW) * (kChunk / 8) + t;
      if (c0 + d * KW >= nchunks) break;
      float weight[8];
      if constexpr (kNormed) {
        const float4 a = piece < kv ? __ldg(nw + 2 * piece) : make_float4(0, 0, 0, 0);
        const float4 b = piece < kv ? __ldg(nw + 2 * piece + 1) : make_float4(0, 0, 0, 0);
        weight[0] = a.x, weight[1] = a.y, weight[2] = a.z, weight[3] = a.w;
        weight[4] = b.x, weight[5] = b.y, weight[6] = b.z, weight[7] = b.w;
      }
#pragma unroll
      for (int j = 0; j < NT; ++j) {
        if (j >= tiles) break;
        const int xrow = 8 * j + g;
        const bool live = xrow < rows && piece < kv;
        uint4 xv = make_uint4(0, 0, 0, 0);
        if constexpr (kNormed) {
          if (live) {
            const float4* at = xf + (static_cast<int64_t>(xrow) * kv + piece) * 2;
            const float4 a = __ldg(at), b = __ldg(at + 1);
            const float v[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
            float scaled[8];
#pragma unroll
            for (int e = 0; e < 8; ++e) {
              squares[j] = fmaf(v[e], v[e], squares[j]);
              scaled[e] = v[e] * weight[e];
            }
            xv = pack8(scaled);
          }
        } else if (live) {
          xv = __ldg(xr + static_cast<int64_t>(xrow) * kv + piece);
        }
#pragma unroll
        for (int p = 0; p < kParts; ++p) {
          const uint32_t lo[4] = {wv[d][p][0].x, wv[d][p][1].x, wv[d][p][0].y, wv[d][p][1].y};
          const uint32_t hi[4] = {wv[d][p][0].z, wv[d][p][1].z, wv[d][p][0].w, wv[d][p][1].w};
          mma_bf16(acc[p][j], lo, xv.x, xv.y);
          mma_bf16(acc[p][j], hi, xv.z, xv.w);
        }
      }
    }
  }

  // kNormed: row r's 1 / rms from the first feature tile's warps (they cover all of K): their
  // lanes' sums over t by a fixed butterfly, then the KW warps in warp order.
  __shared__ float row_scale[kNormed ? NT * 8 : 1];
  if constexpr (kNormed) {
    __shared__ float part[KW][NT * 8];
#pragma unroll
    for (int j = 0; j < NT; ++j) {
      float v = squares[j];
      v += __shfl_xor_sync(0xffffffffu, v, 1);
      v += __shfl_xor_sync(0xffffffffu, v, 2);
      if (fw == 0 && t == 0) part[kw][j * 8 + g] = v;
    }
    __syncthreads();
    if (threadIdx.x < NT * 8) {
      float s = 0.0f;
#pragma unroll
      for (int v = 0; v < KW; ++v) s += part[v][threadIdx.x];
      row_scale[threadIdx.x] = rsqrtf(s / static_cast<float>(k) + normed.eps);
    }
    // Read only after the reduction below, whose barriers order it.
  }

  // The KW warps of a feature tile add their K slices in warp order. Element e of the block:
  // tile e / (NT 128), then (n-tile j, accumulator i, lane) as the MMA left them.
  float sum[kParts][kPer];
#pragma unroll
  for (int p = 0; p < kParts; ++p) {
    __syncthreads();  // red is free (the previous part has been read)
#pragma unroll
    for (int j = 0; j < NT; ++j)
#pragma unroll
      for (int i = 0; i < 4; ++i) red[warp][(j * 4 + i) * 32 + lane] = acc[p][j][i];
    __syncthreads();
#pragma unroll
    for (int q = 0; q < kPer; ++q) {
      const int e = static_cast<int>(threadIdx.x) + q * kWarps * 32;
      const int tile = e / (NT * 128), rem = e % (NT * 128);
      if (e >= kElems) break;
      float s = 0.0f;
#pragma unroll
      for (int v = 0; v < KW; ++v) s += red[tile * KW + v][rem];
      sum[p][q] = s;
    }
  }
#pragma unroll
  for (int q = 0; q < kPer; ++q) {
    const int e = static_cast<int>(threadIdx.x) + q * kWarps * 32;
    if (e >= kElems) break;
    const int tile = e / (NT * 128), rem = e % (NT * 128);
    const int j = rem / 128, i = (rem / 32) % 4, l = rem % 32;
    const int feature = (static_cast<int>(blockIdx.x) * FW + tile) * 16 + (l >> 2) + (i >= 2 ? 8 : 0);
    const int xrow = 8 * j + 2 * (l & 3) + (i & 1);
    if (feature >= n || xrow >= rows) continue;
    const int64_t at = static_cast<int64_t>(xrow) * n + feature;
    float v[kParts];
#pragma unroll
    for (int p = 0; p < kParts; ++p) v[p] = kNormed ? sum[p][q] * row_scale[xrow] : sum[p][q];
    if constexpr (kSwiglu) {
      const float gate = to_f32(to_bf(v[0])), up = to_f32(to_bf(v[kParts - 1]));
      y_bf16[at] = to_bf(gate / (1.0f + expf(-gate)) * up);
    } else if (y_f32 != nullptr) {
      y_f32[at] = accumulate ? y_f32[at] + v[0] : v[0];
    } else {
      y_bf16[at] = to_bf(v[0]);
    }
  }
}

int multiprocessors() {
  static const int count = [] {
    const int sms = multiprocessor_count();
    return sms > 0 ? sms : 132;  // unreadable: an H100 / H200's count, a layout choice only
  }();
  return count;
}

template <int NT, bool kSwiglu, bool kNormed>
void launch_tiles(const __nv_bfloat16* x, NormedRows normed, const __nv_bfloat16* w, float* y_f32,
                  __nv_bfloat16* y_bf16, bool accumulate, int rows, int n, int k, Stream stream) {
  // Four tiles a block only where that still leaves two blocks per multiprocessor, counted in
  // rows of W so that the SwiGLU variant splits K exactly as the plain product of [gate | up]
  // does (the two then agree bit for bit).
  const int64_t wide_blocks = (static_cast<int64_t>(n) + 63) / 64;
  if (wide_blocks * (kSwiglu ? 2 : 1) >= 2 * multiprocessors()) {
    launch(skinny_kernel<NT, kSwiglu, 4, kNormed>, static_cast<unsigned>(wide_blocks), kWarps * 32,
           0, stream, x, normed, w, y_f32, y_bf16, accumulate, rows, n, k);
  } else {
    launch(skinny_kernel<NT, kSwiglu, 1, kNormed>, static_cast<unsigned>((n + 15) / 16),
           kWarps * 32, 0, stream, x, normed, w, y_f32, y_bf16, accumulate, rows, n, k);
  }
}

template <bool kSwiglu, bool kNormed = false>
void launch_rows(const __nv_bfloat16* x, NormedRows normed, const __nv_bfloat16* w, float* y_f32,
                 __nv_bfloat16* y_bf16, bool accumulate, int rows, int n, int k, Stream stream) {
  if (rows <= 8) {
    launch_tiles<1, kSwiglu, kNormed>(x, normed, w, y_f32, y_bf16, accumulate, rows, n, k, stream);
  } else if (rows <= 16) {
    launch_tiles<2, kSwiglu, kNormed>(x, normed, w, y_f32, y_bf16, accumulate, rows, n, k, stream);
  } else if (rows <= 32) {
    launch_tiles<4, kSwiglu, kNormed>(x, normed, w, y_f32, y_bf16, accumulate, rows, n, k, stream);
  } else {
    launch_tiles<8, kSwiglu, kNormed>(x, normed, w, y_f32, y_bf16, accumulate, rows, n, k, stream);
  }
}

}  // namespace

Status skinny_gemm_bf16(const bf16* x, const bf16* w, float* y_f32, bf16* y_bf16, bool accumulate,
                        int32_t rows, int32_t n, int32_t k, Stream stream) {
  constexpr const char* kName = "skinny_gemm_bf16";
  const std::string e = few_row_product_error(x, w, y_f32, y_bf16, accumulate, rows, kSkinnyMaxRows, n, k);
  if (!e.empty()) return invalid(kName, e.c_str());
  launch_rows<false>(dev(x), NormedRows{}, dev(w), y_f32, dev(y_bf16), accumulate, rows, n, k,
                     stream);
  return launched(kName);
}

Status skinny_gemm_swiglu_bf16(const bf16* x, const bf16* w_gate_up, bf16* act, int32_t rows,
                               int32_t inter, int32_t k, Stream stream) {
  constexpr const char* kName = "skinny_gemm_swiglu_bf16";
  const std::string e = few_row_swiglu_error(x, w_gate_up, act, rows, kSkinnyMaxRows, inter, k);
  if (!e.empty()) return invalid(kName, e.c_str());
  launch_rows<true>(dev(x), NormedRows{}, dev(w_gate_up), nullptr, dev(act), false, rows, inter, k,
                    stream);
  return launched(kName);
}

Status skinny_gemm_normed_bf16(NormedRows x, const bf16* w, float* y_f32, bf16* y_bf16,
                               bool accumulate, int32_t rows, int32_t n, int32_t k, Stream stream) {
  constexpr const char* kName = "skinny_gemm_normed_bf16";
  std::string e = few_row_normed_error(x);
  if (e.empty())
    e = few_row_product_error(reinterpret_cast<const bf16*>(x.x), w, y_f32, y_bf16, accumulate,
                              rows, kSkinnyMaxRows, n, k);
  if (!e.empty()) return invalid(kName, e.c_str());
  launch_rows<false, true>(nullptr, x, dev(w), y_f32, dev(y_bf16), accumulate, rows, n, k, stream);
  return launched(kName);
}

Status skinny_gemm_normed_swiglu_bf16(NormedRows x, const bf16* w_gate_up, bf16* act, int32_t rows,
                                      int32_t inter, int32_t k, Stream stream) {
  constexpr const char* kName = "skinny_gemm_normed_swiglu_bf16";
  std::string e = few_row_normed_error(x);
  if (e.empty())
    e = few_row_swiglu_error(reinterpret_cast<const bf16*>(x.x), w_gate_up, act, rows,
                             kSkinnyMaxRows, inter, k);
  if (!e.empty()) return invalid(kName, e.c_str());
  launch_rows<true, true>(nullptr, x, dev(w_gate_up), nullptr, dev(act), false, rows, inter, k,
                          stream);
  return launched(kName);
}

}  // namespace longtail::kernels
