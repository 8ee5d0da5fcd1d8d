// rd block kernels: the scalar, AVX2 and AVX-512 paths make identical decisions (bytes, codes, squared
// error) on many random and edge-case blocks, λ values, tables and global scales; the single-block API agrees.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <initializer_list>
#include <random>
#include <vector>

#include "common/cpu.h"
#include "nvfp4/codec.h"
#include "nvfp4/rd.h"
#include "nvfp4/rd_internal.h"
#include "test_util.h"

using namespace fp4z;

namespace {

constexpr float kGrid[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};

// Random cost tables: skewed, with empty bins (so that some codes/bytes are expensive).
RdCostTables random_tables(std::mt19937& rng) {
  Nvfp4Histogram h;
  std::uniform_int_distribution<int> coin(0, 3);
  std::exponential_distribution<double> ex(1e-3);
  for (int i = 0; i < 16; ++i) h.code[i] = i == 8 || coin(rng) == 0 ? 0 : uint64_t(ex(rng));
  for (int b = 0; b < 256; ++b) h.scale[b] = coin(rng) == 0 ? 0 : uint64_t(ex(rng));
  return rd_costs_from_histogram(h);
}

// One block of a kind chosen by `kind`: heavy-tailed, all zero, a single weight, huge, tiny,
// subnormal, constant, exact grid points of a scale, grid midpoints (ties), signed zeros.
void make_block(int kind, std::mt19937& rng, float* w) {
  std::student_t_distribution<float> t(4.0f);
  std::uniform_int_distribution<int> pick(0, 7), lane(0, 15);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  const float S = std::ldexp(1.0f + float(pick(rng)) / 8.0f, pick(rng) - 10);
  for (int j = 0; j < 16; ++j) {
    const float sign = u(rng) < 0 ? -1.0f : 1.0f;
    switch (kind) {
      case 0: w[j] = 0.02f * t(rng); break;
      case 1: w[j] = 0.0f; break;
      case 2: w[j] = j == 3 ? 0.01f * sign : 0.0f; break;
      case 3: w[j] = 1e30f * t(rng); break;
      case 4: w[j] = 1e-30f * t(rng); break;
      case 5: w[j] = 1e-41f * float(pick(rng)) * sign; break;
      case 6: w[j] = 0.0375f; break;
      case 7: w[j] = sign * kGrid[pick(rng)] * S; break;
      case 8: {
        const int m = std::min(pick(rng), 6);
        w[j] = sign * (kGrid[m] + kGrid[m + 1]) / 2 * S;
        break;
      }
      default: w[j] = lane(rng) < 8 ? -0.0f : 0.003f * u(rng); break;
    }
  }
}

}  // namespace

// Every vector kernel against the scalar twin.
static void expect_kernel_matches_scalar(RdBlocksKernel kernel) {
  std::mt19937 rng(2026);
  const float lambdas[] = {0.0f, 1e-12f, 1e-9f, 1e-7f, 3e-6f, 1e-4f, 1.0f, 1e6f};
  // Global scales: the job's usual one for amax ≈ 0.1, ones giving subnormal FP8 block scales, tiny
  // and huge ones (unusable candidates, saturation at 448), and 1.
  const float scales_g[] = {2688.0f / 0.4f, 0.5f, 1.0f, 1e-3f, 1e-30f, 1e30f, 3.0f};
  constexpr size_t kBlocks = 400;
  std::vector<float> w(kBlocks * 16), wt(kBlocks * 16);
  std::vector<uint8_t> codes_s(kBlocks * 16), codes_v(kBlocks * 16), bytes_s(kBlocks), bytes_v(kBlocks);
  size_t compared = 0;
  for (int round = 0; round < 6; ++round) {
    RdCostTables tables = random_tables(rng);
    for (size_t b = 0; b < kBlocks; ++b) make_block(int(b % 10), rng, w.data() + 16 * b);
    std::uniform_real_distribution<float> uw(0.0f, 3.0f);
    for (auto& x : wt) x = uw(rng) + 1e-6f;
    for (int z = 0; z < 16; ++z) wt[size_t(z)] = 1e-38f;  // a tiny distortion weight (wt > 0 is required)
    for (float gs : scales_g)
      for (float lam : lambdas)
        for (bool weighted : {false, true}) {
          RdBlockParams p;
          p.gs = gs;
          p.lambda = lam;
          p.costs = &tables;
          p.below = round % 2 ? 3 : 6;
          p.above = round % 3 ? 12 : 20;
          const RdPrepared t = rd_prepare(p);
          double sq_s = 0, sq_v = 0;
          const float* wtp = weighted ? wt.data() : nullptr;
          rd_choose_blocks_scalar(t, w.data(), wtp, kBlocks, codes_s.data(), bytes_s.data(), &sq_s);
          kernel(t, w.data(), wtp, kBlocks, codes_v.data(), bytes_v.data(), &sq_v);
          for (size_t b = 0; b < kBlocks; ++b) {
            ASSERT_EQ(bytes_s[b], bytes_v[b]) << "block " << b << " kind " << b % 10 << " gs " << gs << " lambda " << lam;
            for (int j = 0; j < 16; ++j) {
              ASSERT_EQ(codes_s[16 * b + size_t(j)], codes_v[16 * b + size_t(j)]) << "block " << b << " lane " << j;
              ASSERT_NE(codes_s[16 * b + size_t(j)], 8) << "negative zero chosen";
            }
            // The single-block API (scalar: candidate values computed per call; dispatched: the
            // per-thread prepared tables) decides the same.
            for (auto fn : {rd_choose_block_scalar, rd_choose_block}) {
              uint8_t one[16];
              float S1;
              ASSERT_EQ(fn(w.data() + 16 * b, wtp ? wtp + 16 * b : nullptr, p, one, &S1), bytes_s[b]);
              ASSERT_EQ(0, std::memcmp(one, codes_s.data() + 16 * b, 16));
              ASSERT_EQ(S1, e4m3_decode(bytes_s[b]) / gs);
            }
          }
          ASSERT_EQ(0, std::memcmp(&sq_s, &sq_v, sizeof sq_s)) << sq_s << " vs " << sq_v;
          compared += kBlocks;
        }
  }
  EXPECT_GT(compared, size_t(50000));
}

