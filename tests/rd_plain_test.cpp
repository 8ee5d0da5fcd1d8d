// rd without calibration straight from the source rows (rd_plain_layer) is the same layer job as
// rd_quantize_layer on the tensor widened to f32: codes, scales, histogram and MSE, BF16 and F32
// sources, 1 and 2 threads, λ = 0 and λ > 0.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "common/half.h"
#include "nvfp4/codec.h"
#include "pipeline/rd_plain.h"

using namespace fp4z;

TEST(RdPlain, SameDecisionsAsTheF32LayerJob) {
  std::mt19937 rng(7);
  std::student_t_distribution<float> t(5.0f);
  const int64_t N = 67, K = 320;  // rows not a multiple of the histogram batch
  std::vector<float> w(size_t(N * K));
  std::vector<uint16_t> bf16(w.size());
  for (size_t i = 0; i < w.size(); ++i) {
    bf16[i] = f32_to_bf16_rne(0.02f * t(rng) * (i % 97 == 0 ? 0.0f : 1.0f));
    w[i] = bf16_to_f32(bf16[i]);
  }
  const float gs = 2688.0f / 0.5f;
  const RdCostTables tables = rd_quantize_layer(w.data(), N, K, nullptr, gs, 0.0, 0.01, 1).costs;
  for (double lambda : {0.0, 3e-6, 1e-4})
    for (int threads : {1, 2}) {
      const RdLayerResult want = rd_quantize_layer(w.data(), N, K, nullptr, gs, lambda, 0.01, threads, &tables);
      const RdLayerResult from_bf16 = rd_plain_layer(reinterpret_cast<const uint8_t*>(bf16.data()), DType::BF16, N, K, gs, lambda,
                                                     threads, tables);
      const RdLayerResult from_f32 = rd_plain_layer(reinterpret_cast<const uint8_t*>(w.data()), DType::F32, N, K, gs, lambda,
                                                    threads, tables);
      for (const RdLayerResult* got : {&from_bf16, &from_f32}) {
        EXPECT_EQ(got->packed, want.packed) << "lambda " << lambda << " threads " << threads;
        EXPECT_EQ(got->scales, want.scales);
        EXPECT_EQ(0, std::memcmp(got->hist.code, want.hist.code, sizeof want.hist.code));
        EXPECT_EQ(0, std::memcmp(got->hist.scale, want.hist.scale, sizeof want.hist.scale));
        EXPECT_EQ(got->mse, want.mse);
        EXPECT_EQ(got->h_error, -1.0);
        EXPECT_EQ(0, std::memcmp(&got->costs, &tables, sizeof tables));
      }
      EXPECT_GT(want.hist.weights(), uint64_t(0));
    }
}

// pack_nibbles (word-at-a-time) against its definition: code 2i in the low nibble of byte i, code 2i + 1
// in the high one, an odd last code alone; every length 0..70 (tails of the 16-code steps).
TEST(RdPlain, PackNibblesMatchesItsDefinition) {
  std::mt19937 rng(3);
  for (size_t n = 0; n <= 70; ++n) {
    std::vector<uint8_t> codes(n), out((n + 1) / 2 + 1, 0xAA);
    for (auto& c : codes) c = uint8_t(rng() % 16);
    pack_nibbles(codes.data(), n, out.data());
    for (size_t i = 0; i < n; ++i) ASSERT_EQ((out[i / 2] >> (4 * (i % 2))) & 0xF, codes[i]) << "n " << n << " i " << i;
    if (n % 2) ASSERT_EQ(out[n / 2] >> 4, 0) << "n " << n;
    ASSERT_EQ(out[(n + 1) / 2], 0xAA) << "wrote past the end, n " << n;
  }
}
