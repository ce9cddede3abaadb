// Paged attention for prefill, decode, speculative verify and tree verify (semantics in kernels.h):
// the API entry, the split merge, and the CUDA-core kernel (the tensor-core one, used by default,
// is in attention_tc.cu; this one stays as an independent implementation the tests and the
// benchmark compare against).
//
// One block = one (sequence, kv head, chunk of query rows, KV split). Query rows are the
// (query token, q head of the GQA group) pairs of that kv head, so each K/V tile is read from
// memory once for the whole group and all draft tokens. K/V tiles of 64 positions are staged in
// shared memory by cp.async (16-byte copies, double-buffered, invalid positions zero-filled so a
// zero probability never meets garbage); each warp owns up to R rows: lanes score positions
// (lane, lane+32) against the rows' q (fp32 in shared memory, pre-scaled by scale*log2 e), then
// an online softmax (exp2) and P.V with each lane owning head_dim/32 output dims.
// With num_kv_splits > 1 each split writes an fp32 partial (normalised output + log2-sum-exp) to
// the workspace and a second kernel merges them (flash-decoding).
#include <algorithm>
#include <cmath>

#include "kernels/attention_common.cuh"

namespace longtail::kernels {
using namespace detail;

namespace {

constexpr int kWarps = kAttnWarps;
constexpr int kThreads = kAttnThreads;
constexpr int kTile = kAttnTile;

template <int D, int R>
struct Smem {
  static constexpr int kRows = kWarps * R;
  static constexpr int kKStride = D + 8;  // +16 bytes per row: conflict-free 16-byte reads
  static constexpr size_t kQBytes = sizeof(float) * kRows * D;
  static constexpr size_t kKBytes = sizeof(__nv_bfloat16) * kTile * kKStride;
  static constexpr size_t kVBytes = sizeof(__nv_bfloat16) * kTile * D;
  static constexpr size_t kBytes = kQBytes + 2 * (kKBytes + kVBytes);
};

template <int D, int R>
__global__ void __launch_bounds__(kThreads) paged_attention_kernel(const AttnArgs a) {
  wait_for_prior_kernels();
  using S = Smem<D, R>;
  constexpr int kDpl = D / 32;  // output dims per lane
  extern __shared__ __align__(16) unsigned char smem[];
  float* qs = reinterpret_cast<float*>(smem);
  // Stage b's K tile then V tile, stages back to back (pointer arithmetic, not an array: a
  // run-time-indexed array of pointers would live in local memory).
  constexpr size_t kStage = S::kKBytes + S::kVBytes;
  auto kbuf = [&](int b) {
    return reinterpret_cast<__nv_bfloat16*>(smem + S::kQBytes + b * kStage);
  };
  auto vbuf = [&](int b) {
    return reinterpret_cast<__nv_bfloat16*>(smem + S::kQBytes + b * kStage + S::kKBytes);
  };

  const int seq = blockIdx.x / a.num_kv_heads, kvh = blockIdx.x % a.num_kv_heads;
  const int q0 = a.query_start[seq];
  const int n = a.query_start[seq + 1] - q0;
  const int rows_total = n * a.group;
  const int row0 = blockIdx.y * S::kRows;
  if (row0 >= rows_total) return;
  const int nrows = min(S::kRows, rows_total - row0);
  const int prefix = a.seq_lens[seq] - n;
  const int split = blockIdx.z;

  // q rows -> shared memory (fp32, pre-scaled).
  for (int i = threadIdx.x; i < nrows * (D / 8); i += kThreads) {
    const int r = i / (D / 8), part = i % (D / 8);
    const int gr = row0 + r;
    const int j = gr / a.group, h = kvh * a.group + gr % a.group;
    float f[8];
    unpack8(*reinterpret_cast<const uint4*>(a.q + (q0 + j) * a.q_stride +
                                            static_cast<int64_t>(h) * D + part * 8),
            f);
#pragma unroll
    for (int e = 0; e < 8; ++e) qs[r * D + part * 8 + e] = f[e] * a.qscale;
  }

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  // Per-row state of this warp: row index r = warp + kWarps * ri.
  int jrow[R];
  uint64_t anc[R];
  float m[R], l[R], acc[R][kDpl];
#pragma unroll
  for (int ri = 0; ri < R; ++ri) {
    const int r = warp + kWarps * ri;
    jrow[ri] = r < nrows ? (row0 + r) / a.group : -1;
    m[ri] = -INFINITY;
    l[ri] = 0.0f;
#pragma unroll
    for (int e = 0; e < kDpl; ++e) acc[ri][e] = 0.0f;
    anc[ri] = 0;
    if (a.parents != nullptr && jrow[ri] >= 0) {
      // Ancestors-or-self within the draft (n <= 64 is checked on the host).
      for (int x = jrow[ri]; x >= 0;) {
        anc[ri] |= 1ull << x;
        const int p = a.parents[q0 + x];
        x = (p >= 0 && p < x) ? p : -1;
      }
    }
  }
  const int j_max = (row0 + nrows - 1) / a.group;
  const int kv_end = prefix + j_max + 1;
  int start, end;
  split_range(kv_end, a.splits, a.split_size, split, &start, &end);

  const int ntiles = start < end ? (end - start + kTile - 1) / kTile : 0;
  if (ntiles > 0) load_kv_tile<D, D + 8, D>(a, seq, kvh, start, end, kbuf(0), vbuf(0));
  cp_async_commit();
  for (int it = 0; it < ntiles; ++it) {
    const int tile_start = start + it * kTile;
    if (it + 1 < ntiles) load_kv_tile<D, D + 8, D>(a, seq, kvh, tile_start + kTile, end, kbuf((it + 1) & 1),
                                      vbuf((it + 1) & 1));
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();  // tile `it` (and the q rows) visible to all warps
    const __nv_bfloat16* ks = kbuf(it & 1);
    const __nv_bfloat16* vs = vbuf(it & 1);

    float s[R][2];
#pragma unroll
    for (int ri = 0; ri < R; ++ri) s[ri][0] = s[ri][1] = 0.0f;
#pragma unroll 4
    for (int c = 0; c < D / 8; ++c) {
      float k0[8], k1[8];
      unpack8(*reinterpret_cast<const uint4*>(ks + lane * (D + 8) + c * 8), k0);
      unpack8(*reinterpret_cast<const uint4*>(ks + (lane + 32) * (D + 8) + c * 8), k1);
#pragma unroll
      for (int ri = 0; ri < R; ++ri) {
        if (jrow[ri] < 0) continue;
        const float4* qp = reinterpret_cast<const float4*>(qs + (warp + kWarps * ri) * D + c * 8);
        const float4 qa = qp[0], qb = qp[1];
        s[ri][0] += qa.x * k0[0] + qa.y * k0[1] + qa.z * k0[2] + qa.w * k0[3] + qb.x * k0[4] +
                    qb.y * k0[5] + qb.z * k0[6] + qb.w * k0[7];
        s[ri][1] += qa.x * k1[0] + qa.y * k1[1] + qa.z * k1[2] + qa.w * k1[3] + qb.x * k1[4] +
                    qb.y * k1[5] + qb.z * k1[6] + qb.w * k1[7];
      }
    }
#pragma unroll
    for (int ri = 0; ri < R; ++ri) {
      if (jrow[ri] < 0) continue;
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int pos = tile_start + lane + 32 * h;
        bool ok = pos < end && pos <= prefix + jrow[ri];
        if (ok && a.parents != nullptr && pos >= prefix) ok = (anc[ri] >> (pos - prefix)) & 1ull;
        if (!ok) s[ri][h] = -INFINITY;
      }
      const float mt = warp_max(fmaxf(s[ri][0], s[ri][1]));
      const float m_new = fmaxf(m[ri], mt);
      if (m_new == -INFINITY) {  // nothing visible yet for this row
        s[ri][0] = s[ri][1] = 0.0f;
        continue;
      }
      const float alpha = exp2f(m[ri] - m_new);  // m = -inf -> 0
      s[ri][0] = exp2f(s[ri][0] - m_new);
      s[ri][1] = exp2f(s[ri][1] - m_new);
      l[ri] = l[ri] * alpha + warp_sum(s[ri][0] + s[ri][1]);
      m[ri] = m_new;
#pragma unroll
      for (int e = 0; e < kDpl; ++e) acc[ri][e] *= alpha;
    }
#pragma unroll 4
    for (int t = 0; t < kTile; ++t) {
      float v[kDpl];
      if constexpr (kDpl == 4) {
        const uint2 raw = *reinterpret_cast<const uint2*>(vs + t * D + lane * 4);
        const float2 a0 = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&raw.x));
        const float2 a1 = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&raw.y));
        v[0] = a0.x; v[1] = a0.y; v[2] = a1.x; v[3] = a1.y;
      } else {
        const float2 a0 =
            __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(vs + t * D + lane * 2));
        v[0] = a0.x; v[1] = a0.y;
      }
