// Error checking for CUDA runtime, cuBLAS and kernels/ calls inside the CUDA backend: every call's status is
// turned into a std::runtime_error naming the call and the location, so a device fault surfaces as
// a clear exception instead of a silent wrong answer or a later crash.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "kernels/kernels.h"

#include <stdexcept>
#include <string>

namespace longtail::policy::cuda {

[[noreturn]] inline void throw_cuda_error(cudaError_t err, const char* what, const char* file,
                                          int line) {
  throw std::runtime_error(std::string("CUDA error ") + cudaGetErrorName(err) + " (" +
                           cudaGetErrorString(err) + ") in " + what + " at " + file + ":" +
                           std::to_string(line));
}

[[noreturn]] inline void throw_cublas_error(cublasStatus_t st, const char* what, const char* file,
                                            int line) {
  throw std::runtime_error(std::string("cuBLAS error ") + cublasGetStatusName(st) + " in " + what +
                           " at " + file + ":" + std::to_string(line));
}

[[noreturn]] inline void throw_kernel_error(kernels::Status st, const char* what, const char* file,
                                            int line) {
  throw std::runtime_error(std::string("kernel error ") + kernels::to_string(st) + " (" +
                           kernels::last_error() + ") in " + what + " at " + file + ":" +
                           std::to_string(line));
}

}  // namespace longtail::policy::cuda

#define LT_CUDA_CHECK(expr)                                                                  \
  do {                                                                                       \
    const cudaError_t lt_err_ = (expr);                                                      \
    if (lt_err_ != cudaSuccess)                                                              \
      ::longtail::policy::cuda::throw_cuda_error(lt_err_, #expr, __FILE__, __LINE__);        \
  } while (0)

#define LT_CUBLAS_CHECK(expr)                                                                \
  do {                                                                                       \
    const cublasStatus_t lt_st_ = (expr);                                                    \
    if (lt_st_ != CUBLAS_STATUS_SUCCESS)                                                     \
      ::longtail::policy::cuda::throw_cublas_error(lt_st_, #expr, __FILE__, __LINE__);       \
  } while (0)

#define LT_KERNEL_CHECK(expr)                                                                \
  do {                                                                                       \
    const ::longtail::kernels::Status lt_ks_ = (expr);                                       \
    if (lt_ks_ != ::longtail::kernels::Status::kOk)                                          \
      ::longtail::policy::cuda::throw_kernel_error(lt_ks_, #expr, __FILE__, __LINE__);       \
  } while (0)
