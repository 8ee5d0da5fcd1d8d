// The checkpoint job of `fp4z quantize --method rd`: calibration (sequential, GPTQ order), per-layer
// sensitivity weighting of λ, the --target-bits bisection, and per-layer encodings in decoder order.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "format/checkpoint.h"
#include "model/linear.h"
#include "pipeline/layer_quant.h"
#include "pipeline/quantize.h"
#include "pipeline/rd_layer.h"

namespace fp4z {

// Inflation room of the rd global scale: gs = 2688 / (amax_G · kRdGlobalRoom), so the largest block of a
// fused group can still take a block scale up to kRdGlobalRoom × its absmax scale below FP8's 448.
constexpr float kRdGlobalRoom = 4.0f;

// Without calibration the table and λ-search runs see a fixed subsample of rows: every s-th row of each
// quantized Linear (rows 0, s, 2s, ...), s = ⌊total weights / max(kRdSampleMinWeights, total /
// kRdSampleFraction)⌋ (at least 1), so the whole search (≈ 10–30 runs) costs a fraction of one full pass;
// models of at most kRdSampleMinWeights are searched whole. The written run quantizes every row.
constexpr uint64_t kRdSampleMinWeights = uint64_t(1) << 18;
constexpr uint64_t kRdSampleFraction = 256;

// Default calibration size (--calibration-seqs 0): 64 sequences of the context, fewer when tokens ×
// decoder Linear weights would exceed kRdCalibrationWork = 2^43 ≈ 8.8e12, but at least 4. The
// calibrated work per run grows with tokens × weights (the layer forwards, and the moments H, C:
// tokens × K² per input); 2^43 keeps a Qwen3-4B-sized model's calibration forwards and moments within
// a few minutes of 2 cores per sequential run. stories260K: 64; Qwen3-0.6B: 39; Qwen3-4B: 4 (2048
// tokens; the experiment found 64 vs 256 sequences moved KL by <= 0.01).
constexpr double kRdCalibrationWork = 8.796093022208e12;  // 2^43
int rd_auto_calibration_seqs(double decoder_weights, int64_t ctx);

// --rd-weighting auto: per-Linear sensitivities cost one whole-model forward of the sensitivity
// sequences per Linear, (Linears + 1) × tokens × (decoder + head weights) multiply-adds; measured when
// that is at most 2^46 ≈ 7e13 (stories260K: 2e10, Qwen3-0.6B: ≈ 6e13), else uniform weighting
// (Qwen3-4B: ≈ 5e14, hours on 2 cores).
constexpr double kRdSensitivityWork = 7.0368744177664e13;  // 2^46

// Size limit of the λ search's cache of every layer's H and corrected weight (f32).
constexpr uint64_t kRdCacheBytes = uint64_t(512) << 20;

struct Model;
struct Session;

class RdJob {
 public:
  // Validates the rd options, loads and runs the calibration set-up (tokenizer, sequences,
  // sensitivities) and, with --target-bits, finds λ by bisection. Throws Error(exit 2) on bad
  // input before any output exists.
  RdJob(const QuantizeOptions& o, const Checkpoint& src, const std::vector<std::string>& modules);
  ~RdJob();

  // `names` reordered so that the quantized modules' weights come in decoder-layer order.
  std::vector<std::string> write_order(const std::vector<std::string>& names) const;
  // Encodes `module` (must be requested in write_order) with the chosen λ.
  void encode(const std::string& module, LayerEncoding& enc);
  // The report JSON (after every module was encoded).
  nlohmann::ordered_json report() const;

  double lambda() const { return lambda_; }
  double bits_per_weight() const;

 private:
  struct Unit {
    int64_t layer = -1;  // decoder layer index, -1 = outside the decoder stack
    std::vector<std::string> modules;
  };
  struct LayerRecord {
    std::string name;
    int64_t rows = 0, cols = 0;
    double lambda = 0, sensitivity = 1, bits = 0, mse = 0, h_error = -1, seconds = 0;
  };
  using Sink = std::function<void(const std::string& module, RdLayerResult& res)>;