#pragma unroll
      for (int ri = 0; ri < R; ++ri) {
        if (jrow[ri] < 0) continue;
        const float p = __shfl_sync(0xffffffffu, t < 32 ? s[ri][0] : s[ri][1], t & 31);
#pragma unroll
        for (int e = 0; e < kDpl; ++e) acc[ri][e] += p * v[e];
      }
    }
    __syncthreads();  // buffer `it & 1` is refilled by the next iteration's prefetch
  }
  cp_async_wait<0>();

#pragma unroll
  for (int ri = 0; ri < R; ++ri) {
    if (jrow[ri] < 0) continue;
    const int gr = row0 + warp + kWarps * ri;
    const int64_t tok = q0 + jrow[ri];
    const int h = kvh * a.group + gr % a.group;
    const float inv = l[ri] > 0.0f ? 1.0f / l[ri] : 0.0f;
    if (a.splits == 1) {
      __nv_bfloat16* o = a.out + tok * a.out_stride + static_cast<int64_t>(h) * D + lane * kDpl;
#pragma unroll
      for (int e = 0; e < kDpl; e += 2) {
        *reinterpret_cast<__nv_bfloat162*>(o + e) =
            __floats2bfloat162_rn(acc[ri][e] * inv, acc[ri][e + 1] * inv);
      }
    } else {
      const int64_t prow = (split * a.num_tokens + tok) * a.num_heads + h;
      float* o = a.ws_o + prow * D + lane * kDpl;
#pragma unroll
      for (int e = 0; e < kDpl; ++e) o[e] = acc[ri][e] * inv;
      if (lane == 0) a.ws_lse[prow] = l[ri] > 0.0f ? m[ri] + log2f(l[ri]) : -INFINITY;
    }
  }
}

