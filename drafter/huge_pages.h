// Allocator for the drafter's large randomly-read arrays (frozen automata, own-context edge
// tables): blocks of at least kHugePageMinBytes are mapped on 2 MiB boundaries and marked for
// transparent huge pages (madvise(MADV_HUGEPAGE); the kernel's default "madvise" THP mode needs the
// hint). Why: drafting reads the history automata at random, tens of MB of them, and with 4 KiB
// pages almost every such read also misses the TLB (a 2,048-entry TLB covers 8 MiB), which costs
// a page walk, and a two-level one in a virtual machine. Huge pages change no result; where the
// kernel has no THP the hint is ignored and the mapping works as 4 KiB pages.
#pragma once

#include <cstddef>
#include <new>

namespace longtail::drafter {

inline constexpr size_t kHugePageMinBytes = size_t{1} << 20;  // smaller blocks: plain operator new

// Maps `bytes` (>= kHugePageMinBytes) 2 MiB-aligned with the huge-page hint; throws std::bad_alloc.
void* map_huge(size_t bytes);
void unmap_huge(void* p, size_t bytes);

template <class T>
struct HugePageAllocator {
  using value_type = T;
  HugePageAllocator() = default;
  template <class U>
  HugePageAllocator(const HugePageAllocator<U>&) {}
  T* allocate(size_t n) {
    const size_t bytes = n * sizeof(T);
    if (bytes >= kHugePageMinBytes) return static_cast<T*>(map_huge(bytes));
    return static_cast<T*>(::operator new(bytes));
  }
  void deallocate(T* p, size_t n) {
    const size_t bytes = n * sizeof(T);
    if (bytes >= kHugePageMinBytes) {
      unmap_huge(p, bytes);
    } else {
      ::operator delete(p);
    }
  }
  template <class U>
  bool operator==(const HugePageAllocator<U>&) const { return true; }
};

}  // namespace longtail::drafter
