// `fp4z export-gguf`: argument parsing and the summary line for the GGUF exporter.
#include <cstdio>
#include <string>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "common/path_guard.h"
#include "pipeline/export_gguf.h"

namespace fp4z::cli {

int cmd_export_gguf(int argc, char** argv) {
  CLI::App app{"Convert a Qwen3/Llama checkpoint (NVFP4 compressed-tensors/ModelOpt, or BF16/F16/F32) to a llama.cpp GGUF file"};
  app.name("fp4z export-gguf");
  ExportGgufOptions opt;
  std::string type = "nvfp4";
  app.add_option("model", opt.model_dir, "checkpoint directory")->required();
  app.add_option("-o,--out", opt.out_path, "output .gguf file")->required();
  app.add_option("--type", type,
                 "linear layers: nvfp4 (default; NVFP4 linears losslessly as ggml NVFP4, dense ones as stored) or "
                 "q4_0 (re-quantized from the dequantized weights)")
      ->check(CLI::IsMember({"nvfp4", "q4_0"}));
  app.add_option("-t,--threads", opt.threads, "threads (0 = all cores)");
  app.add_flag("--force", opt.force, "replace an existing output file");
  FP4Z_PARSE_OR_RETURN(app, argc, argv);
  require_output_apart(opt.out_path, {opt.model_dir}, "-o");
  opt.format = type == "q4_0" ? GgufLinearFormat::kQ4_0 : GgufLinearFormat::kNvfp4;
  ExportGgufResult r = export_gguf(opt);
  std::printf("exported %s -> %s: %s, tokenizer %s (%lld tokens), %llu tensors, linears %llu NVFP4 + %llu Q4_0 + %llu as stored"
              " + %llu NVFP4 widened to F32 (in_features %% 64 != 0), %llu bytes\n",
              opt.model_dir.c_str(), opt.out_path.c_str(), r.architecture.c_str(), r.tokenizer.c_str(), (long long)r.vocab,
              (unsigned long long)r.tensors, (unsigned long long)r.nvfp4, (unsigned long long)r.q4_0,
              (unsigned long long)r.dense, (unsigned long long)r.dequantized, (unsigned long long)r.bytes);
  return 0;
}

}  // namespace fp4z::cli
