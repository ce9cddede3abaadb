// Glue kernels private to the CUDA backend (see cuda_ops.h): random fills for benchmark weights,
// the fp32-residual RMSNorm with an optional row gather (the final norm runs only on the rows
// that produce outputs), the fused q/k/v post-processing (fp32 in, one bf16 rounding, straight
// into the paged KV cache), and a
// plain paged attention for head sizes outside the kernels/ library's fast path.
#include <cuda_bf16.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/philox.h"
#include "policy/cuda_check.h"
#include "policy/cuda_ops.h"

namespace longtail::policy::cuda {
namespace {

__device__ __forceinline__ float uniform_pm1(uint64_t seed, uint64_t i) {
  const kernels::Philox4x32 ctr{{static_cast<uint32_t>(i), static_cast<uint32_t>(i >> 32), 0x5eedu,
                                 0u}};
  const kernels::Philox4x32 r =
      kernels::philox4x32_10(ctr, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
  return (static_cast<float>(r.v[0] >> 8) + 0.5f) * (2.0f / 16777216.0f) - 1.0f;
}

__global__ void fill_uniform_bf16_kernel(__nv_bfloat16* dst, size_t n, float scale, uint64_t seed) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x)
    dst[i] = __float2bfloat16(scale * uniform_pm1(seed, i));
}

__global__ void fill_uniform_f32_kernel(float* dst, size_t n, float scale, uint64_t seed) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x)
    dst[i] = scale * uniform_pm1(seed, i);
}

__global__ void fill_f32_kernel(float* dst, size_t n, float value) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x)
    dst[i] = value;
}

// Sum over the block; every thread gets the result. blockDim.x is a multiple of 32, <= 1024.
__device__ float block_sum(float v) {
  __shared__ float partial[32];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  __syncthreads();  // partial[] may still be read by a previous call
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  const int nwarps = blockDim.x >> 5;
  float s = lane < nwarps ? partial[lane] : 0.0f;
  for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
  return s;
}

// Rows of dim % 4 == 0 and dim <= 4 * 4 * blockDim: each thread keeps its float4s in registers,
// so the row is read once, with 16-byte loads.
constexpr int kNormVecPerThread = 4;

__global__ void rms_norm_rows_vec_kernel(const float* x, const int32_t* rows, int dim,
                                         const float* w, float eps, __nv_bfloat16* out) {
  const int r = blockIdx.x;
  const int src = rows ? rows[r] : r;
  const auto* in = reinterpret_cast<const float4*>(x + static_cast<size_t>(src) * dim);
  const int nvec = dim / 4;
  float4 v[kNormVecPerThread];
  float ss = 0.0f;
#pragma unroll
  for (int u = 0; u < kNormVecPerThread; ++u) {
    const int i = threadIdx.x + u * blockDim.x;
    v[u] = i < nvec ? in[i] : make_float4(0.f, 0.f, 0.f, 0.f);
    ss += v[u].x * v[u].x + v[u].y * v[u].y + v[u].z * v[u].z + v[u].w * v[u].w;
  }
  ss = block_sum(ss);
  const float inv = rsqrtf(ss / static_cast<float>(dim) + eps);
  const auto* wv = reinterpret_cast<const float4*>(w);
  auto* o = reinterpret_cast<__nv_bfloat162*>(out + static_cast<size_t>(r) * dim);
#pragma unroll
  for (int u = 0; u < kNormVecPerThread; ++u) {
    const int i = threadIdx.x + u * blockDim.x;
    if (i >= nvec) continue;
    const float4 g = wv[i];
    o[2 * i] = __floats2bfloat162_rn(v[u].x * inv * g.x, v[u].y * inv * g.y);
    o[2 * i + 1] = __floats2bfloat162_rn(v[u].z * inv * g.z, v[u].w * inv * g.w);
  }
}

