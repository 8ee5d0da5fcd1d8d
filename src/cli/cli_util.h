// Shared argument-parsing glue for subcommands (CLI11), so every command reports usage errors alike.
#pragma once
#include <CLI/CLI.hpp>
#include <string>

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
