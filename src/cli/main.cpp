// fp4z entry point: dispatches to one subcommand and turns errors into one-line messages.
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#include "cli/commands.h"
#include "common/error.h"

namespace {

struct Subcommand {
  const char* name;
  const char* summary;
  int (*run)(int, char**);
};

const Subcommand kSubcommands[] = {
    {"quantize", "re-quantize a checkpoint to NVFP4 (absmax, seed)", fp4z::cli::cmd_quantize},
    {"check", "validate an NVFP4 checkpoint against loader rules", fp4z::cli::cmd_check},
    {"import-llama2c", "convert a llama2.c model to a Hugging Face checkpoint", fp4z::cli::cmd_import_llama2c},
    {"compress", "losslessly compress a checkpoint directory to .fp4z", fp4z::cli::cmd_compress},
    {"decompress", "restore a checkpoint directory from .fp4z", fp4z::cli::cmd_decompress},
    {"stats", "coded sizes, entropies and bits per weight of an NVFP4 checkpoint", fp4z::cli::cmd_stats},
    {"tokenize", "encode or decode text with a checkpoint's tokenizer", fp4z::cli::cmd_tokenize},
    {"generate", "generate text with a checkpoint", fp4z::cli::cmd_generate},
    {"eval", "perplexity / KL divergence (eval ppl) and MMLU (eval mmlu)", fp4z::cli::cmd_eval},
    {"compare", "print a per-layer comparison table of quantized checkpoints", fp4z::cli::cmd_compare},
    {"export-gguf", "convert a checkpoint to a llama.cpp GGUF file (NVFP4 or Q4_0)", fp4z::cli::cmd_export_gguf},
    {"logits", "write the engine's logits for token ids (raw f32)", fp4z::cli::cmd_logits},
};

void print_usage(FILE* out) {
  std::fprintf(out, "usage: fp4z <command> [options]   (fp4z <command> --help for details)\n\ncommands:\n");
  for (const auto& s : kSubcommands) std::fprintf(out, "  %-16s %s\n", s.name, s.summary);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    print_usage(stderr);
    return fp4z::kExitInput;
  }
  std::string name = argv[1];
  if (name == "-h" || name == "--help" || name == "help") {
    print_usage(stdout);
    return 0;
  }
  for (const auto& s : kSubcommands) {
    if (name != s.name) continue;
    try {
      return s.run(argc - 1, argv + 1);
    } catch (const fp4z::Error& e) {
      std::fprintf(stderr, "fp4z %s: error: %s\n", s.name, e.what());
      return e.code;
    } catch (const std::bad_alloc&) {
      std::fprintf(stderr, "fp4z %s: error: out of memory\n", s.name);
      return fp4z::kExitInternal;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "fp4z %s: error: %s\n", s.name, e.what());
      return fp4z::kExitInternal;
    }
  }
  std::fprintf(stderr, "fp4z: unknown command '%s'\n", name.c_str());
  print_usage(stderr);
  return fp4z::kExitInput;
}
