// Bulk input reads, in-kernel tensor copies and the background I/O queue of quantize: bytes and failures.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <mutex>
#include <random>
#include <filesystem>
#include <string>
#include <vector>

#include "common/cpu.h"
#include "common/error.h"
#include "common/half.h"
#include "common/input_file.h"
#include "common/mapped_file.h"
#include "format/safetensors.h"
#include "nvfp4/scales.h"
#include "pipeline/io_queue.h"
#include "pipeline/layer_quant.h"
#include "test_util.h"

using namespace fp4z;
using namespace fp4z::testing;
namespace fs = std::filesystem;

namespace {

std::string pattern_bytes(size_t n, unsigned seed) {
  std::string s(n, '\0');
  uint32_t x = seed * 2654435761u + 1;
  for (auto& c : s) {
    x = x * 1664525u + 1013904223u;
    c = char(x >> 24);
  }
  return s;
}

// The Error thrown by `f`, or a failure if none is.
template <class F>
Error error_of(F f) {
  try {
    f();
  } catch (const Error& e) {
    return e;
  }
  ADD_FAILURE() << "no fp4z::Error was thrown";
  return Error(0, "");
}

// The bytes of tensor `name` in a written safetensors file.
std::string tensor_bytes(const std::string& path, const std::string& name) {
  auto f = open_safetensors(path);
  const TensorInfo* t = f->find(name);
  if (!t) return "<missing>";
  return std::string(reinterpret_cast<const char*>(f->data_of(*t)), t->nbytes());
}

// A file of `data` in `dir`, mapped and opened for bulk reads (the way quantize opens its shards).
struct OpenedInput {
  MappedFile map;
  InputFile in;
  OpenedInput(const std::string& path, const std::string& data) {
    write_text(path, data);
    map = map_file(path);
    in = open_input(map);
  }
};

// "PATH: input file was truncated while it was being read", exit 2.
void expect_truncation_error(const Error& e, const std::string& path) {
  EXPECT_EQ(e.code, kExitInput);
  EXPECT_EQ(std::string(e.what()), path + ": input file was truncated while it was being read");
}

}  // namespace

TEST(InputFile, ReadsExactBytesAndNamesATruncatedFile) {
  TempDir tmp("fp4z-qio");
  const std::string data = pattern_bytes(3 << 20, 1);
  OpenedInput f(tmp / "in.bin", data);
  std::vector<char> buf(1 << 20);
  read_input(f.in, 12345, buf.data(), buf.size());
  EXPECT_EQ(std::string(buf.data(), buf.size()), data.substr(12345, buf.size()));

  ASSERT_EQ(truncate((tmp / "in.bin").c_str(), 1 << 20), 0);
  expect_truncation_error(error_of([&] { read_input(f.in, (1 << 20) - 10, buf.data(), 100); }), tmp / "in.bin");
}

TEST(InputFile, RefusesAFileThatReplacedTheMappedOne) {
  TempDir tmp("fp4z-qio");
  write_text(tmp / "in.bin", pattern_bytes(8192, 2));
  write_text(tmp / "other.bin", pattern_bytes(8192, 3));
  MappedFile m = map_file(tmp / "in.bin");
  fs::rename(tmp / "other.bin", tmp / "in.bin");
  Error e = error_of([&] { open_input(m); });
  EXPECT_EQ(e.code, kExitInput);
  EXPECT_NE(std::string(e.what()).find("replaced"), std::string::npos) << e.what();
}

TEST(CheckpointWriterCopy, CopiesTensorBytesFromAFileAndDetectsTruncation) {
  TempDir tmp("fp4z-qio");
  const std::string src = pattern_bytes((5 << 20) + 6, 4);  // odd size: no alignment assumed
  OpenedInput f(tmp / "src.bin", src);
  const InputFile& in = f.in;
  fs::create_directories(tmp / "out");
  {
    CheckpointWriter w(tmp / "out", {{"a", DType::U8, {int64_t(src.size() - 1000)}}, {"b", DType::U8, {3}}}, 1ull << 40);
    w.copy_from("a", in, 1000);
    w.write("b", "xyz", 3);
    w.finish();
  }
  EXPECT_TRUE(tensor_bytes(tmp / "out/model.safetensors", "a") == src.substr(1000));
  EXPECT_EQ(tensor_bytes(tmp / "out/model.safetensors", "b"), "xyz");

  fs::create_directories(tmp / "out2");
  CheckpointWriter w(tmp / "out2", {{"a", DType::U8, {int64_t(src.size())}}}, 1ull << 40);
  ASSERT_EQ(truncate((tmp / "src.bin").c_str(), 4096), 0);
  expect_truncation_error(error_of([&] { w.copy_from("a", in, 0); }), tmp / "src.bin");
}

TEST(IoQueue, WritesCopiesAndCallsInOrderAndRecyclesBuffers) {
  TempDir tmp("fp4z-qio");
  const std::string src = pattern_bytes(3 << 20, 5);
  OpenedInput f(tmp / "src.bin", src);
  const InputFile& in = f.in;
  fs::create_directories(tmp / "out");
  const std::string big = pattern_bytes(2 << 20, 6);
  CheckpointWriter w(tmp / "out", {{"big", DType::U8, {int64_t(big.size())}}, {"copied", DType::U8, {int64_t(src.size())}}}, 1ull << 40);
  bool called = false;
  {
    IoQueue io(w);
    io.prefetch(in, 0, src.size());
    io.write("big", ByteBuffer(big.begin(), big.end()));
    io.copy("copied", in, 0);
    io.call([&] { called = true; });
    io.finish();
    ByteBuffer spare = io.spare();  // the written 2 MiB buffer comes back for reuse
    EXPECT_GE(spare.capacity(), big.size());
  }
  EXPECT_TRUE(called);
  w.finish();
  EXPECT_TRUE(tensor_bytes(tmp / "out/model.safetensors", "big") == big);
  EXPECT_TRUE(tensor_bytes(tmp / "out/model.safetensors", "copied") == src);
}