// Merges the split partials of one (token, head) per warp.
template <int D>
__global__ void combine_splits_kernel(const AttnArgs a) {
  wait_for_prior_kernels();
  constexpr int kDpl = D / 32;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarps + threadIdx.x / 32;
  const int64_t rows = a.num_tokens * a.num_heads;
  if (row >= rows) return;
  const int lane = threadIdx.x % 32;
  float mx = -INFINITY;
  for (int z = 0; z < a.splits; ++z) mx = fmaxf(mx, a.ws_lse[z * rows + row]);
  float acc[kDpl] = {};
  float wsum = 0.0f;
  if (mx != -INFINITY) {
    for (int z = 0; z < a.splits; ++z) {
      const float lse = a.ws_lse[z * rows + row];
      if (lse == -INFINITY) continue;
      const float w = exp2f(lse - mx);
      wsum += w;
      const float* o = a.ws_o + (z * rows + row) * D + lane * kDpl;
#pragma unroll
      for (int e = 0; e < kDpl; ++e) acc[e] += w * o[e];
    }
  }
  const float inv = wsum > 0.0f ? 1.0f / wsum : 0.0f;
  const int64_t tok = row / a.num_heads, h = row % a.num_heads;
  __nv_bfloat16* o = a.out + tok * a.out_stride + h * D + lane * kDpl;
#pragma unroll
  for (int e = 0; e < kDpl; e += 2) {
    *reinterpret_cast<__nv_bfloat162*>(o + e) = __floats2bfloat162_rn(acc[e] * inv, acc[e + 1] * inv);
  }
}

