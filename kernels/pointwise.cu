// Element-wise kernels: SwiGLU, casts, bias add, and the counter-based fills that make synthetic
// weights (the same seed gives the same values on any device; philox.h's synthetic_uniform is the
// reference). All memory-bound grid-stride loops; SwiGLU uses 16-byte accesses when it can.
#include "kernels/common.cuh"
#include "kernels/philox.h"

namespace longtail::kernels {
using namespace detail;

namespace {

__global__ void swiglu_kernel(const __nv_bfloat16* __restrict__ gu, int64_t gu_stride,
                              __nv_bfloat16* __restrict__ out, int64_t out_stride, int64_t rows,
                              int64_t inter, bool vec) {
  wait_for_prior_kernels();
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
  wait_for_prior_kernels();
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    out[i] = to_bf(in[i]);
  }
}

__global__ void cast_bf16_f32_kernel(const __nv_bfloat16* __restrict__ in, float* __restrict__ out,
                                     int64_t n) {
  wait_for_prior_kernels();
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    out[i] = to_f32(in[i]);
  }
}

__global__ void add_bias_kernel(__nv_bfloat16* x, int64_t stride, int64_t rows, int64_t cols,
                                const __nv_bfloat16* __restrict__ bias) {
  wait_for_prior_kernels();
  const int64_t total = rows * cols;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / cols, c = i % cols;
    __nv_bfloat16* p = x + r * stride + c;
    *p = to_bf(to_f32(*p) + to_f32(bias[c]));
  }
}

__global__ void fill_uniform_bf16_kernel(__nv_bfloat16* dst, int64_t n, float scale,
                                         uint64_t seed) {
  wait_for_prior_kernels();
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    dst[i] = to_bf(scale * synthetic_uniform(seed, static_cast<uint64_t>(i)));
}

__global__ void fill_uniform_f32_kernel(float* dst, int64_t n, float scale, uint64_t seed) {
  wait_for_prior_kernels();
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    dst[i] = scale * synthetic_uniform(seed, static_cast<uint64_t>(i));
}

__global__ void fill_f32_kernel(float* dst, int64_t n, float value) {
  wait_for_prior_kernels();
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    dst[i] = value;
}

unsigned grid_stride_blocks(int64_t n) {
  const int64_t b = (n + 255) / 256;
  return static_cast<unsigned>(b < 65536 ? b : 65536);
}

}  // namespace

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
  launch(swiglu_kernel, grid_stride_blocks(rows * (vec ? inter / 8 : inter)), 256, 0, stream,
         dev(gate_up), gate_up_stride, dev(out), out_stride, rows, inter, vec);
  return launched(kName);
}

Status cast_f32_to_bf16(const float* in, bf16* out, int64_t n, Stream stream) {
  if (n < 0) return invalid("cast_f32_to_bf16", "n must be >= 0");
  if (n == 0) return Status::kOk;
  if (in == nullptr || out == nullptr) return invalid("cast_f32_to_bf16", "null pointer");
  launch(cast_f32_bf16_kernel, grid_stride_blocks(n), 256, 0, stream, in, dev(out), n);
  return launched("cast_f32_to_bf16");
}

Status cast_bf16_to_f32(const bf16* in, float* out, int64_t n, Stream stream) {
  if (n < 0) return invalid("cast_bf16_to_f32", "n must be >= 0");
  if (n == 0) return Status::kOk;
  if (in == nullptr || out == nullptr) return invalid("cast_bf16_to_f32", "null pointer");
  launch(cast_bf16_f32_kernel, grid_stride_blocks(n), 256, 0, stream, dev(in), out, n);
  return launched("cast_bf16_to_f32");
}

Status add_bias_bf16(bf16* x, int64_t stride, int64_t rows, int64_t cols, const bf16* bias,
                     Stream stream) {
  constexpr const char* kName = "add_bias_bf16";
  if (rows < 0 || cols <= 0) return invalid(kName, "rows must be >= 0 and cols > 0");
  if (rows == 0) return Status::kOk;
  if (x == nullptr || bias == nullptr) return invalid(kName, "null pointer");
  if (stride < cols) return invalid(kName, "stride must be >= cols");
  launch(add_bias_kernel, grid_stride_blocks(rows * cols), 256, 0, stream, dev(x), stride, rows,
         cols, dev(bias));
  return launched(kName);
}

Status fill_uniform_bf16(bf16* dst, int64_t n, float scale, uint64_t seed, Stream stream) {
  if (n < 0) return invalid("fill_uniform_bf16", "n must be >= 0");
  if (n == 0) return Status::kOk;
  if (dst == nullptr) return invalid("fill_uniform_bf16", "null pointer");
  launch(fill_uniform_bf16_kernel, grid_stride_blocks(n), 256, 0, stream, dev(dst), n, scale, seed);
  return launched("fill_uniform_bf16");
}

Status fill_uniform_f32(float* dst, int64_t n, float scale, uint64_t seed, Stream stream) {
  if (n < 0) return invalid("fill_uniform_f32", "n must be >= 0");
  if (n == 0) return Status::kOk;
  if (dst == nullptr) return invalid("fill_uniform_f32", "null pointer");
  launch(fill_uniform_f32_kernel, grid_stride_blocks(n), 256, 0, stream, dst, n, scale, seed);
  return launched("fill_uniform_f32");
}

Status fill_f32(float* dst, int64_t n, float value, Stream stream) {
  if (n < 0) return invalid("fill_f32", "n must be >= 0");
  if (n == 0) return Status::kOk;
  if (dst == nullptr) return invalid("fill_f32", "null pointer");
  launch(fill_f32_kernel, grid_stride_blocks(n), 256, 0, stream, dst, n, value);
  return launched("fill_f32");
}

}  // namespace longtail::kernels
