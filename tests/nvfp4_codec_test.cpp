// Golden vectors for the E2M1/E4M3 codecs, packing, scale rules, and ISA-equivalence of the row kernels.
// Every expected value here is written down from ../shared/design/*.md, not computed by the code.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "common/cpu.h"
#include "common/half.h"
#include "nvfp4/codec.h"
#include "nvfp4/kernels.h"
#include "nvfp4/scales.h"
#include "test_util.h"

using namespace fp4z;

static uint32_t bits(float f) { uint32_t b; std::memcpy(&b, &f, 4); return b; }

TEST(E2M1, PackRowFromCompressedTensorsTest) {
  // Row [-0.5,-6,-0.5,-1.5,-1,6,0,-0] quantized with scale 1 -> codes 9 F 9 B A 7 0 8 -> F9 B9 7A 80.
  // The packer takes the sign of the already-rounded value: -0.0 packs to 8 (design note §2.5).
  const float row[8] = {-0.5f, -6.0f, -0.5f, -1.5f, -1.0f, 6.0f, 0.0f, -0.0f};
  uint8_t codes[8];
  for (int i = 0; i < 8; ++i) codes[i] = e2m1_encode(row[i]);
  codes[7] = std::signbit(row[7]) ? uint8_t(8) : codes[7];  // sign of a rounded -0.0, as the CT packer does
  const uint8_t want_codes[8] = {9, 15, 9, 11, 10, 7, 0, 8};
  for (int i = 0; i < 8; ++i) EXPECT_EQ(codes[i], want_codes[i]) << i;
  uint8_t packed[4];
  pack_nibbles(codes, 8, packed);
  const uint8_t want[4] = {0xF9, 0xB9, 0x7A, 0x80};
  EXPECT_EQ(0, std::memcmp(packed, want, 4));
}

TEST(E2M1, PackCodesGolden) {
  const uint8_t codes[8] = {0, 1, 2, 3, 8, 9, 10, 15};
  uint8_t packed[4];
  pack_nibbles(codes, 8, packed);
  const uint8_t want[4] = {0x10, 0x32, 0x98, 0xFA};
  EXPECT_EQ(0, std::memcmp(packed, want, 4));
  uint8_t back[8];
  unpack_nibbles(packed, 8, back);
  EXPECT_EQ(0, std::memcmp(back, codes, 8));
}

TEST(E2M1, EveryMidpointRoundsHalfToEven) {
  // (value, expected magnitude index) at and around every threshold, from the table in §3.1.
  struct Case { float a; int idx; };
  const Case cases[] = {
      {0.0f, 0}, {0.25f, 0}, {std::nextafter(0.25f, 1.0f), 1}, {0.5f, 1}, {std::nextafter(0.75f, 0.0f), 1},
      {0.75f, 2}, {1.0f, 2}, {1.25f, 2}, {std::nextafter(1.25f, 2.0f), 3}, {1.5f, 3},
      {std::nextafter(1.75f, 0.0f), 3}, {1.75f, 4}, {2.0f, 4}, {2.5f, 4}, {std::nextafter(2.5f, 3.0f), 5},
      {3.0f, 5}, {std::nextafter(3.5f, 0.0f), 5}, {3.5f, 6}, {4.0f, 6}, {5.0f, 6},
      {std::nextafter(5.0f, 6.0f), 7}, {6.0f, 7}, {1e30f, 7}, {INFINITY, 7}, {NAN, 0}};
  for (const auto& c : cases) EXPECT_EQ(e2m1_magnitude_index(c.a), c.idx) << c.a;
}

TEST(E2M1, SignRule) {
  EXPECT_EQ(e2m1_encode(-0.1f), 8);   // small negative -> negative zero code
  EXPECT_EQ(e2m1_encode(-0.0f), 0);   // exact -0.0 is not < 0
  EXPECT_EQ(e2m1_encode(NAN), 0);
  EXPECT_EQ(e2m1_encode(-INFINITY), 15);
  EXPECT_EQ(e2m1_encode(-0.25f), 8);
  EXPECT_EQ(e2m1_encode(-0.26f), 9);
}

