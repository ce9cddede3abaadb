// The backend's matrix products through cuBLAS: activations X [tokens, K] (row-major bf16) times a
// weight W [N, K] (row-major bf16, as HF stores nn.Linear) transposed, fp32 accumulation. The
// output is bf16, or fp32 with an optional accumulate (beta = 1) so the o_proj and down_proj
// products add straight into the fp32 residual stream without a separate add kernel.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstddef>

#include "policy/cuda_buffer.h"

namespace longtail::policy::cuda {

class Gemm {
 public:
  // The workspace is given to cuBLAS explicitly so that products captured into CUDA graphs never
  // allocate.
  explicit Gemm(cudaStream_t stream, size_t workspace_bytes = size_t{32} << 20);
  ~Gemm();
  Gemm(const Gemm&) = delete;
  Gemm& operator=(const Gemm&) = delete;

  // Y[M, N] (bf16) = X[M, K] · W[N, K]^T
  void bf16_out(const void* x, const void* w, void* y, int m, int n, int k) const;
  // Y[M, N] (fp32) = X · W^T + (accumulate ? Y : 0)
  void f32_out(const void* x, const void* w, float* y, int m, int n, int k, bool accumulate) const;

 private:
  void run(const void* x, const void* w, void* y, cudaDataType_t ytype, int m, int n, int k,
           float beta) const;
  cublasHandle_t handle_ = nullptr;
  DeviceBuffer workspace_;
};

}  // namespace longtail::policy::cuda
