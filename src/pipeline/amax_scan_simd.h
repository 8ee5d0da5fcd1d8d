// The SIMD body of the absmax scan, shared by the AVX2 and AVX-512 files (included only by them).
#pragma once
#include <cstddef>
#include <cstdint>

#include "pipeline/amax_kernels.h"

namespace fp4z::amax_simd {

// Largest (lane & mask) over n lanes at p. `Ops` supplies the vector type V, its width in bytes,
// and load/and/max/set1/store for lanes of type Lane. Two accumulators keep two loads in flight;
// the tail goes through the scalar scan.
template <class Ops, class Lane>
Lane scan(const uint8_t* p, size_t n, Lane mask_value) {
  using V = typename Ops::V;
  constexpr size_t kLanes = Ops::kBytes / sizeof(Lane);
  const V mask = Ops::template set1<Lane>(mask_value);
  V a = Ops::zero(), b = Ops::zero();
  size_t i = 0;
  for (; i + 2 * kLanes <= n; i += 2 * kLanes) {
    a = Ops::template max<Lane>(a, Ops::and_(Ops::load(p + i * sizeof(Lane)), mask));
    b = Ops::template max<Lane>(b, Ops::and_(Ops::load(p + (i + kLanes) * sizeof(Lane)), mask));
  }
  a = Ops::template max<Lane>(a, b);
  alignas(64) Lane lanes[kLanes];
  Ops::store(lanes, a);
  Lane m = 0;
  for (Lane x : lanes) m = x > m ? x : m;
  Lane t = sizeof(Lane) == 2 ? Lane(abs_max_bits16_scalar(p + i * 2, n - i)) : Lane(abs_max_bits32_scalar(p + i * 4, n - i));
  return t > m ? t : m;
}

}  // namespace fp4z::amax_simd