TEST(E4M3, GoldenEncodings) {
  struct Case { float x; uint8_t b; };
  const Case cases[] = {{448, 0x7E}, {464, 0x7E}, {224, 0x76}, {300, 0x79}, {17, 0x58}, {1.0625f, 0x38},
                        {0.125f, 0x20}, {0.015625f, 0x08}, {7.5f / 512, 0x08}, {1.5f / 512, 0x02},
                        {2.5f / 512, 0x02}, {0.5f / 512, 0x00}, {1.0f / 512, 0x01}, {56, 0x66}, {112, 0x6E}};
  for (const auto& c : cases) EXPECT_EQ(e4m3_encode_rne(c.x), c.b) << c.x;
  EXPECT_EQ(e4m3_encode_rne(std::nextafter(464.0f, 500.0f)) & 0x7F, 0x7F);  // above 464: NaN pattern
}

TEST(E4M3, DecodeSpotValues) {
  EXPECT_EQ(e4m3_decode(0x7E), 448.0f);
  EXPECT_EQ(e4m3_decode(0x08), 0.015625f);
  EXPECT_EQ(e4m3_decode(0x01), 1.0f / 512);
  EXPECT_EQ(e4m3_decode(0x79), 288.0f);
  EXPECT_EQ(e4m3_decode(0x38), 1.0f);
  EXPECT_EQ(e4m3_decode(0xB8), -1.0f);
  EXPECT_TRUE(std::isnan(e4m3_decode(0x7F)));
  EXPECT_TRUE(std::isnan(e4m3_decode(0xFF)));
}

TEST(E4M3, All254NonNanCodesRoundTrip) {
  int n = 0;
  for (int b = 0; b < 256; ++b) {
    if ((b & 0x7F) == 0x7F) continue;
    EXPECT_EQ(e4m3_encode_rne(e4m3_decode(uint8_t(b))), b) << b;
    ++n;
  }
  EXPECT_EQ(n, 254);
}

TEST(E4M3, EveryMidpointTiesToEven) {
  // Midpoint between consecutive positive codes b and b+1: ties go to the even mantissa.
  for (int b = 0; b < 0x7E; ++b) {
    double lo = e4m3_decode(uint8_t(b)), hi = e4m3_decode(uint8_t(b + 1));
    float mid = float((lo + hi) / 2);  // exact in f32 for E4M3 neighbours
    ASSERT_EQ(double(mid), (lo + hi) / 2);
    uint8_t want = (b & 1) ? uint8_t(b + 1) : uint8_t(b);
    EXPECT_EQ(e4m3_encode_rne(mid), want) << "midpoint of " << b;
    EXPECT_EQ(e4m3_encode_rne(std::nextafter(mid, 0.0f)), b);
    EXPECT_EQ(e4m3_encode_rne(std::nextafter(mid, 1000.0f)), b + 1);
  }
}

TEST(Scales, AbsmaxGlobalScaleBf16TwoRoundings) {
  // amax 3.0: bf16(1/3) = 0.333984375; x 2688 = 897.75 -> bf16 896.0, F32 bytes 00 00 60 44.
  float gs = absmax_global_scale(3.0f, SourceRounding::kBF16);
  EXPECT_EQ(gs, 896.0f);
  uint8_t b[4];
  std::memcpy(b, &gs, 4);
  EXPECT_EQ(b[0], 0x00); EXPECT_EQ(b[1], 0x00); EXPECT_EQ(b[2], 0x60); EXPECT_EQ(b[3], 0x44);
  EXPECT_EQ(absmax_global_scale(0.0f, SourceRounding::kBF16), 1.0f);
  // Block with amax 1.5: 1.5/6 = 0.25; 896 * 0.25 = 224 -> 0x76.
  EXPECT_EQ(absmax_block_scale(1.5f, 896.0f, SourceRounding::kBF16), 0x76);
  EXPECT_EQ(absmax_block_scale(0.0f, 896.0f, SourceRounding::kBF16), 0x20);  // zero -> 0.125
}

