// Tensor-core paged attention (mma.sync m16n8k16, bf16 in, fp32 accumulate), same semantics as
// the CUDA-core kernel in attention.cu (kernels.h documents them).
//
// A block owns (sequence, kv head, chunk of 16*WR query rows, KV split); rows are the
// (query token, q head of the GQA group) pairs, so K/V are read once for the whole group and all
// draft tokens. Its 4 warps form WR row tiles of 16 rows x WT token groups (WR * WT = 4): for
// decode (<= 16 rows) all 4 warps share one row tile and split each 64-position K/V tile between
// them (16 positions each, flash-decoding inside the block); for long queries each warp owns its
// own 16 rows and all 64 positions (FlashAttention-2). The batch-invariant mode keeps the decode
// layout for every shape, so a row's arithmetic never depends on the query count, and gives
// queries of more than 16 rows blocks of NW = 8 warps (two such row tiles sharing each staged K/V
// tile) with at most 128 registers a thread, so that two blocks share a multiprocessor, three K/V
// stages in flight, and the row chunks of one (sequence, kv head, split) launched side by side so
// they read its K/V from L2 (before: one block of 16 warps alone on its multiprocessor, stalled at
// every barrier; bench/results/deterministic_2026-12-02d.md). Its empty splits (fixed boundaries
// past a sequence's end) write only their -inf log-sum-exp.
// S = Q K^T comes out of the mma in the
// C-fragment layout, which is reused as the A fragment of P V without a trip through shared
// memory; V's B fragments come from ldmatrix.trans. K/V tiles are cp.async double-buffered, rows
// padded by 16 bytes so fragment loads are bank-conflict free. At the end the warps of a row tile
// merge their (max, sum, O) through shared memory and write bf16 (or an fp32 split partial).
// Blocks told that cached prefixes are settled stage the K/V tiles below the prefix before waiting
// for the previous kernel (the one writing q and the new K/V).
#include <cmath>

#include "kernels/attention_common.cuh"

namespace longtail::kernels::detail {

namespace {

__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* smem) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s));
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

template <int D, int WT, int NW, int STAGES = 2>
struct TcSmem {
  static constexpr int kWR = NW / WT;
  static constexpr int kRows = 16 * kWR;
  static constexpr int kStride = D + 8;  // K and V rows, +16 bytes
  static constexpr size_t kTileBytes = sizeof(__nv_bfloat16) * kAttnTile * kStride;
  static constexpr size_t kStageBytes = 2 * kTileBytes;  // K then V
  // Epilogue (reuses the stages): per warp O[16][D] fp32, then m[16] and l[16].
  static constexpr size_t kEpilogueBytes = sizeof(float) * NW * 16 * (D + 2);
  static constexpr size_t kBytes =
      STAGES * kStageBytes > kEpilogueBytes ? STAGES * kStageBytes : kEpilogueBytes;
};

