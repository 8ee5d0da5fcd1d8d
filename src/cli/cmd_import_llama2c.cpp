// `fp4z import-llama2c`: argument parsing and the summary line for the llama2.c importer.
#include <cstdio>
#include <string>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "common/path_guard.h"
#include "pipeline/import_llama2c.h"

namespace fp4z::cli {

int cmd_import_llama2c(int argc, char** argv) {
  CLI::App app{"Convert a llama2.c checkpoint (legacy v0 .bin) and its tokenizer to a Hugging Face Llama checkpoint"};
  app.name("fp4z import-llama2c");
  ImportLlama2cOptions opt;
  std::string dtype = "f32";
  app.add_option("model", opt.model_path, "llama2.c checkpoint (MODEL.bin)")->required();
  app.add_option("--tokenizer", opt.tokenizer_path, "llama2.c tokenizer (TOK.bin)")->required();
  app.add_option("--out", opt.out_dir, "output checkpoint directory")->required();
  app.add_option("--dtype", dtype, "output dtype: f32 (exact, default), bf16 or f16 (round to nearest even)")
      ->check(CLI::IsMember({"f32", "bf16", "f16"}));
  app.add_flag("--force", opt.force, "replace an existing non-empty output directory");
  app.add_flag("-q,--quiet", opt.quiet, "no progress output");
  FP4Z_PARSE_OR_RETURN(app, argc, argv);
  require_output_apart(opt.out_dir, {opt.model_path, opt.tokenizer_path}, "--out");
  opt.dtype = dtype == "bf16" ? DType::BF16 : dtype == "f16" ? DType::F16 : DType::F32;
  ImportLlama2cResult r = import_llama2c(opt);
  const Llama2cHeader& h = r.header;
  std::printf("imported %s -> %s: %llu tensors, %llu parameters (%s), dim %lld, hidden %lld, layers %lld, heads %lld/%lld, "
              "vocab %lld%s, seq_len %lld\n",
              opt.model_path.c_str(), opt.out_dir.c_str(), (unsigned long long)r.tensors, (unsigned long long)r.parameters,
              dtype.c_str(), (long long)h.dim, (long long)h.hidden_dim, (long long)h.n_layers, (long long)h.n_heads,
              (long long)h.n_kv_heads, (long long)h.vocab_size, h.shared_classifier ? " (tied classifier)" : "",
              (long long)h.seq_len);
  return 0;
}

}  // namespace fp4z::cli
