// Issue 9 repros as tests: outputs never replace inputs, interruption leaves nothing, replacement is
// atomic, hostile JSON/tokenizers/containers stay cheap, truncated inputs and full disks fail cleanly.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include <xxhash.h>
#include <zstd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/mapped_file.h"
#include "common/printable.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace fp4z::testing;

namespace {

const std::string kLlamaDir = kFixtures + "/stories260K";

std::string q(const std::string& s) { return "'" + s + "'"; }
CommandResult fp4z_cmd(const std::string& args) { return run_command(kFp4z + " " + args); }

bool one_line(const std::string& s) { return !s.empty() && s.find('\n') == s.size() - 1; }

// A real (F32) checkpoint directory, converted from the llama2.c fixture.
void make_checkpoint(const std::string& dir) {
  CommandResult r = fp4z_cmd("import-llama2c " + q(kLlamaDir + "/stories260K.bin") + " --tokenizer " +
                             q(kLlamaDir + "/tok512.bin") + " --out " + q(dir) + " -q");
  ASSERT_EQ(r.code, 0) << r.err;
}

// Every regular file under `dir` with its bytes, to show that a refused run touched nothing.
std::vector<std::pair<std::string, std::string>> snapshot(const std::string& dir) {
  std::vector<std::pair<std::string, std::string>> files;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) files.emplace_back(fs::relative(e.path(), dir).string(), read_text(e.path().string()));
  std::sort(files.begin(), files.end());
  return files;
}

// Text that zstd -22 compresses slowly (words from a small dictionary, pseudo-random order).
std::string slow_text(size_t bytes) {
  static const char* words[] = {"alpha ", "beta ", "gamma ", "delta ", "tensor ", "scale ", "block ", "nvfp4 ",
                                "quant ", "mantissa ", "exponent ", "sign\n", "row ", "column ", "shard ", "index "};
  std::string s;
  s.reserve(bytes + 16);
  uint64_t x = 88172645463325252ull;
  while (s.size() < bytes) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    s += words[x % 16];
    if (x % 7 == 0) s += std::to_string(x % 100000);
  }
  s.resize(bytes);
  return s;
}

// ---- a container written from docs/format.md (independent of the library's writer) -------------

void put_varint(std::string& o, uint64_t v) {
  while (v >= 0x80) o.push_back(char(uint8_t(v | 0x80))), v >>= 7;
  o.push_back(char(uint8_t(v)));
}
void put_u64(std::string& o, uint64_t v) {
  for (int k = 0; k < 8; ++k) o.push_back(char(uint8_t(v >> (8 * k))));
}

struct CraftChunk {
  uint8_t codec;  // 0 raw, 1 zstd
  std::string payload;
  uint64_t raw_size;
  uint64_t raw_hash;
};
struct CraftEntry {
  std::string path;
  bool is_dir = false;
  std::vector<CraftChunk> chunks;
};

std::string craft_container(const std::vector<CraftEntry>& entries) {
  std::string b("\x89" "FP4Z\r\n\x1A", 8);
  b.append("\x01\x00\x00\x00\x00\x00\x00\x00", 8);  // version 1.0, flags 0
  std::string index;
  put_varint(index, entries.size());
  for (const auto& e : entries) {
    index.push_back(e.is_dir ? 1 : 0);
    put_varint(index, e.path.size());
    index += e.path;
    if (!e.is_dir) {
      uint64_t size = 0;
      for (const auto& c : e.chunks) size += c.raw_size;
      put_varint(index, size);
      put_varint(index, e.chunks.size());
    }
  }
  size_t n = 0;
  for (const auto& e : entries) n += e.chunks.size();
  put_varint(index, n);
  for (const auto& e : entries)
    for (const auto& c : e.chunks) {
      b += c.payload;
      index.push_back(char(c.codec));
      index.push_back(0);
      put_varint(index, c.payload.size());
      put_varint(index, c.raw_size);
      put_u64(index, XXH3_64bits(c.payload.data(), c.payload.size()));
      put_u64(index, c.raw_hash);
    }
  put_varint(index, 0);  // no tensors
  uint64_t index_offset = b.size();
  b += index;
  put_u64(b, index_offset);
  put_u64(b, index.size());
  put_u64(b, XXH3_64bits_withSeed(index.data(), index.size(), XXH3_64bits(b.data(), 16)));
  put_u64(b, b.size() + 16);
  b.append("FP4ZIDX\x1A", 8);
  return b;
}

CraftEntry raw_file(const std::string& path, const std::string& bytes) {
  return {path, false, {{0, bytes, bytes.size(), XXH3_64bits(bytes.data(), bytes.size())}}};
}