// The fast mode's layouts (INVARIANT false) compile exactly as they always did. The batch-invariant
// ones (INVARIANT true, WT = 4: NW = 4 for 16 rows, NW = 8 for more) run at least two blocks a
// multiprocessor (NW = 8: at most 128 registers a thread), take their row chunk from blockIdx.x
// where AttnArgs::chunk_major says so, and skip the work of an empty split.
template <int D, int WT, int NW, int STAGES = 2, bool INVARIANT = false>
__global__ void __launch_bounds__(NW * 32, INVARIANT ? 2 : 0) paged_attention_tc_kernel(const AttnArgs a) {
  // With settled prefixes the metadata and the cached K/V tiles below the prefix are read before
  // the previous kernel (the one writing this step's q and new K/V) has completed. Fast layouts
  // only: the batch-invariant ones sit at their register cap.
  const bool early = !INVARIANT && a.prefix_settled;
  if (!early) wait_for_prior_kernels();
  using S = TcSmem<D, WT, NW, STAGES>;
  static_assert(STAGES == 2 || (INVARIANT && STAGES == 3), "the fast layouts double-buffer");
  constexpr int kThreads = NW * 32;
  constexpr int kTW = kAttnTile / WT;  // positions per warp per tile
  constexpr int kNT = kTW / 8;         // n-tiles of S per warp
  constexpr int kKS = D / 16;          // k-steps of Q K^T
  constexpr int kDT = D / 8;           // n-tiles of O
  extern __shared__ __align__(16) unsigned char smem[];
  auto kbuf = [&](int b) {
    return reinterpret_cast<__nv_bfloat16*>(smem + b * S::kStageBytes);
  };
  auto vbuf = [&](int b) {
    return reinterpret_cast<__nv_bfloat16*>(smem + b * S::kStageBytes + S::kTileBytes);
  };

  const unsigned seq_head = INVARIANT && a.chunk_major ? blockIdx.x / a.row_chunks : blockIdx.x;
  const int seq = seq_head / a.num_kv_heads, kvh = seq_head % a.num_kv_heads;
  const int q0 = a.query_start[seq];
  const int n = a.query_start[seq + 1] - q0;
  const int rows_total = n * a.group;
  const int row0 = (INVARIANT && a.chunk_major ? blockIdx.x % a.row_chunks : blockIdx.y) * S::kRows;
  if (row0 >= rows_total) return;
  const int prefix = a.seq_lens[seq] - n;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int wr = warp / WT, wt = warp % WT;
  const int quad = lane / 4, qlane = lane % 4;

  // This lane's two rows of the warp's row tile: quad and quad + 8.
  int jrow[2];
  uint64_t anc[2] = {0, 0};
  uint32_t qf[kKS][4];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int gr = row0 + wr * 16 + quad + 8 * h;
    jrow[h] = gr < rows_total ? gr / a.group : -1;
    if (a.parents != nullptr && jrow[h] >= 0) anc[h] = tree_mask(a.parents, q0, jrow[h]);
  }
  // KV range of this block: up to its last row's position, cut into splits.
  const int last_row = min(row0 + S::kRows, rows_total) - 1;
  const int kv_end = prefix + last_row / a.group + 1;
  int start, end;
  split_range(kv_end, a.splits, a.split_size, blockIdx.z, &start, &end);
  const int ntiles = start < end ? (end - start + kAttnTile - 1) / kAttnTile : 0;
  if constexpr (INVARIANT) {
    if (ntiles == 0 && a.splits > 1) {
      // A split past this block's rows: an empty partial, which the merge skips by its
      // log-sum-exp alone (the output it would have written is never read).
      for (int r = threadIdx.x; r < S::kRows && row0 + r < rows_total; r += kThreads) {
        const int gr = row0 + r;
        const int64_t prow = (blockIdx.z * a.num_tokens + q0 + gr / a.group) * a.num_heads +
                             kvh * a.group + gr % a.group;
        a.ws_lse[prow] = -INFINITY;
      }
      return;
    }
  }

  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
  float o[kDT][4];
#pragma unroll
  for (int dt = 0; dt < kDT; ++dt) o[dt][0] = o[dt][1] = o[dt][2] = o[dt][3] = 0.0f;

  // STAGES - 1 tiles in flight ahead of the one in use; one commit group per tile (empty past the
  // last), so waiting until at most STAGES - 1 groups are pending means tile `it` has landed.
  // The prologue's tiles that lie wholly below the prefix start before the wait when prefixes are
  // settled, so their memory latency overlaps the previous kernel's tail.
  int staged = 0;
  if (early) {
#pragma unroll
    for (int i = 0; i < STAGES - 1; ++i) {
      if (i >= ntiles || min(end, start + (i + 1) * kAttnTile) > prefix) break;
      load_kv_tile<D, S::kStride, S::kStride, kThreads>(a, seq, kvh, start + i * kAttnTile, end,
                                                        kbuf(i), vbuf(i));
      cp_async_commit();
      ++staged;
    }
    wait_for_prior_kernels();
  }
  {
    const __nv_bfloat16* qrow[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int gr = row0 + wr * 16 + quad + 8 * h;
      qrow[h] = jrow[h] >= 0 ? a.q + (q0 + jrow[h]) * a.q_stride +
                                   static_cast<int64_t>(kvh * a.group + gr % a.group) * D
                             : nullptr;
    }
#pragma unroll
    for (int ks = 0; ks < kKS; ++ks) {
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const __nv_bfloat16* p = qrow[r & 1];
        const int d = ks * 16 + (r >> 1) * 8 + 2 * qlane;
        qf[ks][r] = p != nullptr ? *reinterpret_cast<const uint32_t*>(p + d) : 0u;
      }
    }
  }

