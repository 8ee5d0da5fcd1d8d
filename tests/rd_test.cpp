// --method rd: block/code decisions and GPTQ feedback against the numpy oracle (tests/py/oracle_rd.py),
// the inverse-Hessian factor against numpy, the ideal bits/weight, bad input, check and container round trip.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <vector>

#include "common/cpu.h"
#include "nvfp4/codec.h"
#include "nvfp4/rd.h"
#include "pipeline/rd_layer.h"
#include "pipeline/rd_refine_pick.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace fp4z;
using namespace fp4z::testing;

namespace {

template <class T>
void write_raw(const std::string& path, const std::vector<T>& v) {
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(v.data()), std::streamsize(v.size() * sizeof(T)));
}
template <class T>
std::vector<T> read_raw(const std::string& path, size_t n) {
  std::vector<T> v(n);
  std::ifstream(path, std::ios::binary).read(reinterpret_cast<char*>(v.data()), std::streamsize(n * sizeof(T)));
  return v;
}

// Random weights with a heavy tail, some all-zero blocks and a few tiny blocks.
std::vector<float> test_weights(int64_t N, int64_t K, uint32_t seed) {
  std::mt19937 rng(seed);
  std::student_t_distribution<float> t(4.0f);
  std::vector<float> w(size_t(N * K));
  for (auto& x : w) x = 0.02f * t(rng);
  for (int64_t k = 0; k < 16; ++k) w[size_t(K + k)] = 0.0f;            // row 1, block 0: all zero
  for (int64_t k = 16; k < 32; ++k) w[size_t(2 * K + k)] *= 1e-4f;     // row 2, block 1: tiny
  return w;
}

// Cost tables from a skewed histogram (so that rate matters in the decisions).
RdCostTables test_tables() {
  Nvfp4Histogram h;
  const uint64_t codes[16] = {900, 800, 700, 300, 400, 200, 90, 20, 0, 790, 690, 310, 380, 210, 80, 25};
  for (int i = 0; i < 16; ++i) h.code[i] = codes[i];
  for (int b = 0; b < 256; ++b) h.scale[b] = b > 40 && b < 110 ? uint64_t(200 + 30 * ((b * 7) % 11)) : 0;
  return rd_costs_from_histogram(h);
}

struct OracleRun {
  TempDir dir{"fp4z-rd-oracle"};
  std::vector<uint8_t> scales, codes;
  int code = -1;
  std::string err;
};

void run_oracle(OracleRun& run, const std::vector<float>& W, int64_t N, int64_t K, const RdBlockParams& p, const std::vector<double>* H,
                double damp, const std::vector<float>* U) {
  write_raw(run.dir / "W.f32", W);
  write_raw(run.dir / "costs_code.f32", std::vector<float>(p.costs->code, p.costs->code + 16));
  write_raw(run.dir / "costs_scale.f32", std::vector<float>(p.costs->scale, p.costs->scale + 256));
  if (H) {
    write_raw(run.dir / "H.f64", *H);
    write_raw(run.dir / "U.f32", *U);
  }
  char params[512];
  std::snprintf(params, sizeof params, R"({"N": %lld, "K": %lld, "gs": %.9g, "lambda": %.9g, "below": %d, "above": %d, "gptq": %s, "damp": %.9g})",
                (long long)N, (long long)K, double(p.gs), double(p.lambda), p.below, p.above, H ? "true" : "false", damp);
  write_text(run.dir / "params.json", params);
  auto r = run_command(kPython + " " + kSourceDir + "/tests/py/oracle_rd.py " + run.dir.path);
  run.code = r.code;
  run.err = r.err;
  run.scales = read_raw<uint8_t>(run.dir / "oracle_scales.u8", size_t(N * K / 16));
  run.codes = read_raw<uint8_t>(run.dir / "oracle_codes.u8", size_t(N * K));
}

template <class Bytes>  // std::vector<uint8_t> or ByteBuffer
std::vector<uint8_t> unpack_all(const Bytes& packed, size_t n) {
  std::vector<uint8_t> c(n);
  unpack_nibbles(packed.data(), n, c.data());
  return c;
}

}  // namespace