// n chunks of 64 MiB of zeros each, stored as zstd frames of a few KB.
CraftEntry zero_file(const std::string& path, size_t n) {
  static std::string payload;
  static uint64_t hash = 0;
  const size_t chunk = size_t(64) << 20;
  if (payload.empty()) {
    std::string zeros(chunk, '\0');
    payload.resize(ZSTD_compressBound(chunk));
    payload.resize(ZSTD_compress(payload.data(), payload.size(), zeros.data(), chunk, 1));
    hash = XXH3_64bits(zeros.data(), chunk);
  }
  CraftEntry e{path, false, {}};
  for (size_t k = 0; k < n; ++k) e.chunks.push_back({1, payload, chunk, hash});
  return e;
}

}  // namespace

// ---- 1. an output is never an input -------------------------------------------------------------

TEST(OutputNeverInput, QuantizeOutEqualsOrContainsSource) {
  TempDir tmp("fp4z-safety");
  make_checkpoint(tmp / "m");
  auto before = snapshot(tmp / "m");
  CommandResult r = fp4z_cmd("quantize --source " + q(tmp / "m") + " --out " + q(tmp / "m") + " --force -q");
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(one_line(r.err)) << r.err;
  EXPECT_NE(r.err.find("input"), std::string::npos) << r.err;
  EXPECT_EQ(snapshot(tmp / "m"), before);

  fs::create_directories(tmp / "d");
  make_checkpoint(tmp / "d/st");
  write_text(tmp / "d/keep.txt", "other work");
  auto before_d = snapshot(tmp / "d");
  r = fp4z_cmd("quantize --source " + q(tmp / "d/st") + " --out " + q(tmp / "d") + " --force -q");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("contains the input"), std::string::npos) << r.err;
  EXPECT_EQ(snapshot(tmp / "d"), before_d);

  // Through a symbolic link and a ".." detour: still the same directory.
  fs::create_directory_symlink(tmp / "m", tmp / "link");
  r = fp4z_cmd("quantize --source " + q(tmp / "m") + " --out " + q(tmp / "link/../link") + " --force -q");
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_EQ(snapshot(tmp / "m"), before);
  // Inside the source: refused as well.
  r = fp4z_cmd("quantize --source " + q(tmp / "m") + " --out " + q(tmp / "m/sub") + " -q");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("lies inside the input"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(tmp / "m/sub"));
}

TEST(OutputNeverInput, DecompressCompressImport) {
  TempDir tmp("fp4z-safety");
  make_checkpoint(tmp / "st");
  ASSERT_EQ(fp4z_cmd("compress " + q(tmp / "st") + " -o " + q(tmp / "x.fp4z") + " -q").code, 0);
  fs::create_directories(tmp / "d");
  fs::rename(tmp / "x.fp4z", tmp / "d/x.fp4z");
  std::string container = read_text(tmp / "d/x.fp4z");
  CommandResult r = fp4z_cmd("decompress " + q(tmp / "d/x.fp4z") + " -o " + q(tmp / "d") + " --force -q");
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(one_line(r.err)) << r.err;
  EXPECT_EQ(read_text(tmp / "d/x.fp4z"), container);
  r = fp4z_cmd("decompress " + q(tmp / "d/x.fp4z") + " --tensor tok_embeddings.weight -o " + q(tmp / "d/x.fp4z") + " --force");
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(read_text(tmp / "d/x.fp4z"), container);

  auto before = snapshot(tmp / "st");
  r = fp4z_cmd("compress " + q(tmp / "st") + " -o " + q(tmp / "st/model.safetensors") + " --force -q");
  EXPECT_EQ(r.code, 2);
  r = fp4z_cmd("compress " + q(tmp / "st") + " -o " + q(tmp / "st/new.fp4z") + " -q");
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(snapshot(tmp / "st"), before);

  // import-llama2c: an output directory holding the model file.
  fs::create_directories(tmp / "imp");
  fs::copy_file(kLlamaDir + "/stories260K.bin", tmp / "imp/m.bin");
  r = fp4z_cmd("import-llama2c " + q(tmp / "imp/m.bin") + " --tokenizer " + q(kLlamaDir + "/tok512.bin") + " --out " +
               q(tmp / "imp") + " --force -q");
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(fs::exists(tmp / "imp/m.bin"));
}

