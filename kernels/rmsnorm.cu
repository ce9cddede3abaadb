// RMSNorms, one row per block (or one warp per head row), so a row's reduction order depends on
// its size only, never on how many rows a launch carries: the fused residual add + RMSNorm over
// fp32 residual rows with bf16 weights, the per-head RMSNorm of bf16 rows (Qwen3 q/k norm), and
// the RMSNorm of fp32 rows with fp32 weights and an optional row gather (a final norm over only
// the rows that produce outputs).
#include "kernels/common.cuh"

namespace longtail::kernels {
using namespace detail;

namespace {

// One block per row. residual (fp32) += x (bf16); out = rmsnorm(residual) * w.
__global__ void fused_add_rmsnorm_kernel(float* __restrict__ residual, int64_t res_stride,
                                         const __nv_bfloat16* __restrict__ x, int64_t x_stride,
                                         const __nv_bfloat16* __restrict__ w,
                                         __nv_bfloat16* __restrict__ out, int64_t out_stride,
                                         int64_t dim, float eps, bool vec) {
  wait_for_prior_kernels();
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
  wait_for_prior_kernels();
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

// Rows of fp32 (the residual stream) with an optional gather, bf16 out, one row per block. With
// dim % 4 == 0 and dim <= 4 * 4 * blockDim each thread keeps its float4s in registers, so the row
// is read once with 16-byte loads; the reduction order depends only on dim, never on the rows.
constexpr int kNormVecPerThread = 4;

__global__ void rmsnorm_rows_f32_vec_kernel(const float* __restrict__ x,
                                            const int32_t* __restrict__ rows, int32_t dim,
                                            const float* __restrict__ w, float eps,
                                            __nv_bfloat16* __restrict__ out) {
  wait_for_prior_kernels();
  __shared__ float scratch[32];
  const int64_t r = blockIdx.x;
  const int64_t src = rows ? rows[r] : r;
  const auto* in = reinterpret_cast<const float4*>(x + src * dim);
  const int nvec = dim / 4;
  float4 v[kNormVecPerThread];
  float ss = 0.0f;
#pragma unroll
  for (int u = 0; u < kNormVecPerThread; ++u) {
    const int i = threadIdx.x + u * blockDim.x;
    v[u] = i < nvec ? in[i] : make_float4(0.f, 0.f, 0.f, 0.f);
    ss += v[u].x * v[u].x + v[u].y * v[u].y + v[u].z * v[u].z + v[u].w * v[u].w;
  }
  ss = block_sum(ss, scratch);
  const float inv = rsqrtf(ss / static_cast<float>(dim) + eps);
  const auto* wv = reinterpret_cast<const float4*>(w);
  auto* o = reinterpret_cast<__nv_bfloat162*>(out + r * dim);
#pragma unroll
  for (int u = 0; u < kNormVecPerThread; ++u) {
    const int i = threadIdx.x + u * blockDim.x;
    if (i >= nvec) continue;
    const float4 g = wv[i];
    o[2 * i] = __floats2bfloat162_rn(v[u].x * inv * g.x, v[u].y * inv * g.y);
    o[2 * i + 1] = __floats2bfloat162_rn(v[u].z * inv * g.z, v[u].w * inv * g.w);
  }
}

__global__ void rmsnorm_rows_f32_kernel(const float* __restrict__ x,
                                        const int32_t* __restrict__ rows, int32_t dim,
                                        const float* __restrict__ w, float eps,
                                        __nv_bfloat16* __restrict__ out) {
  wait_for_prior_kernels();
  __shared__ float scratch[32];
  const int64_t r = blockIdx.x;
  const int64_t src = rows ? rows[r] : r;
  const float* in = x + src * dim;
  float ss = 0.0f;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) ss += in[i] * in[i];
  ss = block_sum(ss, scratch);
  const float inv = rsqrtf(ss / static_cast<float>(dim) + eps);
  __nv_bfloat16* o = out + r * dim;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) o[i] = to_bf(in[i] * inv * w[i]);
}

}  // namespace

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
  launch(fused_add_rmsnorm_kernel, static_cast<unsigned>(rows), threads, 0, stream, residual,
         residual_stride, dev(x), x_stride, dev(weight), dev(out), out_stride, dim, eps, vec);
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
  launch(rmsnorm_heads_kernel, blocks, 256, 0, stream, dev(in), in_stride, dev(out), out_stride,
         rows, num_heads, dim, dev(weight), eps);
  return launched(kName);
}

Status rmsnorm_rows_f32(const float* x, const int32_t* rows, int64_t num_rows, int32_t dim,
                        const float* weight, float eps, bf16* out, Stream stream) {
  constexpr const char* kName = "rmsnorm_rows_f32";
  if (num_rows < 0 || dim <= 0) return invalid(kName, "num_rows must be >= 0 and dim > 0");
  if (num_rows == 0) return Status::kOk;
  if (x == nullptr || weight == nullptr || out == nullptr) {
    return invalid(kName, "x, weight and out must be non-null");
  }
  if (num_rows > 0x7fffffff) return invalid(kName, "num_rows exceeds 2^31-1");
  const int nvec = dim / 4;
  if (dim % 4 == 0 && nvec <= kNormVecPerThread * 256 && aligned16(x) && aligned16(weight) &&
      (reinterpret_cast<uintptr_t>(out) & 3u) == 0) {
    int threads = 32;
    while (threads * kNormVecPerThread < nvec) threads *= 2;
    launch(rmsnorm_rows_f32_vec_kernel, static_cast<unsigned>(num_rows), threads, 0, stream, x,
           rows, dim, weight, eps, dev(out));
  } else {
    const int threads = dim >= 1024 ? 256 : 128;
    launch(rmsnorm_rows_f32_kernel, static_cast<unsigned>(num_rows), threads, 0, stream, x, rows,
           dim, weight, eps, dev(out));
  }
  return launched(kName);
}

}  // namespace longtail::kernels