TEST(RdDecisions, PlainBlocksMatchNumpyOracle) {
  const int64_t N = 12, K = 64;
  auto W = test_weights(N, K, 7);
  RdCostTables tables = test_tables();
  for (float lam : {0.0f, 2e-7f, 2e-6f}) {
    RdBlockParams p;
    p.gs = 2688.0f / (0.15f * 4.0f);
    p.lambda = lam;
    p.costs = &tables;
    std::vector<uint8_t> packed(size_t(N * K / 2)), scales(size_t(N * K / 16));
    rd_quantize_pass(W.data(), N, K, nullptr, p, packed.data(), scales.data(), 2);
    OracleRun o;
    run_oracle(o, W, N, K, p, nullptr, 0, nullptr);
    ASSERT_EQ(o.code, 0) << o.err;
    EXPECT_EQ(scales, o.scales) << "lambda " << lam;
    EXPECT_EQ(unpack_all(packed, size_t(N * K)), o.codes) << "lambda " << lam;
    for (uint8_t c : unpack_all(packed, size_t(N * K))) ASSERT_NE(c, 8) << "negative zero written";
  }
}

TEST(RdDecisions, GptqFeedbackMatchesNumpyOracle) {
  const int64_t N = 10, K = 48, T = 200;
  auto W = test_weights(N, K, 11);
  // H = mean x xᵀ of correlated inputs, with one dead column.
  std::mt19937 rng(3);
  std::normal_distribution<double> nd;
  std::vector<double> X(size_t(T * K)), H(size_t(K * K), 0.0);
  for (int64_t t = 0; t < T; ++t) {
    double common = nd(rng);
    for (int64_t k = 0; k < K; ++k) X[size_t(t * K + k)] = k == 5 ? 0.0 : nd(rng) + 0.7 * common;
  }
  for (int64_t i = 0; i < K; ++i)
    for (int64_t j = 0; j < K; ++j) {
      double s = 0;
      for (int64_t t = 0; t < T; ++t) s += X[size_t(t * K + i)] * X[size_t(t * K + j)];
      H[size_t(i * K + j)] = s / double(T);
    }
  std::vector<float> U;
  rd_inverse_cholesky_upper(H, K, 0.01, U);
  RdCostTables tables = test_tables();
  RdBlockParams p;
  p.gs = 2688.0f / (0.15f * 4.0f);
  p.lambda = 1e-6f;
  p.costs = &tables;
  std::vector<uint8_t> packed(size_t(N * K / 2)), scales(size_t(N * K / 16));
  rd_quantize_pass(W.data(), N, K, U.data(), p, packed.data(), scales.data(), 2);
  OracleRun o;
  run_oracle(o, W, N, K, p, &H, 0.01, &U);
  ASSERT_EQ(o.code, 0) << o.err;
  EXPECT_EQ(scales, o.scales);
  EXPECT_EQ(unpack_all(packed, size_t(N * K)), o.codes);
  // The factor itself agrees with numpy's Cholesky of the damped inverse.
  auto Un = read_raw<float>(o.dir / "oracle_U.f32", size_t(K * K));
  double max_rel = 0, scale = 0;
  for (float u : Un) scale = std::max(scale, double(std::fabs(u)));
  for (size_t i = 0; i < Un.size(); ++i) max_rel = std::max(max_rel, std::fabs(double(Un[i]) - double(U[i])) / scale);
  EXPECT_LT(max_rel, 1e-5);
  // Feedback lowers the H-weighted error against the no-feedback decisions at the same λ.
  RdLayerResult fb = rd_quantize_layer(W.data(), N, K, &H, p.gs, 0.0, 0.01, 2, &tables);
  RdLayerResult plain = rd_quantize_layer(W.data(), N, K, nullptr, p.gs, 0.0, 0.01, 2, &tables);
  double plain_h = 0;
  {
    std::vector<uint8_t> c = unpack_all(plain.packed, size_t(N * K));
    for (int64_t r = 0; r < N; ++r) {
      std::vector<double> dw(static_cast<size_t>(K));
      for (int64_t k = 0; k < K; ++k) dw[size_t(k)] = double(rd_dequant(c[size_t(r * K + k)], plain.scales[size_t(r * K / 16 + k / 16)], p.gs)) - W[size_t(r * K + k)];
      for (int64_t i = 0; i < K; ++i)
        for (int64_t j = 0; j < K; ++j) plain_h += dw[size_t(i)] * H[size_t(i * K + j)] * dw[size_t(j)];
    }
  }
  EXPECT_LT(fb.h_error, plain_h);
}

