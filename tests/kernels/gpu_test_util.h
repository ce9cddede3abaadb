// Helpers of the GPU kernel tests: device buffers poisoned with NaN/-1 before each kernel run (so an
// unwritten output fails), bf16-rounded random inputs, and the relative error of the method notes
// (||out - ref|| / ||ref||, NaN never passes).
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/kernels.h"
#include "kernels/reference.h"

#if LONGTAIL_HAVE_CUDA
#include <cuda_runtime_api.h>

namespace longtail::kernels::testing {

inline bool gpu_present() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

#define LT_REQUIRE_GPU()                                                     \
  do {                                                                       \
    if (!::longtail::kernels::testing::gpu_present()) {                      \
      GTEST_SKIP() << "no CUDA device";                                      \
    }                                                                        \
  } while (0)

#define LT_CUDA_OK(expr)                                                     \
  do {                                                                       \
    const cudaError_t _e = (expr);                                           \
    ASSERT_EQ(_e, cudaSuccess) << #expr << ": " << cudaGetErrorString(_e);   \
  } while (0)

#define LT_KERNEL_OK(expr)                                                            \
  do {                                                                                \
    const ::longtail::kernels::Status _s = (expr);                                    \
    ASSERT_EQ(_s, ::longtail::kernels::Status::kOk)                                   \
        << #expr << ": " << ::longtail::kernels::last_error();                        \
    const cudaError_t _e = cudaDeviceSynchronize();                                   \
    ASSERT_EQ(_e, cudaSuccess) << #expr << " (execution): " << cudaGetErrorString(_e); \
  } while (0)

template <typename T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t n) : n_(n) {
    if (n_ > 0 && cudaMalloc(reinterpret_cast<void**>(&p_), n_ * sizeof(T)) != cudaSuccess) {
      throw std::runtime_error("cudaMalloc of " + std::to_string(n_ * sizeof(T)) + " bytes failed");
    }
    poison();
  }
  explicit DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size()) { upload(host); }
  ~DeviceBuffer() { cudaFree(p_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  T* get() { return p_; }
  const T* get() const { return p_; }
  size_t size() const { return n_; }
  // All bytes 0xFF: NaN for float and bf16, -1 for int32.
  void poison() {
    if (n_ > 0) cudaMemset(p_, 0xFF, n_ * sizeof(T));
  }
  void upload(const std::vector<T>& host) {
    if (host.size() != n_) throw std::runtime_error("DeviceBuffer::upload: size mismatch");
    if (n_ > 0) cudaMemcpy(p_, host.data(), n_ * sizeof(T), cudaMemcpyHostToDevice);
  }
  std::vector<T> download() const {
    std::vector<T> h(n_);
    if (n_ > 0) cudaMemcpy(h.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost);
    return h;
  }

 private:
  T* p_ = nullptr;
  size_t n_ = 0;
};

}  // namespace longtail::kernels::testing
#endif  // LONGTAIL_HAVE_CUDA

namespace longtail::kernels::testing {

// Random values rounded to bf16, returned as floats (for the reference) and bf16 (for the device).
struct Bf16Data {
  std::vector<float> f;
  std::vector<bf16> b;
};
inline Bf16Data random_bf16(size_t n, std::mt19937_64& rng, float scale = 1.0f) {
  std::normal_distribution<float> dist(0.0f, scale);
  Bf16Data d;
  d.f.resize(n);
  d.b.resize(n);
  for (size_t i = 0; i < n; ++i) {
    d.b[i] = ref::to_bf16(dist(rng));
    d.f[i] = ref::from_bf16(d.b[i]);
  }
  return d;
}

inline std::vector<float> to_float(const std::vector<bf16>& b) {
  std::vector<float> f(b.size());
  for (size_t i = 0; i < b.size(); ++i) f[i] = ref::from_bf16(b[i]);
  return f;
}

// ||out - ref|| / ||ref||; +inf when any output is NaN or sizes differ.
inline double rel_error(const std::vector<float>& out, const std::vector<float>& ref) {
  if (out.size() != ref.size()) return INFINITY;
  double num = 0, den = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    if (std::isnan(out[i])) return INFINITY;
    const double d = static_cast<double>(out[i]) - ref[i];
    num += d * d;
    den += static_cast<double>(ref[i]) * ref[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

// Relative error allowed for bf16 outputs of fp32 math (one bf16 rounding: ~2^-9 rms).
constexpr double kBf16Tol = 8e-3;

}  // namespace longtail::kernels::testing