// The other writers (export-gguf, eval logits, eval mmlu --log-samples, sweep, quantize's
// --calibration text): each output that is, contains or lies inside one of its inputs is refused.
TEST(OutputNeverInput, EveryOtherWriter) {
  TempDir tmp("fp4z-safety");
  make_checkpoint(tmp / "m");
  auto before = snapshot(tmp / "m");
  auto refused = [&](const std::string& args, const std::string& why) {
    CommandResult r = fp4z_cmd(args);
    EXPECT_EQ(r.code, 2) << args << ": " << r.err;
    EXPECT_TRUE(one_line(r.err)) << r.err;
    EXPECT_NE(r.err.find(why), std::string::npos) << args << ": " << r.err;
  };
  refused("export-gguf " + q(tmp / "m") + " -o " + q(tmp / "m/model.safetensors") + " --force", "lies inside the input");
  refused("eval logits --model " + q(tmp / "m") + " --ids 1,2,3 -o " + q(tmp / "m/model.safetensors") + " --force -q",
          "lies inside the input");
  EXPECT_EQ(snapshot(tmp / "m"), before);

  write_text(tmp / "mmlu/dev/x_dev.csv", "q,a,b,c,d,A\n");
  refused("eval mmlu --model " + q(tmp / "m") + " --data " + q(tmp / "mmlu") + " --log-samples " +
              q(tmp / "mmlu/dev/x_dev.csv") + " --force -q",
          "lies inside the input");
  EXPECT_EQ(read_text(tmp / "mmlu/dev/x_dev.csv"), "q,a,b,c,d,A\n");

  // Text inputs next to the output: the directory that holds them may not become the output.
  write_text(tmp / "d/cal.txt", slow_text(4000));
  refused("quantize --source " + q(tmp / "m") + " --method rd --lambda 0.01 --calibration " + q(tmp / "d/cal.txt") +
              " --out " + q(tmp / "d") + " --force -q",
          "contains the input");
  refused("sweep --source " + q(tmp / "m") + " --eval " + q(tmp / "d/cal.txt") + " --out " + q(tmp / "d") + " --force -q",
          "contains the input");
  EXPECT_EQ(read_text(tmp / "d/cal.txt"), slow_text(4000));
  EXPECT_EQ(names_with_prefix(tmp / "d", "").size(), 1u);
}

// ---- 2. interruption ----------------------------------------------------------------------------

namespace {

// Starts `argv`, waits for the staging name `staging_prefix` in `dir`, runs `meanwhile(child)` while
// the command works (signal it, truncate an input, create the output...), and returns the result.
template <class Action>
ChildResult during_run(const std::vector<std::string>& argv, const std::string& dir, const std::string& staging_prefix,
                       Action meanwhile, const std::string& io_dir) {
  Child c = spawn_child(argv, io_dir);
  ChildResult ended;
  if (!wait_until_running(c, [&] { return !names_with_prefix(dir, staging_prefix).empty(); }, 60, &ended)) {
    ADD_FAILURE() << "the run ended (code " << ended.code << ") before it could be disturbed: " << ended.err;
    return ended;
  }
  meanwhile(c);
  return wait_child(c);
}

// Whether process `pid` has `path` mapped (a line of /proc/PID/maps ends with its canonical name).
bool has_mapped(pid_t pid, const std::string& path) {
  std::string name = fs::weakly_canonical(path).string();
  std::ifstream maps("/proc/" + std::to_string(pid) + "/maps");
  for (std::string line; std::getline(maps, line);)
    if (line.size() >= name.size() && line.compare(line.size() - name.size(), name.size(), name) == 0) return true;
  return false;
}

// Truncates `path` once the command has it mapped: the staging name can appear before the input is
// opened, and an input that is already short when the command first looks at it is not an error.
auto truncate_to(const std::string& path, off_t size) {
  return [=](const Child& c) {
    ChildResult ended;
    if (!wait_until_running(c, [&] { return has_mapped(c.pid, path); }, 60, &ended)) {
      ADD_FAILURE() << path << " was never mapped (the run ended with code " << ended.code << "): " << ended.err;
      return;
    }
    EXPECT_EQ(truncate(path.c_str(), size), 0);
  };
}

// Sends `sig` after `settle_ms` (to let the workers get going).
auto signal_after(int sig, int settle_ms) {
  return [=](const Child& c) {
    std::this_thread::sleep_for(std::chrono::milliseconds(settle_ms));
    kill(c.pid, sig);
  };
}

// A failed run: exit `code`, one line naming `needle`, and neither the output `out_name` nor any
// staging name of it left in `dir`.
void expect_clean_failure(const ChildResult& r, int code, const std::string& needle, const std::string& dir,
                          const std::string& out_name) {
  EXPECT_EQ(r.code, code) << r.err;
  EXPECT_TRUE(one_line(r.err)) << r.err;
  EXPECT_NE(r.err.find(needle), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir + "/" + out_name));
  EXPECT_TRUE(names_with_prefix(dir, "." + out_name + ".").empty());
}

}  // namespace

TEST(Interruption, CompressLeavesNothingOnSigintSigtermSighup) {
  TempDir tmp("fp4z-safety");
  write_text(tmp / "in/a.txt", slow_text(24 << 20));
  const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
  const int codes[] = {130, 143, 129};
  for (int i = 0; i < 3; ++i) {
    fs::create_directories(tmp / "out");
    ChildResult r = during_run({kFp4z, "compress", tmp / "in", "-o", tmp / "out/x.fp4z", "--zstd-level", "22", "--threads",
                                "1", "-q"},
                               tmp / "out", ".x.fp4z.tmp-", signal_after(sigs[i], 20), tmp.path);
    EXPECT_EQ(r.code, codes[i]) << r.err;
    EXPECT_TRUE(one_line(r.err)) << r.err;
    EXPECT_NE(r.err.find("interrupted"), std::string::npos) << r.err;
    EXPECT_TRUE(fs::is_empty(tmp / "out")) << "left behind: " << ::testing::PrintToString(names_with_prefix(tmp / "out", ""));
  }
}

