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

// The decisions are specified in f32 (docs/quantize.md, "--method rd"; every ISA makes the same ones):
// with R = fl(1/S), a = fl(|w|·R), lo = the number of nonzero E2M1 magnitudes <= a, the candidate
// magnitudes are m ∈ {lo−1, lo, lo+1} clipped to 0..7, each costing
//   c = fl(fl(wt · fl(e·e)) + L[code]),  e = fl(|w| − fl(mag_m·S)),  L[code] = fl(λ·cost[code]);
// the lowest c wins, the lower magnitude on ties; code = m with w's sign (w < 0), zero is code 0.

// Code for one weight w given the block divisor S > 0 (the rule above).
uint8_t rd_choose_code(float w, float S, float wt, float lambda, const float* code_cost);

// Per-tensor precomputation of the block decision: for every candidate scale byte b (1..0x7E)
// S_b = fl(dec(b)/gs), R_b = fl(1/S_b), Ls_b = fl(λ·cost_scale[b]), whether b is usable (S_b and R_b
// finite and > 0), L[code] = fl(λ·cost_code[code]) and the cheapest byte for all-zero blocks.
struct RdPrepared {
  float S[128], R[128], Ls[128];
  uint8_t usable[128];
  float L[16];
  // For vector kernels: magS[b][i] = fl(mag_(i&7)·S_b) and L16 = L with L16[8] = L[0] (index = magnitude
  // | 8 for w < 0, so that a negative weight's zero costs code 0).
  alignas(64) float magS[128][16];
  alignas(64) float L16[16];
  // The same by the lo index w' of the vector kernels (rd_internal.h): magSc[b][c][w'] = magS[b] of
  // candidate c's magnitude (c = 0, 1, 2: lo − 1, lo, lo + 1), Lc[c][w' | 16 for w < 0] = its L16.
  alignas(64) float magSc[128][3][16];
  alignas(64) float Lc[3][32];
  // need_below[b]: whether, for byte b, weight 1 and a < kPruneMaxA, the lo − 1 candidate can ever cost
  // strictly less than lo (an exact bound, rd_prepare; where it cannot, the AVX2 kernel skips it: the
  // lowest cost, hence every total, is the same). need_prefix[b] = number of usable bytes below b that need it.
  uint8_t need_below[128];
  uint16_t need_prefix[129];
  uint16_t usable_prefix[129];  // number of usable bytes below b
  // Finer, per lo index i = w' | 16·(w < 0) (w' <= 13, i.e. a < 48): two of the three candidates whose
  // lower cost is the lowest of all three for every weight with that index (the third provably never
  // costs strictly less than one of them; rd_prepare), as magS and L tables for permutes: pairM[b][k][i],
  // pairL[b][k][i], k = 0, 1. need3[b]: some index of byte b needs all three; need3_prefix as need_prefix.
  alignas(64) float pairM[128][2][32];
  alignas(64) float pairL[128][2][32];
  uint8_t need3[128];
  uint16_t need3_prefix[129];
  uint8_t zero_byte = 1;
  float gs = 1;
  int below = 3, above = 12;
};
RdPrepared rd_prepare(const RdBlockParams& p);

// Scale byte of one 16-block. Candidates: bytes from b0 − below to b0 + above clipped to 1..0x7E,
// b0 = max(1, enc(min(fl(fl(amax/6)·gs), 448))), in ascending order, unusable ones skipped. A
// candidate's total is T = fl(Ls_b + tree(c_0..c_15)) with c_j its weights' best code costs and
// tree() the pairwise sum c_j + c_{j+8}, then + 4, + 2, + 1 apart (one AVX-512 register's reduction
// order); the first candidate, then any with a strictly lower T, becomes the best. An all-zero block
// takes the cheapest byte (zero_byte) and codes 0; no usable candidate gives b0 and codes 0. Writes
// the codes (0..15, never 8) when codes != nullptr and the divisor S to *S. wt may be null (= 1); its
// entries must be finite and > 0 (0·∞ would make a cost NaN, which the rule leaves undefined).
// Uses a vector kernel when the CPU has one (with tables prepared once per thread and parameter set).
uint8_t rd_choose_block(const float* w, const float* wt, const RdBlockParams& p, uint8_t* codes, float* S);
uint8_t rd_choose_block_scalar(const float* w, const float* wt, const RdBlockParams& p, uint8_t* codes, float* S);

// `nblocks` consecutive blocks (w, wt and codes advance by 16 per block; wt may be null = 1): scale
// bytes to scales[], codes to codes[] and, when sq_err != nullptr, adds the blocks' squared error
// Σ (double(fl(value·S)) − double(w))² (per block the same pairwise tree, in double; blocks in order).
// rd_choose_blocks uses the best kernel the CPU has (cpu_features(), FP4Z_ISA); the others are
// for tests and benchmarks, all giving identical results. The _avx512 one needs CpuFeature::kAvx512,
// the _avx2 one CpuFeature::kAvx2.
void rd_choose_blocks(const RdPrepared& t, const float* w, const float* wt, size_t nblocks, uint8_t* codes, uint8_t* scales,
                      double* sq_err);
void rd_choose_blocks_scalar(const RdPrepared& t, const float* w, const float* wt, size_t nblocks, uint8_t* codes,
                             uint8_t* scales, double* sq_err);
void rd_choose_blocks_avx512(const RdPrepared& t, const float* w, const float* wt, size_t nblocks, uint8_t* codes,
                             uint8_t* scales, double* sq_err);
void rd_choose_blocks_avx2(const RdPrepared& t, const float* w, const float* wt, size_t nblocks, uint8_t* codes,
                           uint8_t* scales, double* sq_err);
// Whether rd_choose_blocks runs the AVX-512 kernel on this CPU.
bool rd_blocks_use_avx512();
// The kernel rd_choose_blocks and rd_choose_block run on this CPU (cpu_features(), FP4Z_ISA).
using RdBlocksKernel = void (*)(const RdPrepared&, const float*, const float*, size_t, uint8_t*, uint8_t*, double*);
RdBlocksKernel rd_blocks_kernel();

}  // namespace fp4z