__global__ void rms_norm_rows_kernel(const float* x, const int32_t* rows, int dim, const float* w,
                                     float eps, __nv_bfloat16* out) {
  const int r = blockIdx.x;
  const int src = rows ? rows[r] : r;
  const float* in = x + static_cast<size_t>(src) * dim;
  float ss = 0.0f;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) ss += in[i] * in[i];
  ss = block_sum(ss);
  const float inv = rsqrtf(ss / static_cast<float>(dim) + eps);
  __nv_bfloat16* o = out + static_cast<size_t>(r) * dim;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) o[i] = __float2bfloat16(in[i] * inv * w[i]);
}

__global__ void qkv_post_kernel(QkvPost p) {
  const int t = blockIdx.x;
  const int head = blockIdx.y;  // [0, H) q heads, [H, H + KV) k heads, then v heads
  const int H = p.num_heads, KV = p.num_kv_heads, D = p.head_dim, half = D / 2;
  const int i = threadIdx.x;
  const bool active = i < half;
  const size_t row = static_cast<size_t>(H + 2 * KV) * D;
  const float* in = p.qkv + t * row + static_cast<size_t>(head) * D;
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
    const float ss = block_sum(a * a + b * b);
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
    auto* q = static_cast<__nv_bfloat16*>(p.q_out) + (static_cast<size_t>(t) * H + head) * D;
    q[i] = __float2bfloat16(a);
    q[i + half] = __float2bfloat16(b);
    return;
  }
  const int32_t slot = p.slots[t];
  if (slot < 0) return;  // padding token of a captured graph
  const int kvh = is_k ? head - H : head - H - KV;
  auto* cache = static_cast<__nv_bfloat16*>(is_k ? p.k_cache : p.v_cache) +
                (static_cast<size_t>(slot) * KV + kvh) * D;
  cache[i] = __float2bfloat16(a);
  cache[i + half] = __float2bfloat16(b);
}

constexpr int kMaxSimpleDimPerLane = 8;  // head_dim <= 256

__global__ void simple_attention_kernel(SimpleAttention p) {
  const int warps_per_block = blockDim.x >> 5;
  const int gw = blockIdx.x * warps_per_block + (threadIdx.x >> 5);
  const int lane = threadIdx.x & 31;
  if (gw >= p.num_tokens * p.num_heads) return;
  const int t = gw / p.num_heads, h = gw % p.num_heads;
  const int s = p.token_seq[t];
  const int n_s = p.query_start[s + 1] - p.query_start[s];
  const int j = t - p.query_start[s];
  const int last = p.seq_lens[s] - n_s + j;  // inclusive
  const int D = p.head_dim;
  const int kvh = h / (p.num_heads / p.num_kv_heads);
  const auto* q = static_cast<const __nv_bfloat16*>(p.q) + (static_cast<size_t>(t) * p.num_heads + h) * D;
  float qv[kMaxSimpleDimPerLane], acc[kMaxSimpleDimPerLane];
#pragma unroll
  for (int u = 0; u < kMaxSimpleDimPerLane; ++u) {
    const int d = lane + 32 * u;
    qv[u] = d < D ? __bfloat162float(q[d]) * p.scale : 0.0f;
    acc[u] = 0.0f;
  }
  float m = -INFINITY, l = 0.0f;
  const int32_t* table = p.block_table + static_cast<size_t>(s) * p.block_table_stride;
  for (int pos = 0; pos <= last; ++pos) {
    const size_t slot = static_cast<size_t>(table[pos / p.block_size]) * p.block_size + pos % p.block_size;
    const size_t base = (slot * p.num_kv_heads + kvh) * D;
    const auto* k = static_cast<const __nv_bfloat16*>(p.k_cache) + base;
    const auto* v = static_cast<const __nv_bfloat16*>(p.v_cache) + base;
    float dot = 0.0f;
#pragma unroll
    for (int u = 0; u < kMaxSimpleDimPerLane; ++u) {
      const int d = lane + 32 * u;
      if (d < D) dot += qv[u] * __bfloat162float(k[d]);
    }
    for (int o = 16; o > 0; o >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, o);
    const float m_new = fmaxf(m, dot);
    const float corr = __expf(m - m_new);
    const float e = __expf(dot - m_new);
    l = l * corr + e;
#pragma unroll
    for (int u = 0; u < kMaxSimpleDimPerLane; ++u) {
      const int d = lane + 32 * u;
      acc[u] = acc[u] * corr + (d < D ? e * __bfloat162float(v[d]) : 0.0f);
    }
    m = m_new;
  }
  auto* out = static_cast<__nv_bfloat16*>(p.out) + (static_cast<size_t>(t) * p.num_heads + h) * D;
#pragma unroll
  for (int u = 0; u < kMaxSimpleDimPerLane; ++u) {
    const int d = lane + 32 * u;
    if (d < D) out[d] = __float2bfloat16(acc[u] / l);
  }
}

