// Code histogram, order-0 entropy, the dequantization error of packed NVFP4 weights against their source,
// and the block-scale scan.
#include "nvfp4/measure.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "common/cpu.h"
#include "common/parallel.h"

namespace fp4z {

void count_codes(const uint8_t* packed, size_t nbytes, uint64_t hist[16]) {
  // Byte counts first (one increment per two codes, two interleaved tables against store-to-load
  // stalls on runs of equal bytes), then split into the two nibbles.
  uint64_t bytes[2][256] = {};
  size_t i = 0;
  for (; i + 1 < nbytes; i += 2) {
    ++bytes[0][packed[i]];
    ++bytes[1][packed[i + 1]];
  }
  if (i < nbytes) ++bytes[0][packed[i]];
  for (int v = 0; v < 256; ++v) bytes[0][v] += bytes[1][v];
  add_code_counts(bytes[0], hist);
}

void add_code_counts(const uint64_t bytes[256], uint64_t hist[16]) {
  for (int v = 0; v < 256; ++v) {
    hist[v & 15] += bytes[v];
    hist[v >> 4] += bytes[v];
  }
}

double entropy_bits(const uint64_t* counts, int n) {
  uint64_t total = 0;
  for (int i = 0; i < n; ++i) total += counts[i];
  if (total == 0) return 0;
  double h = 0;
  for (int i = 0; i < n; ++i) {
    if (!counts[i]) continue;
    double p = double(counts[i]) / double(total);
    h -= p * std::log2(p);
  }
  return h;
}

RowStats packed_error_stats(const PackedWeights& w, const LoadRowFn& load_row, int threads) {
  const NvKernels& K = nv_kernels(detect_isa());
  const size_t C = w.cols, nb = C / 16, grain = 16;
  std::vector<RowStats> parts((w.rows + grain - 1) / grain);
  parallel_for(w.rows, threads, grain, [&](size_t b, size_t e) {
    std::vector<float> row(C), S(nb);
    for (size_t g = b; g < e; g += grain) {
      RowStats st;
      for (size_t i = g; i < std::min(e, g + grain); ++i) {
        load_row(i, row.data());
        for (size_t j = 0; j < nb; ++j) S[j] = effective_block_scale(w.scales[i * nb + j], w.global, w.global_is_divisor);
        K.code_stats(w.codes + i * C / 2, C, S.data(), row.data(), &st);
      }
      parts[g / grain] = st;
    }
  });
  RowStats total;
  for (const RowStats& p : parts) total.add(p);
  return total;
}

}  // namespace fp4z

namespace fp4z {

BlockScaleScan scan_block_scales(const uint8_t* s, const uint8_t* p, size_t rows, size_t groups, int threads) {
  const size_t grain = std::max<size_t>(1, (size_t(1) << 16) / std::max<size_t>(groups, 1));
  std::vector<BlockScaleScan> parts((rows + grain - 1) / grain);
  parallel_for(rows, threads, grain, [&](size_t r0, size_t r1) {
    for (size_t g0 = r0; g0 < r1; g0 += grain) {
      BlockScaleScan local;
      for (size_t r = g0; r < std::min(r1, g0 + grain); ++r) {
        const uint8_t* row = s + r * groups;
        for (size_t g = 0; g < groups; ++g) {
          const uint8_t b = row[g], mag = b & 0x7F;
          const uint64_t at = uint64_t(r) * groups + g;
          if (mag == 0x7F) {
            if (!local.nan++) local.first_nan = at;
          } else if (mag == 0) {
            if (!p) continue;
            uint64_t w;
            std::memcpy(&w, p + r * groups * 8 + g * 8, 8);
            if ((w & 0x7777777777777777ull) && !local.zero_nonzero_codes++) local.first_zero = at;
          } else if (b & 0x80) {
            if (!local.negative++) local.first_negative = at;
          }
        }
      }
      parts[g0 / grain] = local;
    }
  });
  BlockScaleScan total;
  for (const BlockScaleScan& q : parts) {
    total.nan += q.nan;
    total.negative += q.negative;
    total.zero_nonzero_codes += q.zero_nonzero_codes;
    total.first_nan = std::min(total.first_nan, q.first_nan);
    total.first_negative = std::min(total.first_negative, q.first_negative);
    total.first_zero = std::min(total.first_zero, q.first_zero);
  }
  return total;
}

}  // namespace fp4z
