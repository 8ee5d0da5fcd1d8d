// One Linear layer under --method rd: inverse-Hessian Cholesky factor, GPTQ-order error feedback with
// rate–distortion decisions, cost-table passes, and the layer's error metrics.
#include "pipeline/rd_layer.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "common/error.h"
#include "common/parallel.h"
#include "nvfp4/codec.h"

namespace fp4z {

namespace {

constexpr int64_t kTileRows = 32;  // rows quantized together so that U's rows are read once per tile

// In-place lower Cholesky factor of the K×K row-major matrix A; false if not positive definite.
bool cholesky_lower(std::vector<double>& A, int64_t K) {
  for (int64_t j = 0; j < K; ++j) {
    double d = A[j * K + j];
    for (int64_t k = 0; k < j; ++k) d -= A[j * K + k] * A[j * K + k];
    if (!(d > 0) || !std::isfinite(d)) return false;
    d = std::sqrt(d);
    A[j * K + j] = d;
    for (int64_t i = j + 1; i < K; ++i) {
      double s = A[i * K + j];
      for (int64_t k = 0; k < j; ++k) s -= A[i * K + k] * A[j * K + k];
      A[i * K + j] = s / d;
    }
    for (int64_t i = 0; i < j; ++i) A[i * K + j] = 0;  // clear the upper triangle
  }
  return true;
}

// Inverse of a lower-triangular L (forward substitution, column by column).
std::vector<double> invert_lower(const std::vector<double>& L, int64_t K) {
  std::vector<double> X(size_t(K * K), 0.0);
  for (int64_t c = 0; c < K; ++c) {
    X[c * K + c] = 1.0 / L[c * K + c];
    for (int64_t i = c + 1; i < K; ++i) {
      double s = 0;
      for (int64_t k = c; k < i; ++k) s += L[i * K + k] * X[k * K + c];
      X[i * K + c] = -s / L[i * K + i];
    }
  }
  return X;
}

void pack_row(const uint8_t* codes, int64_t K, uint8_t* packed) { pack_nibbles(codes, size_t(K), packed); }

// The no-feedback pass (wt = 1): rd_choose_blocks row by row; row_sq (optional, [N]) gets each row's
// squared weight error in double.
void plain_pass(const float* W, int64_t N, int64_t K, const RdBlockParams& p, uint8_t* packed, uint8_t* scales, double* row_sq,
                int threads) {
  const int64_t nb = K / 16;
  const RdPrepared prep = rd_prepare(p);
  parallel_for(size_t(N), threads, 16, [&](size_t b, size_t e) {
    std::vector<uint8_t> codes(static_cast<size_t>(K));
    for (size_t r = b; r < e; ++r) {
      double sq = 0;
      rd_choose_blocks(prep, W + int64_t(r) * K, nullptr, size_t(nb), codes.data(), scales + int64_t(r) * nb, row_sq ? &sq : nullptr);
      if (row_sq) row_sq[r] = sq;
      pack_row(codes.data(), K, packed + int64_t(r) * K / 2);
    }
  });
}

// H + δ·mean(diag H)·I, dead columns (H_jj = 0: the calibration never excited them) set to 1 first:
// the matrix the feedback pass factors, and the one the correction and the refinement use with it.
std::vector<double> damped_hessian(const std::vector<double>& H, int64_t K, double damp) {
  double mean_diag = 0;
  for (int64_t j = 0; j < K; ++j) mean_diag += H[size_t(j * K + j)];
  mean_diag = mean_diag > 0 ? mean_diag / double(K) : 1.0;
  std::vector<double> A = H;
  for (int64_t j = 0; j < K; ++j) A[size_t(j * K + j)] = (H[size_t(j * K + j)] == 0 ? 1.0 : H[size_t(j * K + j)]) + damp * mean_diag;
  return A;
}

}  // namespace

float rd_dequant(uint8_t code, uint8_t s8, float gs) { return kE2M1Value[code] * (e4m3_decode(s8) / gs); }

double rd_inverse_cholesky_upper(const std::vector<double>& H, int64_t K, double damp, std::vector<float>& U) {
  for (int attempt = 0; attempt < 4; ++attempt, damp *= 10) {
    std::vector<double> A = damped_hessian(H, K, damp);
    if (!cholesky_lower(A, K)) continue;
    std::vector<double> Li = invert_lower(A, K);
    // H⁻¹ = Liᵀ Li (lower part is enough for the next factorisation).
    std::vector<double> Hi(size_t(K * K), 0.0);
    for (int64_t i = 0; i < K; ++i)
      for (int64_t j = 0; j <= i; ++j) {
        double s = 0;
        for (int64_t k = i; k < K; ++k) s += Li[k * K + i] * Li[k * K + j];
        Hi[i * K + j] = s;
        Hi[j * K + i] = s;
      }
    if (!cholesky_lower(Hi, K)) continue;
    U.assign(size_t(K * K), 0.0f);
    for (int64_t i = 0; i < K; ++i)
      for (int64_t j = i; j < K; ++j) U[i * K + j] = float(Hi[j * K + i]);
    return damp;
  }
  fail_input("rd: the calibration Hessian is not positive definite even with damping " + std::to_string(damp));
}

void rd_quantize_pass(const float* W, int64_t N, int64_t K, const float* U, const RdBlockParams& p, uint8_t* packed,
                      uint8_t* scales, int threads) {
  const int64_t nb = K / 16;
  if (!U) {
    plain_pass(W, N, K, p, packed, scales, nullptr, threads);
    return;
  }
  std::vector<float> wt(static_cast<size_t>(K));
  for (int64_t j = 0; j < K; ++j) wt[j] = 1.0f / (U[j * K + j] * U[j * K + j]);
  const int64_t tiles = (N + kTileRows - 1) / kTileRows;
  parallel_for(size_t(tiles), threads, 1, [&](size_t tb, size_t te) {
    std::vector<float> Wt(size_t(K * kTileRows));  // [K][kTileRows]: lane r = row r of the tile
    std::vector<uint8_t> codes(static_cast<size_t>(K * kTileRows));
    float S[kTileRows], err[kTileRows], blk_w[16];
    for (size_t tile = tb; tile < te; ++tile) {
      const int64_t r0 = int64_t(tile) * kTileRows, rows = std::min(kTileRows, N - r0);
      std::fill(Wt.begin(), Wt.end(), 0.0f);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t k = 0; k < K; ++k) Wt[k * kTileRows + r] = W[(r0 + r) * K + k];
      for (int64_t j = 0; j < K; ++j) {
        if (j % 16 == 0)
          for (int64_t r = 0; r < rows; ++r) {
            for (int c = 0; c < 16; ++c) blk_w[c] = Wt[(j + c) * kTileRows + r];
            scales[(r0 + r) * nb + j / 16] = rd_choose_block(blk_w, wt.data() + j, p, nullptr, &S[r]);
          }
        const float d = U[j * K + j];
        for (int64_t r = 0; r < kTileRows; ++r) {
          if (r >= rows) {
            err[r] = 0;
            continue;
          }
          const float x = Wt[j * kTileRows + r];
          const uint8_t c = rd_choose_code(x, S[r], wt[j], p.lambda, p.costs->code);
          codes[r * K + j] = c;
          const float q = kE2M1Value[c] * S[r];
          err[r] = (x - q) / d;
        }
        const float* urow = U + j * K;
        for (int64_t k = j + 1; k < K; ++k) {
          const float u = urow[k];
          float* col = Wt.data() + k * kTileRows;
          for (int64_t r = 0; r < kTileRows; ++r) col[r] -= err[r] * u;
        }
      }
      for (int64_t r = 0; r < rows; ++r) pack_row(codes.data() + r * K, K, packed + (r0 + r) * K / 2);
    }
  });
}