TEST(RdKernels, ScalarAndAvx512MakeIdenticalDecisions) {
  FP4Z_SKIP_MISSING_ISA_LEVELS(CpuFeature::kAvx512);
  expect_kernel_matches_scalar(rd_choose_blocks_avx512);
}

TEST(RdKernels, ScalarAndAvx2MakeIdenticalDecisions) {
  FP4Z_SKIP_MISSING_ISA_LEVELS(CpuFeature::kAvx2);
  expect_kernel_matches_scalar(rd_choose_blocks_avx2);
}

namespace {

// For the pruning tests: every byte b of rd_prepare's tables over random cost tables, λ from 0 to huge
// and three global scales, with `skip(t, b)` saying whether the byte is one the kernels prune; for those,
// `check(t, b, x, λ)` runs on x at each a-boundary of `bounds` (nextafter steps around bound·S) and on
// random points with a = x·R in [0, 48). Expects both kinds of bytes to occur.
template <typename Skip, typename Check>
void for_each_pruned_byte(uint32_t seed, std::initializer_list<float> bounds, Skip skip, Check check) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  size_t pruned = 0, kept = 0;
  for (int round = 0; round < 4; ++round) {
    RdCostTables tables = random_tables(rng);
    for (float lam : {0.0f, 1e-9f, 1e-7f, 3e-6f, 1e-4f, 1e6f})
      for (float gs : {2688.0f / 0.4f, 1.0f, 1e-3f}) {
        RdBlockParams p;
        p.gs = gs;
        p.lambda = lam;
        p.costs = &tables;
        const RdPrepared t = rd_prepare(p);
        for (int b = 1; b <= 0x7E; ++b) {
          if (!t.usable[b]) continue;
          if (skip(t, b)) {
            ++kept;
            continue;
          }
          ++pruned;
          for (float bound : bounds) {
            float x = bound * t.S[b];
            for (int k = 0; k < 8; ++k) x = std::nextafter(x, 0.0f);
            for (int k = 0; k < 16; ++k, x = std::nextafter(x, INFINITY)) check(t, b, x, lam);
          }
          for (int k = 0; k < 64; ++k) check(t, b, t.S[b] * 48.0f * u(rng) * u(rng), lam);
          if (::testing::Test::HasFatalFailure()) return;
        }
      }
  }
  EXPECT_GT(pruned, size_t(100));
  EXPECT_GT(kept, size_t(100));
}

// lo (the number of nonzero magnitudes <= a) and the f32 cost of magnitude m, sign `neg` (rd.h's rule).
int lo_of(float a) {
  int lo = 0;
  for (int m = 1; m < 8; ++m)
    if (a >= kGrid[m]) lo = m;
  return lo;
}
float code_cost(const RdPrepared& t, int b, float x, int m, bool neg) {
  const float e = x - kGrid[m] * t.S[b];
  return e * e + t.L[m == 0 ? 0 : (m | (neg ? 8 : 0))];
}

}  // namespace