TEST(Interruption, DecompressLeavesNothingOnSigterm) {
  TempDir tmp("fp4z-safety");
  write_text(tmp / "z.fp4z", craft_container({zero_file("zeros.bin", 6)}));
  fs::create_directories(tmp / "out");
  ChildResult r = during_run({kFp4z, "decompress", tmp / "z.fp4z", "-o", tmp / "out/restored", "--threads", "1", "-q"},
                             tmp / "out", ".restored.tmp-", signal_after(SIGTERM, 20), tmp.path);
  EXPECT_EQ(r.code, 143) << r.err;
  EXPECT_TRUE(fs::is_empty(tmp / "out")) << "left behind: " << ::testing::PrintToString(names_with_prefix(tmp / "out", ""));
}

TEST(Interruption, QuantizeLeavesNothingOnSigintAndRefusesATruncatedSource) {
  TempDir tmp("fp4z-safety");
  CommandResult g = run_command(kPython + " " + q(kSourceDir + "/tests/py/gen_checkpoint.py") + " " + q(tmp / "src") +
                                " --scale 4 --layers 2 --seed 5");
  ASSERT_EQ(g.code, 0) << g.err;
  fs::create_directories(tmp / "out");
  ChildResult r = during_run({kFp4z, "quantize", "--source", tmp / "src", "--out", tmp / "out/q", "--threads", "1", "-q"},
                             tmp / "out", ".q.tmp-", signal_after(SIGINT, 0), tmp.path);
  EXPECT_EQ(r.code, 130) << r.err;
  EXPECT_TRUE(one_line(r.err)) << r.err;
  EXPECT_TRUE(fs::is_empty(tmp / "out")) << "left behind: " << ::testing::PrintToString(names_with_prefix(tmp / "out", ""));

  r = during_run({kFp4z, "quantize", "--source", tmp / "src", "--out", tmp / "out/q", "--threads", "1", "-q"}, tmp / "out",
                 ".q.tmp-", truncate_to(tmp / "src/model.safetensors", 1 << 20), tmp.path);
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_TRUE(one_line(r.err)) << r.err;
  EXPECT_NE(r.err.find("model.safetensors: input file was truncated"), std::string::npos) << r.err;
  EXPECT_TRUE(fs::is_empty(tmp / "out")) << "left behind: " << ::testing::PrintToString(names_with_prefix(tmp / "out", ""));
}

TEST(Interruption, LaterRunRemovesStagingOfDeadProcesses) {
  TempDir tmp("fp4z-safety");
  write_text(tmp / "in/a.txt", "data");
  // A PID that surely belongs to no process now: a child that has been reaped.
  pid_t dead = fork();
  if (dead == 0) _exit(0);
  waitpid(dead, nullptr, 0);
  std::string stale_tmp = tmp / (".x.fp4z.tmp-" + std::to_string(dead) + "-0badf00d");
  std::string live_tmp = tmp / (".x.fp4z.tmp-" + std::to_string(getpid()) + "-0badf00d");
  std::string stale_old = tmp / (".restored.old-" + std::to_string(dead) + "-12345678");
  write_text(stale_tmp, std::string(1000, 'x'));
  write_text(live_tmp, "a live run's staging");
  write_text(stale_old + "/only-copy.txt", "the previous output");
  ASSERT_EQ(fp4z_cmd("compress " + q(tmp / "in") + " -o " + q(tmp / "x.fp4z") + " -q").code, 0);
  EXPECT_FALSE(fs::exists(stale_tmp));
  EXPECT_TRUE(fs::exists(live_tmp));
  // An ".old" copy of a dead run whose replacement never arrived goes back into place.
  CommandResult r = fp4z_cmd("decompress " + q(tmp / "x.fp4z") + " -o " + q(tmp / "restored") + " -q");
  EXPECT_EQ(r.code, 2) << r.err;  // the restored previous output is there and not empty
  EXPECT_EQ(read_text(tmp / "restored/only-copy.txt"), "the previous output");
  EXPECT_FALSE(fs::exists(stale_old));
}

// ---- 3. atomic replacement, --force decided at the moment of replacement ----------------------

TEST(AtomicReplacement, ForceSwapsInACompleteOutput) {
  TempDir tmp("fp4z-safety");
  write_text(tmp / "in/a.txt", "new contents");
  ASSERT_EQ(fp4z_cmd("compress " + q(tmp / "in") + " -o " + q(tmp / "x.fp4z") + " -q").code, 0);
  write_text(tmp / "out/old.txt", "old output");
  CommandResult r = fp4z_cmd("decompress " + q(tmp / "x.fp4z") + " -o " + q(tmp / "out") + " --force -q");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(read_text(tmp / "out/a.txt"), "new contents");
  EXPECT_FALSE(fs::exists(tmp / "out/old.txt"));
  EXPECT_TRUE(names_with_prefix(tmp.path, ".out.").empty());
}