TEST(IoQueue, AFailedJobSurfacesAtFinishAndLaterSubmissions) {
  TempDir tmp("fp4z-qio");
  fs::create_directories(tmp / "out");
  CheckpointWriter w(tmp / "out", {{"t", DType::U8, {4}}}, 1ull << 40);
  IoQueue io(w);
  io.write("t", ByteBuffer(5, 0));  // wrong size: the background write fails
  Error e = error_of([&] { io.finish(); });
  EXPECT_EQ(e.code, kExitInternal);
  EXPECT_NE(std::string(e.what()).find("size mismatch"), std::string::npos) << e.what();
  Error again = error_of([&] { io.call([] {}); });
  EXPECT_EQ(std::string(again.what()), std::string(e.what()));
}

// A tensor written in parts from one buffer (out of order, as encoding segments complete), then
// completed: the file holds the bytes, the tensor counts as written, and the buffer is recycled.
TEST(IoQueue, PartsThenCompleteWriteTheTensorAndRecycleItsBuffer) {
  TempDir tmp("fp4z-qio");
  fs::create_directories(tmp / "out");
  const std::string data = pattern_bytes(3 << 20, 7);
  CheckpointWriter w(tmp / "out", {{"t", DType::U8, {int64_t(data.size())}}}, 1ull << 40);
  {
    IoQueue io(w);
    ByteBuffer buf(data.begin(), data.end());
    const uint64_t third = data.size() / 3;
    io.write_part("t", 2 * third, buf.data() + 2 * third, data.size() - 2 * third);
    io.write_part("t", 0, buf.data(), third);
    io.write_part("t", third, buf.data() + third, third);
    io.complete("t", std::move(buf));
    io.finish();
    ByteBuffer spare = io.spare();
    EXPECT_GE(spare.capacity(), data.size());
  }
  w.finish();  // fails ("never written") unless complete() marked it
  EXPECT_TRUE(tensor_bytes(tmp / "out/model.safetensors", "t") == data);
}

TEST(IoQueue, ATensorWrittenOnlyInPartsIsNotComplete) {
  TempDir tmp("fp4z-qio");
  fs::create_directories(tmp / "out");
  std::vector<uint8_t> buf(64, 1);
  CheckpointWriter w(tmp / "out", {{"t", DType::U8, {64}}}, 1ull << 40);
  {
    IoQueue io(w);
    io.write_part("t", 0, buf.data(), buf.size());
    io.finish();
  }
  Error e = error_of([&] { w.finish(); });
  EXPECT_NE(std::string(e.what()).find("never written"), std::string::npos) << e.what();
}

// seed_encode reports every segment of rows exactly once, whatever the thread count (one thread gets
// the whole range in one call), and gives the same bytes and metrics bit for bit.
TEST(SeedSegments, EveryRowReportedOnceAndResultsIndependentOfThreads) {
  const int64_t R = 150, C = 64;  // 10 work items of 16 rows (the last one 6)
  std::mt19937 rng(9);
  std::normal_distribution<float> nd(0.0f, 0.02f);
  std::vector<uint16_t> w(size_t(R * C));
  for (auto& h : w) h = f32_to_bf16_rne(nd(rng));
  WeightView view{reinterpret_cast<const uint8_t*>(w.data()), DType::BF16, R, C};
  const NvKernels& k = nv_kernels(detect_isa());
  bool finite = true;
  LayerEncoding tpl;
  absmax_encode(view, absmax_global_scale(weight_amax(view, 1, &finite), SourceRounding::kBF16), false, 1, k, tpl);
  const SeedScales sc = seed_scales(tpl.scales.data(), tpl.scales.size(), tpl.global_scale, 2.0f);
  const float g1 = seed_global_scale(sc.M);
  LayerEncoding ref;
  for (int threads : {1, 2, 3}) {
    LayerEncoding out;
    std::mutex mu;
    std::vector<int> seen(size_t(R), 0);
    // 3 work items per segment (C / 2 = 32 bytes per row): segments of 48 rows, the last one 6.
    seed_encode(view, tpl.packed.data(), sc, tpl.global_scale, g1, false, threads, k, out,
                [&](size_t r0, size_t r1) {
                  std::lock_guard<std::mutex> lk(mu);
                  EXPECT_EQ(r0 % 48, 0u);
                  for (size_t r = r0; r < r1; ++r) ++seen[r];
                },
                48 * 32);
    for (int64_t r = 0; r < R; ++r) ASSERT_EQ(seen[size_t(r)], 1) << "row " << r << " threads " << threads;
    if (threads == 1) {
      ref = std::move(out);
      continue;
    }
    EXPECT_EQ(out.packed, ref.packed) << threads;
    EXPECT_EQ(out.scales, ref.scales) << threads;
    EXPECT_EQ(0, std::memcmp(&out.metrics.mse, &ref.metrics.mse, sizeof(double))) << threads;
    EXPECT_EQ(0, std::memcmp(&out.baseline.mse, &ref.baseline.mse, sizeof(double))) << threads;
    EXPECT_EQ(out.metrics.mean_entropy_bits, ref.metrics.mean_entropy_bits) << threads;
    EXPECT_EQ(out.metrics.zero_fraction, ref.metrics.zero_fraction) << threads;
    EXPECT_EQ(out.metrics.scale_ratio_std, ref.metrics.scale_ratio_std) << threads;
  }
}
