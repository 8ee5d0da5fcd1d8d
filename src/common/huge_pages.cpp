// Transparent huge pages for large, long-lived buffers (madvise MADV_HUGEPAGE on their aligned interior).
#include "common/huge_pages.h"

#include <sys/mman.h>

#include <cstdint>

namespace fp4z {

void reserve_huge_pages(void* begin, size_t bytes) {
  constexpr uintptr_t kHuge = uintptr_t(2) << 20;
  uintptr_t b = (uintptr_t(begin) + kHuge - 1) & ~(kHuge - 1);
  uintptr_t e = (uintptr_t(begin) + bytes) & ~(kHuge - 1);
  if (e > b) madvise(reinterpret_cast<void*>(b), e - b, MADV_HUGEPAGE);  // a hint: refused where THP is off
}

}  // namespace fp4z
