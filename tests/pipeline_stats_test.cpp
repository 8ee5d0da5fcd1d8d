// Tests of `fp4z stats` numbers: the seed proxy definition, order-0 entropies, coded sizes, bits per
// weight and the reference MSE, on a small generated compressed-tensors checkpoint.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "nvfp4/scales.h"
#include "pipeline/stats.h"
#include "nvfp4/codec.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace fp4z;

TEST(Stats, SeedProxyDefinition) {
  // 32 KiB chunks, even/odd halves, mean of (H_even + H_odd)/2; last chunk shorter.
  std::vector<uint8_t> v(32768 + 4);
  for (size_t i = 0; i < 32768; ++i) v[i] = (i & 1) ? uint8_t(i / 2 % 4) : 7;  // even: 0 bits, odd: 2 bits
  v[32768] = 1, v[32769] = 1, v[32770] = 2, v[32771] = 3;                      // even {1,2}: 1 bit; odd {1,3}: 1 bit
  EntropyProxy p = entropy_proxy(v.data(), v.size());
  EXPECT_EQ(p.n_chunks, 2u);
  EXPECT_NEAR(p.mean_bits, (1.0 + 1.0) / 2, 1e-12);
  EXPECT_NEAR(p.std_bits, 0.0, 1e-12);
}

TEST(Stats, LayerNumbersAndMse) {
  fp4z::testing::TempDir tmp("fp4z_stats_test");
  fs::path root = tmp.path;
  const int n = 64, k = 256;
  std::mt19937 rng(7);
  std::vector<uint8_t> codes(size_t(n) * k);
  for (auto& c : codes) c = uint8_t(rng() % 16);
  codes[0] = 8;
  std::vector<uint8_t> packed(codes.size() / 2), scales(size_t(n) * k / 16);
  pack_nibbles(codes.data(), codes.size(), packed.data());
  for (auto& s : scales) s = uint8_t(0x30 + rng() % 8);
  float gs = 448.0f;
  // Reference = exact dequantization, except one weight off by 0.5.
  std::vector<float> ref(codes.size());
  for (size_t i = 0; i < ref.size(); ++i) ref[i] = kE2M1Value[codes[i]] * (e4m3_decode(scales[i / 16]) / gs);
  ref[5] += 0.5f;
  fp4z::testing::write_safetensors((root / "q/model.safetensors").string(),
                    {{"m.weight_packed", "U8", {n, k / 2}, packed},
                     {"m.weight_scale", "F8_E4M3", {n, k / 16}, scales},
                     {"m.weight_global_scale", "F32", {1}, fp4z::testing::f32_bytes({gs})},
                     {"norm", "F32", {4}, fp4z::testing::f32_bytes({1, 2, 3, 4})}});
  fp4z::testing::write_safetensors((root / "src/model.safetensors").string(), {{"m.weight", "F32", {n, k}, fp4z::testing::f32_bytes(ref)}});
  StatsOptions opt;
  opt.reference = (root / "src").string();
  StatsReport r = compute_stats((root / "q").string(), opt);
  ASSERT_EQ(r.layers.size(), 1u);
  const LayerStats& s = r.layers[0];
  EXPECT_EQ(s.weights, uint64_t(n) * k);
  uint64_t hist[16] = {};
  for (uint8_t c : codes) ++hist[c];
  for (int c = 0; c < 16; ++c) EXPECT_EQ(s.code_hist[c], hist[c]) << c;
  double h0 = 0;  // plug-in entropy of the planted codes, written out here
  for (int c = 0; c < 16; ++c)
    if (hist[c]) h0 -= double(hist[c]) / double(codes.size()) * std::log2(double(hist[c]) / double(codes.size()));
  EXPECT_NEAR(s.h0_codes, h0, 1e-12);
  EXPECT_GT(s.h0_codes, 3.9);
  EXPECT_NEAR(s.h0_scales, 3.0, 0.1);
  EXPECT_LT(s.coded_scales, s.scale_bytes * 0.55);  // 3 bits + the table and 32 lane states
  EXPECT_LE(s.coded_codes, s.code_bytes);
  EXPECT_GT(s.zstd_codes, 0u);
  EXPECT_NEAR(s.bits_per_weight, 8.0 * double(s.coded_codes + s.coded_scales + 4) / double(s.weights), 1e-12);
  ASSERT_TRUE(s.has_mse);
  EXPECT_NEAR(s.mse, 0.25 / double(s.weights), 1e-6 * 0.25 / double(s.weights));  // rounded to f32 like the seed
  EXPECT_EQ(r.other_tensor_bytes, 16u);
  // The JSON carries the same numbers.
  auto j = stats_json(r);
  EXPECT_EQ(j["layers"][0]["code_histogram"][8].get<uint64_t>(), hist[8]);
}
