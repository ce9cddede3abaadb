// The process-wide switch for programmatic dependent launch (kernels.h; the rule each kernel
// follows is in common.cuh next to launch()).
#include <atomic>

#include "kernels/kernels.h"

namespace longtail::kernels {
namespace {
std::atomic<bool> g_dependent_launch{true};
}  // namespace

void set_dependent_launch(bool on) { g_dependent_launch.store(on, std::memory_order_relaxed); }
bool dependent_launch() { return g_dependent_launch.load(std::memory_order_relaxed); }

}  // namespace longtail::kernels
