// Paged attention for any head size up to 256 (paged_attention serves only 64 and 128; small test
// checkpoints use others): one warp per (query token, head), an online softmax over every cached
// position in order, causal within each sequence's new tokens. Simple and slow on purpose: it is
// the path of shapes no production model has, and an independent implementation to compare with.
#include "kernels/common.cuh"

namespace longtail::kernels {
using namespace detail;

namespace {

constexpr int kMaxDimPerLane = 8;  // head_dim <= 256
constexpr int kWarpsPerBlock = 4;

__global__ void simple_attention_kernel(SimplePagedAttentionParams p) {
  wait_for_prior_kernels();
  const int64_t gw = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (gw >= p.num_tokens * p.num_heads) return;
  const int64_t t = gw / p.num_heads;
  const int h = static_cast<int>(gw % p.num_heads);
  const int s = p.token_seq[t];
  const int n_s = p.query_start[s + 1] - p.query_start[s];
  const int j = static_cast<int>(t - p.query_start[s]);
  const int last = p.seq_lens[s] - n_s + j;  // inclusive
  const int D = p.head_dim;
  const int kvh = h / (p.num_heads / p.num_kv_heads);
  const __nv_bfloat16* q = reinterpret_cast<const __nv_bfloat16*>(p.q) + (t * p.num_heads + h) * D;
  float qv[kMaxDimPerLane], acc[kMaxDimPerLane];
#pragma unroll
  for (int u = 0; u < kMaxDimPerLane; ++u) {
    const int d = lane + 32 * u;
    qv[u] = d < D ? to_f32(q[d]) * p.scale : 0.0f;
    acc[u] = 0.0f;
  }
  float m = -INFINITY, l = 0.0f;
  const int32_t* table = p.block_table + static_cast<int64_t>(s) * p.block_table_stride;
  for (int pos = 0; pos <= last; ++pos) {
    const int64_t slot =
        static_cast<int64_t>(table[pos / p.block_size]) * p.block_size + pos % p.block_size;
    const int64_t base = (slot * p.num_kv_heads + kvh) * D;
    const __nv_bfloat16* k = reinterpret_cast<const __nv_bfloat16*>(p.k_cache) + base;
    const __nv_bfloat16* v = reinterpret_cast<const __nv_bfloat16*>(p.v_cache) + base;
    float dot = 0.0f;
#pragma unroll
    for (int u = 0; u < kMaxDimPerLane; ++u) {
      const int d = lane + 32 * u;
      if (d < D) dot += qv[u] * to_f32(k[d]);
    }
    dot = warp_sum(dot);
    const float m_new = fmaxf(m, dot);
    const float corr = __expf(m - m_new);
    const float e = __expf(dot - m_new);
    l = l * corr + e;
#pragma unroll
    for (int u = 0; u < kMaxDimPerLane; ++u) {
      const int d = lane + 32 * u;
      acc[u] = acc[u] * corr + (d < D ? e * to_f32(v[d]) : 0.0f);
    }
    m = m_new;
  }
  __nv_bfloat16* out = reinterpret_cast<__nv_bfloat16*>(p.out) + (t * p.num_heads + h) * D;
#pragma unroll
  for (int u = 0; u < kMaxDimPerLane; ++u) {
    const int d = lane + 32 * u;
    if (d < D) out[d] = to_bf(acc[u] / l);
  }
}

}  // namespace

Status paged_attention_simple(const SimplePagedAttentionParams& p, Stream stream) {
  constexpr const char* kName = "paged_attention_simple";
  if (p.num_tokens < 0) return invalid(kName, "num_tokens must be >= 0");
  if (p.num_tokens == 0) return Status::kOk;
  if (p.head_dim <= 0 || p.head_dim > 32 * kMaxDimPerLane) {
    return invalid(kName, "head_dim must be in [1, 256]");
  }
  if (p.num_kv_heads <= 0 || p.num_heads <= 0 || p.num_heads % p.num_kv_heads != 0) {
    return invalid(kName, "num_heads must be a positive multiple of num_kv_heads");
  }
  if (p.block_size <= 0) return invalid(kName, "block_size must be > 0");
  if (p.q == nullptr || p.k_cache == nullptr || p.v_cache == nullptr || p.block_table == nullptr ||
      p.token_seq == nullptr || p.query_start == nullptr || p.seq_lens == nullptr ||
      p.out == nullptr) {
    return invalid(kName, "q, caches, block_table, token_seq, query_start, seq_lens and out must "
                          "be non-null");
  }
  const int64_t warps = p.num_tokens * p.num_heads;
  if ((warps + kWarpsPerBlock - 1) / kWarpsPerBlock > 0x7fffffff) {
    return invalid(kName, "num_tokens * num_heads too large");
  }
  launch(simple_attention_kernel, blocks_for(warps, kWarpsPerBlock), 32 * kWarpsPerBlock, 0, stream,
         p);
  return launched(kName);
}

}  // namespace longtail::kernels
