// Reading a whole (small) input file into memory; writing a small output file atomically.
#include "common/file_text.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "common/error.h"
#include "common/staged_output.h"

namespace fp4z {

std::string read_whole_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail_input(path + ": cannot open: " + std::strerror(errno));
  std::ostringstream ss;
  ss << f.rdbuf();
  if (f.bad()) fail_input(path + ": read error");
  return ss.str();
}

void write_whole_file(const std::string& path, const std::string& bytes, bool force) {
  StagedFile staged(path, force);
  {
    std::ofstream f(staged.temp, std::ios::binary | std::ios::trunc);
    if (!f) fail_io(path + ": cannot create: " + std::strerror(errno));
    f.write(bytes.data(), std::streamsize(bytes.size()));
    f.flush();
    if (!f) fail_io(path + ": write error (disk full?)");
  }
  staged.commit();
}

}  // namespace fp4z