std::vector<float> rd_input_corrected_weight(const std::vector<float>& W, int64_t N, int64_t K, const std::vector<double>& C,
                                          const std::vector<double>& H, double damp, int threads) {
  // M = (C − H̃)(H̃ + δ)⁻¹ from one Cholesky factor L Lᵀ = H̃ + δ (δ as the feedback pass damps).
  std::vector<double> L = damped_hessian(H, K, damp);
  if (!cholesky_lower(L, K)) return W;  // not positive definite: keep the plain target
  std::vector<double> M(size_t(K * K));  // row-major: row i solves (H̃ + δ) M[i, :]ᵀ = (C − H̃)[i, :]ᵀ (H̃ symmetric)
  parallel_for(size_t(K), threads, 8, [&](size_t b, size_t e) {
    std::vector<double> y(static_cast<size_t>(K));
    for (size_t i = b; i < e; ++i) {
      for (int64_t k = 0; k < K; ++k) y[k] = C[i * size_t(K) + size_t(k)] - H[i * size_t(K) + size_t(k)];
      for (int64_t k = 0; k < K; ++k) {
        double v = y[k];
        for (int64_t m = 0; m < k; ++m) v -= L[size_t(k * K + m)] * y[m];
        y[k] = v / L[size_t(k * K + k)];
      }
      for (int64_t k = K - 1; k >= 0; --k) {
        double v = y[k];
        for (int64_t m = k + 1; m < K; ++m) v -= L[size_t(m * K + k)] * y[m];
        y[k] = v / L[size_t(k * K + k)];
      }
      std::copy(y.begin(), y.end(), M.begin() + int64_t(i) * K);
    }
  });
  std::vector<float> out(W.size());
  parallel_for(size_t(N), threads, 4, [&](size_t b, size_t e) {
    for (size_t r = b; r < e; ++r)
      for (int64_t j = 0; j < K; ++j) {
        double v = W[r * size_t(K) + size_t(j)];
        for (int64_t i = 0; i < K; ++i) v += double(W[r * size_t(K) + size_t(i)]) * M[size_t(i * K + j)];
        out[r * size_t(K) + size_t(j)] = float(v);
      }
  });
  return out;
}

