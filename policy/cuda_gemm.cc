// cuBLAS products for the CUDA backend (see cuda_gemm.h). Row-major Y = X W^T is column-major
// Y^T = W^T' X^T', i.e. one GemmEx with op(A) = T on the weight.
#include "policy/cuda_gemm.h"

namespace longtail::policy::cuda {

Gemm::Gemm(cudaStream_t stream, size_t workspace_bytes) : workspace_(workspace_bytes) {
  LT_CUBLAS_CHECK(cublasCreate(&handle_));
  LT_CUBLAS_CHECK(cublasSetStream(handle_, stream));
  LT_CUBLAS_CHECK(cublasSetWorkspace(handle_, workspace_.get(), workspace_.bytes()));
  LT_CUBLAS_CHECK(cublasSetMathMode(handle_, CUBLAS_DEFAULT_MATH));
}

Gemm::~Gemm() {
  if (handle_) cublasDestroy(handle_);
}

void Gemm::run(const void* x, const void* w, void* y, cudaDataType_t ytype, int m, int n, int k,
               float beta) const {
  const float alpha = 1.0f;
  LT_CUBLAS_CHECK(cublasGemmEx(handle_, CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, &alpha, w, CUDA_R_16BF,
                               k, x, CUDA_R_16BF, k, &beta, y, ytype, n, CUBLAS_COMPUTE_32F,
                               CUBLAS_GEMM_DEFAULT));
}

void Gemm::bf16_out(const void* x, const void* w, void* y, int m, int n, int k) const {
  run(x, w, y, CUDA_R_16BF, m, n, k, 0.0f);
}

void Gemm::f32_out(const void* x, const void* w, float* y, int m, int n, int k,
                   bool accumulate) const {
  run(x, w, y, CUDA_R_32F, m, n, k, accumulate ? 1.0f : 0.0f);
}

}  // namespace longtail::policy::cuda
