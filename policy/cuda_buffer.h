// Owning handles for device and pinned host memory used by the CUDA backend, so every allocation is
// released on every path (including exceptions thrown while loading or capturing).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <utility>

#include "policy/cuda_check.h"

namespace longtail::policy::cuda {

// One owning handle for both kinds of memory; Alloc/Free are cudaMalloc/cudaFree or
// cudaMallocHost/cudaFreeHost.
template <cudaError_t (*Alloc)(void**, size_t), cudaError_t (*Free)(void*)>
class CudaAllocation {
 public:
  CudaAllocation() = default;
  explicit CudaAllocation(size_t bytes) : bytes_(bytes) {
    if (bytes > 0) LT_CUDA_CHECK(Alloc(&ptr_, bytes));
  }
  ~CudaAllocation() {
    if (ptr_) Free(ptr_);
  }
  CudaAllocation(CudaAllocation&& o) noexcept
      : ptr_(std::exchange(o.ptr_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  CudaAllocation& operator=(CudaAllocation&& o) noexcept {
    if (this != &o) {
      if (ptr_) Free(ptr_);
      ptr_ = std::exchange(o.ptr_, nullptr);
      bytes_ = std::exchange(o.bytes_, 0);
    }
    return *this;
  }
  CudaAllocation(const CudaAllocation&) = delete;
  CudaAllocation& operator=(const CudaAllocation&) = delete;

  template <typename T = void>
  T* get() const { return static_cast<T*>(ptr_); }
  size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

inline cudaError_t device_alloc(void** p, size_t n) { return cudaMalloc(p, n); }
inline cudaError_t pinned_alloc(void** p, size_t n) { return cudaMallocHost(p, n); }

using DeviceBuffer = CudaAllocation<device_alloc, cudaFree>;
using PinnedBuffer = CudaAllocation<pinned_alloc, cudaFreeHost>;

}  // namespace longtail::policy::cuda
