// Row-wise and element-wise kernels: embedding gather, fused residual add + RMSNorm, per-head
// RMSNorm, SwiGLU, casts and bias add. All memory-bound: 16-byte accesses when shapes and
// pointers allow, a scalar path otherwise (odd sizes stay correct).
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
  embedding_kernel<Out><<<static_cast<unsigned>(num_tokens), 128, 0, stream>>>(
      dev(table), vocab, hidden, ids, out, bad_id_flag, vec);
  return launched(name);
}

// One block per row. residual (fp32) += x (bf16); out = rmsnorm(residual) * w.
__global__ void fused_add_rmsnorm_kernel(float* __restrict__ residual, int64_t res_stride,
                                         const __nv_bfloat16* __restrict__ x, int64_t x_stride,
                                         const __nv_bfloat16* __restrict__ w,
                                         __nv_bfloat16* __restrict__ out, int64_t out_stride,
                                         int64_t dim, float eps, bool vec) {
  __shared__ float scratch[32];
  const int64_t r = blockIdx.x;
  float* res = residual + r * res_stride;
  const __nv_bfloat16* xr = x != nullptr ? x + r * x_stride : nullptr;
  __nv_bfloat16* o = out + r * out_stride;
  float ss = 0.0f;
  if (vec) {
    for (int64_t c = threadIdx.x; c < dim / 8; c += blockDim.x) {
      float4* rp = reinterpret_cast<float4*>(res) + 2 * c;
      float4 a = rp[0], b = rp[1];
      if (xr != nullptr) {
        float f[8];
        unpack8(reinterpret_cast<const uint4*>(xr)[c], f);
        a.x += f[0]; a.y += f[1]; a.z += f[2]; a.w += f[3];
        b.x += f[4]; b.y += f[5]; b.z += f[6]; b.w += f[7];
        rp[0] = a;
        rp[1] = b;
      }
      ss += a.x * a.x + a.y * a.y + a.z * a.z + a.w * a.w + b.x * b.x + b.y * b.y + b.z * b.z +
            b.w * b.w;
    }
  } else {
    for (int64_t c = threadIdx.x; c < dim; c += blockDim.x) {
      float v = res[c];
      if (xr != nullptr) {
        v += to_f32(xr[c]);
        res[c] = v;
      }
      ss += v * v;
    }
  }
  const float inv = rsqrtf(block_sum(ss, scratch) / static_cast<float>(dim) + eps);
  // Each thread re-reads only the residual elements it wrote itself: no barrier needed.
  if (vec) {
    for (int64_t c = threadIdx.x; c < dim / 8; c += blockDim.x) {
      const float4* rp = reinterpret_cast<const float4*>(res) + 2 * c;
      const float4 a = rp[0], b = rp[1];
      float wf[8];
      unpack8(reinterpret_cast<const uint4*>(w)[c], wf);
      const float f[8] = {a.x * inv * wf[0], a.y * inv * wf[1], a.z * inv * wf[2],
                          a.w * inv * wf[3], b.x * inv * wf[4], b.y * inv * wf[5],
                          b.z * inv * wf[6], b.w * inv * wf[7]};
      reinterpret_cast<uint4*>(o)[c] = pack8(f);
    }
  } else {
    for (int64_t c = threadIdx.x; c < dim; c += blockDim.x) {
      o[c] = to_bf(res[c] * inv * to_f32(w[c]));
    }
  }
}

// One warp per (token, head) row of `dim` elements; in place allowed (each lane re-reads only
// what it will overwrite itself).
__global__ void rmsnorm_heads_kernel(const __nv_bfloat16* in, int64_t in_stride,
                                     __nv_bfloat16* out, int64_t out_stride, int64_t num_rows,
                                     int32_t num_heads, int32_t dim,
                                     const __nv_bfloat16* __restrict__ w, float eps) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  if (row >= num_rows) return;
  const int lane = threadIdx.x & 31;
  const int64_t t = row / num_heads, h = row % num_heads;
  const __nv_bfloat16* src = in + t * in_stride + h * dim;
  __nv_bfloat16* dst = out + t * out_stride + h * dim;
  float ss = 0.0f;
  for (int c = lane; c < dim; c += 32) {
    const float v = to_f32(src[c]);
    ss += v * v;
  }
  const float inv = rsqrtf(warp_sum(ss) / static_cast<float>(dim) + eps);
  for (int c = lane; c < dim; c += 32) dst[c] = to_bf(to_f32(src[c]) * inv * to_f32(w[c]));
}

