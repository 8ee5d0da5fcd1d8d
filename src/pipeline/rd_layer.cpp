// One Linear layer under --method rd: inverse-Hessian Cholesky factor, GPTQ-order error feedback with
// rate–distortion decisions, cost-table passes, and the layer's error metrics.
#include "pipeline/rd_layer.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "common/error.h"
#include "common/parallel.h"
#include "nvfp4/codec.h"
#include "model/linear.h"
#include "pipeline/dense_f32.h"
#include "pipeline/rd_refine_pick.h"

namespace fp4z {

namespace {

constexpr int64_t kTileRows = 64;   // rows quantized together so that U's rows are read once per tile
constexpr int64_t kChunkRows = 256;  // rows of W per product in the correction and the refinement
// The refinement's tile: rows whose gradients (K floats each) stay cache-resident together (≈ 1 MiB).
constexpr int64_t kRefineTileBytes = int64_t(1) << 20;

// The no-feedback pass (wt = col_weight, or 1): rd_choose_blocks row by row; row_sq (optional, [N]) gets each row's
// squared weight error in double.
void plain_pass(const float* W, int64_t N, int64_t K, const RdBlockParams& p, uint8_t* packed, uint8_t* scales, double* row_sq,
                int threads, const float* col_weight = nullptr) {
  const int64_t nb = K / 16;
  const RdPrepared prep = rd_prepare(p);
  parallel_for(size_t(N), threads, 16, [&](size_t b, size_t e) {
    std::vector<uint8_t> codes(static_cast<size_t>(K));
    for (size_t r = b; r < e; ++r) {
      double sq = 0;
      rd_choose_blocks(prep, W + int64_t(r) * K, col_weight, size_t(nb), codes.data(), scales + int64_t(r) * nb, row_sq ? &sq : nullptr);
      if (row_sq) row_sq[r] = sq;
      pack_nibbles(codes.data(), size_t(K), packed + int64_t(r) * K / 2);
    }
  });
}

// Y = X·Hd⁻¹ = X·UᵀU for X [R, K] (row-major), in chunks of rows: T = U·Xᵀ and then Y = Tᵀ·U,
// each product skipping U's zero (lower) triangle.
void times_hd_inverse(const float* X, int64_t R, int64_t K, const float* U, float* Y, int threads) {
  const int64_t nb = kCholBlock;
  std::vector<float> xt, t, tt;
  for (int64_t r0 = 0; r0 < R; r0 += kChunkRows) {
    const int64_t rc = std::min(kChunkRows, R - r0);
    xt.assign(size_t(K * rc), 0.0f);
    for (int64_t r = 0; r < rc; ++r)
      for (int64_t k = 0; k < K; ++k) xt[size_t(k * rc + r)] = X[(r0 + r) * K + k];
    t.assign(size_t(K * rc), 0.0f);
    // T[i, :] = Σ_{k >= i} U[i, k]·Xᵀ[k, :], one block of rows of U per work item.
    parallel_for(size_t((K + nb - 1) / nb), threads, 1, [&](size_t bb, size_t be) {
      for (size_t blk = bb; blk < be; ++blk) {
        const int64_t i0 = int64_t(blk) * nb, i1 = std::min(K, i0 + nb);
        gemm_nn_acc(i1 - i0, rc, K - i0, U + i0 * K + i0, K, xt.data() + i0 * rc, rc, t.data() + i0 * rc, rc, 1.0f, 1);
      }
    });
    tt.assign(size_t(rc * K), 0.0f);
    for (int64_t k = 0; k < K; ++k)
      for (int64_t r = 0; r < rc; ++r) tt[size_t(r * K + k)] = t[size_t(k * rc + r)];
    float* y = Y + r0 * K;
    std::fill(y, y + rc * K, 0.0f);
    // Y[:, j] = Σ_{k <= j} Tᵀ[:, k]·U[k, j], one block of columns per work item.
    parallel_for(size_t((K + nb - 1) / nb), threads, 1, [&](size_t bb, size_t be) {
      for (size_t blk = bb; blk < be; ++blk) {
        const int64_t j0 = int64_t(blk) * nb, j1 = std::min(K, j0 + nb);
        gemm_nn_acc(rc, j1 - j0, j1, tt.data(), K, U + j0, K, y + j0, K, 1.0f, 1);
      }
    });
  }
}

// C[M, K] += A[M, K]·B[K, K] (all row-major): one threaded product, so that B is packed once per call.
void rows_times_square(const float* A, int64_t M, int64_t K, const float* B, float* C, int threads) {
  gemm_nn_acc(M, K, K, A, K, B, K, C, K, 1.0f, threads);
}

std::vector<float> to_f32(const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); }

}  // namespace

