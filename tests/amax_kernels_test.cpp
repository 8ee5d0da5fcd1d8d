// The absmax scan kernels (largest |w| bit pattern): every ISA level agrees with the scalar scan.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "common/cpu.h"
#include "pipeline/amax_kernels.h"
#include "test_util.h"

using namespace fp4z;

namespace {

// Reference written independently of the kernels: compare |w| bit patterns one by one.
uint32_t reference(const std::vector<uint8_t>& bytes, size_t offset, size_t n, size_t width) {
  uint32_t m = 0;
  for (size_t i = 0; i < n; ++i) {
    uint32_t v = 0;
    std::memcpy(&v, bytes.data() + offset + i * width, width);
    v &= width == 2 ? 0x7FFFu : 0x7FFFFFFFu;
    if (v > m) m = v;
  }
  return m;
}

}  // namespace

TEST(AmaxKernels, IsaLevelsAgreeWithTheScalarScanAtEveryLengthAndAlignment) {
  std::mt19937 rng(7);
  std::vector<uint8_t> bytes(4 * 1000 + 64);
  for (auto& b : bytes) b = uint8_t(rng());
  int levels = 0;
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512}) {
    if (int(isa) > int(detect_isa())) continue;
    ++levels;
    const AmaxKernels& k = amax_kernels(isa);
    for (size_t offset : {0, 1, 2, 3, 7}) {
      for (size_t n : {0, 1, 15, 31, 32, 33, 63, 64, 65, 127, 129, 500, 1000}) {
        // Small values only, so that the maximum is a different element each time it is planted.
        std::vector<uint8_t> b = bytes;
        for (size_t i = 0; i < b.size(); ++i) b[i] &= (i % 2) ? 0x0F : 0xFF;
        if (n > 0) b[offset + 2 * ((n * 7 / 3) % n) + 1] = 0xFF;  // a negative NaN pattern (sign set), placed by n
        EXPECT_EQ(k.bits16(b.data() + offset, n), reference(b, offset, n, 2)) << isa_name(isa) << " n=" << n << " off=" << offset;
        if (4 * n + offset <= b.size()) {
          EXPECT_EQ(k.bits32(b.data() + offset, n), reference(b, offset, n, 4)) << isa_name(isa) << " n=" << n << " off=" << offset;
        }
      }
    }
  }
  EXPECT_GE(levels, 1);
  FP4Z_SKIP_MISSING_ISA_LEVELS(CpuFeature::kAvx512);
}
