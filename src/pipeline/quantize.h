// Checkpoint-level NVFP4 quantization: absmax (compressed-tensors exact) and seed (scale inflation).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "common/cpu.h"
#include "pipeline/layer_quant.h"

namespace fp4z {

struct QuantizeOptions {
  std::string source;
  std::string out;
  std::string method = "absmax";  // "absmax" | "seed" | "rd"
  std::string template_dir;       // seed only
  std::string format = "compressed-tensors";  // absmax: or "modelopt"
  float alpha = 2.0f;
  std::vector<std::string> include, exclude;  // seed: prefix filters (Python fnmatch)
  std::vector<std::string> ignore;            // absmax: modules kept unquantized
  bool fused_global_scale = false;            // seed: one global scale per fused group
  bool canonical_zero = false;                // write code 0 instead of 8 for negative zeros
  bool legacy_config = false;                 // omit scale_dtype/zp_dtype (compressed-tensors <= 0.12)
  // rd (docs/quantize.md "--method rd"): exactly one of lambda >= 0 or target_bits > 0.
  double lambda = -1;
  double target_bits = 0;        // ideal order-0 bits per weight of the quantized Linears
  std::string calibration;       // text file; empty = weight MSE
  int calibration_seqs = 0;      // sequences of calibration_ctx tokens; 0 = automatic (rd_auto_calibration_seqs)
  int64_t calibration_ctx = 512;
  int sensitivity_seqs = 4;      // of the calibration sequences, used to measure per-layer sensitivity
  std::string rd_weighting = "auto";  // "auto" (sensitivity where affordable, see kRdSensitivityWork) | "sensitivity" | "uniform"
  std::string rd_tables = "pooled";  // cost tables: "pooled" (model-wide) | "tensor" (each tensor's own)
  double damp = 0.03;            // GPTQ damping, fraction of mean(diag H)
  int rd_refine = 4;             // coordinate-descent sweeps over the codes after the feedback pass (calibrated)
  std::string rd_inputs = "source";  // fit each layer to the source layer on "source" inputs, or on "quantized" ones
  std::string rd_stages = "group";   // H per input group after the layer's earlier groups are quantized, or per "layer"
  bool force = false;
  bool quiet = false;
  int threads = 0;
  uint64_t max_shard_bytes = 5000000000ull;
  Isa isa = Isa::kAvx512;  // capped by detect_isa()
};

struct LayerResult {
  std::string name;  // module prefix
  int64_t rows = 0, cols = 0;
  bool quantized = true;
  std::string kept_reason;   // when !quantized
  bool has_baseline = false;  // seed: template metrics present
  LayerMetrics baseline, result;
};

struct QuantizeResult {
  std::vector<LayerResult> layers;
  std::vector<std::string> warnings;
  double worst_fused_factor = 1.0;  // seed without --fused-global-scale: smallest g_i / max_j g_j
  double seconds = 0;
  uint64_t input_bytes = 0;
  uint64_t quantized_weights = 0;
  // Weighted aggregates over quantized layers (by weight count).
  double rd_lambda = 0, rd_bits_per_weight = 0;  // rd: chosen λ, pooled ideal bits/weight
  double base_proxy = 0, new_proxy = 0, base_mse = 0, new_mse = 0;
};

// Runs the whole job and publishes opts.out atomically. Throws fp4z::Error on bad input
// (nothing is left behind).
QuantizeResult quantize_checkpoint(const QuantizeOptions& opts);

}  // namespace fp4z