float rd_dequant(uint8_t code, uint8_t s8, float gs) { return kE2M1Value[code] * (e4m3_decode(s8) / gs); }

namespace {

// H_d = H + δ·mean(diag H)·I (dead columns, H_jj = 0, set to 1 first) and the lower Cholesky factor L of
// P·H_d·P (P reverses the indices) into h.U; δ grows ×10 (up to 3 times) until H_d is positive definite.
// With `invert`, h.U becomes U = P·L⁻¹·P (upper, Uᵀ U = H_d⁻¹); without, it keeps L.
void damp_and_factor(RdHessian& h, double damp, int threads, bool invert) {
  const int64_t K = h.K;
  h.added.assign(size_t(K), 0.0f);
  double mean_diag = 0;
  for (int64_t j = 0; j < K; ++j) mean_diag += h.Hd[size_t(j * K + j)];
  mean_diag = mean_diag > 0 ? mean_diag / double(K) : 1.0;
  const size_t n = size_t(K) * size_t(K);
  for (int attempt = 0; attempt < 4; ++attempt, damp *= 10) {
    for (int64_t j = 0; j < K; ++j) {
      float& d = h.Hd[size_t(j * K + j)];
      const double raw = double(d) - double(h.added[size_t(j)]);
      const double hd = (raw == 0 ? 1.0 : raw) + damp * mean_diag;
      d = float(hd);
      h.added[size_t(j)] = float(double(d) - raw);
    }
    // P·Hd·P is the flat reversal of the row-major matrix.
    h.U.resize(n);
    for (size_t i = 0; i < n; ++i) h.U[n - 1 - i] = h.Hd[i];
    if (!cholesky_lower_blocked(h.U.data(), K, threads)) continue;
    if (invert) {
      invert_lower_blocked(h.U.data(), K, threads);
      std::reverse(h.U.begin(), h.U.end());  // U = P·L⁻¹·P: upper, Uᵀ U = Hd⁻¹
    }
    h.damp = damp;
    return;
  }
  fail_input("rd: the calibration Hessian is not positive definite even with damping " + std::to_string(damp));
}

}  // namespace

RdHessian rd_prepare_hessian(std::vector<float>&& H, int64_t K, double damp, int threads) {
  RdHessian h;
  h.K = K;
  h.Hd = std::move(H);
  damp_and_factor(h, damp, threads, true);
  return h;
}

std::vector<float> rd_column_weights(std::vector<float>&& H, int64_t K, double damp, int threads) {
  RdHessian h;
  h.K = K;
  h.Hd = std::move(H);
  damp_and_factor(h, damp, threads, false);
  h.Hd = {};
  // U_jj = (L⁻¹)_{j'j'} = 1 / L_{j'j'} with j' = K − 1 − j (L⁻¹ is triangular), so 1/U_jj² = L_{j'j'}².
  std::vector<float> w(static_cast<size_t>(K));
  for (int64_t j = 0; j < K; ++j) {
    const float l = h.U[size_t((K - 1 - j) * K + (K - 1 - j))];
    w[size_t(j)] = l * l;
  }
  return w;
}

double rd_inverse_cholesky_upper(const std::vector<double>& H, int64_t K, double damp, std::vector<float>& U) {
  RdHessian h = rd_prepare_hessian(to_f32(H), K, damp, 1);
  U = std::move(h.U);
  return h.damp;
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
  const int64_t B = kRdFeedbackBlock;
  parallel_for(size_t(tiles), threads, 1, [&](size_t tb, size_t te) {
    std::vector<float> Wt(size_t(K * kTileRows));  // [kTileRows][K], row-major like W
    std::vector<float> E(size_t(B * kTileRows));   // the current block's errors [kTileRows][B]
    std::vector<uint8_t> codes(static_cast<size_t>(K * kTileRows));
    float S[kTileRows];
    for (size_t tile = tb; tile < te; ++tile) {
      const int64_t r0 = int64_t(tile) * kTileRows, rows = std::min(kTileRows, N - r0);
      std::copy_n(W + r0 * K, rows * K, Wt.begin());
      for (int64_t j0 = 0; j0 < K; j0 += B) {
        const int64_t j1 = std::min(K, j0 + B);
        for (int64_t r = 0; r < rows; ++r) {
          float* w = Wt.data() + r * K;
          for (int64_t j = j0; j < j1; ++j) {
            const float d = U[j * K + j];
            const float* urow = U + j * K;
            if (j % 16 == 0) scales[(r0 + r) * nb + j / 16] = rd_choose_block(w + j, wt.data() + j, p, nullptr, &S[r]);
            const float x = w[j];
            const uint8_t c = rd_choose_code(x, S[r], wt[j], p.lambda, p.costs->code);
            codes[size_t(r * K + j)] = c;
            const float q = kE2M1Value[c] * S[r];
            const float e = (x - q) / d;
            E[size_t(r * B + (j - j0))] = e;
            for (int64_t k = j + 1; k < j1; ++k) w[k] -= e * urow[k];  // inside the block: sequential
          }
        }
        // The block's errors reach every later column at once: W[:, j1:] -= E · U[j0:j1, j1:].
        if (j1 < K) gemm_nn_acc(rows, K - j1, j1 - j0, E.data(), B, U + j0 * K + j1, K, Wt.data() + j1, K, -1.0f, 1);
      }
      for (int64_t r = 0; r < rows; ++r) pack_nibbles(codes.data() + r * K, size_t(K), packed + (r0 + r) * K / 2);
    }
  });
}