TEST(AtomicReplacement, OutputAppearingDuringRunIsKeptWithoutForce) {
  TempDir tmp("fp4z-safety");
  write_text(tmp / "in/a.txt", slow_text(8 << 20));
  ChildResult r = during_run({kFp4z, "compress", tmp / "in", "-o", tmp / "x.fp4z", "--zstd-level", "22", "--threads", "1", "-q"},
                             tmp.path, ".x.fp4z.tmp-", [&](const Child&) { write_text(tmp / "x.fp4z", "someone else's file"); }, tmp.path);
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("appeared"), std::string::npos) << r.err;
  EXPECT_EQ(read_text(tmp / "x.fp4z"), "someone else's file");
  EXPECT_TRUE(names_with_prefix(tmp.path, ".x.fp4z.").empty());

  // A directory output (decompress): a non-empty directory created meanwhile is not replaced.
  write_text(tmp / "z.fp4z", craft_container({zero_file("zeros.bin", 4)}));
  r = during_run({kFp4z, "decompress", tmp / "z.fp4z", "-o", tmp / "restored", "--threads", "1", "-q"}, tmp.path,
                 ".restored.tmp-", [&](const Child&) { write_text(tmp / "restored/mine.txt", "keep me"); }, tmp.path);
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_EQ(read_text(tmp / "restored/mine.txt"), "keep me");
  EXPECT_FALSE(fs::exists(tmp / "restored/zeros.bin"));
  EXPECT_TRUE(names_with_prefix(tmp.path, ".restored.").empty());
}

// Where renameat2's flags are unsupported (the shim makes every call fail with EINVAL), the documented
// fallback still replaces a directory output whole with --force and leaves no ".old" copy, and a file
// output without --force is published with link(2), which refuses a file that appeared meanwhile.
TEST(AtomicReplacement, FallbackWithoutRenameFlags) {
  TempDir tmp("fp4z-safety");
  std::string asan = getenv("ASAN_OPTIONS") ? getenv("ASAN_OPTIONS") : "";
  std::string env = "LD_PRELOAD=" + q(FP4Z_RENAME_FLAGS_UNSUPPORTED) + " ASAN_OPTIONS=" +
                    q(asan + (asan.empty() ? "" : ":") + "verify_asan_link_order=0") + " RENAME_SHIM_LOG=" +
                    q(tmp / "shim.log") + " ";
  write_text(tmp / "in/a.txt", "new contents");
  ASSERT_EQ(run_command(env + kFp4z + " compress " + q(tmp / "in") + " -o " + q(tmp / "x.fp4z") + " -q").code, 0);
  CommandResult r = run_command(env + kFp4z + " compress " + q(tmp / "in") + " -o " + q(tmp / "x.fp4z") + " -q");
  EXPECT_EQ(r.code, 2) << r.err;
  write_text(tmp / "out/old.txt", "old output");
  r = run_command(env + kFp4z + " decompress " + q(tmp / "x.fp4z") + " -o " + q(tmp / "out") + " --force -q");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(read_text(tmp / "out/a.txt"), "new contents");
  EXPECT_FALSE(fs::exists(tmp / "out/old.txt"));
  EXPECT_TRUE(names_with_prefix(tmp.path, ".out.").empty());
  EXPECT_TRUE(names_with_prefix(tmp.path, ".x.fp4z.").empty());
  // Both publications above went through the fallback: each called renameat2 once and was refused.
  EXPECT_EQ(read_text(tmp / "shim.log"), "renameat2\nrenameat2\n");

  write_text(tmp / "big/a.txt", slow_text(8 << 20));
  setenv("LD_PRELOAD", FP4Z_RENAME_FLAGS_UNSUPPORTED, 1);
  setenv("ASAN_OPTIONS", (asan + (asan.empty() ? "" : ":") + "verify_asan_link_order=0").c_str(), 1);
  ChildResult c = during_run({kFp4z, "compress", tmp / "big", "-o", tmp / "y.fp4z", "--zstd-level", "22", "--threads", "1", "-q"},
                             tmp.path, ".y.fp4z.tmp-", [&](const Child&) { write_text(tmp / "y.fp4z", "someone else's file"); }, tmp.path);
  unsetenv("LD_PRELOAD");
  if (asan.empty()) unsetenv("ASAN_OPTIONS");
  else setenv("ASAN_OPTIONS", asan.c_str(), 1);
  EXPECT_EQ(c.code, 2) << c.err;
  EXPECT_NE(c.err.find("appeared"), std::string::npos) << c.err;
  EXPECT_EQ(read_text(tmp / "y.fp4z"), "someone else's file");
  EXPECT_TRUE(names_with_prefix(tmp.path, ".y.fp4z.").empty());
}