// Rows per warp: small for decode (few rows per kv head), large when many draft/prefill tokens.
int rows_per_warp(int32_t max_query_len, int32_t group) {
  return static_cast<int64_t>(max_query_len) * group <= 2 * kWarps ? 2 : 8;
}

template <int D, int R>
cudaError_t set_smem_limit() {
  return cudaFuncSetAttribute(paged_attention_kernel<D, R>,
                              cudaFuncAttributeMaxDynamicSharedMemorySize,
                              static_cast<int>(Smem<D, R>::kBytes));
}

template <int D, int R>
Status launch_cuda_core(const AttnArgs& a, int32_t num_seqs, int32_t max_query_len, Stream stream) {
  using S = Smem<D, R>;
  static const cudaError_t attr = set_smem_limit<D, R>();
  if (attr != cudaSuccess) {
    return fail(Status::kLaunchFailed, "paged_attention", cudaGetErrorString(attr));
  }
  const int64_t rows = static_cast<int64_t>(max_query_len) * a.group;
  const dim3 grid(static_cast<unsigned>(num_seqs) * a.num_kv_heads,
                  static_cast<unsigned>((rows + S::kRows - 1) / S::kRows),
                  static_cast<unsigned>(a.splits));
  launch(paged_attention_kernel<D, R>, grid, kThreads, S::kBytes, stream, a);
  Status st = launched("paged_attention");
  if (st != Status::kOk || a.splits == 1) return st;
  return launch_attention_combine(a, D, stream);
}

}  // namespace

Status detail::launch_attention_combine(const AttnArgs& a, int32_t head_dim, Stream stream) {
  const int64_t out_rows = a.num_tokens * a.num_heads;
  if (head_dim == 64) {
    launch(combine_splits_kernel<64>, blocks_for(out_rows, kWarps), kThreads, 0, stream, a);
  } else {
    launch(combine_splits_kernel<128>, blocks_for(out_rows, kWarps), kThreads, 0, stream, a);
  }
  return launched("paged_attention (combine)");
}

Status prepare_paged_attention() {
  const cudaError_t errs[] = {detail::prepare_attention_tc(), set_smem_limit<64, 2>(),
                              set_smem_limit<64, 8>(), set_smem_limit<128, 2>(),
                              set_smem_limit<128, 8>()};
  for (cudaError_t e : errs) {
    if (e != cudaSuccess) {
      return fail(Status::kLaunchFailed, "prepare_paged_attention", cudaGetErrorString(e));
    }
  }
  return Status::kOk;
}

size_t paged_attention_workspace_bytes(int64_t num_tokens, int32_t num_heads, int32_t head_dim,
                                       int32_t num_kv_splits) {
  if (num_kv_splits <= 1 || num_tokens <= 0) return 0;
  return sizeof(float) * static_cast<size_t>(num_kv_splits) * static_cast<size_t>(num_tokens) *
         static_cast<size_t>(num_heads) * static_cast<size_t>(head_dim + 1);
}