TEST(Scales, SeedGlobalScaleGoldenBits) {
  // seed-method.md §3: g1 = fl(fl(1/M) * 448), M = fl(m / g_t) * 2.
  auto g = [](float m, float gt) { return seed_global_scale((m / gt) * 2.0f); };
  EXPECT_EQ(bits(g(288, 5056)), 0x4575C71Cu);  // 3932.4443359375 (single rounding would differ)
  EXPECT_EQ(bits(g(448, 6816)), 0x45550001u);  // 3408.000244140625
  EXPECT_EQ(g(448, 4640), 2320.0f);
  EXPECT_EQ(g(448, 4544), 2272.0f);
  EXPECT_EQ(bits(g(208, 4544)), 0x4598EC4Fu);  // 4893.53857421875
  EXPECT_EQ(g(128, 4544), 7952.0f);
}

TEST(Scales, SeedEncodesEffectiveScales) {
  // §10: effective scales [0.25, 0.5, 1, 2] -> M = 2, g1 = 224, FP8 bytes 66 6E 76 7E.
  const float D[4] = {0.25f, 0.5f, 1.0f, 2.0f};
  float g1 = seed_global_scale(2.0f);
  EXPECT_EQ(g1, 224.0f);
  const uint8_t want[4] = {0x66, 0x6E, 0x76, 0x7E};
  for (int i = 0; i < 4; ++i) EXPECT_EQ(seed_block_scale(D[i], g1), want[i]);
}

TEST(Scales, EntropyProxyOfConstantAndTwoSymbolData) {
  std::vector<uint8_t> zeros(70000, 0);
  EntropyProxy e = entropy_proxy(zeros.data(), zeros.size());
  EXPECT_EQ(e.n_chunks, 3u);
  EXPECT_EQ(e.mean_bits, 0.0);
  // Even offsets 0, odd offsets alternate 1,2 -> H_even 0, H_odd 1 -> chunk 0.5 bits.
  std::vector<uint8_t> v(32768);
  for (size_t i = 0; i < v.size(); ++i) v[i] = (i & 1) ? uint8_t(1 + ((i >> 1) & 1)) : 0;
  e = entropy_proxy(v.data(), v.size());
  EXPECT_EQ(e.n_chunks, 1u);
  EXPECT_NEAR(e.mean_bits, 0.5, 1e-15);
  EXPECT_EQ(entropy_proxy(nullptr, 0).n_chunks, 0u);
}

