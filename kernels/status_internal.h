// Internal to kernels/: records why a kernel call failed (see kernels.h last_error()).
#pragma once

#include "kernels/kernels.h"

namespace longtail::kernels {

// Stores "<kernel>: <what>" as this thread's last error and returns s.
Status fail(Status s, const char* kernel, const char* what);

}  // namespace longtail::kernels