// Input correction and code refinement (the calibrated defaults) against tests/py/oracle_rd_refine.py,
// plus the property the refinement exists for: it never raises Δwᵀ H_d Δw + λ·R and ends at a point no
// single-code change improves.
TEST(RdRefine, InputCorrectionAndCodeRefinementMatchNumpyOracle) {
  const int64_t N = 6, K = 48, T = 300;
  auto W = test_weights(N, K, 23);
  std::mt19937 rng(5);
  std::normal_distribution<double> nd;
  // x̃ = x + noise (the quantized model's inputs), x correlated; column 7 dead in x̃.
  std::vector<double> X(size_t(T * K)), Xq(size_t(T * K));
  for (int64_t t = 0; t < T; ++t) {
    double common = nd(rng);
    for (int64_t k = 0; k < K; ++k) {
      X[size_t(t * K + k)] = nd(rng) + 0.6 * common;
      Xq[size_t(t * K + k)] = k == 7 ? 0.0 : X[size_t(t * K + k)] + 0.3 * nd(rng);
    }
  }
  std::vector<double> H(size_t(K * K), 0.0), C(size_t(K * K), 0.0);
  for (int64_t i = 0; i < K; ++i)
    for (int64_t j = 0; j < K; ++j)
      for (int64_t t = 0; t < T; ++t) {
        H[size_t(i * K + j)] += Xq[size_t(t * K + i)] * Xq[size_t(t * K + j)] / double(T);
        C[size_t(i * K + j)] += X[size_t(t * K + i)] * Xq[size_t(t * K + j)] / double(T);
      }
  const double damp = 0.03;
  std::vector<float> target = rd_input_corrected_weight(W, N, K, C, H, damp, 2);
  // Where x = x̃ the target is the weight itself.
  EXPECT_EQ(rd_input_corrected_weight(W, N, K, H, H, damp, 2), W);

  RdCostTables tables = test_tables();
  RdBlockParams p;
  p.gs = 2688.0f / (0.15f * 4.0f);
  p.lambda = 3e-6f;
  p.costs = &tables;
  std::vector<float> U;
  rd_inverse_cholesky_upper(H, K, damp, U);
  std::vector<uint8_t> packed(size_t(N * K / 2)), scales(size_t(N * K / 16));
  rd_quantize_pass(target.data(), N, K, U.data(), p, packed.data(), scales.data(), 2);
  const std::vector<uint8_t> start = unpack_all(packed, size_t(N * K));
  const int sweeps = 6;
  rd_refine_codes(target.data(), N, K, H, damp, p, packed.data(), scales.data(), sweeps, 2);
  const std::vector<uint8_t> refined = unpack_all(packed, size_t(N * K));

  TempDir dir("fp4z-rd-refine");
  write_raw(dir / "W.f32", W);
  write_raw(dir / "T.f32", target);
  write_raw(dir / "C.f64", C);
  write_raw(dir / "H.f64", H);
  write_raw(dir / "codes.u8", start);
  write_raw(dir / "scales.u8", scales);
  write_raw(dir / "costs_code.f32", std::vector<float>(tables.code, tables.code + 16));
  char params[256];
  std::snprintf(params, sizeof params, R"({"N": %lld, "K": %lld, "gs": %.9g, "lambda": %.9g, "damp": %.9g, "sweeps": %d})", (long long)N,
                (long long)K, double(p.gs), double(p.lambda), damp, sweeps);
  write_text(dir / "params.json", params);
  auto r = run_command(kPython + " " + kSourceDir + "/tests/py/oracle_rd_refine.py " + dir.path);
  ASSERT_EQ(r.code, 0) << r.err;
  auto want_target = read_raw<float>(dir / "oracle_target.f32", size_t(N * K));
  double max_rel = 0, amax = 0;
  for (float v : want_target) amax = std::max(amax, double(std::fabs(v)));
  for (size_t i = 0; i < target.size(); ++i) max_rel = std::max(max_rel, std::fabs(double(target[i]) - double(want_target[i])) / amax);
  EXPECT_LT(max_rel, 1e-5);
  double moved = 0;
  for (size_t i = 0; i < W.size(); ++i) moved = std::max(moved, std::fabs(double(target[i]) - double(W[i])) / amax);
  EXPECT_GT(moved, 1e-3) << "the correction should move the weight when x̃ differs from x";
  EXPECT_EQ(refined, read_raw<uint8_t>(dir / "oracle_refined.u8", size_t(N * K)));
  EXPECT_NE(refined, start) << "the refinement changed nothing: the test does not exercise it";

  // Objective of a code matrix, from scratch (damped H as the refinement uses it).
  std::vector<double> Hd = H;
  double mean = 0;
  for (int64_t j = 0; j < K; ++j) mean += H[size_t(j * K + j)] / double(K);
  for (int64_t j = 0; j < K; ++j) Hd[size_t(j * K + j)] += (H[size_t(j * K + j)] == 0 ? 1.0 : 0.0) + damp * mean;
  auto objective = [&](const std::vector<uint8_t>& c, int64_t row) {
    std::vector<double> dw(static_cast<size_t>(K));
    double rate = 0;
    for (int64_t k = 0; k < K; ++k) {
      dw[size_t(k)] = double(kE2M1Value[c[size_t(row * K + k)]]) * double(e4m3_decode(scales[size_t(row * K / 16 + k / 16)])) / double(p.gs) -
                      double(target[size_t(row * K + k)]);
      rate += tables.code[c[size_t(row * K + k)]];
    }
    double q = 0;
    for (int64_t i = 0; i < K; ++i)
      for (int64_t j = 0; j < K; ++j) q += dw[size_t(i)] * Hd[size_t(i * K + j)] * dw[size_t(j)];
    return q + double(p.lambda) * rate;
  };
  for (int64_t row = 0; row < N; ++row) EXPECT_LE(objective(refined, row), objective(start, row) * (1 + 1e-12)) << "row " << row;
  // Converged (many sweeps): no single code change lowers the objective.
  rd_refine_codes(target.data(), N, K, H, damp, p, packed.data(), scales.data(), 100, 2);
  std::vector<uint8_t> conv = unpack_all(packed, size_t(N * K));
  for (int64_t row = 0; row < N; ++row) {
    const double base = objective(conv, row);
    for (int64_t k = 0; k < K; ++k)
      for (uint8_t c2 = 0; c2 < 16; ++c2) {
        if (c2 == 8) continue;
        std::vector<uint8_t> alt = conv;
        alt[size_t(row * K + k)] = c2;
        ASSERT_GE(objective(alt, row), base - 1e-12 * std::fabs(base)) << "row " << row << " col " << k << " code " << int(c2);
      }
  }
}

