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

// ---- child processes without a shell (signals, resource use) --------------------------------

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <thread>
#include <vector>

namespace fp4z::testing {

// A started child: its pid and the files that receive its stdout and stderr.
struct Child {
  pid_t pid = -1;
  std::string out_path, err_path;
};

// What a finished child did: exit status (128 + signal when killed), its own CPU time (user+sys)
// and peak resident memory, both from wait4 (so earlier children of the test do not count).
struct ChildResult {
  int code = -1;
  double cpu_s = 0;
  long max_rss_kb = 0;
  std::string out, err;
};

// Starts argv[0] with arguments argv[1..] (no shell), stdout/stderr into files under `io_dir`.
inline Child spawn_child(const std::vector<std::string>& argv, const std::string& io_dir) {
  Child c;
  c.out_path = io_dir + "/child.out";
  c.err_path = io_dir + "/child.err";
  // posix_spawn (vfork-like) rather than fork: a forked copy of this test process would count
  // toward the child's peak RSS (Linux keeps the high-water mark across exec).
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, c.out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&fa, 2, c.err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  if (posix_spawn(&c.pid, args[0], &fa, nullptr, args.data(), environ) != 0) c.pid = -1;
  posix_spawn_file_actions_destroy(&fa);
  return c;
}

inline ChildResult result_of(const Child& c, int status, const struct rusage& ru) {
  ChildResult r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  r.cpu_s = double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + 1e-6 * double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
  r.max_rss_kb = ru.ru_maxrss;
  r.out = read_text(c.out_path);
  r.err = read_text(c.err_path);
  return r;
}

// Waits for the child to end.
inline ChildResult wait_child(const Child& c) {
  int status = 0;
  struct rusage ru{};
  while (wait4(c.pid, &status, 0, &ru) < 0 && errno == EINTR) {
  }
  return result_of(c, status, ru);
}

// Linux keeps a process's peak RSS across fork and exec, so a child forked from a big test process
// reports the test's peak, not its own. run_measured therefore re-executes this (small, fresh) test
// binary with FP4Z_MEASURE_CHILD=<file>; before main, that copy runs the command after "--" in its
// argv, waits for it with wait4 and writes "code cpu_s max_rss_kb" to <file>.
struct MeasureChildMode {
  MeasureChildMode() {
    const char* report = std::getenv("FP4Z_MEASURE_CHILD");
    if (!report) return;
    std::string cmdline = read_text("/proc/self/cmdline");
    std::vector<std::string> argv;
    for (size_t at = 0; at < cmdline.size();) {
      size_t end = cmdline.find('\0', at);
      argv.push_back(cmdline.substr(at, end - at));
      at = end + 1;
    }
    auto dash = std::find(argv.begin(), argv.end(), "--");
    if (dash == argv.end()) _exit(126);
    std::vector<char*> args;
    for (auto it = dash + 1; it != argv.end(); ++it) args.push_back(it->data());
    args.push_back(nullptr);
    pid_t pid = fork();
    if (pid == 0) {
      execv(args[0], args.data());
      _exit(127);
    }
    int status = 0;
    struct rusage ru{};
    wait4(pid, &status, 0, &ru);
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    double cpu = double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + 1e-6 * double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
    std::ofstream(report) << code << " " << cpu << " " << ru.ru_maxrss << "\n";
    _exit(0);
  }
};
inline MeasureChildMode measure_child_mode;

// Runs a command to its end and measures it (see ChildResult): its own CPU time and peak RSS.
inline ChildResult run_measured(const std::vector<std::string>& argv) {
  TempDir io("fp4z-child");
  std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  std::vector<std::string> wrapped = {self, "--"};
  wrapped.insert(wrapped.end(), argv.begin(), argv.end());
  setenv("FP4Z_MEASURE_CHILD", (io / "rusage").c_str(), 1);
  Child c = spawn_child(wrapped, io.path);
  unsetenv("FP4Z_MEASURE_CHILD");
  ChildResult r = wait_child(c);
  std::istringstream(read_text(io / "rusage")) >> r.code >> r.cpu_s >> r.max_rss_kb;
  return r;
}

// Polls (every millisecond, up to timeout_s) until ready() holds while the child still runs. Returns
// false if the child ended first (*ended then holds its result) or the time ran out.
template <class Ready>
bool wait_until_running(const Child& c, Ready ready, double timeout_s, ChildResult* ended) {
  auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  while (std::chrono::steady_clock::now() < until) {
    if (ready()) return true;
    int status = 0;
    struct rusage ru{};
    if (wait4(c.pid, &status, WNOHANG, &ru) == c.pid) {
      *ended = result_of(c, status, ru);
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return false;
}

// Names in `dir` that begin with `prefix` (e.g. the staging names ".OUT.tmp-...").
inline std::vector<std::string> names_with_prefix(const std::string& dir, const std::string& prefix) {
  std::vector<std::string> hits;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    std::string n = e.path().filename().string();
    if (n.compare(0, prefix.size(), prefix) == 0) hits.push_back(n);
  }
  return hits;
}

}  // namespace fp4z::testing