int fill_blocks(size_t n) {
  const size_t b = (n + 255) / 256;
  return static_cast<int>(b < 8192 ? (b == 0 ? 1 : b) : 8192);
}

}  // namespace

void fill_uniform_bf16(void* dst, size_t n, float scale, uint64_t seed, cudaStream_t stream) {
  fill_uniform_bf16_kernel<<<fill_blocks(n), 256, 0, stream>>>(static_cast<__nv_bfloat16*>(dst), n,
                                                                scale, seed);
  LT_CUDA_CHECK(cudaGetLastError());
}

void fill_uniform_f32(float* dst, size_t n, float scale, uint64_t seed, cudaStream_t stream) {
  fill_uniform_f32_kernel<<<fill_blocks(n), 256, 0, stream>>>(dst, n, scale, seed);
  LT_CUDA_CHECK(cudaGetLastError());
}

void fill_f32(float* dst, size_t n, float value, cudaStream_t stream) {
  fill_f32_kernel<<<fill_blocks(n), 256, 0, stream>>>(dst, n, value);
  LT_CUDA_CHECK(cudaGetLastError());
}

void rms_norm_rows(const float* x, const int32_t* rows, int num_rows, int dim, const float* w,
                   float eps, void* out_bf16, cudaStream_t stream) {
  if (num_rows <= 0) return;
  const int nvec = dim / 4;
  if (dim % 4 == 0 && nvec <= kNormVecPerThread * 256) {
    int threads = 32;
    while (threads * kNormVecPerThread < nvec) threads *= 2;
    rms_norm_rows_vec_kernel<<<num_rows, threads, 0, stream>>>(
        x, rows, dim, w, eps, static_cast<__nv_bfloat16*>(out_bf16));
  } else {
    const int threads = dim >= 1024 ? 256 : 128;
    rms_norm_rows_kernel<<<num_rows, threads, 0, stream>>>(x, rows, dim, w, eps,
                                                           static_cast<__nv_bfloat16*>(out_bf16));
  }
  LT_CUDA_CHECK(cudaGetLastError());
}

void qkv_post(const QkvPost& p, cudaStream_t stream) {
  if (p.num_tokens <= 0) return;
  if (p.head_dim <= 0 || p.head_dim % 2 != 0 || p.head_dim > 2048)
    throw std::invalid_argument("qkv_post: head_dim " + std::to_string(p.head_dim) +
                                " must be even and <= 2048");
  const int half = p.head_dim / 2;
  const int threads = ((half + 31) / 32) * 32;
  const dim3 grid(static_cast<unsigned>(p.num_tokens),
                  static_cast<unsigned>(p.num_heads + 2 * p.num_kv_heads));
  qkv_post_kernel<<<grid, threads, 0, stream>>>(p);
  LT_CUDA_CHECK(cudaGetLastError());
}

void simple_paged_attention(const SimpleAttention& p, cudaStream_t stream) {
  if (p.num_tokens <= 0) return;
  if (p.head_dim > 32 * kMaxSimpleDimPerLane)
    throw std::invalid_argument("simple_paged_attention: head_dim " + std::to_string(p.head_dim) +
                                " > 256");
  const int warps = p.num_tokens * p.num_heads;
  constexpr int kWarpsPerBlock = 4;
  simple_attention_kernel<<<(warps + kWarpsPerBlock - 1) / kWarpsPerBlock, 32 * kWarpsPerBlock, 0,
                            stream>>>(p);
  LT_CUDA_CHECK(cudaGetLastError());
}

}  // namespace longtail::policy::cuda
