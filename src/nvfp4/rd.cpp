// Rate–distortion decisions for NVFP4 blocks: histograms, cost tables, block-scale search, code choice.
#include "nvfp4/rd.h"

#include <algorithm>
#include <cmath>

#include "nvfp4/codec.h"

namespace fp4z {

namespace {

constexpr float kMagnitude[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};

double entropy_bits(const uint64_t* counts, int n, uint64_t* total_out) {
  uint64_t total = 0;
  for (int i = 0; i < n; ++i) total += counts[i];
  if (total_out) *total_out = total;
  if (total == 0) return 0;
  double h = 0;
  for (int i = 0; i < n; ++i) {
    if (!counts[i]) continue;
    double p = double(counts[i]) / double(total);
    h -= p * std::log2(p);
  }
  return h;
}

}  // namespace

void Nvfp4Histogram::add_packed(const uint8_t* packed, size_t nbytes) {
  for (size_t i = 0; i < nbytes; ++i) {
    ++code[packed[i] & 0xF];
    ++code[packed[i] >> 4];
  }
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
  uint64_t nc = 0, ns = 0;
  double hc = entropy_bits(code, 16, &nc);
  double hs = entropy_bits(scale, 256, &ns);
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

uint8_t rd_choose_code(float w, float S, float wt, float lambda, const float* code_cost) {
  const float a = std::fabs(w / S);
  int lo = 7;
  while (lo > 0 && kMagnitude[lo] > a) --lo;  // largest magnitude <= |w/S|
  const uint8_t sign = w < 0.0f ? 8 : 0;
  uint8_t best = 0;
  double best_cost = INFINITY;
  for (int m = std::max(0, lo - 1); m <= std::min(7, lo + 1); ++m) {
    const uint8_t code = m == 0 ? 0 : uint8_t(m | sign);
    const double v = double(kMagnitude[m]) * double(S);
    const double err = double(std::fabs(w)) - v;
    const double cost = double(wt) * err * err + double(lambda) * double(code_cost[code]);
    if (cost < best_cost) {
      best_cost = cost;
      best = code;
    }
  }
  return best;
}

uint8_t rd_choose_block(const float* w, const float* wt, const RdBlockParams& p, uint8_t* codes, float* S) {
  const RdCostTables& c = *p.costs;
  float amax = 0;
  for (int j = 0; j < 16; ++j) amax = std::max(amax, std::fabs(w[j]));
  if (amax == 0.0f) {
    uint8_t best = 1;
    for (int b = 2; b <= 0x7E; ++b)
      if (c.scale[b] < c.scale[best]) best = uint8_t(b);
    if (codes) std::fill(codes, codes + 16, uint8_t(0));
    *S = e4m3_decode(best) / p.gs;
    return best;
  }
  const int b0 = std::max<int>(1, e4m3_encode_rne(std::min(amax / 6.0f * p.gs, 448.0f)));
  const int first = std::max(1, b0 - p.below), last = std::min(0x7E, b0 + p.above);
  uint8_t best = uint8_t(b0), trial[16];
  double best_cost = INFINITY;
  for (int b = first; b <= last; ++b) {
    const float Sb = e4m3_decode(uint8_t(b)) / p.gs;
    if (!(Sb > 0.0f) || !std::isfinite(Sb)) continue;
    double cost = double(p.lambda) * double(c.scale[b]);
    for (int j = 0; j < 16 && cost < best_cost; ++j) {
      const uint8_t code = rd_choose_code(w[j], Sb, wt[j], p.lambda, c.code);
      trial[j] = code;
      const double err = double(w[j]) - double(kE2M1Value[code]) * double(Sb);
      cost += double(wt[j]) * err * err + double(p.lambda) * double(c.code[code]);
    }
    if (cost < best_cost) {
      best_cost = cost;
      best = uint8_t(b);
      if (codes) std::copy(trial, trial + 16, codes);
    }
  }
  *S = e4m3_decode(best) / p.gs;
  return best;
}

}  // namespace fp4z
