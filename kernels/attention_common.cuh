// Internal to the paged-attention kernels (attention.cu: CUDA-core kernel and split merge;
// attention_tc.cu: tensor-core kernel): the launch arguments, cp.async helpers and the paged K/V
// tile loader they share.
#pragma once

#include "kernels/common.cuh"

namespace longtail::kernels::detail {

constexpr int kAttnWarps = 4;
constexpr int kAttnThreads = kAttnWarps * 32;
constexpr int kAttnTile = 64;  // KV positions per shared-memory stage

struct AttnArgs {
  const __nv_bfloat16* q;
  int64_t q_stride;
  const __nv_bfloat16* kc;
  const __nv_bfloat16* vc;
  const int32_t* block_table;
  int64_t bt_stride;
  int32_t block_size;
  const int32_t* query_start;
  const int32_t* seq_lens;
  const int32_t* parents;
  int32_t num_heads, num_kv_heads, group;
  int64_t num_tokens;
  int32_t splits;
  int32_t split_size;  // > 0: fixed split boundaries (batch-invariant mode)
  // Tensor-core kernel's block order. 0: blockIdx.x = seq * num_kv_heads + kvh, blockIdx.y = chunk
  // of query rows. 1: blockIdx.x = (seq * num_kv_heads + kvh) * row_chunks + chunk, so the chunks
  // of one (sequence, kv head, split) run side by side and read its K/V tiles from L2, not memory.
  int32_t chunk_major;
  int32_t row_chunks;
  // PagedAttentionParams::cached_prefix_settled: the metadata and the K/V below each prefix may be
  // read before the previous kernel on the stream has completed.
  int32_t prefix_settled;
  float qscale;  // scale * log2(e): scores live in the log2 domain (exp2)
  float* ws_o;   // [splits][num_tokens][num_heads][head_dim] normalised partial outputs
  float* ws_lse; // [splits][num_tokens][num_heads] log2-sum-exp of each partial (-inf: empty)
  __nv_bfloat16* out;
  int64_t out_stride;
};

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  const int src_size = valid ? 16 : 0;  // 0: zero-fill, nothing read
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem),
               "r"(src_size));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// Stages KV positions [tile_start, tile_start + kAttnTile) of (seq, kvh) into shared memory rows
// of K_STRIDE / V_STRIDE elements; positions >= end are zero-filled (a zero probability times
// garbage could be NaN).
template <int D, int K_STRIDE, int V_STRIDE, int THREADS = kAttnThreads>
__device__ __forceinline__ void load_kv_tile(const AttnArgs& a, int seq, int kvh, int tile_start,
                                             int end, __nv_bfloat16* ks, __nv_bfloat16* vs) {
  constexpr int kChunks = D / 8;
  for (int c = threadIdx.x; c < kAttnTile * kChunks; c += THREADS) {
    const int t = c / kChunks, part = c % kChunks;
    const int pos = tile_start + t;
    const bool valid = pos < end;
    int64_t off = 0;
    if (valid) {
      const int64_t block = a.block_table[seq * a.bt_stride + pos / a.block_size];
      const int64_t slot = block * a.block_size + pos % a.block_size;
      off = (slot * a.num_kv_heads + kvh) * D + part * 8;
    }
    cp_async16(ks + t * K_STRIDE + part * 8, a.kc + off, valid);
    cp_async16(vs + t * V_STRIDE + part * 8, a.vc + off, valid);
  }
}

// The KV range [start, end) that split `split` of a block covers, for a block whose last query
// row sits at position kv_end - 1. Chunks are whole tiles so every split but the last is full.
// With a fixed split size the boundaries do not depend on kv_end (only where the range stops), so
// a query sees the same chunks whatever the other rows of its block; the last split takes any
// rest the caller did not provision splits for.
__device__ __forceinline__ void split_range(int kv_end, int splits, int split_size, int split,
                                            int* start, int* end) {
  const int chunk = split_size > 0
                        ? split_size
                        : ((kv_end + splits - 1) / splits + kAttnTile - 1) / kAttnTile * kAttnTile;
  *start = split * chunk;
  *end = split == splits - 1 ? kv_end : min(kv_end, *start + chunk);
}

// Ancestors-or-self bit mask of draft token j (n <= 64 is checked on the host).
__device__ __forceinline__ uint64_t tree_mask(const int32_t* parents, int q0, int j) {
  uint64_t m = 0;
  for (int x = j; x >= 0;) {
    m |= 1ull << x;
    const int p = parents[q0 + x];
    x = (p >= 0 && p < x) ? p : -1;
  }
  return m;
}

// Launches the tensor-core kernel (attention_tc.cu) and the CUDA-core kernel (attention.cu).
// kv_stages: PagedAttentionParams::kv_stages.
Status launch_attention_tc(const AttnArgs& a, int32_t head_dim, int32_t num_seqs,
                           int32_t max_query_len, int32_t kv_stages, Stream stream);
// Rows (query token x q head of a group) one tensor-core block handles for this shape.
int attention_tc_rows_per_block(int32_t max_query_len, int32_t group);
// Resident blocks per multiprocessor of the tensor-core kernel's (free-split) layout for this
// shape on the current device; cached, >= 1.
int attention_tc_blocks_per_sm(int32_t head_dim, int32_t max_query_len, int32_t group);
// Raises the tensor-core kernels' shared-memory limit on the current device.
cudaError_t prepare_attention_tc();
// Merges split partials into a.out (a.splits > 1).
Status launch_attention_combine(const AttnArgs& a, int32_t head_dim, Stream stream);

}  // namespace longtail::kernels::detail
