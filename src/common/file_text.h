// Reading a whole (small) input file into memory, and publishing a small output file atomically.
#pragma once
#include <string>

namespace fp4z {

// The bytes of `path`; throws Error (exit 2) naming the file if it cannot be read.
std::string read_whole_file(const std::string& path);

// Writes `bytes` to `path` through a StagedFile (temporary name, renamed when complete); an existing
// `path` is replaced only with `force` (Error exit 2 otherwise), a write failure is exit 3.
void write_whole_file(const std::string& path, const std::string& bytes, bool force);

}  // namespace fp4z
