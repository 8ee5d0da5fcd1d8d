// Rate–distortion decisions for NVFP4 blocks: histograms, cost tables, block-scale search, code choice.
#include "nvfp4/rd.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/cpu.h"
#include "nvfp4/codec.h"
#include "nvfp4/measure.h"
#include "nvfp4/rd_internal.h"

namespace fp4z {

void Nvfp4Histogram::add_packed(const uint8_t* packed, size_t nbytes) {
  count_codes(packed, nbytes, code);
  code[0] += code[8];  // −0 is written as +0
  code[8] = 0;
}

void Nvfp4Histogram::add_scales(const uint8_t* s8, size_t n) {
  for (size_t i = 0; i < n; ++i) ++scale[s8[i]];
}

void Nvfp4Histogram::merge(const Nvfp4Histogram& o) {
  for (int i = 0; i < 16; ++i) code[i] += o.code[i];
  for (int i = 0; i < 256; ++i) scale[i] += o.scale[i];
}

uint64_t Nvfp4Histogram::weights() const {
  uint64_t n = 0;
  for (uint64_t c : code) n += c;
  return n;
}

double Nvfp4Histogram::ideal_bits_per_weight() const {
  uint64_t nc = weights(), ns = 0;
  for (uint64_t c : scale) ns += c;
  double hc = entropy_bits(code, 16);
  double hs = entropy_bits(scale, 256);
  if (nc == 0) return 0;
  return hc + hs * double(ns) / double(nc);  // ns / nc = 1/16 for complete blocks
}

RdCostTables rd_costs_from_histogram(const Nvfp4Histogram& h) {
  RdCostTables t;
  double nc = 0, ns = 0;
  for (int i = 0; i < 16; ++i) nc += double(h.code[i]) + 0.5;
  for (int i = 0; i < 256; ++i) ns += double(h.scale[i]) + 0.5;
  for (int i = 0; i < 16; ++i) t.code[i] = float(-std::log2((double(h.code[i]) + 0.5) / nc));
  for (int i = 0; i < 256; ++i) t.scale[i] = float(-std::log2((double(h.scale[i]) + 0.5) / ns));
  return t;
}

namespace {

using rd_detail::kMagnitude;

// The weight's candidate codes by the f32 rule of rd.h; returns the best cost, its code in *code.
inline float best_code_cost(float x, bool negative, float S, float R, float wt, const float* L, uint8_t* code) {
  const float a = x * R;
  int lo = 0;
  for (int m = 1; m < 8; ++m)
    if (a >= kMagnitude[m]) lo = m;
  float best = 0;
  for (int k = -1; k <= 1; ++k) {
    const int m = std::clamp(lo + k, 0, 7);
    const uint8_t c = m == 0 ? 0 : uint8_t(m | (negative ? 8 : 0));
    const float e = x - kMagnitude[m] * S;
    const float cost = wt * (e * e) + L[c];
    if (k == -1 || cost < best) {
      best = cost;
      *code = c;
    }
  }
  return best;
}

// Pairwise sum of 16 values: j + 8, then + 4, + 2, + 1 apart.
template <typename T>
inline T tree16(T* v) {
  for (int h = 8; h >= 1; h /= 2)
    for (int j = 0; j < h; ++j) v[j] = v[j] + v[j + h];
  return v[0];
}

// One block by the rule of rd.h, with per-candidate values from `cand(b, &S, &R, &Ls)` (false: unusable).
template <typename Candidate>
uint8_t choose_block_scalar(const float* w, const float* wt, float gs, int below, int above, const float* L, uint8_t zero_byte,
                            const Candidate& cand, uint8_t* codes, double* sq_err) {
  float amax = 0;
  for (int j = 0; j < 16; ++j) amax = std::max(amax, std::fabs(w[j]));
  if (amax == 0.0f) return rd_detail::fixed_block(w, zero_byte, codes, sq_err);
  const int b0 = rd_detail::absmax_byte(amax, gs);
  const int first = std::max(1, b0 - below), last = std::min(0x7E, b0 + above);
  float x[16];
  for (int j = 0; j < 16; ++j) x[j] = std::fabs(w[j]);
  bool found = false;
  float best_total = 0, best_S = 0;
  uint8_t best = uint8_t(b0), trial[16];
  for (int b = first; b <= last; ++b) {
    float S, R, Ls;
    if (!cand(b, &S, &R, &Ls)) continue;
    float c[16];
    for (int j = 0; j < 16; ++j) c[j] = best_code_cost(x[j], w[j] < 0.0f, S, R, wt ? wt[j] : 1.0f, L, &trial[j]);
    const float total = Ls + tree16(c);
    if (!found || total < best_total) {
      found = true;
      best_total = total;
      best = uint8_t(b);
      best_S = S;
      std::copy(trial, trial + 16, codes);
    }
  }
  if (!found) return rd_detail::fixed_block(w, best, codes, sq_err);
  if (sq_err) {
    double d[16];
    for (int j = 0; j < 16; ++j) {
      const double e = double(kE2M1Value[codes[j]] * best_S) - double(w[j]);
      d[j] = e * e;
    }
    *sq_err += tree16(d);
  }
  return best;
}

}  // namespace

uint8_t rd_choose_code(float w, float S, float wt, float lambda, const float* code_cost) {
  float L[16];
  for (int c = 0; c < 16; ++c) L[c] = lambda * code_cost[c];
  uint8_t code = 0;
  best_code_cost(std::fabs(w), w < 0.0f, S, 1.0f / S, wt, L, &code);
  return code;
}

namespace {

// Whether, for byte b, weight 1 and a weight x whose a = fl(x·R) is below kPruneMaxA, the lo − 1
// candidate can cost strictly less than lo (false: it never can, so a kernel may leave it out).
// For lo ≥ 1, x ≥ xlo = mag_lo·S·(1 − 1e-6) (a >= mag_lo; R and a carry one rounding each) and
// x < xhi = mag_(lo+1)·S·(1 + 1e-6) (48 for lo = 7). With M1 < M0 the two candidates' fl values, the real
// difference of squares (x − M1)² − (x − M0)² = (M0 − M1)(2x − M0 − M1) grows with x; the f32 squares
// differ from the real ones by at most 4u (u = 2⁻²⁴) of their size plus an underflow of 2⁻¹⁴⁹, and
// adding L is monotone. So if (M0 − M1)(2·xlo − M0 − M1) exceeds L0 − L1 by a slack of 1e-5 of every
// size involved (far above those roundings), then fl(fl(e1²) + L1) >= fl(fl(e0²) + L0) for every such x.
// Scales outside [1e-30, 1e15] (underflow, overflow of the squares) always need the candidate.
bool lo_minus_one_may_win(const RdPrepared& t, int b) {
  const double S = t.S[b];
  if (!(S >= 1e-30 && S <= 1e15)) return true;
  for (int sign = 0; sign <= 8; sign += 8)
    for (int lo = 1; lo <= 7; ++lo) {
      const double M0 = t.magS[b][lo], M1 = t.magS[b][lo - 1];
      const double L0 = t.L16[lo | sign], L1 = t.L16[(lo - 1) | sign];
      const double xlo = double(kMagnitude[lo]) * S * (1 - 1e-6);
      const double xhi = (lo < 7 ? double(kMagnitude[lo + 1]) : double(rd_detail::kPruneMaxA)) * S * (1 + 1e-6);
      const double d = (M0 - M1) * (2 * xlo - M0 - M1);
      const double size = (xhi - M1) * (xhi - M1) + (xhi - M0) * (xhi - M0) + (xlo - M0) * (xlo - M0) + std::fabs(L0) + std::fabs(L1);
      if (!(M0 > M1) || !(d - 1e-5 * size - 1e-36 >= L0 - L1)) return true;
    }
  return false;
}

// Whether candidate code r never costs strictly less than code q (f32 rule, weight 1) for any x in
// [x0, x1]: the real difference (x − M_r)² − (x − M_q)² + L_r − L_q = (M_q − M_r)(2x − M_q − M_r) + L_r − L_q
// is linear in x, so it is checked at both ends, against the same slack as lo_minus_one_may_win.
bool never_cheaper(const RdPrepared& t, int b, int r, int q, double x0, double x1) {
  if (r == q) return true;  // the same code: equal costs
  const double Mr = t.magS[b][r], Mq = t.magS[b][q], Lr = t.L16[r], Lq = t.L16[q];
  for (double x : {x0, x1}) {
    const double size = (x - Mr) * (x - Mr) + (x - Mq) * (x - Mq) + std::fabs(Lr) + std::fabs(Lq);
    if (!((Mq - Mr) * (2 * x - Mq - Mr) + Lr - Lq - 1e-5 * size - 1e-36 >= 0)) return false;
  }
  return true;
}

// The pair tables of byte b (see RdPrepared::pairM); false if some index needs all three candidates.
bool prepare_pairs(RdPrepared& t, int b) {
  const double S = t.S[b];
  bool all_pairs = S >= 1e-30 && S <= 1e15;
  for (int i = 0; i < 32; ++i) {
    const int wq = i & 15;
    int c[3];
    for (int k = 0; k < 3; ++k) c[k] = rd_detail::kCandidate[k][i];
    int keep0 = 1, keep1 = 2;  // lo and lo + 1 unless shown otherwise; entries for a >= 48 are never used
    if (wq <= 13 && all_pairs) {
      // a's interval for this index: [0, 0.5) for 0, else half an octave [A, A·(1 + 1/(2 + mb))).
      const int v = wq + 251, e = (v >> 1) - 127, mb = v & 1;
      const double A = wq == 0 ? 0.0 : std::ldexp(1.0 + 0.5 * mb, e), B = wq == 0 ? 0.5 : A + std::ldexp(0.5, e);
      const double x0 = A * S * (1 - 1e-6), x1 = B * S * (1 + 1e-6);
      auto dropped = [&](int r) {
        for (int q = 0; q < 3; ++q)
          if (q != r && never_cheaper(t, b, c[r], c[q], x0, x1)) return true;
        return false;
      };
      if (dropped(0)) {
        keep0 = 1, keep1 = 2;
      } else if (dropped(2)) {
        keep0 = 0, keep1 = 1;
      } else if (dropped(1)) {
        keep0 = 0, keep1 = 2;
      } else {
        all_pairs = false;
      }
    }
    t.pairM[b][0][i] = t.magS[b][c[keep0]];
    t.pairL[b][0][i] = t.L16[c[keep0]];
    t.pairM[b][1][i] = t.magS[b][c[keep1]];
    t.pairL[b][1][i] = t.L16[c[keep1]];
  }
  return all_pairs;
}

}  // namespace

RdPrepared rd_prepare(const RdBlockParams& p) {
  RdPrepared t;
  const RdCostTables& c = *p.costs;
  t.gs = p.gs;
  t.below = p.below;
  t.above = p.above;
  for (int i = 0; i < 16; ++i) t.L[i] = p.lambda * c.code[i];
  for (int i = 0; i < 16; ++i) t.L16[i] = t.L[i == 8 ? 0 : i];
  for (int b = 0; b < 128; ++b) {
    t.S[b] = e4m3_decode(uint8_t(b)) / p.gs;
    for (int i = 0; i < 16; ++i) t.magS[b][i] = kMagnitude[i & 7] * t.S[b];
    t.R[b] = 1.0f / t.S[b];
    t.Ls[b] = p.lambda * c.scale[b];
    t.usable[b] = b >= 1 && b <= 0x7E && t.S[b] > 0.0f && std::isfinite(t.S[b]) && std::isfinite(t.R[b]);
  }
  for (int k = 0; k < 3; ++k) {
    for (int i = 0; i < 32; ++i) t.Lc[k][i] = t.L16[rd_detail::kCandidate[k][i]];
    for (int b = 0; b < 128; ++b)
      for (int i = 0; i < 16; ++i) t.magSc[b][k][i] = t.magS[b][rd_detail::kCandidate[k][i]];
  }
  t.need_prefix[0] = t.usable_prefix[0] = t.need3_prefix[0] = 0;
  for (int b = 0; b < 128; ++b) {
    t.need_below[b] = t.usable[b] && lo_minus_one_may_win(t, b);
    t.need_prefix[b + 1] = uint16_t(t.need_prefix[b] + t.need_below[b]);
    t.need3[b] = !prepare_pairs(t, b) && t.usable[b];
    t.need3_prefix[b + 1] = uint16_t(t.need3_prefix[b] + t.need3[b]);
    t.usable_prefix[b + 1] = uint16_t(t.usable_prefix[b] + t.usable[b]);
  }
  t.zero_byte = 1;
  for (int b = 2; b <= 0x7E; ++b)
    if (c.scale[b] < c.scale[t.zero_byte]) t.zero_byte = uint8_t(b);
  return t;
}

namespace {

// rd_choose_block's prepared tables for the AVX-512 kernel, per thread, rebuilt when the parameters or
// the tables' contents change (callers update one RdCostTables in place between passes).
struct PreparedCache {
  bool valid = false;
  float gs = 0, lambda = 0;
  int below = 0, above = 0;
  RdCostTables costs{};
  RdPrepared t;
};

const RdPrepared& prepared_for(const RdBlockParams& p) {
  thread_local PreparedCache cache;
  if (!cache.valid || cache.gs != p.gs || cache.lambda != p.lambda || cache.below != p.below || cache.above != p.above ||
      std::memcmp(&cache.costs, p.costs, sizeof(RdCostTables)) != 0) {
    cache.t = rd_prepare(p);
    cache.gs = p.gs;
    cache.lambda = p.lambda;
    cache.below = p.below;
    cache.above = p.above;
    cache.costs = *p.costs;
    cache.valid = true;
  }
  return cache.t;
}

}  // namespace

uint8_t rd_choose_block(const float* w, const float* wt, const RdBlockParams& p, uint8_t* codes, float* S) {
  static const RdBlocksKernel kernel = rd_blocks_kernel();
  if (kernel != rd_choose_blocks_scalar) {
    uint8_t own[16], byte;
    kernel(prepared_for(p), w, wt, 1, codes ? codes : own, &byte, nullptr);
    *S = e4m3_decode(byte) / p.gs;
    return byte;
  }
  return rd_choose_block_scalar(w, wt, p, codes, S);
}

uint8_t rd_choose_block_scalar(const float* w, const float* wt, const RdBlockParams& p, uint8_t* codes, float* S) {
  const RdCostTables& c = *p.costs;
  float L[16];
  for (int i = 0; i < 16; ++i) L[i] = p.lambda * c.code[i];
  uint8_t zero_byte = 1;
  for (int b = 2; b <= 0x7E; ++b)
    if (c.scale[b] < c.scale[zero_byte]) zero_byte = uint8_t(b);
  uint8_t own[16];
  const uint8_t best = choose_block_scalar(
      w, wt, p.gs, p.below, p.above, L, zero_byte,
      [&](int b, float* Sb, float* Rb, float* Ls) {
        *Sb = e4m3_decode(uint8_t(b)) / p.gs;
        *Rb = 1.0f / *Sb;
        *Ls = p.lambda * c.scale[b];
        return *Sb > 0.0f && std::isfinite(*Sb) && std::isfinite(*Rb);
      },
      codes ? codes : own, nullptr);
  *S = e4m3_decode(best) / p.gs;
  return best;
}

void rd_choose_blocks_scalar(const RdPrepared& t, const float* w, const float* wt, size_t nblocks, uint8_t* codes,
                             uint8_t* scales, double* sq_err) {
  auto cand = [&](int b, float* S, float* R, float* Ls) {
    *S = t.S[b];
    *R = t.R[b];
    *Ls = t.Ls[b];
    return t.usable[b] != 0;
  };
  for (size_t i = 0; i < nblocks; ++i)
    scales[i] = choose_block_scalar(w + 16 * i, wt ? wt + 16 * i : nullptr, t.gs, t.below, t.above, t.L, t.zero_byte, cand,
                                    codes + 16 * i, sq_err);
}

bool rd_blocks_use_avx512() { return cpu_features().has(CpuFeature::kAvx512); }

RdBlocksKernel rd_blocks_kernel() {
  static constexpr RdBlocksKernel kByIsa[] = {rd_choose_blocks_scalar, rd_choose_blocks_avx2, rd_choose_blocks_avx512};
  return kByIsa[int(detect_isa())];  // indexed by Isa
}

void rd_choose_blocks(const RdPrepared& t, const float* w, const float* wt, size_t nblocks, uint8_t* codes, uint8_t* scales,
                      double* sq_err) {
  static const RdBlocksKernel kernel = rd_blocks_kernel();
  kernel(t, w, wt, nblocks, codes, scales, sq_err);
}

}  // namespace fp4z
