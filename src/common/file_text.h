// Reading a whole (small) input file into memory, with the standard one-line error.
#pragma once
#include <string>

namespace fp4z {

// The bytes of `path`; throws Error (exit 2) naming the file if it cannot be read.
std::string read_whole_file(const std::string& path);

}  // namespace fp4z
