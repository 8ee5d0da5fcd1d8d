// Scalar row codecs for llama.cpp's NVFP4 and Q4_0 block layouts (run once per export, not hot).
#include "nvfp4/ggml_blocks.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/half.h"
#include "nvfp4/codec.h"

namespace fp4z {

namespace {
inline uint8_t code_at(const uint8_t* packed, int64_t col) { return (packed[col / 2] >> ((col & 1) * 4)) & 0xF; }
}  // namespace

bool nvfp4_row_to_ggml(const uint8_t* packed, const uint8_t* scales, int64_t cols, uint8_t* out) {
  for (int64_t b = 0; b < cols / kGgmlNvfp4BlockElems; ++b) {
    uint8_t* blk = out + b * kGgmlNvfp4BlockBytes;
    for (int s = 0; s < 4; ++s) {
      const int64_t c0 = b * kGgmlNvfp4BlockElems + s * 16;
      uint8_t sc = scales[c0 / 16];
      if ((sc & 0x7F) == 0x7F) return false;  // E4M3FN NaN
      // A negative scale: |s| · (-e) == s · e, so flip each code's sign bit.
      const uint8_t flip = (sc & 0x80) ? 0x8 : 0x0;
      blk[s] = sc & 0x7F;
      for (int j = 0; j < 8; ++j) {
        uint8_t lo = code_at(packed, c0 + j) ^ flip, hi = code_at(packed, c0 + j + 8) ^ flip;
        blk[4 + s * 8 + j] = uint8_t(lo | (hi << 4));
      }
    }
  }
  return true;
}

void nvfp4_row_dequantize(const uint8_t* packed, const uint8_t* scales, int64_t cols, float* out) {
  for (int64_t c = 0; c < cols; ++c) out[c] = kE2M1Value[code_at(packed, c)] * e4m3_decode(scales[c / 16]);
}

void ggml_nvfp4_row_dequantize(const uint8_t* blocks, int64_t cols, float* out) {
  for (int64_t b = 0; b < cols / kGgmlNvfp4BlockElems; ++b) {
    const uint8_t* blk = blocks + b * kGgmlNvfp4BlockBytes;
    for (int s = 0; s < 4; ++s) {
      float d = e4m3_decode(blk[s]);
      float* y = out + b * kGgmlNvfp4BlockElems + s * 16;
      for (int j = 0; j < 8; ++j) {
        y[j] = kE2M1Value[blk[4 + s * 8 + j] & 0xF] * d;
        y[j + 8] = kE2M1Value[blk[4 + s * 8 + j] >> 4] * d;
      }
    }
  }
}

void q4_0_row_quantize(const float* x, int64_t cols, uint8_t* out) {
  for (int64_t b = 0; b < cols / kGgmlQ4_0BlockElems; ++b) {
    const float* xb = x + b * kGgmlQ4_0BlockElems;
    uint8_t* blk = out + b * kGgmlQ4_0BlockBytes;
    float amax = 0.0f, m = 0.0f;
    for (int j = 0; j < 32; ++j) {
      if (amax < std::fabs(xb[j])) {
        amax = std::fabs(xb[j]);
        m = xb[j];
      }
    }
    const float d = m / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    uint16_t dh = f32_to_f16_rne(d);
    std::memcpy(blk, &dh, 2);
    for (int j = 0; j < 16; ++j) {
      int lo = std::min(15, int(int8_t(xb[j] * id + 8.5f)));
      int hi = std::min(15, int(int8_t(xb[j + 16] * id + 8.5f)));
      blk[2 + j] = uint8_t(lo | (hi << 4));
    }
  }
}

void q4_0_row_dequantize(const uint8_t* blocks, int64_t cols, float* out) {
  for (int64_t b = 0; b < cols / kGgmlQ4_0BlockElems; ++b) {
    const uint8_t* blk = blocks + b * kGgmlQ4_0BlockBytes;
    uint16_t dh;
    std::memcpy(&dh, blk, 2);
    const float d = f16_to_f32(dh);
    for (int j = 0; j < 16; ++j) {
      out[b * 32 + j] = float((blk[2 + j] & 0xF) - 8) * d;
      out[b * 32 + j + 16] = float((blk[2 + j] >> 4) - 8) * d;
    }
  }
}

}  // namespace fp4z
