// fp4z entry point: dispatches to one subcommand and turns errors into one-line messages.
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#include "cli/commands.h"
#include "common/error.h"
#include "common/mapped_file.h"
#include "common/printable.h"
#include "common/signals.h"

namespace {

struct Subcommand {
  const char* name;
  const char* summary;
  int (*run)(int, char**);
};

const Subcommand kSubcommands[] = {
    {"quantize", "re-quantize a checkpoint to NVFP4 (absmax, seed, rd)", fp4z::cli::cmd_quantize},
    {"check", "validate an NVFP4 checkpoint against loader rules", fp4z::cli::cmd_check},
    {"import-llama2c", "convert a llama2.c model to a Hugging Face checkpoint", fp4z::cli::cmd_import_llama2c},
    {"compress", "losslessly compress a checkpoint directory to .fp4z", fp4z::cli::cmd_compress},
    {"decompress", "restore a checkpoint directory from .fp4z", fp4z::cli::cmd_decompress},
    {"stats", "coded sizes, entropies and bits per weight of an NVFP4 checkpoint", fp4z::cli::cmd_stats},
    {"tokenize", "encode or decode text with a checkpoint's tokenizer", fp4z::cli::cmd_tokenize},
    {"generate", "generate text with a checkpoint", fp4z::cli::cmd_generate},
    {"eval", "perplexity / KL divergence (eval ppl) and MMLU (eval mmlu)", fp4z::cli::cmd_eval},
    {"compare", "print a per-layer comparison table of quantized checkpoints", fp4z::cli::cmd_compare},
    {"sweep", "rate vs accuracy of absmax, seed alphas and rd targets, with a plot", fp4z::cli::cmd_sweep},
    {"export-gguf", "convert a checkpoint to a llama.cpp GGUF file (NVFP4 or Q4_0)", fp4z::cli::cmd_export_gguf},
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
    fp4z::install_interrupt_handler(s.name);
    // A mapped input truncated under us was read as zeros (common/mapped_file.h): whatever the
    // command concluded from them, the one true statement is that the input changed.
    auto truncated_input = [&]() -> int {
      std::string fault = fp4z::mapped_input_fault();
      if (fault.empty()) return -1;
      std::fprintf(stderr, "fp4z %s: error: %s\n", s.name, fp4z::printable(fault).c_str());
      return fp4z::kExitInput;
    };
    try {
      int code = s.run(argc - 1, argv + 1);
      int fault = truncated_input();
      return fault >= 0 ? fault : code;
    } catch (const fp4z::Error& e) {
      if (int fault = truncated_input(); fault >= 0) return fault;
      std::fprintf(stderr, "fp4z %s: error: %s\n", s.name, fp4z::printable(e.what()).c_str());
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
