// What every backend shares: the sampling input check, and make_backend, the one place that picks a
// backend by name. The CUDA factory lives in policy/cuda_backend.{h,cc}, compiled only when the build
// has CUDA.
#include "policy/backend.h"

#include <cmath>
#include <stdexcept>
#include <string>

#include "policy/cpu_backend.h"
#ifdef LONGTAIL_HAVE_CUDA
#include "policy/cuda_backend.h"
#endif

namespace longtail::policy {

std::optional<SamplingParamsError> check_sampling_params(const SamplingParams& s) {
  if (!std::isfinite(s.temperature) || s.temperature < 0.0f) {
    return SamplingParamsError{"temperature", "temperature " + std::to_string(s.temperature) +
                                                  " must be a finite number >= 0"};
  }
  if (!(s.top_p > 0.0f && s.top_p <= 1.0f)) {  // NaN fails too
    return SamplingParamsError{"top_p", "top_p " + std::to_string(s.top_p) + " must be in (0, 1]"};
  }
  if (!(s.min_p <= 1.0f)) {
    return SamplingParamsError{"min_p", "min_p " + std::to_string(s.min_p) + " must be <= 1 (<= 0: off)"};
  }
  return std::nullopt;
}

std::unique_ptr<Backend> make_backend(const std::filesystem::path& dir, const BackendOptions& opts) {
  if (opts.kind == "cpu") return make_cpu_backend(dir, opts);
  if (opts.kind == "cuda") {
#ifdef LONGTAIL_HAVE_CUDA
    return make_cuda_backend(dir, opts);
#else
    throw std::runtime_error("this build has no CUDA backend");
#endif
  }
  throw std::runtime_error("unknown backend kind \"" + opts.kind + "\" (expected cpu or cuda)");
}

bool cuda_backend_available() {
#ifdef LONGTAIL_HAVE_CUDA
  return cuda_device_present();
#else
  return false;
#endif
}

}  // namespace longtail::policy