int32_t paged_attention_choose_splits(int32_t num_seqs, int32_t num_heads, int32_t num_kv_heads,
                                      int32_t max_query_len, int64_t max_kv_len, int32_t num_sms) {
  if (num_seqs <= 0 || num_kv_heads <= 0 || num_heads < num_kv_heads || max_query_len <= 0) return 1;
  const int32_t group = num_heads / num_kv_heads;
  const int64_t rows_per_block = attention_tc_rows_per_block(max_query_len, group);
  const int64_t chunks = (static_cast<int64_t>(max_query_len) * group + rows_per_block - 1) /
                         rows_per_block;
  const int64_t blocks = static_cast<int64_t>(num_seqs) * num_kv_heads * chunks;
  const int64_t want = (2 * static_cast<int64_t>(num_sms) + blocks - 1) / blocks;
  const int64_t cap = std::max<int64_t>(1, max_kv_len / 256);
  return static_cast<int32_t>(std::clamp<int64_t>(std::min(want, cap), 1, 64));
}

int32_t paged_attention_balance_splits(int32_t splits, int32_t max_splits, int32_t num_seqs,
                                       int32_t num_heads, int32_t num_kv_heads, int32_t head_dim,
                                       int32_t max_query_len, int64_t max_kv_len) {
  if (splits < 1 || num_seqs <= 0 || num_kv_heads <= 0 || num_heads < num_kv_heads ||
      num_heads % num_kv_heads != 0 || max_query_len <= 0 || (head_dim != 64 && head_dim != 128))
    return std::max(splits, 1);
  const int32_t group = num_heads / num_kv_heads;
  const int64_t rows_per_block = attention_tc_rows_per_block(max_query_len, group);
  const int64_t per_split = static_cast<int64_t>(num_seqs) * num_kv_heads *
                            ((static_cast<int64_t>(max_query_len) * group + rows_per_block - 1) /
                             rows_per_block);
  const int sms = multiprocessor_count();
  if (sms <= 0) return splits;
  const int64_t slots = static_cast<int64_t>(sms) *
                        attention_tc_blocks_per_sm(head_dim, max_query_len, group);
  if (per_split * splits <= slots) return splits;  // one wave: nothing idles in a tail
  auto fill = [&](int64_t s) {  // fraction of the slots of all waves the launch uses
    const int64_t blocks = per_split * s;
    return static_cast<double>(blocks) / static_cast<double>((blocks + slots - 1) / slots * slots);
  };
  const int64_t tiles = std::max<int64_t>(1, (max_kv_len + kAttnTile - 1) / kAttnTile);
  const int64_t top =
      std::min<int64_t>({2 * static_cast<int64_t>(splits) + 1, max_splits, tiles});
  int64_t best = splits;
  for (int64_t s = splits + 1; s <= top; ++s)
    if (fill(s) > fill(best) + 0.02) best = s;
  return static_cast<int32_t>(best);
}

