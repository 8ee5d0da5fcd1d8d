// On a small real model (stories260K, quantized by absmax and by seed) the container stores every
// tensor class (FP4 codes, FP8 scales, float tensors) in no more bytes than zstd -19 of the same
// tensors (each tensor one frame, as `fp4z stats` compares them).
#include <gtest/gtest.h>
#include <zstd.h>

#include <string>
#include <vector>

#include "codec/container.h"
#include "format/nvfp4_tensors.h"
#include "test_util.h"

using namespace fp4z;
using namespace fp4z::codec;
using namespace fp4z::testing;

namespace {

std::string q(const std::string& s) { return shell_quote(s); }

void run_ok(const std::string& args) {
  CommandResult r = run_command(kFp4z + " " + args);
  ASSERT_EQ(r.code, 0) << args << "\n" << r.err;
}

// zstd -19 of every tensor of `role` that the container codes itself (at least min_coded_tensor
// bytes; smaller ones share the header's zstd frame), each tensor its own frame, summed; also the
// same bytes as one frame (context across tensors, for the report) and their raw size.
struct ClassZstd {
  uint64_t raw = 0, per_tensor = 0, one_frame = 0;
};
size_t zstd19(const uint8_t* p, size_t n) {
  std::vector<uint8_t> frame(ZSTD_compressBound(n));
  size_t r = ZSTD_compress(frame.data(), frame.size(), p, n, 19);
  EXPECT_FALSE(ZSTD_isError(r));
  return r;
}
ClassZstd zstd19_of_class(const Container& c, Role role, uint64_t min_coded_tensor) {
  ClassZstd z;
  std::vector<uint8_t> all;
  const ContainerIndex& idx = c.index;
  CodecScratch scratch;
  for (const TensorEntry& t : idx.tensors) {
    if (t.role != role || t.size < min_coded_tensor) continue;
    const FileEntry& f = idx.files[t.file];
    std::vector<uint8_t> file_bytes(size_t(f.size));
    for (uint64_t k = f.first_chunk; k < f.first_chunk + f.n_chunks; ++k) {
      const ChunkEntry& ch = idx.chunks[size_t(k)];
      decode_container_chunk(c.map.data, c.map.size, idx, size_t(k), file_bytes.data() + ch.file_offset, scratch,
                             c.path());
    }
    const uint8_t* p = file_bytes.data() + t.offset;
    z.per_tensor += zstd19(p, size_t(t.size));
    all.insert(all.end(), p, p + t.size);
  }
  z.raw = all.size();
  if (!all.empty()) z.one_frame = zstd19(all.data(), all.size());
  return z;
}

void expect_no_class_larger_than_zstd19(const std::string& ckpt, const std::string& out, const std::string& label) {
  CompressOptions opt;
  opt.threads = 1;
  opt.quiet = true;
  opt.is_fp4_codes = is_packed_codes_tensor;
  CompressSummary sum = compress_directory(ckpt, out, opt);
  Container c = open_container(out);
  int classes_seen = 0;
  for (Role role : {Role::kFp4Codes, Role::kFp8Scales, Role::kFloat}) {
    ClassZstd z = zstd19_of_class(c, role, opt.min_coded_tensor);
    // The summary's per-role totals count exactly the chunks of these tensors.
    EXPECT_EQ(sum.raw[int(role)], z.raw) << label << " " << role_name(role);
    std::printf("%s %-10s raw %8llu  fp4z %8llu  zstd -19 per tensor %8llu  one frame %8llu\n", label.c_str(),
                role_name(role), (unsigned long long)z.raw, (unsigned long long)sum.stored[int(role)],
                (unsigned long long)z.per_tensor, (unsigned long long)z.one_frame);
    if (z.raw == 0) continue;
    ++classes_seen;
    EXPECT_LE(sum.stored[int(role)], z.per_tensor) << label << " " << role_name(role);
  }
  // stories260K's block scales are all < 4 KiB (at most 688 B): they travel in the header's zstd -19
  // frame, so codes and float tensors are the classes the container codes itself.
  EXPECT_EQ(classes_seen, 2) << label << ": expected codes and float tensors of >= 4 KiB";
}

TEST(SmallModelContainer, EveryTensorClassAtMostZstd19) {
  TempDir dir("fp4z-small-model");
  const std::string fx = kFixtures + "/stories260K";
  run_ok("import-llama2c " + q(fx + "/stories260K.bin") + " --tokenizer " + q(fx + "/tok512.bin") + " --out " +
         q(dir / "f32") + " -q");
  run_ok("quantize --source " + q(dir / "f32") + " --out " + q(dir / "absmax") + " -q");
  run_ok("quantize --method seed --source " + q(dir / "f32") + " --template " + q(dir / "absmax") + " --out " +
         q(dir / "seed") + " -q");
  expect_no_class_larger_than_zstd19(dir / "absmax", dir / "absmax.fp4z", "absmax");
  expect_no_class_larger_than_zstd19(dir / "seed", dir / "seed.fp4z", "seed");
}

}  // namespace