void rd_refine_codes(const float* W, int64_t N, int64_t K, const std::vector<double>& H, double damp, const RdBlockParams& p,
                     uint8_t* packed, const uint8_t* scales, int sweeps, int threads) {
  const std::vector<double> Hd = damped_hessian(H, K, damp);  // the damped H that the feedback pass used
  const double lambda = p.lambda;
  parallel_for(size_t(N), threads, 4, [&](size_t b, size_t e) {
    std::vector<uint8_t> codes(static_cast<size_t>(K));
    std::vector<double> dw(static_cast<size_t>(K)), g(static_cast<size_t>(K));
    for (size_t r = b; r < e; ++r) {
      unpack_nibbles(packed + r * size_t(K) / 2, size_t(K), codes.data());
      for (int64_t k = 0; k < K; ++k)
        dw[k] = double(kE2M1Value[codes[k]]) * double(e4m3_decode(scales[r * size_t(K / 16) + size_t(k / 16)])) / double(p.gs) -
                double(W[int64_t(r) * K + k]);
      for (int64_t i = 0; i < K; ++i) {
        double s = 0;
        for (int64_t j = 0; j < K; ++j) s += Hd[size_t(i * K + j)] * dw[j];
        g[i] = s;
      }
      for (int sweep = 0; sweep < sweeps; ++sweep) {
        bool changed = false;
        for (int64_t j = 0; j < K; ++j) {
          const double S = double(e4m3_decode(scales[r * size_t(K / 16) + size_t(j / 16)])) / double(p.gs);
          const uint8_t c = codes[j];
          const double hjj = Hd[size_t(j * K + j)];
          double best = 0;
          int best_c = -1;
          for (int c2 = 0; c2 < 16; ++c2) {
            if (c2 == 8 || c2 == c) continue;
            const double d = (double(kE2M1Value[c2]) - double(kE2M1Value[c])) * S;
            const double delta = 2 * d * g[j] + d * d * hjj + lambda * (double(p.costs->code[c2]) - double(p.costs->code[c]));
            if (delta < best - 1e-18) {
              best = delta;
              best_c = c2;
            }
          }
          if (best_c < 0) continue;
          const double d = (double(kE2M1Value[best_c]) - double(kE2M1Value[c])) * S;
          for (int64_t i = 0; i < K; ++i) g[i] += d * Hd[size_t(i * K + j)];
          dw[j] += d;
          codes[j] = uint8_t(best_c);
          changed = true;
        }
        if (!changed) break;
      }
      pack_row(codes.data(), K, packed + r * size_t(K) / 2);
    }
  });
}

