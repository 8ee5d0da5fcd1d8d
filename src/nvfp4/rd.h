// Rate–distortion decisions for NVFP4 blocks: code/scale cost tables, the ideal order-0 size, the
// per-16-block FP8 scale search and the per-element code choice (docs/quantize.md, "--method rd").
#pragma once
#include <cstddef>
#include <cstdint>

namespace fp4z {

// Pooled histograms of FP4 codes (code 8, negative zero, counted as code 0: fp4z writes +0) and of
// FP8 block-scale bytes.
struct Nvfp4Histogram {
  uint64_t code[16] = {};
  uint64_t scale[256] = {};
  void add_packed(const uint8_t* packed, size_t nbytes);
  void add_scales(const uint8_t* s8, size_t n);
  void merge(const Nvfp4Histogram& o);
  uint64_t weights() const;
  // Ideal order-0 size in bits per weight: H(codes) + H(scales) / 16 (global scales neglected).
  double ideal_bits_per_weight() const;
};

// What a coder pays per symbol, in bits: −log2 p with p from a histogram (counts + 1/2, so a code
// that never occurred still has a finite price).
struct RdCostTables {
  float code[16];
  float scale[256];
};
RdCostTables rd_costs_from_histogram(const Nvfp4Histogram& h);

// Decision parameters of one tensor.
struct RdBlockParams {
  float gs = 1;         // global scale (divisor): S = dec(s8) / gs
  float lambda = 0;     // bits → distortion exchange rate (distortion units per bit)
  const RdCostTables* costs = nullptr;
  int below = 3;        // scale candidates: FP8 bytes from absmax byte − below ...
  int above = 12;       // ... to absmax byte + above (12 steps ≈ ×2.8: the inflated candidates)
};

// Code for one weight w given the block divisor S > 0: among the E2M1 magnitudes just below and
// just above |w/S| and the next one toward zero (with w's sign; zero is always code 0), the one
// minimising wt·(w − v·S)² + λ·cost[code]. Lower code wins ties.
uint8_t rd_choose_code(float w, float S, float wt, float lambda, const float* code_cost);

// Scale byte of one 16-block: every candidate byte is tried with rd_choose_code for all 16
// weights; returns the byte minimising Σ wt_j·err_j² + λ·(Σ code costs + scale cost). Writes the
// block's codes (0..15, never 8) when codes != nullptr and the divisor S to *S. An all-zero block
// takes the cheapest byte of the whole FP8 range.
uint8_t rd_choose_block(const float* w, const float* wt, const RdBlockParams& p, uint8_t* codes, float* S);

}  // namespace fp4z
