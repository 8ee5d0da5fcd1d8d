// Shared helpers for the GoogleTest suites: private temp dirs, running commands, fixture paths, whole-file
// I/O and a safetensors writer.
#pragma once
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "common/cpu.h"

namespace fp4z::testing {

inline const std::string kSourceDir = FP4Z_SOURCE_DIR;
// The shared fixtures directory; FP4Z_FIXTURES overrides it (as for the interop tests and demo.sh).
inline std::string fixtures_dir() {
  const char* env = std::getenv("FP4Z_FIXTURES");
  return env && *env ? std::string(env) : kSourceDir + "/../shared/fixtures";
}
inline const std::string kFixtures = fixtures_dir();
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
    if (std::getenv("FP4Z_KEEP_TEST_DIRS")) {  // keep for inspection
      std::fprintf(stderr, "kept %s\n", path.c_str());
      return;
    }
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

// `s` as one single-quoted /bin/sh word.
inline std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

struct CommandResult {
  int code = -1;  // exit status, or 128 + signal
  std::string out, err;
};

// Runs `cmd` with /bin/sh, capturing stdout and stderr separately (into a private temp dir).
inline CommandResult run_command(const std::string& cmd) {
  TempDir io("fp4z-cmd");
  // A brace group on its own lines, so that a trailing "# comment" in cmd cannot swallow the redirections.
  int st = std::system(("{\n" + cmd + "\n} >'" + (io / "out") + "' 2>'" + (io / "err") + "'").c_str());
  CommandResult r;
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
  r.out = read_text(io / "out");
  r.err = read_text(io / "err");
  return r;
}

// Cross-ISA tests run every kernel level this CPU has (up to `highest`), then report the levels it
// lacks with GTEST_SKIP (a visible skip instead of a silent pass): "" when every level ran.
inline std::string isa_levels_not_run(CpuFeature highest) {
  std::string missing;
  const CpuFeatures& f = cpu_features();
  for (auto [feature, name] : {std::pair{CpuFeature::kAvx2, "avx2"}, std::pair{CpuFeature::kAvx512, "avx512"},
                               std::pair{CpuFeature::kAvx512Vnni, "avx512vnni"}, std::pair{CpuFeature::kAvx512Bf16, "avx512bf16"}}) {
    if (!f.has(feature)) missing += std::string(" ") + name;
    if (feature == highest) break;
  }
  return missing;
}
#define FP4Z_SKIP_MISSING_ISA_LEVELS(highest)                                                            \
  do {                                                                                                   \
    std::string fp4z_missing_ = ::fp4z::testing::isa_levels_not_run(highest);                            \
    if (!fp4z_missing_.empty()) GTEST_SKIP() << "kernel levels not run on this CPU:" << fp4z_missing_;  \
  } while (0)

// One tensor to write: safetensors dtype name ("F32", "U8", "F8_E4M3", ...), shape and raw bytes.
struct StTensor {
  std::string name, dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> data;
};

// Writes a safetensors file (header order = argument order; data in that order, or reversed with
// reverse_data to test that header and physical order are independent; header padded with spaces to
// 8 bytes; __metadata__ {"format": "pt"}); creates parent directories.
inline void write_safetensors(const std::string& path, const std::vector<StTensor>& ts, bool reverse_data = false) {
  std::string h = "{\"__metadata__\":{\"format\":\"pt\"}";
  std::vector<uint64_t> off(ts.size());
  uint64_t pos = 0;
  for (size_t k = 0; k < ts.size(); ++k) {
    size_t i = reverse_data ? ts.size() - 1 - k : k;
    off[i] = pos;
    pos += ts[i].data.size();
  }
  for (size_t i = 0; i < ts.size(); ++i) {
    const StTensor& t = ts[i];
    h += ",\"" + t.name + "\":{\"dtype\":\"" + t.dtype + "\",\"shape\":[";
    for (size_t d = 0; d < t.shape.size(); ++d) h += (d ? "," : "") + std::to_string(t.shape[d]);
    h += "],\"data_offsets\":[" + std::to_string(off[i]) + "," + std::to_string(off[i] + t.data.size()) + "]}";
  }
  h += "}";
  while (h.size() % 8) h += ' ';
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream f(path, std::ios::binary);
  uint64_t n = h.size();
  f.write(reinterpret_cast<const char*>(&n), 8);
  f << h;
  for (size_t k = 0; k < ts.size(); ++k) {
    const StTensor& t = ts[reverse_data ? ts.size() - 1 - k : k];
    f.write(reinterpret_cast<const char*>(t.data.data()), std::streamsize(t.data.size()));
  }
}

inline std::vector<uint8_t> f32_bytes(const std::vector<float>& v) {
  std::vector<uint8_t> b(4 * v.size());
  if (!v.empty()) std::memcpy(b.data(), v.data(), b.size());
  return b;
}

}  // namespace fp4z::testing