  std::vector<float> load_weight(const std::string& module) const;
  // The search runs' rows of `module` (every sample_stride_-th row, cached), and their count.
  const std::vector<float>& sample_weight(const std::string& module, int64_t* rows);
  void begin_run(double lambda);
  void process_unit(size_t u, const Sink& sink);
  // Quantizes everything at λ without writing; returns the pooled ideal bits/weight and, optionally,
  // the weighted distortion per weight.
  double run_bits(double lambda, double* distortion_per_weight = nullptr, Nvfp4Histogram* hist = nullptr);
  // --target-bits: bisection on log λ with the current tables (the rate is smooth in log λ).
  // `aim` (> 0) replaces the target rate (the sequential check's correction).
  double search_lambda(double b0, double d0, double hint = 0, double aim = 0);
  void measure_sensitivities();
  void setup_calibration();
  // The proxy search runs' column weights and owners (models whose search cache would not fit).
  void collect_column_weights();
  Linear* model_linear(int64_t layer, const std::string& module);

  QuantizeOptions o_;
  const Checkpoint& src_;
  int threads_ = 1;
  std::vector<Unit> units_;
  std::map<std::string, float> gs_;           // module -> rd global scale (shared per fused group)
  std::map<std::string, float> absmax_gs_;    // module -> compressed-tensors global scale
  std::map<std::string, double> sensitivity_;  // module -> KL per unit of output error (1 without)
  double lambda_ = 0;
  bool pooled_tables_ = true;
  RdCostTables tables_{};  // model-wide cost tables (pooled_tables_)
  // calibration
  std::unique_ptr<Model> model_;
  std::unique_ptr<Session> session_;
  std::map<std::string, Linear> source_linear_;
  std::vector<std::vector<int32_t>> seqs_;
  std::vector<float> hidden_;  // [seq][ctx][hidden] after the layers processed so far
  // Input correction: the source model's hidden states beside the quantized model's, so that each layer
  // is fitted to reproduce the source layer on source inputs (rd_quantize.cpp, input_corrected_weight).
  bool input_correction_ = false;
  bool staged_calibration_ = true;  // one H per input group, taken after the layer's earlier groups are quantized
  std::vector<float> hidden_fp_;
  std::map<std::string, std::vector<float>> target_cache_;  // module -> corrected weight (with h_cache_)
  int64_t ctx_ = 0;
  double calib_seconds_ = 0, sens_seconds_ = 0, search_seconds_ = 0;
  // Parts of the calibrated work over all runs: calib_seconds_ (forwards and moments, without the layer
  // work), of which moments_seconds_; the layer work: factor, input correction, quantization (+ refinement).
  double moments_seconds_ = 0, factor_seconds_ = 0, correct_seconds_ = 0, quant_seconds_ = 0;
  int search_runs_ = 0;
  // λ search with calibration: the H of every layer from the first (λ = 0, sequential) run, reused by
  // the search runs so that they need no forward passes (only when H and the corrected weights of every
  // layer fit in kRdCacheBytes; otherwise every run is sequential).
  std::map<std::string, std::vector<float>> h_cache_;
  std::map<std::string, std::string> owner_cache_;
  bool fill_h_cache_ = false, use_h_cache_ = false;
  // Models whose cache would not fit: each input's column weights 1/U_jj² (K floats) from the source
  // model's H (collect_column_weights), and every search and table run is a proxy on a row subsample
  // without feedback (see the constructor).
  std::map<std::string, std::vector<float>> col_weight_cache_;
  bool proxy_search_ = false;
  std::string search_path_;  // the report's "search": "cache" or "proxy" (calibrated), empty without calibration
  // uncalibrated search on a row subsample (see kRdSampleWeights)
  int64_t sample_stride_ = 1;
  bool sampling_ = false;
  std::map<std::string, std::vector<float>> sample_cache_;
  std::vector<float> weight_buf_;  // the current tensor in f32 (reused)
  // write run state
  size_t next_unit_ = 0;
  bool started_ = false;
  std::map<std::string, RdLayerResult> ready_;
  std::vector<LayerRecord> records_;
  Nvfp4Histogram pooled_;
};

}  // namespace fp4z
