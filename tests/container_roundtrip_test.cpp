// End-to-end tests of `fp4z compress` / `fp4z decompress`: exact round trips (SHA-256 of every file) on
// generated NVFP4/BF16/sharded/odd directories, tensor extraction, and clean failure (exit 2, no output
// left) on corrupted, truncated, wrong-version and hostile containers.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <xxhash.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "codec/container.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace {

using T = fp4z::testing::StTensor;
using fp4z::testing::write_safetensors;

void write_file(const fs::path& p, const std::vector<uint8_t>& bytes) {
  fs::create_directories(p.parent_path());
  std::ofstream f(p, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
}
void write_text(const fs::path& p, const std::string& s) { write_file(p, std::vector<uint8_t>(s.begin(), s.end())); }

std::vector<uint8_t> read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

std::vector<uint8_t> bf16_gauss(size_t n, float sigma, std::mt19937& rng) {
  std::normal_distribution<float> g(0.0f, sigma);
  std::vector<uint8_t> v(2 * n);
  for (size_t i = 0; i < n; ++i) {
    float x = g(rng);
    uint32_t b;
    std::memcpy(&b, &x, 4);
    uint16_t h = uint16_t((b + 0x7FFF + ((b >> 16) & 1)) >> 16);
    std::memcpy(&v[2 * i], &h, 2);
  }
  return v;
}

// NVFP4 layer: packed codes with a realistic near-uniform histogram (code 8 forced in), FP8 scales.
void add_nvfp4_layer(std::vector<T>& ts, const std::string& m, int n, int k, std::mt19937& rng) {
  std::vector<uint8_t> packed(size_t(n) * k / 2), scales(size_t(n) * k / 16);
  std::normal_distribution<float> g(0.0f, 2.0f);
  for (auto& b : packed) {
    auto code = [&] {
      float x = std::clamp(g(rng), -6.0f, 6.0f);
      int mag = int(std::fabs(x) > 0.25f) + (std::fabs(x) >= 0.75f) + (std::fabs(x) > 1.25f) + (std::fabs(x) >= 1.75f) +
                (std::fabs(x) > 2.5f) + (std::fabs(x) >= 3.5f) + (std::fabs(x) > 5.0f);
      return uint8_t((x < 0 ? 8 : 0) | mag);
    };
    b = uint8_t(code() | code() << 4);
  }
  packed[3] = 0x88;
  packed[10] = 0x08;
  std::uniform_int_distribution<int> sd(0x30, 0x58);
  for (auto& s : scales) s = uint8_t(sd(rng));
  ts.push_back({m + ".weight_packed", "U8", {n, k / 2}, packed});
  ts.push_back({m + ".weight_scale", "F8_E4M3", {n, k / 16}, scales});
  ts.push_back({m + ".weight_global_scale", "F32", {1}, {0, 0, 0x60, 0x44}});
}

// Stderr of the last run() in this process (each test is its own process under ctest).
std::string g_last_stderr;
int run(const std::string& cmd) {
  fp4z::testing::CommandResult r = fp4z::testing::run_command(cmd);
  g_last_stderr = r.err;
  return r.code;
}
std::string last_stderr() { return g_last_stderr; }

std::string sha_listing(const fs::path& dir) {
  return fp4z::testing::run_command("cd '" + dir.string() +
                                    "' && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum; find . -type d | LC_ALL=C sort")
      .out;
}

struct Workdir {
  fp4z::testing::TempDir dir{"fp4z_container_test"};
  fs::path root{dir.path};
};

const std::string kBin = FP4Z_BINARY;

// One directory covering every kind of content the container handles.
fs::path make_checkpoint(const fs::path& root) {
  std::mt19937 rng(42);
  fs::path d = root / "ckpt";
  std::vector<T> shard1, shard2;
  shard1.push_back({"model.embed_tokens.weight", "BF16", {1000, 256}, bf16_gauss(256000, 0.02f, rng)});
  add_nvfp4_layer(shard1, "model.layers.0.self_attn.q_proj", 256, 256, rng);
  add_nvfp4_layer(shard1, "model.layers.0.mlp.down_proj", 512, 1024, rng);
  shard2.push_back({"model.layers.0.input_layernorm.weight", "BF16", {256}, bf16_gauss(256, 1.0f, rng)});
  std::vector<uint8_t> f16(2 * 40000), f32(4 * 20000), i64(8 * 100);
  for (auto& b : f16) b = uint8_t(rng() % 7);
  auto g32 = bf16_gauss(20000, 0.1f, rng);
  for (size_t i = 0; i < 20000; ++i) {
    f32[4 * i] = uint8_t(rng());
    f32[4 * i + 1] = uint8_t(rng());
    f32[4 * i + 2] = g32[2 * i];
    f32[4 * i + 3] = g32[2 * i + 1];
  }
  shard2.push_back({"lm_head.f16", "F16", {40000}, f16});
  shard2.push_back({"some.f32", "F32", {20000}, f32});
  shard2.push_back({"position_ids", "I64", {100}, i64});
  shard2.push_back({"empty", "F32", {0}, {}});
  // ModelOpt naming: `weight` U8 with a matching F8_E4M3 `weight_scale`.
  std::vector<T> mo;
  add_nvfp4_layer(mo, "x", 128, 512, rng);
  shard2.push_back({"model.layers.1.mlp.up_proj.weight", "U8", {128, 256}, mo[0].data});
  shard2.push_back({"model.layers.1.mlp.up_proj.weight_scale", "F8_E4M3", {128, 32}, mo[1].data});
  write_safetensors(d / "model-00001-of-00002.safetensors", shard1);
  write_safetensors(d / "model-00002-of-00002.safetensors", shard2, /*reverse_data=*/true);
  write_text(d / "model.safetensors.index.json", "{\"metadata\":{\"total_size\":1},\"weight_map\":{}}\n");
  write_text(d / "config.json", "{\n  \"hidden_size\": 256\n}\n");
  write_text(d / "sub/dir/notes.txt", std::string(5000, 'a') + "tail");
  write_file(d / "sub/random.bin", bf16_gauss(3000, 1.0f, rng));
  write_text(d / "sub/broken.safetensors", "\x10\0\0\0\0\0\0\0{\"a\":1}   ");  // does not parse
  write_text(d / "empty_file", "");
  fs::create_directories(d / "empty_dir/nested");
  return d;
}

class Container : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    work = new Workdir;
    ckpt = make_checkpoint(work->root);
    archive = work->root / "ckpt.fp4z";
    ASSERT_EQ(run(kBin + " compress '" + ckpt.string() + "' -o '" + archive.string() + "' --threads 2"), 0) << last_stderr();
  }
  static void TearDownTestSuite() { delete work; }
  static Workdir* work;
  static fs::path ckpt, archive;
};
Workdir* Container::work = nullptr;
fs::path Container::ckpt, Container::archive;