#pragma unroll
  for (int i = 0; i < STAGES - 1; ++i) {
    if (i < staged) continue;
    if (i < ntiles) {
      load_kv_tile<D, S::kStride, S::kStride, kThreads>(a, seq, kvh, start + i * kAttnTile, end,
                                                        kbuf(i), vbuf(i));
    }
    cp_async_commit();
  }
  for (int it = 0; it < ntiles; ++it) {
    const int tile_start = start + it * kAttnTile;
    if (it + STAGES - 1 < ntiles) {  // into the stage iteration it - 1 used
      load_kv_tile<D, S::kStride, S::kStride, kThreads>(
          a, seq, kvh, tile_start + (STAGES - 1) * kAttnTile, end,
          kbuf(STAGES == 2 ? (it + 1) & 1 : (it + 2) % 3),
          vbuf(STAGES == 2 ? (it + 1) & 1 : (it + 2) % 3));
    }
    cp_async_commit();
    cp_async_wait<STAGES - 1>();
    __syncthreads();
    const __nv_bfloat16* ks_tile = kbuf(STAGES == 2 ? it & 1 : it % 3) + (wt * kTW) * S::kStride;
    const __nv_bfloat16* vs_tile = vbuf(STAGES == 2 ? it & 1 : it % 3) + (wt * kTW) * S::kStride;

    // S = Q K^T for this warp's kTW positions.
    float s[kNT][4];
#pragma unroll
    for (int nt = 0; nt < kNT; ++nt) {
      s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
      const __nv_bfloat16* krow = ks_tile + (nt * 8 + quad) * S::kStride + 2 * qlane;
#pragma unroll
      for (int ks = 0; ks < kKS; ++ks) {
        const uint32_t b0 = *reinterpret_cast<const uint32_t*>(krow + ks * 16);
        const uint32_t b1 = *reinterpret_cast<const uint32_t*>(krow + ks * 16 + 8);
        mma_bf16(s[nt], qf[ks], b0, b1);
      }
    }
    // Scale, mask, online softmax (rows quad and quad + 8; a row's 4 lanes hold its 8*kNT values).
    float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int nt = 0; nt < kNT; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int h = e >> 1;
        const int pos = tile_start + wt * kTW + nt * 8 + 2 * qlane + (e & 1);
        bool ok = jrow[h] >= 0 && pos < end && pos <= prefix + jrow[h];
        if (ok && a.parents != nullptr && pos >= prefix) ok = (anc[h] >> (pos - prefix)) & 1ull;
        s[nt][e] = ok ? s[nt][e] * a.qscale : -INFINITY;
        mx[h] = fmaxf(mx[h], s[nt][e]);
      }
    }
    float alpha[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 1));
      mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 2));
      const float m_new = fmaxf(m[h], mx[h]);
      // m_new = -inf: nothing visible yet; keep the state and make every p zero.
      alpha[h] = m_new == -INFINITY ? 1.0f : exp2f(m[h] - m_new);
      mx[h] = m_new == -INFINITY ? 0.0f : m_new;
      m[h] = m_new;
    }
    float rowsum[2] = {0.0f, 0.0f};