// The f32 calibrated path at a size with several Cholesky and feedback blocks (K = 320): the input
// correction's two product orders (W·D first for N <= K, D·Hd⁻¹ first for N > K) agree with a double
// solve, and the layer's h_error (from the refinement's gradient) is Δwᵀ H Δw computed in double.
TEST(RdRefine, CorrectionOrdersAndHErrorAgreeWithDoubleAtSeveralBlocks) {
  const int64_t K = 320, T = 700, N = 400;  // N > K: the D·Hd⁻¹-first order for all rows
  auto W = test_weights(N, K, 31);
  std::mt19937 rng(9);
  std::normal_distribution<double> nd;
  std::vector<double> X(size_t(T * K)), Xq(size_t(T * K));
  for (int64_t t = 0; t < T; ++t) {
    const double common = nd(rng);
    for (int64_t k = 0; k < K; ++k) {
      X[size_t(t * K + k)] = nd(rng) + 0.5 * common;
      Xq[size_t(t * K + k)] = X[size_t(t * K + k)] + 0.2 * nd(rng);
    }
  }
  std::vector<double> H(size_t(K * K), 0.0), C(size_t(K * K), 0.0);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < K; ++i) {
      const double xi = Xq[size_t(t * K + i)], si = X[size_t(t * K + i)];
      for (int64_t j = 0; j < K; ++j) {
        H[size_t(i * K + j)] += xi * Xq[size_t(t * K + j)] / double(T);
        C[size_t(i * K + j)] += si * Xq[size_t(t * K + j)] / double(T);
      }
    }
  const double damp = 0.03;
  const std::vector<float> all = rd_input_corrected_weight(W, N, K, C, H, damp, 2);
  // Rows 0..7 alone take the W·D-first order (N = 8 <= K).
  const std::vector<float> head(W.begin(), W.begin() + 8 * K);
  const std::vector<float> few = rd_input_corrected_weight(head, 8, K, C, H, damp, 2);
  // Double reference: target = W + W (C − H) Hd⁻¹ by Gaussian elimination on Hd (symmetric positive definite).
  std::vector<double> Hd = H;
  double mean = 0;
  for (int64_t j = 0; j < K; ++j) mean += H[size_t(j * K + j)] / double(K);
  for (int64_t j = 0; j < K; ++j) Hd[size_t(j * K + j)] += damp * mean;
  double max_diff = 0, max_move = 0, amax = 0;
  for (float v : W) amax = std::max(amax, double(std::fabs(v)));
  for (int64_t r = 0; r < 8; ++r) {
    std::vector<double> b(static_cast<size_t>(K), 0.0), A = Hd;
    for (int64_t j = 0; j < K; ++j)
      for (int64_t i = 0; i < K; ++i) b[size_t(j)] += double(W[size_t(r * K + i)]) * (C[size_t(i * K + j)] - H[size_t(i * K + j)]);
    for (int64_t c = 0; c < K; ++c)  // solve A y = b (A symmetric: y = b A⁻¹ as a row)
      for (int64_t i = c + 1; i < K; ++i) {
        const double f = A[size_t(i * K + c)] / A[size_t(c * K + c)];
        for (int64_t j = c; j < K; ++j) A[size_t(i * K + j)] -= f * A[size_t(c * K + j)];
        b[size_t(i)] -= f * b[size_t(c)];
      }
    for (int64_t i = K - 1; i >= 0; --i) {
      double v = b[size_t(i)];
      for (int64_t j = i + 1; j < K; ++j) v -= A[size_t(i * K + j)] * b[size_t(j)];
      b[size_t(i)] = v / A[size_t(i * K + i)];
    }
    for (int64_t k = 0; k < K; ++k) {
      const double want = double(W[size_t(r * K + k)]) + b[size_t(k)];
      max_diff = std::max({max_diff, std::fabs(all[size_t(r * K + k)] - want), std::fabs(few[size_t(r * K + k)] - want)});
      max_move = std::max(max_move, std::fabs(want - W[size_t(r * K + k)]));
    }
  }
  EXPECT_GT(max_move / amax, 1e-3) << "the correction should move the weight";
  EXPECT_LT(max_diff / amax, 1e-5) << "f32 correction vs double solve";

  RdCostTables tables = test_tables();
  RdLayerResult res = rd_quantize_layer(all.data(), N, K, &H, 2688.0f / (0.15f * 4.0f), 1e-6, damp, 2, &tables, 2);
  const std::vector<uint8_t> c = unpack_all(res.packed, size_t(N * K));
  double h_err = 0;
  for (int64_t r = 0; r < N; ++r) {
    std::vector<double> dw(static_cast<size_t>(K));
    for (int64_t k = 0; k < K; ++k)
      dw[size_t(k)] = double(rd_dequant(c[size_t(r * K + k)], res.scales[size_t(r * K / 16 + k / 16)], 2688.0f / (0.15f * 4.0f))) -
                      all[size_t(r * K + k)];
    for (int64_t i = 0; i < K; ++i)
      for (int64_t j = 0; j < K; ++j) h_err += dw[size_t(i)] * H[size_t(i * K + j)] * dw[size_t(j)];
  }
  EXPECT_NEAR(res.h_error, h_err, 1e-4 * h_err);
}