__global__ void swiglu_kernel(const __nv_bfloat16* __restrict__ gu, int64_t gu_stride,
                              __nv_bfloat16* __restrict__ out, int64_t out_stride, int64_t rows,
                              int64_t inter, bool vec) {
  const int64_t per_row = vec ? inter / 8 : inter;
  const int64_t total = rows * per_row;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / per_row, c = i % per_row;
    const __nv_bfloat16* g = gu + r * gu_stride;
    __nv_bfloat16* o = out + r * out_stride;
    if (vec) {
      float gf[8], uf[8], of[8];
      unpack8(reinterpret_cast<const uint4*>(g)[c], gf);
      unpack8(reinterpret_cast<const uint4*>(g + inter)[c], uf);
#pragma unroll
      for (int k = 0; k < 8; ++k) of[k] = gf[k] / (1.0f + expf(-gf[k])) * uf[k];
      reinterpret_cast<uint4*>(o)[c] = pack8(of);
    } else {
      const float gv = to_f32(g[c]), uv = to_f32(g[inter + c]);
      o[c] = to_bf(gv / (1.0f + expf(-gv)) * uv);
    }
  }
}

__global__ void cast_f32_bf16_kernel(const float* __restrict__ in, __nv_bfloat16* __restrict__ out,
                                     int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    out[i] = to_bf(in[i]);
  }
}

__global__ void cast_bf16_f32_kernel(const __nv_bfloat16* __restrict__ in, float* __restrict__ out,
                                     int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    out[i] = to_f32(in[i]);
  }
}

__global__ void add_bias_kernel(__nv_bfloat16* x, int64_t stride, int64_t rows, int64_t cols,
                                const __nv_bfloat16* __restrict__ bias) {
  const int64_t total = rows * cols;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / cols, c = i % cols;
    __nv_bfloat16* p = x + r * stride + c;
    *p = to_bf(to_f32(*p) + to_f32(bias[c]));
  }
}