void rd_correct_weight(float* W, int64_t N, int64_t K, const float* D, const RdHessian& h, int threads) {
  if (N <= K) {  // per chunk of rows: X = W·D, then W += X·Hd⁻¹ (2 chunk-sized buffers, not 2 N×K ones)
    std::vector<float> X, Z;
    for (int64_t r0 = 0; r0 < N; r0 += kChunkRows) {
      const int64_t rc = std::min(kChunkRows, N - r0);
      X.assign(size_t(rc * K), 0.0f);
      Z.assign(size_t(rc * K), 0.0f);
      rows_times_square(W + r0 * K, rc, K, D, X.data(), threads);
      times_hd_inverse(X.data(), rc, K, h.U.data(), Z.data(), threads);
      for (size_t i = 0; i < Z.size(); ++i) W[size_t(r0 * K) + i] += Z[i];
    }
    return;
  }
  std::vector<float> M(size_t(K * K), 0.0f), Z;
  times_hd_inverse(D, K, K, h.U.data(), M.data(), threads);  // M = D·Hd⁻¹, then W += W·M per chunk of rows
  for (int64_t r0 = 0; r0 < N; r0 += kChunkRows) {
    const int64_t rc = std::min(kChunkRows, N - r0);
    Z.assign(size_t(rc * K), 0.0f);
    rows_times_square(W + r0 * K, rc, K, M.data(), Z.data(), threads);
    for (size_t i = 0; i < Z.size(); ++i) W[size_t(r0 * K) + i] += Z[i];
  }
}

std::vector<float> rd_input_corrected_weight(const std::vector<float>& W, int64_t N, int64_t K, const std::vector<double>& C,
                                             const std::vector<double>& H, double damp, int threads) {
  RdHessian h;
  try {
    h = rd_prepare_hessian(to_f32(H), K, damp, threads);
  } catch (const Error&) {
    return W;  // not positive definite: keep the plain target
  }
  std::vector<float> D(size_t(K * K));
  for (size_t i = 0; i < D.size(); ++i) D[i] = float(C[i] - H[i]);
  std::vector<float> out = W;
  rd_correct_weight(out.data(), N, K, D.data(), h, threads);
  return out;
}

void rd_refine_pick_scalar(const RdRefineColumn& col, int64_t n, int8_t* pick) {
  for (int64_t t = 0; t < n; ++t) {
    pick[t] = -1;
    if (!col.active[t]) continue;
    const int c = col.codes[t * col.K];
    const double gj = col.g[t * col.K], Sj = col.S[t * col.Sstride];
    // All 16 changes at once (a loop the compiler vectorises), then the first strictly best.
    double delta[16];
    bool improves = false;  // some allowed change lowers the cost by more than the tie margin
    for (int c2 = 0; c2 < 16; ++c2) {
      const double d = (col.value[c2] - col.value[c]) * Sj;
      delta[c2] = 2 * d * gj + d * d * col.hjj + col.lambda * (col.cost[c2] - col.cost[c]);
      improves |= (delta[c2] < -1e-18) & (c2 != 8) & (c2 != c);
    }
    // Most visits change nothing (after the first sweep almost all): the same verdict as the scan,
    // without its sixteen data-dependent branches.
    if (!improves) continue;
    double best = 0;
    for (int c2 = 0; c2 < 16; ++c2)
      if (c2 != 8 && c2 != c && delta[c2] < best - 1e-18) {
        best = delta[c2];
        pick[t] = int8_t(c2);
      }
  }
}

