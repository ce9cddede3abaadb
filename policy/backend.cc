// make_backend: the one place that picks a backend by name. The CUDA factory lives in the CUDA
// engineer's policy/cuda_backend.{h,cc}, compiled only when the build has CUDA.
#include "policy/backend.h"

#include <stdexcept>

#include "policy/cpu_backend.h"
#ifdef LONGTAIL_HAVE_CUDA
#include "policy/cuda_backend.h"
#endif

namespace longtail::policy {

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