TEST_F(Container, RoundTripIsExact) {
  fs::path out = work->root / "restored";
  ASSERT_EQ(run(kBin + " decompress '" + archive.string() + "' -o '" + out.string() + "'"), 0) << last_stderr();
  std::string a = sha_listing(ckpt), b = sha_listing(out);
  EXPECT_FALSE(a.empty());
  EXPECT_EQ(a, b);
  fs::remove_all(out);
}

TEST_F(Container, SmallerThanInputAndCodesCoded) {
  uint64_t in = 0;
  for (auto& e : fs::recursive_directory_iterator(ckpt))
    if (e.is_regular_file()) in += e.file_size();
  uint64_t out = fs::file_size(archive);
  EXPECT_LT(out, in * 0.85) << in << " -> " << out;
  fp4z::codec::Container c = fp4z::codec::open_container(archive.string());
  int coded = 0, split = 0;
  for (const auto& ch : c.index.chunks) {
    coded += ch.codec == fp4z::codec::ChunkCodec::kBytes;
    split += ch.codec == fp4z::codec::ChunkCodec::kSplitBF16;
  }
  EXPECT_GT(coded, 0);
  EXPECT_GT(split, 0);
  // The ModelOpt-named code tensor is recognised as FP4 codes.
  const auto& t = c.index.tensors[fp4z::codec::find_tensor(c.index, "model.layers.1.mlp.up_proj.weight")];
  EXPECT_EQ(t.role, fp4z::codec::Role::kFp4Codes);
}

