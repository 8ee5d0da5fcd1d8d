// Shared argument-parsing glue for subcommands (CLI11), so every command reports usage errors alike.
#pragma once
#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "common/error.h"

// Parses argv into app; on --help returns 0 from the calling function, on bad usage returns 2.
#define FP4Z_PARSE_OR_RETURN(app, argc, argv)                        \
  do {                                                               \
    try {                                                            \
      (app).parse((argc), (argv));                                   \
    } catch (const CLI::ParseError& e_) {                            \
      int r_ = (app).exit(e_);                                       \
      return r_ == 0 ? 0 : ::fp4z::kExitInput;                       \
    }                                                                \
  } while (0)

namespace fp4z::cli {

// Token ids written as text: decimal integers separated by spaces, commas, newlines, tabs or
// brackets ("1 2 3", "[1, 2, 3]"). A bad item is an Error (exit 2) naming `where`.
std::vector<int32_t> parse_token_ids(const std::string& text, const std::string& where);

}  // namespace fp4z::cli
