// Shared helpers for the GoogleTest suites: private temp dirs, running commands, whole-file I/O.
#pragma once
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace fp4z::testing {

inline const std::string kSourceDir = FP4Z_SOURCE_DIR;
inline const std::string kFixtures = kSourceDir + "/../shared/fixtures";
inline const std::string kFp4z = FP4Z_BINARY;
inline const std::string kPython = "/usr/bin/python3";

// A fresh directory under /tmp, removed with everything in it when the object dies. Unique per
// process, so tests run in parallel (ctest -j) never share one.
struct TempDir {
  std::string path;
  explicit TempDir(const std::string& tag = "fp4z-test") {
    std::string tmpl = "/tmp/" + tag + "-XXXXXX";
    if (!mkdtemp(tmpl.data())) std::abort();
    path = tmpl;
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const { return path + "/" + name; }
};

inline std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void write_text(const std::string& path, const std::string& data) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << data;
}

struct CommandResult {
  int code = -1;  // exit status, or 128 + signal
  std::string out, err;
};

// Runs `cmd` with /bin/sh, capturing stdout and stderr separately (into a private temp dir).
inline CommandResult run_command(const std::string& cmd) {
  TempDir io("fp4z-cmd");
  int st = std::system((cmd + " >'" + (io / "out") + "' 2>'" + (io / "err") + "'").c_str());
  CommandResult r;
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
  r.out = read_text(io / "out");
  r.err = read_text(io / "err");
  return r;
}

}  // namespace fp4z::testing