const RdRefineKernels& rd_refine_kernels(Isa isa) {
  static const RdRefineKernels scalar{rd_refine_pick_scalar}, avx512{kernels::rd_refine_pick_avx512};
  const Isa best = detect_isa();
  if (int(isa) > int(best)) isa = best;
  return isa == Isa::kAvx512 ? avx512 : scalar;
}

void rd_refine_codes(const float* W, int64_t N, int64_t K, const RdHessian& h, const RdBlockParams& p, uint8_t* packed,
                     const uint8_t* scales, int sweeps, int threads, double* row_h) {
  const float* Hd = h.Hd.data();
  const double lambda = p.lambda;
  double value[16], cost[16];
  for (int c = 0; c < 16; ++c) {
    value[c] = double(kE2M1Value[c]);
    cost[c] = double(p.costs->code[c]);
  }
  const Isa isa = kernel_isa();
  const auto axpy = kernels::linear_kernels(isa).axpy;
  const auto pick_column = rd_refine_kernels(isa).pick;
  const int64_t chunks = (N + kChunkRows - 1) / kChunkRows;
  const int64_t tile_rows = std::clamp<int64_t>(kRefineTileBytes / (int64_t(sizeof(float)) * K), 1, kChunkRows);
  parallel_for(size_t(chunks), threads, 1, [&](size_t cb, size_t ce) {
    std::vector<uint8_t> codes(size_t(kChunkRows * K));
    std::vector<float> dw(size_t(kChunkRows * K)), G(size_t(kChunkRows * K));
    std::vector<double> S(size_t(tile_rows * (K / 16)));  // the tile's block scales (per 16 columns)
    std::vector<uint8_t> active(static_cast<size_t>(tile_rows)), changed(static_cast<size_t>(tile_rows));
    std::vector<int8_t> pick(static_cast<size_t>(tile_rows));
    for (size_t chunk = cb; chunk < ce; ++chunk) {
      const int64_t r0 = int64_t(chunk) * kChunkRows, rows = std::min(kChunkRows, N - r0);
      for (int64_t r = 0; r < rows; ++r) {
        unpack_nibbles(packed + (r0 + r) * K / 2, size_t(K), codes.data() + r * K);
        for (int64_t k = 0; k < K; ++k)
          dw[size_t(r * K + k)] = float(double(kE2M1Value[codes[size_t(r * K + k)]]) *
                                            double(e4m3_decode(scales[(r0 + r) * (K / 16) + k / 16])) / double(p.gs) -
                                        double(W[(r0 + r) * K + k]));
      }
      // G = ΔW·H_d for the chunk: the O(K²) part of every row, as one product.
      std::fill(G.begin(), G.begin() + rows * K, 0.0f);
      gemm_nn_acc(rows, K, K, dw.data(), K, Hd, K, G.data(), K, 1.0f, 1);
      // The sweeps visit the chunk's rows a tile at a time, column by column across the tile's rows: a
      // changed code's update reads H_d's row j, which then serves every row of the tile from the cache
      // instead of from memory once per change (H_d is K² floats: 378 MB for a 9728-wide input), while the
      // tile's gradients stay cache-resident. Rows are independent, so every row sees exactly the sequence
      // of decisions and updates it would see alone.
      for (int64_t t0 = 0; t0 < rows; t0 += tile_rows) {
        const int64_t t1 = std::min(rows, t0 + tile_rows);
        for (int64_t r = t0; r < t1; ++r) {
          active[size_t(r - t0)] = 1;
          for (int64_t b = 0; b < K / 16; ++b)
            S[size_t((r - t0) * (K / 16) + b)] = double(e4m3_decode(scales[(r0 + r) * (K / 16) + b])) / double(p.gs);
        }
        for (int sweep = 0; sweep < sweeps; ++sweep) {
          std::fill(changed.begin(), changed.end(), uint8_t(0));
          bool any = false;
          for (int64_t j = 0; j < K; ++j) {
            const float* h_row = Hd + j * K;
            RdRefineColumn col{codes.data() + t0 * K + j, G.data() + t0 * K + j, S.data() + j / 16, active.data(), K, K / 16,
                               double(Hd[j * K + j]), lambda, value, cost};
            pick_column(col, t1 - t0, pick.data());
            for (int64_t r = t0; r < t1; ++r) {
              const int8_t best_c = pick[size_t(r - t0)];
              if (best_c < 0) continue;
              uint8_t* c_row = codes.data() + r * K;
              const float d = float((value[best_c] - value[c_row[j]]) * S[size_t((r - t0) * (K / 16) + j / 16)]);
              axpy(d, h_row, G.data() + r * K, K);  // g += d·H_d[:, j] (H_d is symmetric: row j is column j)
              dw[size_t(r * K + j)] += d;
              c_row[j] = uint8_t(best_c);
              changed[size_t(r - t0)] = 1;
              any = true;
            }
          }
          for (int64_t r = t0; r < t1; ++r) active[size_t(r - t0)] &= changed[size_t(r - t0)];  // a sweep without change ends the row
          if (!any) break;
        }
      }
      for (int64_t r = 0; r < rows; ++r) {
        const uint8_t* c_row = codes.data() + r * K;
        const float* g = G.data() + r * K;
        const float* d_row = dw.data() + r * K;
        pack_nibbles(c_row, size_t(K), packed + (r0 + r) * K / 2);
        if (row_h) {
          double s = 0;
          for (int64_t k = 0; k < K; ++k) s += double(d_row[k]) * (double(g[k]) - double(h.added[size_t(k)]) * double(d_row[k]));
          row_h[r0 + r] = std::max(0.0, s);
        }
      }
    }
  });
}