TEST_F(Container, ExtractOneTensorAndList) {
  fs::path out = work->root / "q.bin";
  ASSERT_EQ(run(kBin + " decompress '" + archive.string() + "' --tensor model.layers.0.self_attn.q_proj.weight_packed -o '" +
                out.string() + "'"),
            0)
      << last_stderr();
  auto bytes = read_file(out);
  ASSERT_EQ(bytes.size(), 256u * 128u);
  EXPECT_EQ(bytes[3], 0x88);
  EXPECT_EQ(bytes[10], 0x08);
  EXPECT_EQ(run(kBin + " decompress '" + archive.string() + "' --tensor nope -o '" + (work->root / "n.bin").string() + "'"), 2);
  EXPECT_FALSE(fs::exists(work->root / "n.bin"));
  EXPECT_EQ(run(kBin + " decompress '" + archive.string() + "' --list"), 0);
  EXPECT_EQ(run(kBin + " decompress '" + archive.string() + "' --test"), 0);
  // A 4-byte tensor inside a zstd chunk (the header segment) and a tensor spread over many small chunks.
  fs::path g = work->root / "g.bin";
  ASSERT_EQ(run(kBin + " decompress '" + archive.string() + "' --tensor model.layers.0.self_attn.q_proj.weight_global_scale -o '" +
                g.string() + "'"), 0) << last_stderr();
  EXPECT_EQ(read_file(g), (std::vector<uint8_t>{0, 0, 0x60, 0x44}));
  fs::path small = work->root / "small_chunks.fp4z";
  ASSERT_EQ(run(kBin + " compress '" + ckpt.string() + "' -o '" + small.string() + "' --chunk-size 64KiB"), 0);
  fs::path d1 = work->root / "d1.bin", d2 = work->root / "d2.bin";
  const std::string t = " --tensor model.layers.0.mlp.down_proj.weight_packed -o '";
  ASSERT_EQ(run(kBin + " decompress '" + archive.string() + "'" + t + d1.string() + "'"), 0);
  ASSERT_EQ(run(kBin + " decompress '" + small.string() + "'" + t + d2.string() + "'"), 0);
  EXPECT_EQ(read_file(d1).size(), 512u * 512u);
  EXPECT_EQ(read_file(d1), read_file(d2));
  fs::remove(small);
  // Refuses to overwrite without --force.
  EXPECT_EQ(run(kBin + " decompress '" + archive.string() + "' --tensor model.embed_tokens.weight -o '" + out.string() + "'"), 2);
}

TEST_F(Container, ScalarAndDispatchedPathsGiveSameBytes) {
  fs::path a2 = work->root / "scalar.fp4z";
  ASSERT_EQ(run("FP4Z_ISA=scalar " + kBin + " compress '" + ckpt.string() + "' -o '" + a2.string() + "' --threads 1"), 0);
  EXPECT_EQ(read_file(a2), read_file(archive));
  fs::path out = work->root / "scalar_out";
  ASSERT_EQ(run("FP4Z_ISA=scalar " + kBin + " decompress '" + archive.string() + "' -o '" + out.string() + "'"), 0);
  EXPECT_EQ(sha_listing(ckpt), sha_listing(out));
  fs::remove_all(out);
  fs::remove(a2);
  FP4Z_SKIP_MISSING_ISA_LEVELS(fp4z::CpuFeature::kAvx512);  // the dispatched path is scalar without AVX-512
}

// Every corruption must fail with exit 2, one line on stderr, and leave no output behind.
void expect_clean_failure(const fs::path& root, const std::vector<uint8_t>& bytes, const std::string& what,
                          const std::string& must_mention = "") {
  fs::path bad = root / "bad.fp4z", out = root / "bad_out";
  write_file(bad, bytes);
  int rc = run(kBin + " decompress '" + bad.string() + "' -o '" + out.string() + "' -q");
  EXPECT_EQ(rc, 2) << what;
  std::string err = last_stderr();
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << what << ": " << err;
  if (!must_mention.empty()) {
    EXPECT_NE(err.find(must_mention), std::string::npos) << what << ": " << err;
  }
  EXPECT_FALSE(fs::exists(out)) << what;
  fs::remove_all(out);
  for (auto& e : fs::directory_iterator(root))
    EXPECT_EQ(e.path().filename().string().find(".bad_out"), std::string::npos) << "staging left behind: " << e.path();
}

TEST_F(Container, BitFlipsInEveryRegionFailCleanly) {
  auto good = read_file(archive);
  fp4z::codec::Container c = fp4z::codec::open_container(archive.string());
  const auto& idx = c.index;
  // Header: magic, version, flags.
  for (size_t at : {0, 3, 8, 10, 12}) {
    auto b = good;
    b[at] ^= 0x04;
    expect_clean_failure(work->root, b, "header byte " + std::to_string(at));
  }
  // One flip in the middle of every chunk payload: named by chunk.
  for (size_t k = 0; k < idx.chunks.size(); ++k) {
    auto b = good;
    b[size_t(idx.chunks[k].offset + idx.chunks[k].payload_size / 2)] ^= 0x20;
    expect_clean_failure(work->root, b, "chunk " + std::to_string(k), "chunk " + std::to_string(k));
  }
  // Index and trailer.
  size_t index_start = size_t(idx.chunks.back().offset + idx.chunks.back().payload_size);
  for (size_t at = index_start; at < good.size(); at += std::max<size_t>(1, (good.size() - index_start) / 40)) {
    auto b = good;
    b[at] ^= 0x01;
    expect_clean_failure(work->root, b, "index/trailer byte " + std::to_string(at));
  }
}

