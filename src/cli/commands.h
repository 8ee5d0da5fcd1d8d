// Entry points of the fp4z subcommands; each lives in its own cmd_*.cpp file.
#pragma once

namespace fp4z::cli {

// Each returns the process exit code; argv[0] is the subcommand name.
int cmd_quantize(int argc, char** argv);
int cmd_check(int argc, char** argv);
int cmd_import_llama2c(int argc, char** argv);
int cmd_compress(int argc, char** argv);
int cmd_decompress(int argc, char** argv);
int cmd_stats(int argc, char** argv);
int cmd_tokenize(int argc, char** argv);
int cmd_generate(int argc, char** argv);
int cmd_eval(int argc, char** argv);
int cmd_compare(int argc, char** argv);
int cmd_sweep(int argc, char** argv);
int cmd_export_gguf(int argc, char** argv);

}  // namespace fp4z::cli