// A dangling symbolic link at the target is an existing output: refused at start-up without --force
// (it used to be met only when publishing, after all the work), replaced by the output with --force.
TEST(AtomicReplacement, DanglingLinkAtTargetIsRefusedAtStartWithoutForce) {
  TempDir tmp("fp4z-safety");
  write_text(tmp / "in/a.txt", "contents");
  fs::create_symlink(tmp / "nowhere/x", tmp / "x.fp4z");
  fs::create_symlink(tmp / "nowhere/d", tmp / "restored");
  CommandResult r = fp4z_cmd("compress " + q(tmp / "in") + " -o " + q(tmp / "x.fp4z") + " -q");
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("already exists"), std::string::npos) << r.err;
  EXPECT_TRUE(fs::is_symlink(tmp / "x.fp4z"));
  ASSERT_EQ(fp4z_cmd("compress " + q(tmp / "in") + " -o " + q(tmp / "y.fp4z") + " -q").code, 0);
  r = fp4z_cmd("decompress " + q(tmp / "y.fp4z") + " -o " + q(tmp / "restored") + " -q");
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("already exists"), std::string::npos) << r.err;
  EXPECT_TRUE(fs::is_symlink(tmp / "restored"));
  r = fp4z_cmd("decompress " + q(tmp / "y.fp4z") + " -o " + q(tmp / "restored") + " --force -q");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(read_text(tmp / "restored/a.txt"), "contents");
  EXPECT_FALSE(fs::exists(tmp / "nowhere"));
}

// ---- 4. hostile JSON and tokenizers stay cheap --------------------------------------------------

TEST(HostileJson, MillionTensorHeaderChecksInUnderFiveSecondsOfCpu) {
  TempDir tmp("fp4z-safety");
  std::string h = "{";
  for (int i = 0; i < 1000000; ++i) {
    if (i) h += ",";
    h += "\"t" + std::to_string(i) + "\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}";
  }
  h += "}";
  std::string file(8, '\0');
  for (int k = 0; k < 8; ++k) file[size_t(k)] = char(uint8_t(uint64_t(h.size()) >> (8 * k)));
  write_text(tmp / "ck/model.safetensors", file + h);
  ChildResult r = run_measured({kFp4z, "check", tmp / "ck"});
  EXPECT_EQ(r.code, 1) << r.err;  // it answers: a report with findings (no config, nothing quantized)
  EXPECT_NE(r.out.find("1000000 tensors"), std::string::npos) << r.out.substr(0, 300);
  EXPECT_LT(r.cpu_s, 5.0) << "CPU seconds of fp4z check on 1,000,000 tensors";
  std::printf("check, 1,000,000-tensor header: %.2f s CPU, %ld KB peak RSS\n", r.cpu_s, r.max_rss_kb);
}

TEST(HostileJson, DuplicateKeysAndDeepNestingInConfigsAreRefused) {
  TempDir tmp("fp4z-safety");
  make_checkpoint(tmp / "ck");
  std::string cfg = "{";
  for (int i = 0; i < 40; ++i) cfg += "\"k" + std::to_string(i) + "\":" + std::to_string(i) + ",";
  cfg += "\"k7\":1}";  // a duplicate past the small-object limit of the reader
  write_text(tmp / "ck/config.json", cfg);
  CommandResult r = fp4z_cmd("check " + q(tmp / "ck"));
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("duplicate JSON key 'k7'"), std::string::npos) << r.err;
  write_text(tmp / "ck/config.json", "{\"a\":" + std::string(100000, '[') + std::string(100000, ']') + "}");
  r = fp4z_cmd("check " + q(tmp / "ck"));
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_TRUE(one_line(r.err)) << r.err;
  EXPECT_NE(r.err.find("nested deeper"), std::string::npos) << r.err;
}

TEST(HostileJson, TokenizerIdOf2Pow27StaysUnder100MB) {
  TempDir tmp("fp4z-safety");
  std::string vocab;
  for (int i = 0; i < 500; ++i) vocab += "\"w" + std::to_string(i) + "\":" + std::to_string(i) + ",";
  vocab += "\"big\":134217728";
  write_text(tmp / "m/tokenizer.json",
             "{\"version\":\"1.0\",\"added_tokens\":[],\"model\":{\"type\":\"BPE\",\"vocab\":{" + vocab + "},\"merges\":[]}}");
  ASSERT_GT(fs::file_size(tmp / "m/tokenizer.json"), 5000u);
  ChildResult r = run_measured({kFp4z, "tokenize", "--model", tmp / "m", "hello"});
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("134217728"), std::string::npos) << r.err;
  EXPECT_LT(r.max_rss_kb, 100 * 1024) << "peak RSS in KB";
  std::printf("tokenize with vocab id 2^27: %ld KB peak RSS\n", r.max_rss_kb);
}

