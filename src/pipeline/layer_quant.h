// One Linear layer's NVFP4 encoding (absmax or seed) with its report metrics, parallel over rows.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "common/byte_buffer.h"
#include "format/dtype.h"
#include "nvfp4/kernels.h"

namespace fp4z {

// Metrics of one packed tensor, as in the seed report (seed-method.md §5).
struct LayerMetrics {
  double mean_entropy_bits = 0, std_entropy_bits = 0, compression_rate = 0, compressed_size_ratio = 0;
  double effective_bits_per_weight = 0, mse = 0, global_scale = 0, scale_ratio_mean = 0, scale_ratio_std = 0;
  double zero_fraction = 0, small_code_fraction = 0;
  uint64_t n_chunks = 0;
};

// A row-major [rows, cols] F16/BF16/F32 weight in memory (typically an mmap).
struct WeightView {
  const uint8_t* data;
  DType dtype;
  int64_t rows, cols;
};

struct LayerEncoding {
  ByteBuffer packed;  // [rows, cols/2], unwritten until encoded
  ByteBuffer scales;  // [rows, cols/16] E4M3
  float global_scale = 1;
  LayerMetrics metrics;   // of the new encoding
  LayerMetrics baseline;  // seed: of the template's encoding
};

// Largest |w|; sets *finite = false if any weight is NaN/Inf.
float weight_amax(const WeightView& w, int threads, bool* finite);
// The same in two steps, for weights scanned piece by piece as they are read: the largest |w| of n
// elements as its bit pattern (sign cleared; patterns of different pieces compare like the values),
// then the value of the largest pattern.
uint32_t abs_max_bits(const uint8_t* p, size_t n, DType dtype);
float amax_of_bits(uint32_t bits, DType dtype, bool* finite);

// compressed-tensors absmax encoding with the given (group) global scale.
void absmax_encode(const WeightView& w, float gs, bool canonical_zero, int threads, const NvKernels& k, LayerEncoding& out);

// Seed steps 1-3 from the template's block scales. A block's S0 and D depend only on its E4M3 code,
// so they are tabulated per code (computed exactly as per block) and looked up where needed: no
// per-block arrays, and one pass over the codes for M and bad_block.
struct SeedScales {
  const uint8_t* codes = nullptr;  // the template's block scales (not owned: must outlive seed_encode)
  size_t nblocks = 0;
  float S0_of[256] = {};  // per code: template effective scale (step 1)
  float D_of[256] = {};   // per code: desired (inflated) scale (step 2)
  bool present[256] = {};  // which codes occur
  float M = 0;             // max of D over the blocks
  int64_t bad_block = -1;  // first block with a negative/NaN template scale, or -1
};
SeedScales seed_scales(const uint8_t* tpl_scale, size_t nblocks, float g_t, float alpha);

// Seed steps 6-13 with global scale g1 (per tensor, or per fused group), plus both metric blocks.
// Rows are encoded in segments of about kSeedSegmentBytes of packed output; once a segment is
// complete, rows_done(r0, r1) (if set) is called, on whichever worker thread completed it (segments
// may complete out of order; calls may overlap), with out.packed/out.scales of rows [r0, r1) final:
// they may be written out while later rows are encoded (the buffers are not reallocated).
constexpr size_t kSeedSegmentBytes = 2u << 20;
void seed_encode(const WeightView& w, const uint8_t* tpl_packed, const SeedScales& sc, float g_t, float g1, bool canonical_zero,
                 int threads, const NvKernels& k, LayerEncoding& out,
                 const std::function<void(size_t r0, size_t r1)>& rows_done = {}, size_t segment_bytes = kSeedSegmentBytes);

}  // namespace fp4z
