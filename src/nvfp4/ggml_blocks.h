// Row codecs between fp4z's NVFP4 layout and llama.cpp's ggml block types (NVFP4 super-blocks, Q4_0).
#pragma once
#include <cstdint>

namespace fp4z {

// ggml's block_nvfp4 (ggml-common.h): 64 elements in 36 bytes = 4 UE4M3 sub-block scales (one per
// 16 elements, the E4M3 byte without its sign bit) followed by 4 x 8 bytes of E2M1 nibbles; within
// sub-block s, byte j holds element j in the low nibble and element j + 8 in the high nibble. ggml
// decodes a scale byte b as E4M3(b)/2 and a code as 2·E2M1, so values are E2M1 · E4M3 exactly;
// the per-tensor global scale is not part of the block.
inline constexpr int64_t kGgmlNvfp4BlockElems = 64;
inline constexpr int64_t kGgmlNvfp4BlockBytes = 36;
// ggml's block_q4_0: 32 elements in 18 bytes = IEEE half scale d, then byte j holding
// q[j] | q[j + 16] << 4; value = (q - 8) · d.
inline constexpr int64_t kGgmlQ4_0BlockElems = 32;
inline constexpr int64_t kGgmlQ4_0BlockBytes = 18;

// Repacks one NVFP4 row of `cols` elements (cols % 64 == 0): `packed` holds cols/2 bytes (even
// column in the low nibble), `scales` cols/16 E4M3FN bytes. Writes cols/64 ggml blocks to `out`.
// A negative block scale is stored as its magnitude with the 16 codes' signs flipped (the same
// products). Returns false, writing nothing meaningful, if a scale is NaN (no ggml equivalent).
bool nvfp4_row_to_ggml(const uint8_t* packed, const uint8_t* scales, int64_t cols, uint8_t* out);

// The values E2M1(code) · E4M3(scale) of one NVFP4 row (cols % 16 == 0), without the global scale.
void nvfp4_row_dequantize(const uint8_t* packed, const uint8_t* scales, int64_t cols, float* out);

// Decodes ggml NVFP4 blocks back to E2M1 · E4M3 values (cols % 64 == 0).
void ggml_nvfp4_row_dequantize(const uint8_t* blocks, int64_t cols, float* out);

// Quantizes one row (cols % 32 == 0) to ggml Q4_0 with ggml's reference rounding
// (quantize_row_q4_0_ref): per block, m = the value of largest magnitude (first on ties),
// d = m / -8, q = min(15, trunc(x / d + 8.5)), d stored as half (round to nearest even).
void q4_0_row_quantize(const float* x, int64_t cols, uint8_t* out);

// Decodes Q4_0 blocks (cols % 32 == 0).
void q4_0_row_dequantize(const uint8_t* blocks, int64_t cols, float* out);

}  // namespace fp4z
