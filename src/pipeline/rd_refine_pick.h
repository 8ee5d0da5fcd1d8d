// The code refinement's decision for one column across a tile of rows: which code change, if any, each row takes.
#pragma once
#include <cstdint>

#include "common/cpu.h"

namespace fp4z {

// One column j of a refinement sweep, for the n rows of a tile. Row t's current code is codes[t·K],
// its gradient g[t·K], its block scale S[t·Sstride]; rows with active[t] == 0 are skipped (-1). For each
// row the 16 changes cost Δ(c2) = 2·d·g + d²·hjj + λ·(cost[c2] − cost[c]) with d = (value[c2] − value[c])·S,
// and the row takes the first c2 (not c, not the negative zero 8) with Δ below the best so far minus
// 1e-18, starting from 0 — or none (-1). Writes pick[t]. Every path gives the same picks: products and
// sums are done in double in this order, without fused multiply-adds.
struct RdRefineColumn {
  const uint8_t* codes;
  const float* g;
  const double* S;
  const uint8_t* active;
  int64_t K, Sstride;
  double hjj, lambda;
  const double* value;  // [16]
  const double* cost;   // [16]
};
void rd_refine_pick_scalar(const RdRefineColumn& col, int64_t n, int8_t* pick);

namespace kernels {
void rd_refine_pick_avx512(const RdRefineColumn& col, int64_t n, int8_t* pick);
}

// The column decision of one ISA level (one table per level, as nv_kernels; AVX2 runs the scalar one).
struct RdRefineKernels {
  void (*pick)(const RdRefineColumn& col, int64_t n, int8_t* pick);
};
// The kernels of `isa`, capped by what this CPU runs.
const RdRefineKernels& rd_refine_kernels(Isa isa);

}  // namespace fp4z
