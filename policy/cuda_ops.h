// Small CUDA kernels private to the CUDA backend: the glue between cuBLAS products and the
// kernels/ library, shaped for this backend's choices (fp32 residual stream, fused [q|k|v] output
// post-processed in one pass that also writes the paged KV cache). Raw pointers + sizes + stream;
// errors surface as std::runtime_error from the launch check.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace longtail::policy::cuda {

// Uniform values in (-scale, scale), counter-based so the same seed gives the same weights.
void fill_uniform_bf16(void* dst, size_t n, float scale, uint64_t seed, cudaStream_t stream);
void fill_uniform_f32(float* dst, size_t n, float scale, uint64_t seed, cudaStream_t stream);
void fill_f32(float* dst, size_t n, float value, cudaStream_t stream);

// out[r, :] = bf16(x[src_r, :] * rsqrt(mean(x^2) + eps) * w) with src_r = rows ? rows[r] : r.
void rms_norm_rows(const float* x, const int32_t* rows, int num_rows, int dim, const float* w,
                   float eps, void* out_bf16, cudaStream_t stream);

// Paged KV cache geometry: per layer K and V pools of [num_blocks][block_size][kv_heads][head_dim]
// bf16; token t of the step goes to cache slot slots[t] = block * block_size + offset.
struct QkvPost {
  const float* qkv = nullptr;           // fp32 [T, (H + 2 KV) D]: the GEMM output, never rounded
  const float* bias = nullptr;          // [(H + 2 KV) D] or null
  const float* q_norm = nullptr;        // [D] or null
  const float* k_norm = nullptr;        // [D] or null
  float norm_eps = 1e-6f;
  const int32_t* positions = nullptr;   // [T]
  const float* inv_freq = nullptr;      // [D / 2]
  const int32_t* slots = nullptr;       // [T]
  void* q_out = nullptr;                // bf16 [T, H, D]
  void* k_cache = nullptr;              // this layer's K pool
  void* v_cache = nullptr;              // this layer's V pool
  int num_tokens = 0, num_heads = 0, num_kv_heads = 0, head_dim = 0;
};
// Bias add, optional per-head RMSNorm of q and k (Qwen3), rotate-half RoPE of q and k, then q to
// q_out and k/v into the cache.
void qkv_post(const QkvPost& p, cudaStream_t stream);

// Paged attention for head sizes the kernels/ library does not serve (it takes 64 and 128; tiny
// test checkpoints use others): one warp per (query token, head), online softmax, causal within
// each sequence's new tokens. Same metadata meaning as kernels::PagedAttentionParams.
struct SimpleAttention {
  const void* q = nullptr;              // bf16 [T, H, D]
  const void* k_cache = nullptr;
  const void* v_cache = nullptr;
  const int32_t* block_table = nullptr;
  int64_t block_table_stride = 0;
  int32_t block_size = 16;
  const int32_t* token_seq = nullptr;   // [T] batch index of each query token
  const int32_t* query_start = nullptr; // [S + 1]
  const int32_t* seq_lens = nullptr;    // [S] including the new tokens
  int num_tokens = 0, num_heads = 0, num_kv_heads = 0, head_dim = 0;
  float scale = 0;
  void* out = nullptr;                  // bf16 [T, H, D]
};
void simple_paged_attention(const SimpleAttention& p, cudaStream_t stream);

}  // namespace longtail::policy::cuda