// The proxy runs' column weights (Cholesky factor only) are GPTQ's 1/U_jj²: the same as the full
// factor's, and in double the Schur complement Hd_jj − Hd[j, j+1:]·Hd[j+1:, j+1:]⁻¹·Hd[j+1:, j] (the
// output error left after column j's error is fed into the later columns).
TEST(RdRefine, ColumnWeightsAreGptqSchurComplements) {
  const int64_t K = 160, T = 400;
  std::mt19937 rng(5);
  std::normal_distribution<double> nd;
  std::vector<double> H(size_t(K * K), 0.0);
  for (int64_t t = 0; t < T; ++t) {
    std::vector<double> x(static_cast<size_t>(K));
    const double common = nd(rng);
    for (int64_t k = 0; k < K; ++k) x[size_t(k)] = nd(rng) * (1.0 + double(k % 7)) + 0.7 * common;
    for (int64_t i = 0; i < K; ++i)
      for (int64_t j = 0; j < K; ++j) H[size_t(i * K + j)] += x[size_t(i)] * x[size_t(j)] / double(T);
  }
  const double damp = 0.03;
  const std::vector<float> w = rd_column_weights(std::vector<float>(H.begin(), H.end()), K, damp, 2);
  const RdHessian h = rd_prepare_hessian(std::vector<float>(H.begin(), H.end()), K, damp, 2);
  std::vector<double> Hd = H;
  double mean = 0;
  for (int64_t j = 0; j < K; ++j) mean += H[size_t(j * K + j)] / double(K);
  for (int64_t j = 0; j < K; ++j) Hd[size_t(j * K + j)] += damp * mean;
  double worst_factor = 0, worst_schur = 0, spread = 0;
  for (int64_t j = 0; j < K; ++j) {
    const double u = h.U[size_t(j * K + j)];
    worst_factor = std::max(worst_factor, std::fabs(w[size_t(j)] * u * u - 1.0));
    // Solve A y = b, A = Hd[j+1:, j+1:], b = Hd[j+1:, j] (Gaussian elimination in double).
    const int64_t n = K - 1 - j;
    std::vector<double> A(static_cast<size_t>(n * n)), b(static_cast<size_t>(n));
    for (int64_t r = 0; r < n; ++r) {
      b[size_t(r)] = Hd[size_t((j + 1 + r) * K + j)];
      for (int64_t c = 0; c < n; ++c) A[size_t(r * n + c)] = Hd[size_t((j + 1 + r) * K + j + 1 + c)];
    }
    for (int64_t c = 0; c < n; ++c)
      for (int64_t r = c + 1; r < n; ++r) {
        const double f = A[size_t(r * n + c)] / A[size_t(c * n + c)];
        for (int64_t k = c; k < n; ++k) A[size_t(r * n + k)] -= f * A[size_t(c * n + k)];
        b[size_t(r)] -= f * b[size_t(c)];
      }
    double schur = Hd[size_t(j * K + j)];
    std::vector<double> y(static_cast<size_t>(n));
    for (int64_t r = n - 1; r >= 0; --r) {
      double v = b[size_t(r)];
      for (int64_t k = r + 1; k < n; ++k) v -= A[size_t(r * n + k)] * y[size_t(k)];
      y[size_t(r)] = v / A[size_t(r * n + r)];
    }
    for (int64_t r = 0; r < n; ++r) schur -= Hd[size_t(j * K + j + 1 + r)] * y[size_t(r)];
    worst_schur = std::max(worst_schur, std::fabs(w[size_t(j)] / schur - 1.0));
    spread = std::max(spread, Hd[size_t(j * K + j)] / schur);
  }
  EXPECT_LT(worst_factor, 1e-5) << "Cholesky-only weights vs the full factor's 1/U_jj²";
  EXPECT_LT(worst_schur, 1e-4) << "vs the double Schur complements";
  EXPECT_GT(spread, 1.5) << "the inputs should be correlated enough that 1/U_jj² differs from diag(H)";
}

