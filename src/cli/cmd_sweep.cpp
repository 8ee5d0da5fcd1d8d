// `fp4z sweep`: argument parsing for the rate–accuracy sweep (absmax, seed alphas, rd targets).
#include <cstdio>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "common/error.h"
#include "common/path_guard.h"
#include "pipeline/rd_sweep.h"

namespace fp4z::cli {

int cmd_sweep(int argc, char** argv) {
  CLI::App app{"Quantize one model with absmax, seed (uniform alpha, fused global scale) and rd at several bit targets;\n"
               "measure each point (ideal and fp4z-coded bits/weight, weight MSE, perplexity, KL vs the source, top-1) on\n"
               "an evaluation text, and write OUT/sweep.json, OUT/sweep.csv and OUT/sweep.svg (the Pareto curves)."};
  app.name("fp4z sweep");
  SweepOptions o;
  std::string replot;
  app.add_option("--replot", replot, "only rewrite DIR/sweep.svg from DIR/sweep.json");
  app.add_option("--source", o.source, "F32/BF16/F16 checkpoint with a tokenizer");
  app.add_option("--calibration", o.calibration, "calibration text for rd (without it only rd without calibration runs)");
  app.add_option("--eval", o.eval_text, "evaluation text (must not overlap the calibration text)");
  app.add_option("--out", o.out, "output directory");
  app.add_option("--alphas", o.alphas, "seed alphas (comma-separated, default 1.25,1.5,2,2.5,3)")->delimiter(',');
  app.add_option("--rd-targets", o.rd_targets, "rd bits/weight targets (comma-separated)")->delimiter(',');
  app.add_flag("!--no-rd-uncalibrated", o.rd_uncalibrated, "skip the rd-without-calibration series");
  app.add_option("--calibration-seqs", o.calibration_seqs, "rd calibration sequences (default 64)");
  app.add_option("--sensitivity-seqs", o.sensitivity_seqs, "rd sensitivity sequences (default 4)");
  app.add_option("--ctx", o.ctx, "tokens per calibration sequence and evaluation window (default 512)");
  app.add_option("--chunks", o.eval_chunks, "evaluation windows (default 40, 0 = the whole text)");
  app.add_flag("--keep-checkpoints", o.keep_checkpoints, "keep every point's checkpoint under OUT/ckpt/");
  app.add_option("--threads", o.threads, "worker threads (0 = all cores)");
  app.add_flag("--force", o.force, "replace an existing output directory");
  app.add_flag("--quiet,-q", o.quiet, "no progress lines");
  FP4Z_PARSE_OR_RETURN(app, argc, argv);
  if (!replot.empty()) {
    replot_sweep(replot);
    return 0;
  }
  if (o.source.empty() || o.eval_text.empty() || o.out.empty()) fail_input("fp4z sweep needs --source, --eval and --out (or --replot DIR)");
  require_output_apart(o.out, {o.source, o.calibration, o.eval_text}, "--out");
  auto pts = run_sweep(o);
  std::printf("%-16s %9s %9s %11s %8s %8s %8s %8s\n", "point", "bits", "coded", "weight_mse", "ppl", "KL", "KL_p99", "top1");
  for (const auto& p : pts)
    std::printf("%-16s %9.4f %9.4f %11.4e %8.4f %8.4f %8.4f %8.4f\n", p.label.c_str(), p.ideal_bits, p.coded_bits, p.weight_mse, p.ppl,
                p.kl_mean, p.kl_p99, p.top1);
  std::printf("wrote %s/sweep.json, sweep.csv, sweep.svg\n", o.out.c_str());
  return 0;
}

}  // namespace fp4z::cli