RdLayerResult rd_quantize_layer(const float* W, int64_t N, int64_t K, const std::vector<double>* H, float gs, double lambda,
                                double damp, int threads, const RdCostTables* tables, int refine_sweeps) {
  auto t0 = std::chrono::steady_clock::now();
  RdLayerResult res;
  res.packed.resize(size_t(N * K / 2));
  res.scales.resize(size_t(N * K / 16));
  std::vector<float> U;
  if (H) rd_inverse_cholesky_upper(*H, K, damp, U);
  RdBlockParams p;
  p.gs = gs;
  // Without H the passes compute the rows' squared error themselves (the last pass's is kept).
  std::vector<double> row_sq(static_cast<size_t>(N)), row_h(size_t(N), 0.0);
  auto pass = [&] {
    if (H)
      rd_quantize_pass(W, N, K, U.data(), p, res.packed.data(), res.scales.data(), threads);
    else
      plain_pass(W, N, K, p, res.packed.data(), res.scales.data(), row_sq.data(), threads);
  };
  if (tables) {
    p.costs = tables;
    p.lambda = float(lambda);
    pass();
    res.costs = *tables;
  }
  Nvfp4Histogram uniform;
  RdCostTables costs = rd_costs_from_histogram(uniform);
  if (!tables) {
    p.costs = &costs;
    p.lambda = 0;
    plain_pass(W, N, K, p, res.packed.data(), res.scales.data(), row_sq.data(), threads);
    p.lambda = float(lambda);
  }
  for (int round = 0; round < kRdRatePasses && !tables; ++round) {
    Nvfp4Histogram h;
    h.add_packed(res.packed.data(), res.packed.size());
    h.add_scales(res.scales.data(), res.scales.size());
    costs = rd_costs_from_histogram(h);
    pass();
  }
  if (!tables) res.costs = costs;
  if (H && refine_sweeps > 0) rd_refine_codes(W, N, K, *H, damp, p, res.packed.data(), res.scales.data(), refine_sweeps, threads);
  res.hist.add_packed(res.packed.data(), res.packed.size());
  res.hist.add_scales(res.scales.data(), res.scales.size());
  // Error metrics, per row in double, summed in row order.
  if (H) parallel_for(size_t(N), threads, 16, [&](size_t b, size_t e) {
    std::vector<double> dw(static_cast<size_t>(K));
    std::vector<uint8_t> codes(static_cast<size_t>(K));
    for (size_t r = b; r < e; ++r) {
      unpack_nibbles(res.packed.data() + r * size_t(K) / 2, size_t(K), codes.data());
      double sq = 0;
      for (int64_t k = 0; k < K; ++k) {
        float deq = rd_dequant(codes[k], res.scales[r * size_t(K / 16) + size_t(k / 16)], gs);
        dw[k] = double(deq) - double(W[int64_t(r) * K + k]);
        sq += dw[k] * dw[k];
      }
      row_sq[r] = sq;
      if (H) {
        double s = 0;
        for (int64_t i = 0; i < K; ++i) {
          double hi = 0;
          for (int64_t j = 0; j < K; ++j) hi += (*H)[i * K + j] * dw[j];
          s += dw[i] * hi;
        }
        row_h[r] = s;
      }
    }
  });
  double sq = 0, hs = 0;
  for (int64_t r = 0; r < N; ++r) {
    sq += row_sq[r];
    hs += row_h[r];
  }
  res.mse = N * K ? sq / double(N * K) : 0;
  res.h_error = H ? hs : -1;
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

}  // namespace fp4z
