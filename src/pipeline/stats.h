// Per-layer compression statistics of an NVFP4 checkpoint: the seed's proxy, order-0 entropies, real
// fp4z coded sizes, zstd -19 sizes, bits per weight, code histograms, and MSE against a source model.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "nvfp4/scales.h"

namespace fp4z {

// Order-0 (plug-in) entropy in bits per symbol of the byte values (nvfp4/measure.h: entropy_bits).
double byte_entropy(const uint8_t* p, uint64_t n);

struct LayerStats {
  std::string name;  // module name, e.g. model.layers.0.mlp.up_proj
  std::string format;  // "compressed-tensors" or "modelopt"
  uint64_t weights = 0, code_bytes = 0, scale_bytes = 0;
  EntropyProxy proxy;  // the seed's chunked even/odd byte entropy (nvfp4/scales.h)
  double h0_codes = 0;           // bits per 4-bit code
  double h0_code_pairs = 0;      // bits per packed byte / 2
  double h_codes_given_scale = 0;  // conditional entropy, bits per code
  double cond_scale_table_bits = 0;  // estimated table cost of conditioning on the scale, per code
  double h0_scales = 0;          // bits per FP8 scale
  uint64_t coded_codes = 0, coded_scales = 0;  // fp4z payload bytes (1 MiB chunks, tables included)
  uint64_t zstd_codes = 0, zstd_scales = 0;    // zstd -19 of the same bytes
  bool has_zstd = false;                       // false with --no-zstd
  uint64_t code_hist[16] = {};
  double bits_per_weight = 0;      // 8 * (coded codes + coded scales + 4) / weights
  double raw_bits_per_weight = 0;  // 8 * (code bytes + scale bytes + 4) / weights
  bool has_mse = false;
  double mse = 0;
};

struct StatsOptions {
  std::string reference;  // source checkpoint for MSE ("" = none)
  bool zstd = true;
  int threads = 0;
};

struct StatsReport {
  std::string dir;
  std::vector<LayerStats> layers;
  LayerStats total;  // sums; entropies and MSE weighted by weight count
  uint64_t other_tensor_bytes = 0;
  double ideal_bits_per_weight = 0;  // H0(pooled codes, -0 as +0) + H0(pooled scales) / 16  // everything that is not a quantized layer's codes/scales/global
};

// Throws Error (exit 2) if the checkpoint has no NVFP4 layers or cannot be read.
StatsReport compute_stats(const std::string& dir, const StatsOptions& opt);
std::string stats_text(const StatsReport& r);
nlohmann::ordered_json stats_json(const StatsReport& r);

}  // namespace fp4z
