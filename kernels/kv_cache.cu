// Writes the new tokens' K and V into the paged cache ([num_blocks][block_size][kv_heads][head_dim]
// per layer, see kernels.h): one block per token, 16-byte copies when the shapes allow.
#include "kernels/common.cuh"

namespace longtail::kernels {
using namespace detail;

namespace {

__global__ void kv_write_kernel(const __nv_bfloat16* __restrict__ k, int64_t k_stride,
                                const __nv_bfloat16* __restrict__ v, int64_t v_stride,
                                int64_t row_elems, const int32_t* __restrict__ slots,
                                __nv_bfloat16* __restrict__ kc, __nv_bfloat16* __restrict__ vc,
                                int64_t num_slots, bool vec) {
  const int64_t t = blockIdx.x;
  const int64_t slot = slots[t];
  if (slot < 0 || slot >= num_slots) return;
  const __nv_bfloat16* ks = k + t * k_stride;
  const __nv_bfloat16* vs = v + t * v_stride;
  __nv_bfloat16* kd = kc + slot * row_elems;
  __nv_bfloat16* vd = vc + slot * row_elems;
  if (vec) {
    for (int64_t c = threadIdx.x; c < row_elems / 8; c += blockDim.x) {
      reinterpret_cast<uint4*>(kd)[c] = reinterpret_cast<const uint4*>(ks)[c];
      reinterpret_cast<uint4*>(vd)[c] = reinterpret_cast<const uint4*>(vs)[c];
    }
  } else {
    for (int64_t c = threadIdx.x; c < row_elems; c += blockDim.x) {
      kd[c] = ks[c];
      vd[c] = vs[c];
    }
  }
}

}  // namespace

Status kv_cache_write_bf16(const bf16* k, int64_t k_stride, const bf16* v, int64_t v_stride,
                           int64_t num_tokens, int32_t num_kv_heads, int32_t head_dim,
                           const int32_t* slot_mapping, bf16* k_cache, bf16* v_cache,
                           int64_t num_slots, Stream stream) {
  constexpr const char* kName = "kv_cache_write_bf16";
  if (num_tokens < 0 || num_kv_heads <= 0 || head_dim <= 0 || num_slots < 0) {
    return invalid(kName, "num_tokens/num_slots must be >= 0, num_kv_heads and head_dim > 0");
  }
  if (num_tokens == 0) return Status::kOk;
  if (k == nullptr || v == nullptr || slot_mapping == nullptr || k_cache == nullptr ||
      v_cache == nullptr) {
    return invalid(kName, "pointers must be non-null");
  }
  const int64_t row = static_cast<int64_t>(num_kv_heads) * head_dim;
  if (k_stride < row || v_stride < row) return invalid(kName, "strides must be >= kv_heads*head_dim");
  if (num_tokens > 0x7fffffff) return invalid(kName, "num_tokens exceeds 2^31-1");
  const bool vec = row % 8 == 0 && k_stride % 8 == 0 && v_stride % 8 == 0 && aligned16(k) &&
                   aligned16(v) && aligned16(k_cache) && aligned16(v_cache);
  kv_write_kernel<<<static_cast<unsigned>(num_tokens), 128, 0, stream>>>(
      dev(k), k_stride, dev(v), v_stride, row, slot_mapping, dev(k_cache), dev(v_cache), num_slots,
      vec);
  return launched(kName);
}

}  // namespace longtail::kernels
