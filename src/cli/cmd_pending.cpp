// TEMPORARY during parallel development: weak fallbacks so fp4z links before every command exists.
#include <cstdio>

#include "cli/commands.h"

#define FP4Z_PENDING(fn)                                                  \
  __attribute__((weak)) int fp4z::cli::fn(int, char**) {                  \
    std::fprintf(stderr, "fp4z: %s is not available in this build\n", #fn); \
    return 3;                                                             \
  }
FP4Z_PENDING(cmd_quantize)
FP4Z_PENDING(cmd_check)
FP4Z_PENDING(cmd_import_llama2c)
FP4Z_PENDING(cmd_compress)
FP4Z_PENDING(cmd_decompress)
FP4Z_PENDING(cmd_stats)
FP4Z_PENDING(cmd_tokenize)
FP4Z_PENDING(cmd_generate)
FP4Z_PENDING(cmd_eval)
FP4Z_PENDING(cmd_compare)