#pragma unroll
    for (int nt = 0; nt < kNT; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        s[nt][e] = exp2f(s[nt][e] - mx[e >> 1]);
        rowsum[e >> 1] += s[nt][e];
      }
    }
#pragma unroll
    for (int h = 0; h < 2; ++h) l[h] = l[h] * alpha[h] + rowsum[h];
#pragma unroll
    for (int dt = 0; dt < kDT; ++dt) {
      o[dt][0] *= alpha[0];
      o[dt][1] *= alpha[0];
      o[dt][2] *= alpha[1];
      o[dt][3] *= alpha[1];
    }
    // O += P V: P's C fragments become A fragments, 16 positions per k-step.
#pragma unroll
    for (int kk = 0; kk < kTW / 16; ++kk) {
      const uint32_t pa[4] = {pack_bf16(s[2 * kk][0], s[2 * kk][1]),
                              pack_bf16(s[2 * kk][2], s[2 * kk][3]),
                              pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                              pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3])};
      const int mat = lane / 8;
      const __nv_bfloat16* vaddr =
          vs_tile + (kk * 16 + (mat & 1) * 8 + lane % 8) * S::kStride + (mat >> 1) * 8;
#pragma unroll
      for (int dp = 0; dp < D / 16; ++dp) {
        uint32_t vb[4];
        ldmatrix_x4_trans(vb, vaddr + dp * 16);
        mma_bf16(o[2 * dp], pa, vb[0], vb[1]);
        mma_bf16(o[2 * dp + 1], pa, vb[2], vb[3]);
      }
    }
    __syncthreads();  // this stage is refilled by the next iteration's prefetch
  }
  cp_async_wait<0>();
  __syncthreads();  // the stages become the epilogue's scratch

  // Epilogue: each warp parks its rows' (O, m, l) in shared memory; then the WT warps of each
  // row tile are merged.
  float* ep = reinterpret_cast<float*>(smem);
  float* ow = ep + warp * 16 * (D + 2);  // [16][D], then m[16], l[16]
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    l[h] += __shfl_xor_sync(0xffffffffu, l[h], 1);
    l[h] += __shfl_xor_sync(0xffffffffu, l[h], 2);
  }
#pragma unroll
  for (int dt = 0; dt < kDT; ++dt) {
    const int d = dt * 8 + 2 * qlane;
    ow[quad * D + d] = o[dt][0];
    ow[quad * D + d + 1] = o[dt][1];
    ow[(quad + 8) * D + d] = o[dt][2];
    ow[(quad + 8) * D + d + 1] = o[dt][3];
  }
  if (qlane == 0) {
    ow[16 * D + quad] = m[0];
    ow[16 * D + quad + 8] = m[1];
    ow[16 * D + 16 + quad] = l[0];
    ow[16 * D + 16 + quad + 8] = l[1];
  }
  __syncthreads();
  for (int idx = threadIdx.x; idx < S::kRows * (D / 2); idx += kThreads) {
    const int r = idx / (D / 2), d = (idx % (D / 2)) * 2;
    const int gr = row0 + r;
    if (gr >= rows_total) continue;
    const int tile = r / 16, rr = r % 16;
    float mmax = -INFINITY;
#pragma unroll
    for (int w = 0; w < WT; ++w) {
      mmax = fmaxf(mmax, ep[(tile * WT + w) * 16 * (D + 2) + 16 * D + rr]);
    }
    float lsum = 0.0f, acc0 = 0.0f, acc1 = 0.0f;
    if (mmax != -INFINITY) {
#pragma unroll
      for (int w = 0; w < WT; ++w) {
        const float* src = ep + (tile * WT + w) * 16 * (D + 2);
        const float mw = src[16 * D + rr];
        if (mw == -INFINITY) continue;
        const float f = exp2f(mw - mmax);
        lsum += f * src[16 * D + 16 + rr];
        acc0 += f * src[rr * D + d];
        acc1 += f * src[rr * D + d + 1];
      }
    }
    const float inv = lsum > 0.0f ? 1.0f / lsum : 0.0f;
    const int64_t tok = q0 + gr / a.group;
    const int head = kvh * a.group + gr % a.group;
    if (a.splits == 1) {
      *reinterpret_cast<__nv_bfloat162*>(a.out + tok * a.out_stride +
                                         static_cast<int64_t>(head) * D + d) =
          __floats2bfloat162_rn(acc0 * inv, acc1 * inv);
    } else {
      const int64_t prow = (blockIdx.z * a.num_tokens + tok) * a.num_heads + head;
      a.ws_o[prow * D + d] = acc0 * inv;
      a.ws_o[prow * D + d + 1] = acc1 * inv;
      if (d == 0) a.ws_lse[prow] = lsum > 0.0f ? mmax + log2f(lsum) : -INFINITY;
    }
  }
}