TEST(RdRate, IdealBitsAreCodeEntropyPlusScaleEntropyOverSixteen) {
  Nvfp4Histogram h;
  // codes 0,1 and 8 (counted as 0): 3/4 zeros, 1/4 ones -> H = 0.811278 bits; two scale values equally often -> 1 bit / 16.
  std::vector<uint8_t> packed = {0x10, 0x08, 0x80, 0x00};  // codes 0,1,8,0,0,8,0,0
  h.add_packed(packed.data(), packed.size());
  uint8_t s[2] = {0x30, 0x31};
  h.add_scales(s, 2);
  EXPECT_EQ(h.code[8], 0u);
  EXPECT_EQ(h.code[0], 7u);
  const double p = 7.0 / 8.0, hc = -(p * std::log2(p) + (1 - p) * std::log2(1 - p));
  EXPECT_NEAR(h.ideal_bits_per_weight(), hc + 1.0 * 2.0 / 8.0, 1e-12);  // 2 scales for 8 codes
  // Higher λ buys fewer bits.
  auto W = test_weights(32, 128, 5);
  RdLayerResult r0 = rd_quantize_layer(W.data(), 32, 128, nullptr, 2688.0f / 0.6f, 0.0, 0.01, 2);
  RdLayerResult r1 = rd_quantize_layer(W.data(), 32, 128, nullptr, 2688.0f / 0.6f, 1e-5, 0.01, 2);
  EXPECT_LT(r1.hist.ideal_bits_per_weight(), r0.hist.ideal_bits_per_weight() - 0.2);
  EXPECT_GT(r1.mse, r0.mse);
}

class RdCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    tmp = new TempDir("fp4z-rd-cli");
    src = tmp->path + "/stories";
    auto r = run_command(kFp4z + " import-llama2c " + kFixtures + "/stories260K/stories260K.bin --tokenizer " + kFixtures +
                         "/stories260K/tok512.bin --out " + src + " -q");
    ASSERT_EQ(r.code, 0) << r.err;
    calib = tmp->path + "/calib.txt";
    std::string text = read_text(kFixtures + "/eval/tinystories/tinystories_val.txt");
    write_text(calib, text.substr(0, 60000));
  }
  static void TearDownTestSuite() { delete tmp; }
  static TempDir* tmp;
  static std::string src, calib;

  void expect_bad(const std::string& args, const std::string& out, const std::string& needle) {
    auto r = run_command(kFp4z + " quantize --source " + src + " --out " + out + " --method rd " + args);
    EXPECT_EQ(r.code, 2) << args << "\n" << r.err;
    EXPECT_NE(r.err.find(needle), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "one line: " << r.err;
    EXPECT_FALSE(fs::exists(out)) << args;
    for (const auto& e : fs::directory_iterator(tmp->path))
      EXPECT_EQ(e.path().filename().string().find(".tmp"), std::string::npos) << "left behind: " << e.path();
  }
};
TempDir* RdCli::tmp = nullptr;
std::string RdCli::src, RdCli::calib;