// Every ISA must give identical bytes and statistics on hostile data (ties, NaN-free extremes, zeros).
TEST(Kernels, AllIsasGiveIdenticalBytes) {
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const size_t cols = 256, rows = 64;
  std::vector<float> w(rows * cols), S(rows * cols / 16);
  const float ties[] = {0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f, -0.25f, -0.0f, 0.0f, 1e-38f, -1e-38f};
  for (size_t i = 0; i < w.size(); ++i) w[i] = (i % 7 == 0) ? ties[i % 12] : nd(rng) * 3.0f;
  for (size_t i = 0; i < S.size(); ++i) S[i] = (i % 11 == 0) ? 1.0f : std::fabs(nd(rng)) + 0.01f;
  S[3] = 0.0f;  // zero scale: inf/NaN quotients
  Isa best = detect_isa();
  for (bool cz : {false, true}) {
    std::vector<uint8_t> ref(rows * cols / 2);
    RowStats ref_st;
    for (size_t r = 0; r < rows; ++r)
      kNvKernelsScalar.quantize_row(&w[r * cols], cols, &S[r * cols / 16], cz, &ref[r * cols / 2], &ref_st);
    RowStats ref_cs;
    for (size_t r = 0; r < rows; ++r) kNvKernelsScalar.code_stats(&ref[r * cols / 2], cols, &S[r * cols / 16], &w[r * cols], &ref_cs);
    for (Isa isa : {Isa::kAvx2, Isa::kAvx512}) {
      if (int(isa) > int(best)) continue;
      const NvKernels& k = nv_kernels(isa);
      std::vector<uint8_t> out(rows * cols / 2);
      RowStats st, cs;
      for (size_t r = 0; r < rows; ++r) k.quantize_row(&w[r * cols], cols, &S[r * cols / 16], cz, &out[r * cols / 2], &st);
      for (size_t r = 0; r < rows; ++r) k.code_stats(&out[r * cols / 2], cols, &S[r * cols / 16], &w[r * cols], &cs);
      EXPECT_EQ(out, ref) << isa_name(isa);
      EXPECT_EQ(bits(float(st.sq_err)), bits(float(ref_st.sq_err))) << isa_name(isa);
      EXPECT_EQ(st.sq_err, ref_st.sq_err);
      EXPECT_EQ(st.zeros, ref_st.zeros);
      EXPECT_EQ(st.small, ref_st.small);
      EXPECT_EQ(cs.sq_err, ref_cs.sq_err);
      EXPECT_EQ(cs.zeros, ref_cs.zeros);
    }
  }
  // The scalar kernel itself follows the codec: spot-check against e2m1_encode.
  std::vector<uint8_t> one(cols / 2);
  kNvKernelsScalar.quantize_row(w.data(), cols, S.data(), false, one.data(), nullptr);
  for (size_t c = 0; c < cols; ++c) EXPECT_EQ((one[c / 2] >> ((c & 1) * 4)) & 0xF, e2m1_encode(w[c] / S[c / 16])) << c;
  FP4Z_SKIP_MISSING_ISA_LEVELS(CpuFeature::kAvx512);
}

TEST(Kernels, AbsmaxBlockScalesIdenticalAcrossIsas) {
  std::mt19937 rng(11);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const size_t cols = 16 * 37;  // not a multiple of 256: exercises the partial group of blocks
  std::vector<float> w(cols);
  for (size_t i = 0; i < cols; ++i) w[i] = nd(rng) * std::exp(nd(rng) * 4.0f);  // huge dynamic range
  for (int j = 0; j < 16; ++j) w[16 * 5 + j] = 0.0f;                              // all-zero block -> 0x20
  for (int j = 0; j < 16; ++j) w[16 * 6 + j] = 1e-30f;                            // underflowing scale
  for (float gs : {1.0f, 896.0f, 3.5e4f, 2.7e6f}) {
    for (SourceRounding rnd : {SourceRounding::kF32, SourceRounding::kBF16, SourceRounding::kF16}) {
      std::vector<uint8_t> ref(cols / 16), out(cols / 16);
      std::vector<float> Sref(cols / 16), S(cols / 16);
      absmax_scales_row_portable(w.data(), cols, gs, rnd, ref.data(), Sref.data());
      for (size_t b = 0; b < cols / 16; ++b) {
        float amax = 0;
        for (int j = 0; j < 16; ++j) amax = std::max(amax, std::fabs(w[16 * b + j]));
        ASSERT_EQ(ref[b], absmax_block_scale(amax, gs, rnd));
      }
      EXPECT_EQ(ref[5], 0x20);
      for (Isa isa : {Isa::kAvx2, Isa::kAvx512}) {
        if (int(isa) > int(detect_isa())) continue;
        nv_kernels(isa).absmax_scales_row(w.data(), cols, gs, rnd, out.data(), S.data());
        EXPECT_EQ(out, ref) << isa_name(isa) << " gs=" << gs;
        for (size_t b = 0; b < S.size(); ++b) EXPECT_EQ(bits(S[b]), bits(Sref[b])) << b;
      }
    }
  }
  FP4Z_SKIP_MISSING_ISA_LEVELS(CpuFeature::kAvx512);
}