unsigned grid_stride_blocks(int64_t n) {
  const int64_t b = (n + 255) / 256;
  return static_cast<unsigned>(b < 65536 ? b : 65536);
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

Status fused_add_rmsnorm(float* residual, int64_t residual_stride, const bf16* x, int64_t x_stride,
                         const bf16* weight, bf16* out, int64_t out_stride, int64_t rows,
                         int64_t dim, float eps, Stream stream) {
  constexpr const char* kName = "fused_add_rmsnorm";
  if (rows < 0 || dim <= 0) return invalid(kName, "rows must be >= 0 and dim > 0");
  if (rows == 0) return Status::kOk;
  if (residual == nullptr || weight == nullptr || out == nullptr) {
    return invalid(kName, "residual, weight and out must be non-null");
  }
  if (residual_stride < dim || out_stride < dim || (x != nullptr && x_stride < dim)) {
    return invalid(kName, "row strides must be >= dim");
  }
  if (rows > 0x7fffffff) return invalid(kName, "rows exceeds 2^31-1");
  const bool vec = dim % 8 == 0 && residual_stride % 8 == 0 && out_stride % 8 == 0 &&
                   aligned16(residual) && aligned16(weight) && aligned16(out) &&
                   (x == nullptr || (x_stride % 8 == 0 && aligned16(x)));
  const int threads = dim >= 4096 ? 512 : 256;
  fused_add_rmsnorm_kernel<<<static_cast<unsigned>(rows), threads, 0, stream>>>(
      residual, residual_stride, dev(x), x_stride, dev(weight), dev(out), out_stride, dim, eps,
      vec);
  return launched(kName);
}

Status rmsnorm_bf16(const bf16* in, int64_t in_stride, bf16* out, int64_t out_stride,
                    int64_t num_tokens, int32_t num_heads, int32_t dim, const bf16* weight,
                    float eps, Stream stream) {
  constexpr const char* kName = "rmsnorm_bf16";
  if (num_tokens < 0 || num_heads <= 0 || dim <= 0) {
    return invalid(kName, "num_tokens must be >= 0, num_heads and dim > 0");
  }
  if (num_tokens == 0) return Status::kOk;
  if (in == nullptr || out == nullptr || weight == nullptr) {
    return invalid(kName, "in, out and weight must be non-null");
  }
  const int64_t span = static_cast<int64_t>(num_heads) * dim;
  if (in_stride < span || out_stride < span) {
    return invalid(kName, "row strides must be >= num_heads * dim");
  }
  const int64_t rows = num_tokens * num_heads;
  const unsigned blocks = blocks_for(rows, 8);
  rmsnorm_heads_kernel<<<blocks, 256, 0, stream>>>(dev(in), in_stride, dev(out), out_stride, rows,
                                                  num_heads, dim, dev(weight), eps);
  return launched(kName);
}

Status swiglu_bf16(const bf16* gate_up, int64_t gate_up_stride, bf16* out, int64_t out_stride,
                   int64_t rows, int64_t inter, Stream stream) {
  constexpr const char* kName = "swiglu_bf16";
  if (rows < 0 || inter <= 0) return invalid(kName, "rows must be >= 0 and inter > 0");
  if (rows == 0) return Status::kOk;
  if (gate_up == nullptr || out == nullptr) return invalid(kName, "pointers must be non-null");
  if (gate_up_stride < 2 * inter || out_stride < inter) {
    return invalid(kName, "gate_up_stride must be >= 2*inter and out_stride >= inter");
  }
  const bool vec = inter % 8 == 0 && gate_up_stride % 8 == 0 && out_stride % 8 == 0 &&
                   aligned16(gate_up) && aligned16(out);
  swiglu_kernel<<<grid_stride_blocks(rows * (vec ? inter / 8 : inter)), 256, 0, stream>>>(
      dev(gate_up), gate_up_stride, dev(out), out_stride, rows, inter, vec);
  return launched(kName);
}

Status cast_f32_to_bf16(const float* in, bf16* out, int64_t n, Stream stream) {
  if (n < 0) return invalid("cast_f32_to_bf16", "n must be >= 0");
  if (n == 0) return Status::kOk;
  if (in == nullptr || out == nullptr) return invalid("cast_f32_to_bf16", "null pointer");
  cast_f32_bf16_kernel<<<grid_stride_blocks(n), 256, 0, stream>>>(in, dev(out), n);
  return launched("cast_f32_to_bf16");
}

Status cast_bf16_to_f32(const bf16* in, float* out, int64_t n, Stream stream) {
  if (n < 0) return invalid("cast_bf16_to_f32", "n must be >= 0");
  if (n == 0) return Status::kOk;
  if (in == nullptr || out == nullptr) return invalid("cast_bf16_to_f32", "null pointer");
  cast_bf16_f32_kernel<<<grid_stride_blocks(n), 256, 0, stream>>>(dev(in), out, n);
  return launched("cast_bf16_to_f32");
}

Status add_bias_bf16(bf16* x, int64_t stride, int64_t rows, int64_t cols, const bf16* bias,
                     Stream stream) {
  constexpr const char* kName = "add_bias_bf16";
  if (rows < 0 || cols <= 0) return invalid(kName, "rows must be >= 0 and cols > 0");
  if (rows == 0) return Status::kOk;
  if (x == nullptr || bias == nullptr) return invalid(kName, "null pointer");
  if (stride < cols) return invalid(kName, "stride must be >= cols");
  add_bias_kernel<<<grid_stride_blocks(rows * cols), 256, 0, stream>>>(dev(x), stride, rows, cols,
                                                                       dev(bias));
  return launched(kName);
}

}  // namespace longtail::kernels
