// RoPE (rotate-half, HF convention) in place on q and k. One block per token: the cos/sin of the
// token's angles are computed once into shared memory and reused by every head.
#include "kernels/common.cuh"

namespace longtail::kernels {
using namespace detail;

namespace {

constexpr int kMaxHalf = 256;

__global__ void rope_kernel(__nv_bfloat16* q, int64_t q_stride, int32_t num_heads,
                            __nv_bfloat16* k, int64_t k_stride, int32_t num_kv_heads,
                            int32_t head_dim, const int32_t* __restrict__ positions,
                            const float* __restrict__ inv_freq) {
  wait_for_prior_kernels();
  __shared__ float cs[kMaxHalf], sn[kMaxHalf];
  const int64_t t = blockIdx.x;
  const int32_t half = head_dim / 2;
  const float pos = static_cast<float>(positions[t]);
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    // fp32 product as HF computes it; full-range sincosf (no fast-math) keeps large angles right.
    sincosf(pos * inv_freq[i], &sn[i], &cs[i]);
  }
  __syncthreads();
  const int32_t total = (num_heads + num_kv_heads) * half;
  for (int idx = threadIdx.x; idx < total; idx += blockDim.x) {
    const int32_t h = idx / half, i = idx % half;
    __nv_bfloat16* row = h < num_heads ? q + t * q_stride + static_cast<int64_t>(h) * head_dim
                                       : k + t * k_stride +
                                             static_cast<int64_t>(h - num_heads) * head_dim;
    const float a = to_f32(row[i]), b = to_f32(row[i + half]);
    row[i] = to_bf(a * cs[i] - b * sn[i]);
    row[i + half] = to_bf(b * cs[i] + a * sn[i]);
  }
}

}  // namespace

Status rope_inplace_bf16(bf16* q, int64_t q_stride, int32_t num_heads, bf16* k, int64_t k_stride,
                         int32_t num_kv_heads, int32_t head_dim, const int32_t* positions,
                         int64_t num_tokens, const float* inv_freq, Stream stream) {
  constexpr const char* kName = "rope_inplace_bf16";
  if (num_tokens < 0 || num_heads < 0 || num_kv_heads < 0) {
    return invalid(kName, "num_tokens, num_heads and num_kv_heads must be >= 0");
  }
  if (head_dim <= 0 || head_dim % 2 != 0 || head_dim / 2 > kMaxHalf) {
    return invalid(kName, "head_dim must be even, positive and <= 512");
  }
  if (k == nullptr) num_kv_heads = 0;
  if (num_tokens == 0 || num_heads + num_kv_heads == 0) return Status::kOk;
  if (positions == nullptr || inv_freq == nullptr || (num_heads > 0 && q == nullptr)) {
    return invalid(kName, "q, positions and inv_freq must be non-null");
  }
  if (q_stride < static_cast<int64_t>(num_heads) * head_dim ||
      (num_kv_heads > 0 && k_stride < static_cast<int64_t>(num_kv_heads) * head_dim)) {
    return invalid(kName, "row strides must cover all heads");
  }
  if (num_tokens > 0x7fffffff) return invalid(kName, "num_tokens exceeds 2^31-1");
  launch(rope_kernel, static_cast<unsigned>(num_tokens), 128, 0, stream, dev(q), q_stride,
         num_heads, dev(k), k_stride, num_kv_heads, head_dim, positions, inv_freq);
  return launched(kName);
}

}  // namespace longtail::kernels
