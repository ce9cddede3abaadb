// 2 MiB-aligned anonymous mappings with the transparent-huge-page hint; see the header.
#include "drafter/huge_pages.h"

#include <sys/mman.h>

#include <cstdint>

namespace longtail::drafter {
namespace {
constexpr size_t kHugePage = size_t{2} << 20;
constexpr size_t kPage = size_t{4} << 10;
size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }
}  // namespace

void* map_huge(size_t bytes) {
  const size_t len = round_up(bytes, kPage);
  // Over-map by one huge page, then trim to an aligned start: mmap itself only aligns to 4 KiB.
  void* raw = mmap(nullptr, len + kHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) throw std::bad_alloc();
  const auto start = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t aligned = round_up(start, kHugePage);
  if (aligned > start) munmap(raw, aligned - start);
  const uintptr_t end = start + len + kHugePage;
  if (end > aligned + len) munmap(reinterpret_cast<void*>(aligned + len), end - (aligned + len));
  void* p = reinterpret_cast<void*>(aligned);
#ifdef MADV_HUGEPAGE
  madvise(p, len, MADV_HUGEPAGE);  // a hint: failure (no THP) leaves ordinary pages
#endif
  return p;
}

void unmap_huge(void* p, size_t bytes) { munmap(p, round_up(bytes, kPage)); }

}  // namespace longtail::drafter
