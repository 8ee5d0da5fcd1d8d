// Transparent huge pages for large, long-lived buffers, requested before their pages are first touched.
#pragma once
#include <cstddef>
#include <vector>

namespace fp4z {

// Gives large, long-lived buffers transparent huge pages before they are first touched: a fresh
// 50 MB buffer then costs 25 page faults instead of 12,000. Reserves at least n elements of `v`
// (its contents are kept); call it before resize().
void reserve_huge_pages(void* begin, size_t bytes);
template <class T, class Alloc>
void reserve_huge(std::vector<T, Alloc>& v, size_t n) {
  if (v.capacity() >= n) return;
  v.reserve(n);
  reserve_huge_pages(v.data(), v.capacity() * sizeof(T));
}

}  // namespace fp4z