void rd_refine_codes(const float* W, int64_t N, int64_t K, const std::vector<double>& H, double damp, const RdBlockParams& p,
                     uint8_t* packed, const uint8_t* scales, int sweeps, int threads) {
  const RdHessian h = rd_prepare_hessian(to_f32(H), K, damp, threads);
  rd_refine_codes(W, N, K, h, p, packed, scales, sweeps, threads);
}

RdLayerResult rd_quantize_layer(const float* W, int64_t N, int64_t K, const std::vector<double>* H, float gs, double lambda,
                                double damp, int threads, const RdCostTables* tables, int refine_sweeps) {
  if (!H) return rd_quantize_layer(W, N, K, static_cast<const RdHessian*>(nullptr), gs, lambda, threads, tables, refine_sweeps, nullptr);
  const auto t0 = std::chrono::steady_clock::now();
  const RdHessian h = rd_prepare_hessian(to_f32(*H), K, damp, threads);
  RdLayerResult res = rd_quantize_layer(W, N, K, &h, gs, lambda, threads, tables, refine_sweeps, nullptr);
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

RdLayerResult rd_quantize_layer(const float* W, int64_t N, int64_t K, const RdHessian* H, float gs, double lambda, int threads,
                                const RdCostTables* tables, int refine_sweeps, const float* col_weight) {
  auto t0 = std::chrono::steady_clock::now();
  RdLayerResult res;
  res.packed.resize(size_t(N * K / 2));
  res.scales.resize(size_t(N * K / 16));
  RdBlockParams p;
  p.gs = gs;
  // Without H the passes compute the rows' squared error themselves (the last pass's is kept).
  std::vector<double> row_sq(static_cast<size_t>(N)), row_h(size_t(N), 0.0);
  auto pass = [&] {
    if (H)
      rd_quantize_pass(W, N, K, H->U.data(), p, res.packed.data(), res.scales.data(), threads);
    else
      plain_pass(W, N, K, p, res.packed.data(), res.scales.data(), row_sq.data(), threads, col_weight);
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
    plain_pass(W, N, K, p, res.packed.data(), res.scales.data(), row_sq.data(), threads, col_weight);
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
  // With H the refinement also yields each row's Δwᵀ H Δw (0 sweeps: just that).
  if (H) rd_refine_codes(W, N, K, *H, p, res.packed.data(), res.scales.data(), std::max(refine_sweeps, 0), threads, row_h.data());
  res.hist.add_packed(res.packed.data(), res.packed.size());
  res.hist.add_scales(res.scales.data(), res.scales.size());
  // Squared weight error, per row in double, summed in row order.
  if (H) parallel_for(size_t(N), threads, 16, [&](size_t b, size_t e) {
    std::vector<uint8_t> codes(static_cast<size_t>(K));
    for (size_t r = b; r < e; ++r) {
      unpack_nibbles(res.packed.data() + r * size_t(K) / 2, size_t(K), codes.data());
      double sq = 0;
      for (int64_t k = 0; k < K; ++k) {
        const double dw = double(rd_dequant(codes[k], res.scales[r * size_t(K / 16) + size_t(k / 16)], gs)) - double(W[int64_t(r) * K + k]);
        sq += dw * dw;
      }
      row_sq[r] = sq;
    }
  });
  double sq = 0, hs = 0;
  for (int64_t r = 0; r < N; ++r) {
    sq += row_sq[r];
    hs += row_h[r];
  }
  res.mse = N * K > 0 ? sq / double(N * K) : 0;
  res.h_error = H ? hs : -1;
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

}  // namespace fp4z