// A tokenizer.json (or tokenizer_config.json) of a few MB of brackets: nlohmann::json copies recurse
// once per level, so this crashed with a stack overflow; the depth is now bounded before parsing.
TEST(HostileJson, DeeplyNestedTokenizerFilesAreRefused) {
  TempDir tmp("fp4z-safety");
  const std::string deep = std::string(1000000, '[') + std::string(1000000, ']');
  const std::string model = R"("model":{"type":"BPE","vocab":{"a":0,"b":1},"merges":[]})";
  write_text(tmp / "m/tokenizer.json", "{\"version\":\"1.0\",\"added_tokens\":[],\"normalizer\":" + deep + "," + model + "}");
  CommandResult r = fp4z_cmd("tokenize --model " + q(tmp / "m") + " ab");
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_TRUE(one_line(r.err)) << r.err;
  EXPECT_NE(r.err.find("tokenizer.json: nested deeper than 128 levels"), std::string::npos) << r.err;

  write_text(tmp / "m/tokenizer.json", "{\"version\":\"1.0\",\"added_tokens\":[]," + model + "}");
  ASSERT_EQ(fp4z_cmd("tokenize --model " + q(tmp / "m") + " ab").code, 0) << "the shallow file itself is valid";
  write_text(tmp / "m/tokenizer_config.json", "{\"x\":" + deep + "}");
  r = fp4z_cmd("tokenize --model " + q(tmp / "m") + " ab");
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("tokenizer_config.json: nested deeper than 128 levels"), std::string::npos) << r.err;
}

// ---- 5. inputs truncated while mapped -----------------------------------------------------------

TEST(TruncatedInput, MappedReadsSeeZerosAndTheFileIsNamed) {
  TempDir tmp("fp4z-safety");
  long page = sysconf(_SC_PAGESIZE);
  write_text(tmp / "f.bin", std::string(size_t(page) * 4, 'A'));
  fp4z::MappedFile m = fp4z::map_file(tmp / "f.bin");
  ASSERT_EQ(truncate((tmp / "f.bin").c_str(), page), 0);
  volatile const uint8_t* p = m.data;
  EXPECT_EQ(p[0], 'A');
  EXPECT_EQ(p[size_t(page) * 3 + 5], 0);  // SIGBUS without the handler
  std::string fault = fp4z::mapped_input_fault();
  EXPECT_NE(fault.find(tmp / "f.bin"), std::string::npos) << fault;
  EXPECT_NE(fault.find("truncated"), std::string::npos) << fault;
}

TEST(TruncatedInput, CompressOfAShrinkingFileFailsCleanly) {
  TempDir tmp("fp4z-safety");
  write_text(tmp / "in/a.txt", slow_text(24 << 20));
  ChildResult r = during_run({kFp4z, "compress", tmp / "in", "-o", tmp / "x.fp4z", "--zstd-level", "22", "--threads", "1", "-q"},
                             tmp.path, ".x.fp4z.tmp-", truncate_to(tmp / "in/a.txt", 4096), tmp.path);
  expect_clean_failure(r, 2, "a.txt", tmp.path, "x.fp4z");
}

TEST(TruncatedInput, DecompressOfAShrinkingContainerFailsCleanly) {
  TempDir tmp("fp4z-safety");
  write_text(tmp / "z.fp4z", craft_container({zero_file("zeros.bin", 6)}));
  ChildResult r = during_run({kFp4z, "decompress", tmp / "z.fp4z", "-o", tmp / "restored", "--threads", "1", "-q"},
                             tmp.path, ".restored.tmp-", truncate_to(tmp / "z.fp4z", 4096), tmp.path);
  expect_clean_failure(r, 2, "z.fp4z", tmp.path, "restored");
}

// ---- 6. declared output size against free space -------------------------------------------------

TEST(OutputSize, DecompressRefusesMoreThanTheFreeSpace) {
  TempDir tmp("fp4z-safety");
  struct statvfs vfs{};
  ASSERT_EQ(statvfs(tmp.path.c_str(), &vfs), 0);
  uint64_t free_bytes = uint64_t(vfs.f_bavail) * vfs.f_frsize;
  size_t chunks = size_t(free_bytes / (uint64_t(64) << 20)) + 16;
  write_text(tmp / "bomb.fp4z", craft_container({zero_file("zeros.bin", chunks)}));
  uint64_t declared = uint64_t(chunks) << 26;
  CommandResult r = fp4z_cmd("decompress " + q(tmp / "bomb.fp4z") + " -o " + q(tmp / "out") + " -q");
  EXPECT_EQ(r.code, 3) << r.err;
  EXPECT_TRUE(one_line(r.err)) << r.err;
  EXPECT_NE(r.err.find(std::to_string(declared)), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(tmp / "out"));
  EXPECT_TRUE(names_with_prefix(tmp.path, ".out.").empty());
  // --test says what a restore would need before it starts decoding.
  write_text(tmp / "small.fp4z", craft_container({zero_file("zeros.bin", 2)}));
  r = fp4z_cmd("decompress --test " + q(tmp / "small.fp4z"));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.substr(0, r.out.find('\n')).find(std::to_string(uint64_t(2) << 26)) != std::string::npos, true) << r.out;
}

