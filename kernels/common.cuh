// Shared device helpers of the kernels: bf16 <-> fp32, warp/block reductions, the one launch
// helper (programmatic dependent launch), and the launch check that turns a failed launch into
// Status::kLaunchFailed with the CUDA error text.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <utility>

#include "kernels/kernels.h"
#include "kernels/status_internal.h"

namespace longtail::kernels::detail {

static_assert(sizeof(__nv_bfloat16) == sizeof(bf16));

__device__ __forceinline__ float to_f32(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ __nv_bfloat16 to_bf(float x) { return __float2bfloat16_rn(x); }

inline __nv_bfloat16* dev(bf16* p) { return reinterpret_cast<__nv_bfloat16*>(p); }
inline const __nv_bfloat16* dev(const bf16* p) {
  return reinterpret_cast<const __nv_bfloat16*>(p);
}

// 8 bf16 values in one 16-byte word.
union Pack8 {
  uint4 u;
  __nv_bfloat162 h2[4];
};

__device__ __forceinline__ void unpack8(const uint4& u, float (&f)[8]) {
  Pack8 p;
  p.u = u;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 v = __bfloat1622float2(p.h2[i]);
    f[2 * i] = v.x;
    f[2 * i + 1] = v.y;
  }
}

__device__ __forceinline__ uint4 pack8(const float (&f)[8]) {
  Pack8 p;
#pragma unroll
  for (int i = 0; i < 4; ++i) p.h2[i] = __floats2bfloat162_rn(f[2 * i], f[2 * i + 1]);
  return p.u;
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over the block; every thread gets the result. scratch: >= 32 floats of shared memory.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int nwarps = (blockDim.x + 31) >> 5;
  v = warp_sum(v);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < nwarps ? scratch[lane] : 0.0f;
  return warp_sum(v);
}

// Programmatic dependent launch (sm_90 and later). Every kernel here is launched by launch(),
// which lets it start while the kernel before it on the stream is still running: its blocks
// become resident and set up early, so the gap between two short dependent kernels shrinks to
// the release of a barrier. The rule that keeps this correct: every kernel calls
// wait_for_prior_kernels() before its first access to memory another kernel reads or writes
// (only inputs the previous kernel cannot be writing, such as weights, may be read before it; the
// header of such a kernel says so). The wait returns when the previous kernel has completed and
// its writes are visible; since that kernel waited for its own predecessor, the order is
// transitive. Then it lets the next kernel launch. Both steps are no-ops when the kernel was
// launched without the attribute (set_dependent_launch(false), or on a stream whose previous
// work is not a kernel).
__device__ __forceinline__ void wait_for_prior_kernels() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// Launches kernel<<<grid, block, smem, stream>>>(args...), with programmatic stream
// serialization while dependent_launch() is on. Errors are left for launched() to read.
template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, Stream stream,
            Args&&... args) {
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = dependent_launch() ? 1 : 0;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  (void)cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
}

// D += A B on the tensor cores, one mma.m16n8k16 (bf16 in, fp32 accumulate): a is the 16 x 16
// row-major A fragment, (b0, b1) the 16 x 8 column-major B fragment, in PTX's register layout.
__device__ __forceinline__ void mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                         uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Multiprocessors of the current device; 0 (the CUDA error cleared) when it cannot be read.
inline int multiprocessor_count() {
  int dev = 0, sms = 0;
  if (cudaGetDevice(&dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return sms;
}

inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// Checks the launch that just happened; fills last_error() on failure.
inline Status launched(const char* kernel) {
  const cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess) return Status::kOk;
  const std::string what = std::string("launch failed: ") + cudaGetErrorString(e);
  return fail(Status::kLaunchFailed, kernel, what.c_str());
}

inline Status invalid(const char* kernel, const char* what) {
  return fail(Status::kInvalidArgument, kernel, what);
}

inline unsigned blocks_for(int64_t n, int threads) {
  return static_cast<unsigned>((n + threads - 1) / threads);
}

}  // namespace longtail::kernels::detail