TEST_F(Container, TruncationAndExtensionFailCleanly) {
  auto good = read_file(archive);
  for (size_t cut : {size_t(0), size_t(1), size_t(15), size_t(16), size_t(100), good.size() / 3, good.size() / 2,
                     good.size() - 41, good.size() - 40, good.size() - 39, good.size() - 1}) {
    std::vector<uint8_t> b(good.begin(), good.begin() + long(cut));
    expect_clean_failure(work->root, b, "truncated at " + std::to_string(cut));
  }
  auto longer = good;
  longer.push_back(0);
  expect_clean_failure(work->root, longer, "one byte appended");
}

TEST_F(Container, WrongVersionIsNamed) {
  auto b = read_file(archive);
  b[8] = 2;  // major version 2
  expect_clean_failure(work->root, b, "version", "unsupported fp4z format version 2");
}

TEST_F(Container, IndexWithUnsafePathsIsRejected) {
  // Re-create a container whose (checksummed) index names "../escape": the parser must refuse it.
  auto good = read_file(archive);
  fp4z::codec::Container c = fp4z::codec::open_container(archive.string());
  std::string first = c.index.files[0].path;  // "config.json"
  std::string evil = "../" + first.substr(3);
  ASSERT_EQ(evil.size(), first.size());
  size_t index_start = size_t(c.index.chunks.back().offset + c.index.chunks.back().payload_size);
  auto b = good;
  auto it = std::search(b.begin() + long(index_start), b.end(), first.begin(), first.end());
  ASSERT_NE(it, b.end());
  std::copy(evil.begin(), evil.end(), it);
  // Fix the index checksum so only the path check can catch it.
  size_t tr = b.size() - fp4z::codec::kTrailerSize;
  uint64_t isize = 0;
  for (int k = 7; k >= 0; --k) isize = (isize << 8) | b[tr + 8 + k];
  uint64_t h = XXH3_64bits_withSeed(b.data() + index_start, size_t(isize), XXH3_64bits(b.data(), fp4z::codec::kHeaderSize));
  for (int k = 0; k < 8; ++k) b[tr + 16 + k] = uint8_t(h >> (8 * k));
  expect_clean_failure(work->root, b, "path traversal", "not allowed");
  EXPECT_FALSE(fs::exists(work->root / evil.substr(3)));
}

TEST(ContainerInput, RefusesWhatItCannotRestore) {
  Workdir w;
  fs::path d = w.root / "in";
  write_text(d / "a.txt", "hello");
  fs::create_symlink("a.txt", d / "link");
  fs::path out = w.root / "x.fp4z";
  EXPECT_EQ(run(kBin + " compress '" + d.string() + "' -o '" + out.string() + "'"), 2);
  EXPECT_NE(last_stderr().find("symbolic link"), std::string::npos);
  EXPECT_FALSE(fs::exists(out));
  fs::remove(d / "link");
  EXPECT_EQ(run(kBin + " compress '" + d.string() + "' -o '" + out.string() + "'"), 0) << last_stderr();
  EXPECT_EQ(run(kBin + " compress '" + d.string() + "' -o '" + out.string() + "'"), 2);  // exists, no --force
  EXPECT_EQ(run(kBin + " compress '" + (w.root / "missing").string() + "' -o '" + (w.root / "y.fp4z").string() + "'"), 2);
  // Never larger than the input plus a small header, even for incompressible data.
  std::mt19937 rng(3);
  std::vector<uint8_t> noise(300000);
  for (auto& x : noise) x = uint8_t(rng());
  fs::path d2 = w.root / "noise";
  write_file(d2 / "noise.bin", noise);
  fs::path o2 = w.root / "noise.fp4z";
  ASSERT_EQ(run(kBin + " compress '" + d2.string() + "' -o '" + o2.string() + "'"), 0);
  EXPECT_LE(fs::file_size(o2), noise.size() + 256);
}

}  // namespace