TEST_F(RdCli, BadInputIsOneLineExitTwoNoOutput) {
  const std::string out = tmp->path + "/bad";
  expect_bad("--lambda -1", out, "--lambda");
  expect_bad("--lambda 1e-4 --target-bits 3.5", out, "exactly one");
  expect_bad("", out, "exactly one");
  expect_bad("--target-bits 4.4", out, "unreachable");
  expect_bad("--target-bits 9", out, "unreachable");
  write_text(tmp->path + "/short.txt", "Once upon a time there was a cat.");
  expect_bad("--lambda 1e-7 --calibration " + tmp->path + "/short.txt", out, "tokens");
  expect_bad("--lambda 1e-7 --calibration " + tmp->path + "/missing.txt", out, "missing.txt");
  expect_bad("--lambda 1e-7 --rd-inputs both", out, "--rd-inputs");
  expect_bad("--lambda 1e-7 --rd-stages none", out, "--rd-stages");
  expect_bad("--lambda 1e-7 --rd-refine 101", out, "--rd-refine");
  // A source without a tokenizer cannot be calibrated.
  const std::string notok = tmp->path + "/notok";
  fs::create_directories(notok);
  for (const char* f : {"config.json", "model.safetensors"}) fs::copy_file(src + "/" + f, notok + "/" + f);
  auto r = run_command(kFp4z + " quantize --source " + notok + " --out " + out + " --method rd --lambda 1e-7 --calibration " + calib);
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("tokenizer"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(out));
}

TEST_F(RdCli, CalibratedOutputPassesCheckAndRoundTripsThroughTheContainer) {
  for (const std::string fmt : {"compressed-tensors", "modelopt"}) {
    const std::string out = tmp->path + "/rd-" + fmt;
    auto q = run_command(kFp4z + " quantize --source " + src + " --out " + out + " --method rd --target-bits 3.7 --format " + fmt +
                         " --calibration " + calib + " --calibration-seqs 4 --calibration-ctx 128 --sensitivity-seqs 2 -q");
    ASSERT_EQ(q.code, 0) << q.err;
    auto c = run_command(kFp4z + " check " + out);
    EXPECT_EQ(c.code, 0) << c.out << c.err;
    auto rep = read_text(out + "/fp4z_rd_report.json");
    EXPECT_NE(rep.find("\"h_weighted_error\""), std::string::npos);
    EXPECT_NE(rep.find("\"search\": \"cache\""), std::string::npos) << "a small model searches on the cache";
    // The ideal size fp4z stats reports is what rd aimed at.
    auto st = run_command(kFp4z + " stats " + out + " --no-zstd --json");
    ASSERT_EQ(st.code, 0) << st.err;
    auto pos = st.out.find("\"ideal_order0_bits_per_weight\": ");
    ASSERT_NE(pos, std::string::npos);
    double bits = std::stod(st.out.substr(pos + 32));
    EXPECT_LE(bits, 3.7 + 1e-9);
    EXPECT_GT(bits, 3.5);
    // Lossless container round trip, byte for byte.
    auto z = run_command(kFp4z + " compress " + out + " -o " + out + ".fp4z -q");
    ASSERT_EQ(z.code, 0) << z.err;
    auto d = run_command(kFp4z + " decompress " + out + ".fp4z -o " + out + ".restored -q");
    ASSERT_EQ(d.code, 0) << d.err;
    for (const auto& e : fs::recursive_directory_iterator(out)) {
      if (!e.is_regular_file()) continue;
      std::string rel = fs::relative(e.path(), out).string();
      EXPECT_EQ(read_text(e.path().string()), read_text(out + ".restored/" + rel)) << rel;
    }
  }
}