Status paged_attention(const PagedAttentionParams& p, Stream stream) {
  constexpr const char* kName = "paged_attention";
  if (p.num_seqs < 0 || p.num_tokens < 0 || p.max_query_len < 0) {
    return invalid(kName, "num_seqs, num_tokens and max_query_len must be >= 0");
  }
  if (p.num_seqs == 0 || p.num_tokens == 0) return Status::kOk;
  if (p.head_dim != 64 && p.head_dim != 128) return invalid(kName, "head_dim must be 64 or 128");
  if (p.num_kv_heads <= 0 || p.num_heads <= 0 || p.num_heads % p.num_kv_heads != 0) {
    return invalid(kName, "num_heads must be a positive multiple of num_kv_heads");
  }
  if (p.block_size <= 0) return invalid(kName, "block_size must be > 0");
  if (p.max_query_len <= 0) return invalid(kName, "max_query_len must be > 0");
  if (p.tree_parents != nullptr && p.max_query_len > 64) {
    return invalid(kName, "tree attention supports at most 64 query tokens per sequence");
  }
  if (p.num_kv_splits < 1 || p.num_kv_splits > 65535) {
    return invalid(kName, "num_kv_splits must be in [1, 65535]");
  }
  if (p.kv_split_size < 0 || p.kv_split_size % kAttnTile != 0) {
    return invalid(kName, "kv_split_size must be 0 or a positive multiple of 64");
  }
  if (p.kv_stages != 0 && p.kv_stages != 2 && p.kv_stages != 3) {
    return invalid(kName, "kv_stages must be 0, 2 or 3");
  }
  if (p.q == nullptr || p.k_cache == nullptr || p.v_cache == nullptr || p.block_table == nullptr ||
      p.query_start == nullptr || p.seq_lens == nullptr || p.out == nullptr) {
    return invalid(kName, "q, caches, block_table, query_start, seq_lens and out must be non-null");
  }
  const int64_t span = static_cast<int64_t>(p.num_heads) * p.head_dim;
  if (p.q_stride < span || p.out_stride < span || p.q_stride % 8 != 0 || p.out_stride % 2 != 0 ||
      (reinterpret_cast<uintptr_t>(p.out) & 3u) != 0 ||
      !aligned16(p.q) || !aligned16(p.k_cache) || !aligned16(p.v_cache)) {
    return invalid(kName,
                   "q/out strides must cover all heads (q stride a multiple of 8, out even) and "
                   "q and the caches must be 16-byte aligned");
  }
  if (p.num_kv_splits > 1 &&
      (p.workspace == nullptr ||
       p.workspace_bytes < paged_attention_workspace_bytes(p.num_tokens, p.num_heads, p.head_dim,
                                                           p.num_kv_splits))) {
    return invalid(kName, "num_kv_splits > 1 needs paged_attention_workspace_bytes() of workspace");
  }
  const int32_t group = p.num_heads / p.num_kv_heads;
  if (static_cast<int64_t>(p.num_seqs) * p.num_kv_heads > 0x7fffffff ||
      static_cast<int64_t>(p.max_query_len) * group > 65535LL * 8) {
    return invalid(kName, "grid too large (num_seqs * num_kv_heads or max_query_len * group)");
  }
  AttnArgs a{};
  a.q = dev(p.q);
  a.q_stride = p.q_stride;
  a.kc = dev(p.k_cache);
  a.vc = dev(p.v_cache);
  a.block_table = p.block_table;
  a.bt_stride = p.block_table_stride;
  a.block_size = p.block_size;
  a.query_start = p.query_start;
  a.seq_lens = p.seq_lens;
  a.parents = p.tree_parents;
  a.num_heads = p.num_heads;
  a.num_kv_heads = p.num_kv_heads;
  a.group = group;
  a.num_tokens = p.num_tokens;
  a.splits = p.num_kv_splits;
  a.split_size = p.kv_split_size;
  a.prefix_settled = p.cached_prefix_settled ? 1 : 0;
  a.qscale = p.scale * static_cast<float>(M_LOG2E);
  a.ws_o = p.workspace;
  a.ws_lse = p.num_kv_splits > 1 ? p.workspace + static_cast<size_t>(p.num_kv_splits) *
                                                     p.num_tokens * p.num_heads * p.head_dim
                                 : nullptr;
  a.out = dev(p.out);
  a.out_stride = p.out_stride;
  if (p.use_tensor_cores) {
    return launch_attention_tc(a, p.head_dim, p.num_seqs, p.max_query_len, p.kv_stages, stream);
  }
  const bool small = rows_per_warp(p.max_query_len, group) == 2;
  if (p.head_dim == 64) {
    return small ? launch_cuda_core<64, 2>(a, p.num_seqs, p.max_query_len, stream)
                 : launch_cuda_core<64, 8>(a, p.num_seqs, p.max_query_len, stream);
  }
  return small ? launch_cuda_core<128, 2>(a, p.num_seqs, p.max_query_len, stream)
               : launch_cuda_core<128, 8>(a, p.num_seqs, p.max_query_len, stream);
}

}  // namespace longtail::kernels
