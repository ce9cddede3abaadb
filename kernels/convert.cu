// Device-side conversion of F32 / BF16 / F16 tensors to the bf16 or fp32 a model keeps, and the
// scan for NaN/infinity, both grid-stride loops bound by memory bandwidth. Conversions round once
// (fp16 -> fp32 is exact, fp32 -> bf16 to nearest even), so a tensor converted here equals the
// same tensor converted on the host.
#include <cuda_fp16.h>

#include "kernels/common.cuh"
#include "kernels/convert.h"

namespace longtail::kernels {
using namespace detail;

namespace {

__device__ __forceinline__ float load_f32(const void* p, ElementType t, int64_t i) {
  switch (t) {
    case ElementType::kF32: return static_cast<const float*>(p)[i];
    case ElementType::kBF16: return to_f32(static_cast<const __nv_bfloat16*>(p)[i]);
    default: return __half2float(static_cast<const __half*>(p)[i]);
  }
}

__device__ __forceinline__ bool finite_at(const void* p, ElementType t, int64_t i) {
  // On the bit patterns: an all-ones exponent is NaN or infinity, whatever the mantissa.
  switch (t) {
    case ElementType::kF32: return (static_cast<const uint32_t*>(p)[i] & 0x7F800000u) != 0x7F800000u;
    case ElementType::kBF16: return (static_cast<const uint16_t*>(p)[i] & 0x7F80u) != 0x7F80u;
    default: return (static_cast<const uint16_t*>(p)[i] & 0x7C00u) != 0x7C00u;
  }
}

__global__ void to_bf16_kernel(const void* __restrict__ in, ElementType t, __nv_bfloat16* __restrict__ out,
                               int64_t n) {
  wait_for_prior_kernels();
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    out[i] = to_bf(load_f32(in, t, i));
  }
}

__global__ void to_f32_kernel(const void* __restrict__ in, ElementType t, float* __restrict__ out, int64_t n) {
  wait_for_prior_kernels();
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    out[i] = load_f32(in, t, i);
  }
}

__global__ void nonfinite_kernel(const void* __restrict__ in, ElementType t, int64_t n,
                                 unsigned long long* first_bad) {
  wait_for_prior_kernels();
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    if (!finite_at(in, t, i)) {
      atomicMin(first_bad, static_cast<unsigned long long>(i));
      return;  // this thread's later indices are larger
    }
  }
}

unsigned grid_for(int64_t n) {
  const int64_t b = (n + 255) / 256;
  return static_cast<unsigned>(b < 65536 ? b : 65536);
}

bool known(ElementType t) {
  return t == ElementType::kF32 || t == ElementType::kBF16 || t == ElementType::kF16;
}

}  // namespace

Status convert_to_bf16(const void* in, ElementType type, bf16* out, int64_t n, Stream stream) {
  constexpr const char* kName = "convert_to_bf16";
  if (n < 0) return invalid(kName, "n must be >= 0");
  if (!known(type)) return invalid(kName, "unknown element type");
  if (n == 0) return Status::kOk;
  if (in == nullptr || out == nullptr) return invalid(kName, "null pointer");
  launch(to_bf16_kernel, grid_for(n), 256, 0, stream, in, type, dev(out), n);
  return launched(kName);
}

Status convert_to_f32(const void* in, ElementType type, float* out, int64_t n, Stream stream) {
  constexpr const char* kName = "convert_to_f32";
  if (n < 0) return invalid(kName, "n must be >= 0");
  if (!known(type)) return invalid(kName, "unknown element type");
  if (n == 0) return Status::kOk;
  if (in == nullptr || out == nullptr) return invalid(kName, "null pointer");
  launch(to_f32_kernel, grid_for(n), 256, 0, stream, in, type, out, n);
  return launched(kName);
}

Status find_first_nonfinite(const void* in, ElementType type, int64_t n, uint64_t* first_bad, Stream stream) {
  constexpr const char* kName = "find_first_nonfinite";
  static_assert(sizeof(uint64_t) == sizeof(unsigned long long));
  if (n < 0) return invalid(kName, "n must be >= 0");
  if (!known(type)) return invalid(kName, "unknown element type");
  if (n == 0) return Status::kOk;
  if (in == nullptr || first_bad == nullptr) return invalid(kName, "null pointer");
  launch(nonfinite_kernel, grid_for(n), 256, 0, stream, in, type, n,
         reinterpret_cast<unsigned long long*>(first_bad));
  return launched(kName);
}

}  // namespace longtail::kernels
