// `fp4z quantize`: argument parsing and the end-of-run summary for checkpoint quantization.
#include <cstdio>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "common/cpu.h"
#include "common/path_guard.h"
#include "common/printable.h"
#include "format/safetensors.h"
#include "pipeline/quantize.h"

namespace fp4z::cli {

int cmd_quantize(int argc, char** argv) {
  CLI::App app{"Re-quantize a Hugging Face checkpoint (BF16/F16/F32) to NVFP4.\n"
               "  absmax: compressed-tensors / llm-compressor math, bit-exact, fused groups share one global scale.\n"
               "  seed:   the published scale-inflation method, bit-exact with its reference (needs --template).\n"
               "  rd:     rate-distortion NVFP4 (standard format): per-block scales and per-code choices minimise\n"
               "          distortion + lambda x bits; with --calibration, GPTQ-style error feedback (docs/quantize.md)."};
  app.name("fp4z quantize");
  QuantizeOptions o;
  std::string shard = "5GB";
  app.add_option("--source", o.source, "BF16/F16/F32 checkpoint directory")->required();
  app.add_option("--out", o.out, "output directory (must not exist or be empty, unless --force)")->required();
  app.add_option("--method", o.method, "absmax (default), seed or rd")->check(CLI::IsMember({"absmax", "seed", "rd"}));
  app.add_option("--template", o.template_dir, "seed: NVFP4 checkpoint of the same model whose scales are inflated");
  app.add_option("--alpha", o.alpha, "seed: scale inflation factor (default 2.0)");
  app.add_option("--include", o.include, "seed: keep only layer prefixes matching this glob (repeatable)");
  app.add_option("--exclude", o.exclude, "seed: drop layer prefixes matching this glob (repeatable)");
  app.add_option("--ignore", o.ignore, "absmax: keep Linear modules matching this glob unquantized (repeatable)");
  app.add_option("--format", o.format, "absmax output format: compressed-tensors (default) or modelopt");
  app.add_flag("--fused-global-scale", o.fused_global_scale, "seed: one global scale per fused group (loader-safe)");
  app.add_flag("--canonical-zero", o.canonical_zero, "write +0 (code 0) instead of -0 (code 8); dequantized values unchanged");
  app.add_flag("--legacy-config", o.legacy_config, "omit scale_dtype/zp_dtype (for compressed-tensors <= 0.12)");
  auto* lambda_opt = app.add_option("--lambda", o.lambda, "rd: distortion per bit (KL per bit with calibration, weight^2 per bit without)");
  app.add_option("--target-bits", o.target_bits, "rd: ideal order-0 bits per weight to reach (bisection on lambda)");
  app.add_option("--calibration", o.calibration, "rd: text file run through the engine for H = E[x x^T] (needs a tokenizer)");
  app.add_option("--calibration-seqs", o.calibration_seqs, "rd: calibration sequences (default: 64, fewer for big models, at least 4: see docs/quantize.md)");
  app.add_option("--calibration-ctx", o.calibration_ctx, "rd: tokens per calibration sequence (default 512)");
  app.add_option("--sensitivity-seqs", o.sensitivity_seqs, "rd: calibration sequences used to measure per-layer sensitivity (default 4)");
  app.add_option("--rd-weighting", o.rd_weighting, "rd with calibration: auto (default: sensitivity unless it costs too many model forwards), sensitivity or uniform");
  app.add_option("--rd-tables", o.rd_tables, "rd cost tables: pooled (model-wide, default) or tensor (each tensor's own)");
  app.add_option("--damp", o.damp, "rd: GPTQ damping as a fraction of mean(diag H) (default 0.03)");
  app.add_option("--rd-refine", o.rd_refine, "rd with calibration: code refinement sweeps after the feedback pass (default 4, 0 = off)");
  app.add_option("--rd-inputs", o.rd_inputs, "rd with calibration: fit each layer on source (default) or quantized-model inputs");
  app.add_option("--rd-stages", o.rd_stages, "rd with calibration: H per input group in forward order (group, default) or per layer");
  app.add_option("--threads", o.threads, "worker threads (default: all cores)");
  app.add_option("--max-shard-size", shard, "shard the output above this size (default 5GB = 5e9 bytes)");
  app.add_flag("--force", o.force, "replace an existing output directory");
  app.add_flag("--quiet,-q", o.quiet, "no progress or summary on stderr");
  FP4Z_PARSE_OR_RETURN(app, argc, argv);
  o.max_shard_bytes = parse_size(shard);
  if (lambda_opt->count() && !(o.lambda >= 0)) fail_input("--lambda must be a number >= 0");
  if (o.method != "rd" && (lambda_opt->count() || o.target_bits != 0 || !o.calibration.empty()))
    fail_input("--lambda, --target-bits and --calibration are only used by --method rd");
  o.isa = detect_isa();
  if (o.method == "seed" && o.template_dir.empty()) fail_input("--method seed needs --template NVFP4_DIR");
  if (o.method == "absmax" && !o.template_dir.empty()) fail_input("--template is only used by --method seed");
  require_output_apart(o.out, {o.source, o.template_dir, o.calibration}, "--out");

  QuantizeResult r = quantize_checkpoint(o);

  for (const auto& w : r.warnings) std::fprintf(stderr, "warning: %s\n", printable(w).c_str());
  if (r.worst_fused_factor < 1.0)
    std::fprintf(stderr, "warning: %zu fused-group members have mismatched global scales; vLLM dequantizes each fused layer with "
                         "the largest, scaling members by as little as x%.3f. Use --fused-global-scale for a loader-safe checkpoint.\n",
                 r.warnings.size(), r.worst_fused_factor);
  if (o.quiet) return 0;
  std::fprintf(stderr, "\n%-52s %12s %9s %9s %11s %11s %7s\n", "layer", "shape", "proxy0", "proxy", "mse0", "mse", "zeros");
  size_t shown = 0;
  for (const auto& l : r.layers) {
    if (++shown > 12 && r.layers.size() > 14) continue;
    char shape[32];
    std::snprintf(shape, sizeof shape, "%lldx%lld", (long long)l.rows, (long long)l.cols);
    std::string name = printable(l.name);
    if (name.size() > 52) name = "…" + name.substr(name.size() - 51);
    if (!l.quantized) {
      std::fprintf(stderr, "%-52s %12s   kept in source dtype (%s)\n", name.c_str(), shape, printable(l.kept_reason).c_str());
      continue;
    }
    if (l.has_baseline)
      std::fprintf(stderr, "%-52s %12s %8.3f%% %8.3f%% %11.4e %11.4e %6.2f%%\n", name.c_str(), shape, 100 * l.baseline.compression_rate,
                   100 * l.result.compression_rate, l.baseline.mse, l.result.mse, 100 * l.result.zero_fraction);
    else
      std::fprintf(stderr, "%-52s %12s %9s %8.3f%% %11s %11.4e %6.2f%%\n", name.c_str(), shape, "-", 100 * l.result.compression_rate, "-",
                   l.result.mse, 100 * l.result.zero_fraction);
  }
  if (shown > 14) std::fprintf(stderr, "… %zu more layers\n", shown - 12);
  size_t nq = 0, nk = 0;
  for (const auto& l : r.layers) (l.quantized ? nq : nk)++;
  std::fprintf(stderr, "\n%s: %zu layers quantized (%llu weights), %zu Linear kept; weighted proxy %.4f%%", o.method.c_str(), nq,
               (unsigned long long)r.quantized_weights, nk, 100 * r.new_proxy);
  if (o.method == "seed") std::fprintf(stderr, " (template %.4f%%), weighted MSE %.6e (template %.6e)", 100 * r.base_proxy, r.new_mse, r.base_mse);
  else std::fprintf(stderr, ", weighted MSE %.6e", r.new_mse);
  if (o.method == "rd") std::fprintf(stderr, "\nrd: lambda %.6g, %.4f bits/weight (ideal order-0)", r.rd_lambda, r.rd_bits_per_weight);
  std::fprintf(stderr, "\n%.2f s, %.0f MB/s of input, isa %s -> %s\n", r.seconds, r.input_bytes / 1e6 / std::max(r.seconds, 1e-9),
               isa_name(o.isa), o.out.c_str());
  return 0;
}

}  // namespace fp4z::cli