template <int D, int WT, int NW = kAttnWarps, int STAGES = 2, bool INVARIANT = false>
cudaError_t set_tc_smem_limit() {
  return cudaFuncSetAttribute(paged_attention_tc_kernel<D, WT, NW, STAGES, INVARIANT>,
                              cudaFuncAttributeMaxDynamicSharedMemorySize,
                              static_cast<int>(TcSmem<D, WT, NW, STAGES>::kBytes));
}

// INVARIANT: the row chunks of one (sequence, kv head, split) side by side in blockIdx.x
// (AttnArgs::chunk_major) where the block count fits it.
template <int D, int WT, int NW = kAttnWarps, int STAGES = 2, bool INVARIANT = false>
Status launch_tc(AttnArgs a, int32_t num_seqs, int32_t max_query_len, Stream stream) {
  using S = TcSmem<D, WT, NW, STAGES>;
  static const cudaError_t attr = set_tc_smem_limit<D, WT, NW, STAGES, INVARIANT>();
  if (attr != cudaSuccess) {
    return fail(Status::kLaunchFailed, "paged_attention", cudaGetErrorString(attr));
  }
  const int64_t rows = static_cast<int64_t>(max_query_len) * a.group;
  const int64_t chunks = (rows + S::kRows - 1) / S::kRows;
  const int64_t seq_heads = static_cast<int64_t>(num_seqs) * a.num_kv_heads;
  a.chunk_major = INVARIANT && chunks > 1 && seq_heads * chunks <= 0x7fffffff;
  a.row_chunks = static_cast<int32_t>(chunks);
  const dim3 grid = a.chunk_major
                        ? dim3(static_cast<unsigned>(seq_heads * chunks), 1,
                               static_cast<unsigned>(a.splits))
                        : dim3(static_cast<unsigned>(seq_heads), static_cast<unsigned>(chunks),
                               static_cast<unsigned>(a.splits));
  launch(paged_attention_tc_kernel<D, WT, NW, STAGES, INVARIANT>, grid, NW * 32, S::kBytes, stream,
         a);
  return launched("paged_attention (tensor cores)");
}

}  // namespace

int attention_tc_blocks_per_sm(int32_t head_dim, int32_t max_query_len, int32_t group) {
  const int rows = attention_tc_rows_per_block(max_query_len, group);
  // Cached per (head_dim, rows) for the first device asked: the occupancy query is host work, and
  // after the first (eager) call none is made during a graph capture.
  static int cached[2][3] = {};
  int& slot = cached[head_dim == 64 ? 0 : 1][rows == 16 ? 0 : rows == 32 ? 1 : 2];
  if (slot != 0) return slot;
  auto occupancy = [](auto kernel, size_t smem) {
    int n = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, kAttnThreads, smem) !=
        cudaSuccess) {
      cudaGetLastError();
      return 1;
    }
    return n > 0 ? n : 1;
  };
