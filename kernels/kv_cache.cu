// Writes the new tokens' K and V into the paged cache ([num_blocks][block_size][kv_heads][head_dim]
// per layer, see kernels.h): one block per token, 16-byte copies when the shapes allow; and moves
// cache rows inside it (the accepted path of a verified token tree into consecutive positions).
#include "kernels/common.cuh"

namespace longtail::kernels {
using namespace detail;

namespace {

__global__ void kv_write_kernel(const __nv_bfloat16* __restrict__ k, int64_t k_stride,
                                const __nv_bfloat16* __restrict__ v, int64_t v_stride,
                                int64_t row_elems, const int32_t* __restrict__ slots,
                                __nv_bfloat16* __restrict__ kc, __nv_bfloat16* __restrict__ vc,
                                int64_t num_slots, bool vec) {
  wait_for_prior_kernels();
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

// Each thread owns one 16-byte piece of a row in one plane and applies its group's moves in order,
// so a move that overwrites a row an earlier move read happens after that read (program
// order of one thread); groups (sequences) touch disjoint rows and run in parallel.
__global__ void kv_move_kernel(char* __restrict__ base, int64_t plane_bytes, int32_t num_planes,
                               int32_t row_bytes, const int32_t* __restrict__ src,
                               const int32_t* __restrict__ dst,
                               const int32_t* __restrict__ group_start) {
  wait_for_prior_kernels();
  const int32_t pieces = row_bytes / 16;
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= static_cast<int64_t>(num_planes) * pieces) return;
  char* plane = base + (t / pieces) * plane_bytes + (t % pieces) * 16;
  for (int32_t j = group_start[blockIdx.y]; j < group_start[blockIdx.y + 1]; ++j) {
    if (src[j] == dst[j]) continue;
    const uint4 v = *reinterpret_cast<const uint4*>(plane + static_cast<int64_t>(src[j]) * row_bytes);
    *reinterpret_cast<uint4*>(plane + static_cast<int64_t>(dst[j]) * row_bytes) = v;
  }
}

}  // namespace

Status kv_cache_move_rows(void* base, int64_t plane_bytes, int32_t num_planes, int32_t row_bytes,
                          const int32_t* src_slots, const int32_t* dst_slots,
                          const int32_t* group_start, int32_t num_groups, Stream stream) {
  constexpr const char* kName = "kv_cache_move_rows";
  if (num_groups < 0 || num_planes < 0) return invalid(kName, "counts must be >= 0");
  if (num_groups == 0 || num_planes == 0) return Status::kOk;
  if (base == nullptr || src_slots == nullptr || dst_slots == nullptr || group_start == nullptr)
    return invalid(kName, "pointers must be non-null");
  if (row_bytes <= 0 || row_bytes % 16 != 0 || plane_bytes % 16 != 0 || !aligned16(base))
    return invalid(kName, "row_bytes must be a positive multiple of 16, planes 16-byte aligned");
  if (num_groups > 65535) return invalid(kName, "num_groups exceeds 65535");
  const int64_t threads = static_cast<int64_t>(num_planes) * (row_bytes / 16);
  const dim3 grid(blocks_for(threads, 128), static_cast<unsigned>(num_groups));
  launch(kv_move_kernel, grid, 128, 0, stream, static_cast<char*>(base), plane_bytes, num_planes,
         row_bytes, src_slots, dst_slots, group_start);
  return launched(kName);
}

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
  launch(kv_write_kernel, static_cast<unsigned>(num_tokens), 128, 0, stream, dev(k), k_stride,
         dev(v), v_stride, row, slot_mapping, dev(k_cache), dev(v_cache), num_slots, vec);
  return launched(kName);
}

}  // namespace longtail::kernels