TEST(Kernels, SeedBlockScalesIdenticalAcrossIsas) {
  // Desired scales spanning subnormal E4M3 results, ties and the clamp; S0 includes zeros.
  std::vector<float> D, S0;
  for (int b = 0; b < 256; ++b) {
    float v = e4m3_decode(uint8_t(b & 0x7F));
    if (std::isnan(v)) v = 500.0f;
    D.push_back(v / 224.0f);
    D.push_back(std::nextafter(v, 1e9f) / 224.0f);
  }
  for (size_t i = 0; i < D.size(); ++i) S0.push_back(i % 9 == 0 ? 0.0f : D[i] / 2.0f);
  const size_t n = D.size() - 3;  // partial final vector
  for (float g1 : {224.0f, 1.0f, 4893.53857421875f, 1e-3f}) {
    std::vector<uint8_t> r8(n), o8(n);
    std::vector<float> rs(n), rr(n), os(n), orr(n);
    seed_scales_portable(D.data(), S0.data(), n, g1, r8.data(), rs.data(), rr.data());
    for (size_t i = 0; i < n; ++i) ASSERT_EQ(r8[i], seed_block_scale(D[i], g1));
    for (Isa isa : {Isa::kAvx2, Isa::kAvx512}) {
      if (int(isa) > int(detect_isa())) continue;
      nv_kernels(isa).seed_scales(D.data(), S0.data(), n, g1, o8.data(), os.data(), orr.data());
      EXPECT_EQ(o8, r8) << isa_name(isa) << " g1=" << g1;
      for (size_t i = 0; i < n; ++i) {
        EXPECT_EQ(bits(os[i]), bits(rs[i])) << i;
        EXPECT_EQ(bits(orr[i]), bits(rr[i])) << i;
      }
    }
  }
  FP4Z_SKIP_MISSING_ISA_LEVELS(CpuFeature::kAvx512);
}

// The division-free quantizer's cut-offs give the division's code for every BF16 weight (all 65536
// patterns: NaN, inf, subnormals, both zeros) and many f32 ones, for divisors from 0 through the
// E4M3 range, subnormal divisors, huge, infinite and NaN divisors.
TEST(Kernels, CutoffsReproduceTheDivisionForEveryBf16Weight) {
  std::vector<float> divisors = {0.0f, 1e-45f, 1e-40f, 1.17e-38f, 1e-30f, 1e-3f, 0.0123f, 1.0f / 3.0f, 1.0f, 6.0f,
                                 448.0f, 1e20f, 3.4e38f, INFINITY, NAN};
  for (float g1 : {224.0f, 4893.53857421875f, 1e-3f, 1e30f})
    for (int c = 0; c < 0x7F; c += 3) divisors.push_back(e4m3_decode(uint8_t(c)) / g1);
  std::mt19937 rng(3);
  std::vector<uint32_t> patterns;
  for (uint32_t h = 0; h < 65536; ++h) patterns.push_back(h << 16);
  for (int i = 0; i < 20000; ++i) patterns.push_back(rng());
  for (float S : divisors) {
    float cut[8];
    e2m1_cutoffs(S, cut);
    for (uint32_t p : patterns) {
      float w;
      std::memcpy(&w, &p, 4);
      const float x = w / S, a = std::fabs(w);
      int idx = 0;
      for (int k = 1; k < 8; ++k) idx += a >= cut[k];
      const bool neg = (p >> 31) && a >= cut[0];
      ASSERT_EQ(idx, e2m1_magnitude_index(std::fabs(x))) << "S=" << S << " w=" << w;
      ASSERT_EQ(neg, x < 0.0f) << "S=" << S << " w=" << w;
    }
  }
}

