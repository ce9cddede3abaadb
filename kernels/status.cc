// Status strings and the per-thread "why" of the last failed kernel call, kept out of the .cu files
// so nvcc never compiles spdlog/fmt.
#include "kernels/status_internal.h"

#include <spdlog/spdlog.h>

#include <string>

namespace longtail::kernels {
namespace {
thread_local std::string g_last_error;
}  // namespace

const char* to_string(Status s) {
  switch (s) {
    case Status::kOk: return "ok";
    case Status::kInvalidArgument: return "invalid argument";
    case Status::kLaunchFailed: return "launch failed";
  }
  return "unknown status";
}

const char* last_error() { return g_last_error.c_str(); }

Status fail(Status s, const char* kernel, const char* what) {
  g_last_error = std::string(kernel) + ": " + what;
  spdlog::debug("longtail kernels: {} ({})", g_last_error, to_string(s));
  return s;
}

}  // namespace longtail::kernels
