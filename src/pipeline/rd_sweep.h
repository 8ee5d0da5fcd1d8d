// `fp4z sweep`: absmax, seed alphas and rd targets on one model, each measured for size (ideal and
// fp4z-coded bits/weight), weight MSE, perplexity, KL and top-1 agreement; JSON, CSV and an SVG plot.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace fp4z {

struct SweepOptions {
  std::string source, calibration, eval_text, out;
  std::vector<double> alphas = {1.25, 1.5, 2.0, 2.5, 3.0};
  std::vector<double> rd_targets = {3.3, 3.5, 3.65, 3.8, 3.95, 4.1};
  bool rd_uncalibrated = true;  // also rd without calibration at the same targets (weight MSE series)
  int calibration_seqs = 64, sensitivity_seqs = 4;
  int64_t ctx = 512, eval_chunks = 40;  // evaluation windows of ctx tokens (0 = all)
  bool keep_checkpoints = false, force = false, quiet = false;
  int threads = 0;
};

struct SweepPoint {
  std::string series, label;  // series: absmax | seed | rd | rd-nocal
  double param = 0;           // alpha, or the rd target
  double ideal_bits = 0, coded_bits = 0, weight_mse = 0, lambda = -1;
  double ppl = 0, kl_mean = 0, kl_p99 = 0, top1 = 0, seconds_quantize = 0;
};

// Runs every point; writes OUT/sweep.json, OUT/sweep.csv, OUT/sweep.svg (and, with
// keep_checkpoints, OUT/ckpt/<label>/). Throws Error(exit 2) on bad input.
std::vector<SweepPoint> run_sweep(const SweepOptions& o);

// The SVG plot of the Pareto curves: bits/weight vs KL (left) and vs weight MSE (right), one line per series.
std::string sweep_svg(const std::vector<SweepPoint>& pts, const std::string& title);

// Rewrites DIR/sweep.svg from DIR/sweep.json (after a plot change, without rerunning the sweep).
void replot_sweep(const std::string& dir);

}  // namespace fp4z