// The bound that lets the AVX2 kernel skip the lo − 1 candidate: wherever rd_prepare says a byte does
// not need it, lo − 1 never costs strictly less than lo (f32 rule of rd.h, weight 1) for any x with
// a = fl(x·R) in [0.5, kPruneMaxA). It prunes at small λ and keeps the candidate at huge λ.
TEST(RdKernels, SkippedLowerCandidateNeverWins) {
  size_t checked = 0;
  for_each_pruned_byte(
      11, {0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f, 47.9f}, [](const RdPrepared& t, int b) { return t.need_below[b] != 0; },
      [&](const RdPrepared& t, int b, float x, float lam) {
        const float a = x * t.R[b];
        if (!(a >= 0.5f && a < rd_detail::kPruneMaxA)) return;
        const int lo = lo_of(a);
        for (bool neg : {false, true})
          ASSERT_GE(code_cost(t, b, x, lo - 1, neg), code_cost(t, b, x, lo, neg)) << "b " << b << " x " << x << " λ " << lam;
        ++checked;
      });
  EXPECT_GT(checked, size_t(100000));
}

// The AVX-512 kernel's pair tables: for every byte without need3 and every x with a = fl(x·R) < 48, the
// lower of the two kept candidates' costs (looked up by the lo index and sign) is the lowest of all three
// (f32 rule, weight 1).
TEST(RdKernels, PairTablesKeepTheLowestCost) {
  size_t checked = 0;
  for_each_pruned_byte(
      12, {0.0f, 0.5f, 0.75f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f, 8.0f, 12.0f, 16.0f, 24.0f, 32.0f, 47.9f},
      [](const RdPrepared& t, int b) { return t.need3[b] != 0; },
      [&](const RdPrepared& t, int b, float x, float lam) {
        const float a = x * t.R[b];
        if (!(a >= 0.0f && a < rd_detail::kPruneMaxA)) return;
        const int lo = lo_of(a);
        uint32_t bits;
        std::memcpy(&bits, &a, 4);
        const int wq = std::clamp(int(bits >> 22) - 251, 0, 15);
        for (bool neg : {false, true}) {
          float lowest = INFINITY;
          for (int m : {std::max(lo - 1, 0), lo, std::min(lo + 1, 7)}) lowest = std::min(lowest, code_cost(t, b, x, m, neg));
          const int i = wq | (neg ? 16 : 0);
          auto pair_cost = [&](int k) {
            const float e = x - t.pairM[b][k][i];
            return e * e + t.pairL[b][k][i];
          };
          ASSERT_EQ(std::min(pair_cost(0), pair_cost(1)), lowest) << "b " << b << " x " << x << " λ " << lam << " index " << i;
        }
        ++checked;
      });
  EXPECT_GT(checked, size_t(100000));
}

// Not a twin comparison: at λ = 0 with wt = 1 the chosen block's squared error is no worse than the
// absmax byte's (which is always a candidate), and rd_choose_code picks a nearest grid point.
TEST(RdKernels, ZeroLambdaIsNoWorseThanAbsmaxAndCodesAreNearest) {
  std::mt19937 rng(5);
  std::student_t_distribution<float> t(4.0f);
  RdCostTables tables = random_tables(rng);
  RdBlockParams p;
  p.gs = 2688.0f / 0.4f;
  p.lambda = 0;
  p.costs = &tables;
  const RdPrepared prep = rd_prepare(p);
  for (int b = 0; b < 2000; ++b) {
    float w[16];
    for (float& x : w) x = 0.02f * t(rng);
    uint8_t codes[16], byte;
    double sq = 0;
    rd_choose_blocks(prep, w, nullptr, 1, codes, &byte, &sq);
    float amax = 0;
    for (float x : w) amax = std::max(amax, std::fabs(x));
    const uint8_t b0 = std::max<uint8_t>(1, e4m3_encode_rne(amax / 6.0f * p.gs));
    const float S0 = e4m3_decode(b0) / p.gs;
    double sq0 = 0;
    for (float x : w) {
      double best = INFINITY;
      for (float g : kGrid) best = std::min(best, std::fabs(double(std::fabs(x)) - double(g * S0)));
      sq0 += best * best;
    }
    EXPECT_LE(sq, sq0 * (1 + 1e-5) + 1e-30) << "block " << b;
    const float S = e4m3_decode(byte) / p.gs;
    for (int j = 0; j < 16; ++j) {
      const double err = std::fabs(double(w[j]) - double(kE2M1Value[codes[j]] * S));
      for (float g : kGrid) EXPECT_LE(err, std::fabs(double(std::fabs(w[j])) - double(g * S)) * (1 + 1e-6) + 1e-30);
      EXPECT_EQ(rd_choose_code(w[j], S, 1.0f, 0.0f, tables.code), codes[j]);
    }
  }
}