#define LT_TC_OCC(D, WT) \
  occupancy(paged_attention_tc_kernel<D, WT, kAttnWarps>, TcSmem<D, WT, kAttnWarps>::kBytes)
  if (head_dim == 64) {
    slot = rows == 16 ? LT_TC_OCC(64, 4) : rows == 32 ? LT_TC_OCC(64, 2) : LT_TC_OCC(64, 1);
  } else {
    slot = rows == 16 ? LT_TC_OCC(128, 4) : rows == 32 ? LT_TC_OCC(128, 2) : LT_TC_OCC(128, 1);
  }
#undef LT_TC_OCC
  return slot;
}

cudaError_t prepare_attention_tc() {
  const cudaError_t errs[] = {set_tc_smem_limit<64, 1>(),
                              set_tc_smem_limit<64, 2>(),
                              set_tc_smem_limit<64, 4>(),
                              set_tc_smem_limit<128, 1>(),
                              set_tc_smem_limit<128, 2>(),
                              set_tc_smem_limit<128, 4>(),
                              set_tc_smem_limit<64, 4, 4, 2, true>(),
                              set_tc_smem_limit<128, 4, 4, 2, true>(),
                              set_tc_smem_limit<64, 4, 8, 2, true>(),
                              set_tc_smem_limit<64, 4, 8, 3, true>(),
                              set_tc_smem_limit<128, 4, 8, 2, true>(),
                              set_tc_smem_limit<128, 4, 8, 3, true>()};
  for (cudaError_t e : errs) {
    if (e != cudaSuccess) return e;
  }
  return cudaSuccess;
}

int attention_tc_rows_per_block(int32_t max_query_len, int32_t group) {
  const int64_t rows = static_cast<int64_t>(max_query_len) * group;
  return rows <= 16 ? 16 : rows <= 32 ? 32 : 64;
}

Status launch_attention_tc(const AttnArgs& a, int32_t head_dim, int32_t num_seqs,
                           int32_t max_query_len, int32_t kv_stages, Stream stream) {
  const int rows = attention_tc_rows_per_block(max_query_len, a.group);
  Status st;
  if (a.split_size > 0) {
    // Batch-invariant mode: every 16-row tile is computed the way the 16-row layout does it (4
    // warps interleaving each KV tile, then merged), whatever the shape; more rows go two such
    // tiles to a block of 8 warps (sharing each staged K/V tile), chunks side by side.
    const bool three = kv_stages != 2;
    if (head_dim == 64) {
      st = rows == 16 ? launch_tc<64, 4, 4, 2, true>(a, num_seqs, max_query_len, stream)
           : three    ? launch_tc<64, 4, 8, 3, true>(a, num_seqs, max_query_len, stream)
                      : launch_tc<64, 4, 8, 2, true>(a, num_seqs, max_query_len, stream);
    } else {
      st = rows == 16 ? launch_tc<128, 4, 4, 2, true>(a, num_seqs, max_query_len, stream)
           : three    ? launch_tc<128, 4, 8, 3, true>(a, num_seqs, max_query_len, stream)
                      : launch_tc<128, 4, 8, 2, true>(a, num_seqs, max_query_len, stream);
    }
  } else if (head_dim == 64) {
    st = rows == 16   ? launch_tc<64, 4>(a, num_seqs, max_query_len, stream)
         : rows == 32 ? launch_tc<64, 2>(a, num_seqs, max_query_len, stream)
                      : launch_tc<64, 1>(a, num_seqs, max_query_len, stream);
  } else {
    st = rows == 16   ? launch_tc<128, 4>(a, num_seqs, max_query_len, stream)
         : rows == 32 ? launch_tc<128, 2>(a, num_seqs, max_query_len, stream)
                      : launch_tc<128, 1>(a, num_seqs, max_query_len, stream);
  }
  if (st != Status::kOk || a.splits == 1) return st;
  return launch_attention_combine(a, head_dim, stream);
}

}  // namespace longtail::kernels::detail