// seed_row: every ISA gives the scalar path's bytes and error sums (the scalar path is quantize_row and
// code_stats of the scalar table), on BF16 rows holding every bit pattern and on f32 rows.
TEST(Kernels, SeedRowIdenticalAcrossIsas) {
  std::mt19937 rng(5);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  // BF16 rows: the first 65536 weights are every bit pattern once (so those rows mostly sum to NaN),
  // the rest finite normal weights whose error sums are compared bit for bit.
  const size_t cols = 16 * 37, rows = 2 * (65536 / cols + 1);
  std::vector<uint16_t> wb(rows * cols);
  std::vector<float> wf(rows * cols);
  for (size_t i = 0; i < wb.size(); ++i) wb[i] = i < 65536 ? uint16_t(i * 40503u) : f32_to_bf16_rne(nd(rng) * 0.02f);
  std::vector<uint8_t> tscale(rows * cols / 16), tpacked(rows * cols / 2);
  for (auto& c : tscale) c = uint8_t(rng() % 0x7F);
  for (auto& c : tpacked) c = uint8_t(rng());
  for (float g1 : {224.0f, 4893.53857421875f, 1e-3f, 1e30f}) {
    float S0_of[256], D_of[256];
    for (int c = 0; c < 256; ++c) {
      S0_of[c] = e4m3_decode(uint8_t(c)) / 1234.5f;
      D_of[c] = S0_of[c] * 2.0f;
    }
    auto tab = std::make_unique<SeedCodeTables>();
    fill_seed_code_tables(S0_of, D_of, nullptr, g1, *tab);
    // f32 rows: threshold multiples of the block's scale (ties after the division) among normal weights.
    const float ties[] = {0.25f, -0.75f, 1.25f, -1.75f, 2.5f, 3.5f, -5.0f, 0.0f, -0.0f};
    for (size_t i = 0; i < wf.size(); ++i)
      wf[i] = (i % 5 == 0) ? ties[(i / 5) % 9] * tab->S1[tscale[i / 16]] : nd(rng) * 0.02f;
    for (bool cz : {false, true})
      for (bool bf16 : {true, false}) {
        auto run = [&](const NvKernels& k, std::vector<uint8_t>& out, std::vector<double>& sq) {
          out.assign(rows * cols / 2, 0);
          sq.assign(2 * rows, 0);
          for (size_t r = 0; r < rows; ++r) {
            const void* w = bf16 ? static_cast<const void*>(&wb[r * cols]) : static_cast<const void*>(&wf[r * cols]);
            k.seed_row(w, bf16, cols, &tscale[r * cols / 16], &tpacked[r * cols / 2], *tab, cz, &out[r * cols / 2],
                       &sq[2 * r], &sq[2 * r + 1]);
          }
        };
        std::vector<uint8_t> ref, out;
        std::vector<double> ref_sq, sq;
        run(kNvKernelsScalar, ref, ref_sq);
        for (Isa isa : {Isa::kAvx2, Isa::kAvx512}) {
          if (int(isa) > int(detect_isa())) continue;
          run(nv_kernels(isa), out, sq);
          EXPECT_EQ(out, ref) << isa_name(isa) << " g1=" << g1 << " bf16=" << bf16 << " cz=" << cz;
          // Rows holding NaN/inf weights sum to NaN (its payload is not specified); all others bit for bit.
          size_t nan_rows = 0;
          for (size_t i = 0; i < sq.size(); ++i) {
            if (std::isnan(ref_sq[i]) && std::isnan(sq[i])) {
              ++nan_rows;
              continue;
            }
            ASSERT_EQ(0, std::memcmp(&sq[i], &ref_sq[i], sizeof(double))) << isa_name(isa) << " g1=" << g1 << " row " << i / 2;
          }
          EXPECT_LE(nan_rows, 2 * (65536 / cols + 1));  // only the rows with the special patterns
        }
      }
  }
  FP4Z_SKIP_MISSING_ISA_LEVELS(CpuFeature::kAvx512);
}