// The full-size path (statistics pass, proxy search runs, one sequential run), forced on the small model:
// --target-bits lands near the target (an estimate there, not a bound), --lambda runs, outputs pass check.
TEST_F(RdCli, FullSizeSearchPathHitsTheTargetApproximately) {
  const std::string base = "FP4Z_RD_CACHE_BYTES=0 " + kFp4z + " quantize --source " + src + " --method rd --calibration " + calib +
                           " --calibration-seqs 4 --calibration-ctx 128 --sensitivity-seqs 2 -q";
  for (const std::string arg : {"--target-bits 3.7", "--lambda 1e-6"}) {
    const std::string out = tmp->path + "/rd-full" + std::to_string(arg.size());
    auto q = run_command(base + " --out " + out + " " + arg);
    ASSERT_EQ(q.code, 0) << arg << "\n" << q.err;
    EXPECT_EQ(run_command(kFp4z + " check " + out).code, 0) << arg;
    auto rep = read_text(out + "/fp4z_rd_report.json");
    EXPECT_NE(rep.find("\"search\": \"proxy\""), std::string::npos) << arg;
    if (arg[2] != 't') continue;
    auto st = run_command(kFp4z + " stats " + out + " --no-zstd --json");
    ASSERT_EQ(st.code, 0) << st.err;
    const double bits = std::stod(st.out.substr(st.out.find("\"ideal_order0_bits_per_weight\": ") + 32));
    EXPECT_NEAR(bits, 3.7, 0.05) << "the proxies' λ should put the written rate near the target";
  }
}

TEST_F(RdCli, UncalibratedRdBeatsSeedAlphaTwoInWeightMseAtItsRate) {
  const std::string absmax = tmp->path + "/absmax", seed = tmp->path + "/seed2", rd = tmp->path + "/rd-nocal";
  ASSERT_EQ(run_command(kFp4z + " quantize --source " + src + " --out " + absmax + " -q").code, 0);
  ASSERT_EQ(run_command(kFp4z + " quantize --source " + src + " --template " + absmax + " --method seed --alpha 2 --fused-global-scale --out " +
                        seed + " -q").code, 0);
  auto stat = [&](const std::string& dir, const char* key) {
    auto st = run_command(kFp4z + " stats " + dir + " --no-zstd --json --reference " + src);
    EXPECT_EQ(st.code, 0) << st.err;
    auto at = std::string(key) == "mse" ? st.out.find("\"mse\": ", st.out.find("\"total\"")) : st.out.find("\"ideal_order0_bits_per_weight\": ");
    return std::stod(st.out.substr(at + (std::string(key) == "mse" ? 7 : 32)));
  };
  const double seed_bits = stat(seed, "bits"), seed_mse = stat(seed, "mse");
  char tb[32];
  std::snprintf(tb, sizeof tb, "%.6f", seed_bits);
  auto q = run_command(kFp4z + " quantize --source " + src + " --out " + rd + " --method rd --target-bits " + tb + " -q");
  ASSERT_EQ(q.code, 0) << q.err;
  EXPECT_LE(stat(rd, "bits"), seed_bits + 1e-9);
  EXPECT_LT(stat(rd, "mse"), seed_mse);
}

// The refinement's column decision: the AVX-512 twin picks exactly what the scalar path picks, on
// rows built so that some improve (including ties within the 1e-18 margin) and some do not.
TEST(RdRefine, ColumnPickPathsAgree) {
  if (!cpu_features().has(CpuFeature::kAvx512)) GTEST_SKIP() << "this CPU lacks AVX-512";
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> ud(-1.0f, 1.0f);
  double value[16], cost[16];
  for (int c = 0; c < 16; ++c) {
    value[c] = double(kE2M1Value[c]);
    cost[c] = 2.0 + 0.25 * (c % 7);
  }
  constexpr int64_t n = 4000, K = 48;
  std::vector<uint8_t> codes(static_cast<size_t>(n * K)), active(static_cast<size_t>(n));
  std::vector<float> g(size_t(n * K));
  std::vector<double> S(size_t(n * 3));
  for (int64_t t = 0; t < n; ++t) {
    codes[size_t(t * K)] = uint8_t(rng() % 16);
    g[size_t(t * K)] = t % 5 == 0 ? 0.0f : 1e-3f * ud(rng);
    S[size_t(t * 3)] = t % 11 == 0 ? 0.0 : 0.01 * (1.0 + ud(rng));
    active[size_t(t)] = t % 13 != 0;
  }
  int improved = 0;
  for (double lambda : {0.0, 1e-7, 1e-5}) {
    RdRefineColumn col{codes.data(), g.data(), S.data(), active.data(), K, 3, 0.05, lambda, value, cost};
    std::vector<int8_t> a(static_cast<size_t>(n)), b(static_cast<size_t>(n));
    rd_refine_pick_scalar(col, n, a.data());
    kernels::rd_refine_pick_avx512(col, n, b.data());
    EXPECT_EQ(a, b) << "lambda " << lambda;
    for (int8_t x : a) improved += x >= 0;
  }
  EXPECT_GT(improved, 100);  // the comparison covered rows that change as well as rows that do not
}
