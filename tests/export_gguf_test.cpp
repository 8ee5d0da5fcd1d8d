// GGUF writer bytes and the ggml NVFP4 / Q4_0 row codecs, checked against the layouts documented in ggml-common.h and gguf.md.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "common/half.h"
#include "format/gguf.h"
#include "nvfp4/codec.h"
#include "nvfp4/ggml_blocks.h"
#include "test_util.h"

using namespace fp4z;
using namespace fp4z::testing;

TEST(GgmlBlocks, Nvfp4RepackKeepsEveryProductAndFollowsTheNibbleLayout) {
  std::mt19937 rng(5);
  const int64_t cols = 128;
  std::vector<uint8_t> packed(cols / 2), scales(cols / 16);
  for (auto& b : packed) b = uint8_t(rng());
  for (size_t i = 0; i < scales.size(); ++i) {
    uint8_t s;
    do s = uint8_t(rng()); while ((s & 0x7F) == 0x7F);
    scales[i] = i == 0 ? 0x38 : s;  // block 0: +1.0 for the layout check; others include negative scales
  }
  std::vector<uint8_t> out(cols / 64 * 36);
  ASSERT_TRUE(nvfp4_row_to_ggml(packed.data(), scales.data(), cols, out.data()));
  std::vector<float> want(cols), got(cols);
  nvfp4_row_dequantize(packed.data(), scales.data(), cols, want.data());
  ggml_nvfp4_row_dequantize(out.data(), cols, got.data());
  for (int64_t c = 0; c < cols; ++c) EXPECT_EQ(want[c] + 0.0f, got[c] + 0.0f) << "col " << c;  // +0: -0 == 0
  // Layout from ggml-common.h: 4 UE4M3 scales, then per sub-block byte j = elem j | elem j+8 << 4.
  EXPECT_EQ(out[0], 0x38);
  for (int j = 0; j < 8; ++j) {
    uint8_t lo = (packed[j / 2] >> ((j & 1) * 4)) & 0xF, hi = (packed[(j + 8) / 2] >> (((j + 8) & 1) * 4)) & 0xF;
    EXPECT_EQ(out[4 + j], uint8_t(lo | hi << 4));
  }
  for (int s = 0; s < 4; ++s) EXPECT_EQ(out[s] & 0x80, 0) << "ggml scales are unsigned";
}

TEST(GgmlBlocks, Nvfp4NanScaleIsRefused) {
  std::vector<uint8_t> packed(32, 0x11), scales(4, 0x38), out(36);
  scales[2] = 0xFF;
  EXPECT_FALSE(nvfp4_row_to_ggml(packed.data(), scales.data(), 64, out.data()));
}

TEST(GgmlBlocks, Q4_0MatchesTheReferenceRounding) {
  // x = j - 16: largest magnitude -16 (first), d = -16 / -8 = 2, q = min(15, trunc(x/2 + 8.5)).
  std::vector<float> x(32);
  for (int j = 0; j < 32; ++j) x[j] = float(j - 16);
  std::vector<uint8_t> b(18);
  q4_0_row_quantize(x.data(), 32, b.data());
  uint16_t dh;
  std::memcpy(&dh, b.data(), 2);
  EXPECT_EQ(f16_to_f32(dh), 2.0f);
  for (int j = 0; j < 16; ++j) {
    int lo = std::min(15, int(std::trunc(x[j] / 2 + 8.5f))), hi = std::min(15, int(std::trunc(x[j + 16] / 2 + 8.5f)));
    EXPECT_EQ(b[2 + j], uint8_t(lo | hi << 4)) << j;
  }
  std::vector<float> y(32);
  q4_0_row_dequantize(b.data(), 32, y.data());
  for (int j = 0; j < 31; ++j) EXPECT_LE(std::fabs(y[j] - x[j]), 1.0f) << j;  // half a step, bar the saturated top
}

TEST(GgufWriter, HeaderKeysTensorInfosAndAlignedData) {
  TempDir tmp;
  std::string path = tmp.path + "/t.gguf";
  GgufWriter w(32);
  w.add_string("general.architecture", "llama");
  w.add_u32("llama.block_count", 3);
  size_t a = w.add_tensor("a", GgmlType::kF32, {2, 3});
  size_t b = w.add_tensor("b", GgmlType::kNvfp4, {1, 64});
  EXPECT_EQ(w.tensor_bytes(a), 24u);
  EXPECT_EQ(w.tensor_bytes(b), 36u);
  w.write_header(path);
  float av[6] = {1, 2, 3, 4, 5, 6};
  w.append(av, sizeof av);
  w.end_tensor();
  std::vector<uint8_t> bv(36, 0xAB);
  w.append(bv.data(), 36);
  w.end_tensor();
  w.finish();
  std::string f = read_text(path);
  auto u32 = [&](size_t o) { uint32_t v; std::memcpy(&v, f.data() + o, 4); return v; };
  auto u64 = [&](size_t o) { uint64_t v; std::memcpy(&v, f.data() + o, 8); return v; };
  ASSERT_EQ(f.substr(0, 4), "GGUF");
  EXPECT_EQ(u32(4), 3u);
  EXPECT_EQ(u64(8), 2u);   // tensors
  EXPECT_EQ(u64(16), 2u);  // key/values
  size_t o = 24;
  EXPECT_EQ(u64(o), 20u);
  EXPECT_EQ(f.substr(o + 8, 20), "general.architecture");
  o += 28;
  EXPECT_EQ(u32(o), 8u);  // string
  EXPECT_EQ(f.substr(o + 12, 5), "llama");
  o += 17;
  o += 8 + 17;
  EXPECT_EQ(u32(o), 4u);  // uint32
  EXPECT_EQ(u32(o + 4), 3u);
  o += 8;
  // tensor "a": name, 2 dims innermost first (3, 2), type F32, offset 0
  EXPECT_EQ(f.substr(o + 8, 1), "a");
  o += 9;
  EXPECT_EQ(u32(o), 2u);
  EXPECT_EQ(u64(o + 4), 3u);
  EXPECT_EQ(u64(o + 12), 2u);
  EXPECT_EQ(u32(o + 20), 0u);
  EXPECT_EQ(u64(o + 24), 0u);
  o += 32;
  o += 9 + 4 + 16;
  EXPECT_EQ(u32(o), 40u);  // NVFP4
  EXPECT_EQ(u64(o + 4), 32u);  // 24 bytes padded to the alignment
  o += 12;
  size_t data = (o + 31) / 32 * 32;
  float a0;
  std::memcpy(&a0, f.data() + data, 4);
  EXPECT_EQ(a0, 1.0f);
  EXPECT_EQ(uint8_t(f[data + 32]), 0xAB);
  EXPECT_EQ(f.size(), data + 32 + 64);
}