// ---- 7. names in containers ---------------------------------------------------------------------

TEST(ContainerNames, ControlCharactersBadUtf8AndDisorderAreRefused) {
  TempDir tmp("fp4z-safety");
  struct Case {
    const char* what;
    std::vector<CraftEntry> entries;
  } cases[] = {
      {"newline", {raw_file("a\nb", "x")}},
      {"escape", {raw_file("a\x1b[31m", "x")}},
      {"C1 control", {raw_file("a\xc2\x9b", "x")}},
      {"bad UTF-8", {raw_file("a\xff", "x")}},
      {"unsorted", {raw_file("b", "x"), raw_file("a", "y")}},
  };
  write_text(tmp / "ok.fp4z", craft_container({raw_file("a", "y"), raw_file("b", "x")}));
  ASSERT_EQ(fp4z_cmd("decompress --list " + q(tmp / "ok.fp4z")).code, 0) << "the crafted container itself is valid";
  for (const auto& c : cases) {
    write_text(tmp / "bad.fp4z", craft_container(c.entries));
    CommandResult r = fp4z_cmd("decompress --list " + q(tmp / "bad.fp4z"));
    EXPECT_EQ(r.code, 2) << c.what;
    EXPECT_TRUE(one_line(r.err)) << c.what << ": " << r.err;
    EXPECT_EQ(r.err.find('\x1b'), std::string::npos) << c.what;
  }
}

TEST(ContainerNames, ListingEscapesTensorNamesAndCompressRefusesControlPaths) {
  TempDir tmp("fp4z-safety");
  std::string h = R"({"x\ny\u001b[2J":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})";
  std::string file(8, '\0');
  file[0] = char(h.size());
  write_text(tmp / "in/model.safetensors", file + h + "abcd");
  ASSERT_EQ(fp4z_cmd("compress " + q(tmp / "in") + " -o " + q(tmp / "x.fp4z") + " -q").code, 0);
  CommandResult r = fp4z_cmd("decompress --list " + q(tmp / "x.fp4z"));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("model.safetensors:x\\ny\\x1B[2J"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find('\x1b'), std::string::npos);

  write_text(tmp / "in2/bad\nname", "x");
  r = fp4z_cmd("compress " + q(tmp / "in2") + " -o " + q(tmp / "y.fp4z") + " -q");
  EXPECT_EQ(r.code, 2);
  EXPECT_TRUE(one_line(r.err)) << r.err;
  EXPECT_FALSE(fs::exists(tmp / "y.fp4z"));
}

// check's report quotes tensor names from the safetensors header: a name with a newline and an
// escape sequence appears escaped on its own line instead of forging a report row.
TEST(ContainerNames, CheckReportEscapesTensorNames) {
  TempDir tmp("fp4z-safety");
  make_checkpoint(tmp / "ck");
  std::string h = R"({"__metadata__":{"format":"pt"},"model.layers.0.mlp.x\nOK: no problems found\u001b[2J.weight_packed":)"
                  R"({"dtype":"U8","shape":[4],"data_offsets":[0,4]}})";
  std::string file(8, '\0');
  file[0] = char(h.size());
  write_text(tmp / "ck/model.safetensors", file + h + "abcd");
  CommandResult r = fp4z_cmd("check " + q(tmp / "ck"));
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_EQ(r.out.find('\x1b'), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("\nOK: no problems found"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("model.layers.0.mlp.x\\nOK: no problems found\\x1B[2J"), std::string::npos) << r.out;
}

TEST(Printable, EscapesWhatCouldForgeLinesOrReachTheTerminal) {
  EXPECT_EQ(fp4z::printable("plain/path_é.txt"), "plain/path_é.txt");
  EXPECT_EQ(fp4z::printable("a\nb\tc\\"), "a\\nb\\tc\\\\");
  EXPECT_EQ(fp4z::printable("\x1b[0m"), "\\x1B[0m");
  EXPECT_EQ(fp4z::printable("\xff\xc2"), "\\xFF\\xC2");
  EXPECT_EQ(fp4z::printable("\xe2\x80\xae"), "\\u{202E}");
  EXPECT_TRUE(fp4z::is_valid_utf8("\xf0\x9f\x98\x80"));
  EXPECT_FALSE(fp4z::is_valid_utf8("\xed\xa0\x80"));  // a surrogate
  EXPECT_FALSE(fp4z::is_valid_utf8("\xc0\xaf"));      // overlong '/'
}
