// Post-processing of one layer's fused q/k/v product in a single pass (semantics in kernels.h):
// bias, optional per-head RMSNorm (Qwen3), rotate-half RoPE, then q to its own buffer and k/v
// straight into the paged cache. The product stays fp32 until this kernel rounds it once to bf16.
// One block per (token, head), one thread per rotated pair, so every row is reduced the same way
// whatever the number of tokens.
#include "kernels/common.cuh"

namespace longtail::kernels {
using namespace detail;

namespace {

__global__ void qkv_post_kernel(QkvPostParams p) {
  wait_for_prior_kernels();
  __shared__ float scratch[32];
  const int64_t t = blockIdx.x;
  const int head = blockIdx.y;  // [0, H) q heads, [H, H + KV) k heads, then v heads
  const int H = p.num_heads, KV = p.num_kv_heads, D = p.head_dim, half = D / 2;
  const int i = threadIdx.x;
  const bool active = i < half;
  const int64_t row = static_cast<int64_t>(H + 2 * KV) * D;
  const float* in = p.qkv + t * row + static_cast<int64_t>(head) * D;
  float a = 0.0f, b = 0.0f;
  if (active) {
    a = in[i];
    b = in[i + half];
    if (p.bias) {
      a += p.bias[head * D + i];
      b += p.bias[head * D + i + half];
    }
  }
  const bool is_q = head < H;
  const bool is_k = !is_q && head < H + KV;
  const float* norm = is_q ? p.q_norm : (is_k ? p.k_norm : nullptr);
  if (norm) {  // uniform over the block, so block_sum's barriers are safe
    const float ss = block_sum(a * a + b * b, scratch);
    const float inv = rsqrtf(ss / static_cast<float>(D) + p.norm_eps);
    if (active) {
      a = a * inv * norm[i];
      b = b * inv * norm[i + half];
    }
  }
  if (!active) return;
  if (is_q || is_k) {
    float s, c;
    sincosf(static_cast<float>(p.positions[t]) * p.inv_freq[i], &s, &c);
    const float ra = a * c - b * s;
    const float rb = b * c + a * s;
    a = ra;
    b = rb;
  }
  if (is_q) {
    __nv_bfloat16* q = reinterpret_cast<__nv_bfloat16*>(p.q_out) + (t * H + head) * D;
    q[i] = to_bf(a);
    q[i + half] = to_bf(b);
    return;
  }
  const int32_t slot = p.slots[t];
  if (slot < 0) return;  // padding token of a captured graph
  const int kvh = is_k ? head - H : head - H - KV;
  __nv_bfloat16* cache = reinterpret_cast<__nv_bfloat16*>(is_k ? p.k_cache : p.v_cache) +
                         (static_cast<int64_t>(slot) * KV + kvh) * D;
  cache[i] = to_bf(a);
  cache[i + half] = to_bf(b);
}

}  // namespace

Status qkv_post(const QkvPostParams& p, Stream stream) {
  constexpr const char* kName = "qkv_post";
  if (p.num_tokens < 0) return invalid(kName, "num_tokens must be >= 0");
  if (p.num_tokens == 0) return Status::kOk;
  if (p.head_dim <= 0 || p.head_dim % 2 != 0 || p.head_dim > 2048) {
    return invalid(kName, "head_dim must be even, > 0 and <= 2048");
  }
  if (p.num_heads <= 0 || p.num_kv_heads <= 0) {
    return invalid(kName, "num_heads and num_kv_heads must be > 0");
  }
  if (p.qkv == nullptr || p.positions == nullptr || p.inv_freq == nullptr || p.slots == nullptr ||
      p.q_out == nullptr || p.k_cache == nullptr || p.v_cache == nullptr) {
    return invalid(kName, "qkv, positions, inv_freq, slots, q_out and the caches must be non-null");
  }
  if (p.num_tokens > 0x7fffffff || p.num_heads + 2 * p.num_kv_heads > 65535) {
    return invalid(kName, "too many tokens or heads for one launch");
  }
  const int half = p.head_dim / 2;
  const int threads = ((half + 31) / 32) * 32;
  const dim3 grid(static_cast<unsigned>(p.num_tokens),
                  static_cast<unsigned>(p.num_heads + 2 * p.num_kv_heads));
  launch(qkv_post_kernel, grid, threads, 0, stream, p);
  return launched(kName);
}

}  // namespace longtail::kernels
