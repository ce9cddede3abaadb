// Embedding gather (token ids -> rows of the table, bf16 or fp32 out). Memory-bound: 16-byte
// accesses when the hidden size and pointers allow, a scalar path otherwise.
#include "kernels/common.cuh"

namespace longtail::kernels {
using namespace detail;

namespace {

template <typename Out>
__device__ __forceinline__ void store_out(Out* p, float v);
template <>
__device__ __forceinline__ void store_out<float>(float* p, float v) { *p = v; }
template <>
__device__ __forceinline__ void store_out<__nv_bfloat16>(__nv_bfloat16* p, float v) {
  *p = to_bf(v);
}

template <typename Out>
__global__ void embedding_kernel(const __nv_bfloat16* __restrict__ table, int64_t vocab,
                                 int64_t hidden, const int32_t* __restrict__ ids,
                                 Out* __restrict__ out, int32_t* bad_flag, bool vec) {
  wait_for_prior_kernels();
  const int64_t t = blockIdx.x;
  const int32_t id = ids[t];
  const bool ok = id >= 0 && id < vocab;
  if (!ok && bad_flag != nullptr && threadIdx.x == 0) *bad_flag = 1;
  Out* orow = out + t * hidden;
  if (vec) {
    const uint4* src = reinterpret_cast<const uint4*>(table + (ok ? id : 0) * hidden);
    for (int64_t c = threadIdx.x; c < hidden / 8; c += blockDim.x) {
      float f[8];
      if (ok) {
        unpack8(src[c], f);
      } else {
#pragma unroll
        for (int i = 0; i < 8; ++i) f[i] = 0.0f;
      }
      if constexpr (sizeof(Out) == 2) {
        reinterpret_cast<uint4*>(orow)[c] = pack8(f);
      } else {
        float4* o = reinterpret_cast<float4*>(orow) + 2 * c;
        o[0] = make_float4(f[0], f[1], f[2], f[3]);
        o[1] = make_float4(f[4], f[5], f[6], f[7]);
      }
    }
  } else {
    for (int64_t c = threadIdx.x; c < hidden; c += blockDim.x) {
      store_out(orow + c, ok ? to_f32(table[id * hidden + c]) : 0.0f);
    }
  }
}

template <typename Out>
Status embedding_impl(const char* name, const bf16* table, int64_t vocab, int64_t hidden,
                      const int32_t* ids, int64_t num_tokens, Out* out, int32_t* bad_id_flag,
                      Stream stream) {
  if (num_tokens < 0 || vocab <= 0 || hidden <= 0) {
    return invalid(name, "num_tokens must be >= 0, vocab and hidden > 0");
  }
  if (num_tokens == 0) return Status::kOk;
  if (table == nullptr || ids == nullptr || out == nullptr) {
    return invalid(name, "table, ids and out must be non-null");
  }
  if (num_tokens > 0x7fffffff) return invalid(name, "num_tokens exceeds 2^31-1");
  const bool vec = hidden % 8 == 0 && aligned16(table) && aligned16(out);
  launch(embedding_kernel<Out>, static_cast<unsigned>(num_tokens), 128, 0, stream, dev(table),
         vocab, hidden, ids, out, bad_id_flag, vec);
  return launched(name);
}

}  // namespace

Status embedding_gather_bf16(const bf16* table, int64_t vocab, int64_t hidden, const int32_t* ids,
                             int64_t num_tokens, bf16* out, int32_t* bad_id_flag, Stream stream) {
  return embedding_impl("embedding_gather_bf16", table, vocab, hidden, ids, num_tokens, dev(out),
                        bad_id_flag, stream);
}

Status embedding_gather_f32(const bf16* table, int64_t vocab, int64_t hidden, const int32_t* ids,
                            int64_t num_tokens, float* out, int32_t* bad_id_flag, Stream stream) {
  return embedding_impl("embedding_gather_f32", table, vocab, hidden, ids, num_tokens, out,
                        bad_id_flag, stream);
}

}  // namespace longtail::kernels
