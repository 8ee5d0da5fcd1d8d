// The .fp4z format cannot drift silently: a committed v1.0 container (tests/golden/fp4z-v1.0, made once by
// make_fp4z_v1.sh) must decode to its committed input bytes, each committed corrupt variant must be refused
// with its recorded error, and a committed v1.1 container with a mode-3 (64-lane) stream
// (tests/golden/fp4z-v1.1, make_fp4z_v1_1.sh) must decode to input files of the recorded SHA-256.
#include <gtest/gtest.h>

#include <filesystem>
#include <sstream>
#include <string>

#include "codec/container.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace fp4z;
namespace tu = fp4z::testing;

namespace {

const std::string kGolden = tu::kSourceDir + "/tests/golden/fp4z-v1.0";
const std::string kGolden11 = tu::kSourceDir + "/tests/golden/fp4z-v1.1";

TEST(GoldenContainer, DecodesToTheCommittedBytes) {
  tu::TempDir tmp("fp4z-golden");
  tu::CommandResult r = tu::run_command(tu::kFp4z + " decompress " + tu::shell_quote(kGolden + "/tiny.fp4z") +
                                                  " -o " + tu::shell_quote(tmp / "out"));
  ASSERT_EQ(r.code, 0) << r.err;
  size_t files = 0;
  for (const auto& e : fs::directory_iterator(kGolden + "/tiny")) {
    std::string name = e.path().filename().string();
    EXPECT_EQ(tu::read_text(tmp / ("out/" + name)), tu::read_text(e.path().string())) << name;
    ++files;
  }
  size_t restored = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(tmp / "out")) ++restored;
  EXPECT_EQ(files, 2u);
  EXPECT_EQ(restored, files);
}

TEST(GoldenContainer, IndexKeepsVersionAndRoles) {
  codec::Container c = codec::open_container(kGolden + "/tiny.fp4z");
  EXPECT_EQ(c.index.version_major, 1);
  EXPECT_EQ(c.index.version_minor, 0);
  auto role = [&](const std::string& name) { return c.index.tensors[codec::find_tensor(c.index, name)].role; };
  EXPECT_EQ(role("model.layers.0.mlp.up_proj.weight_packed"), codec::Role::kFp4Codes);
  EXPECT_EQ(role("model.layers.0.mlp.up_proj.weight_scale"), codec::Role::kFp8Scales);
  EXPECT_EQ(role("model.embed_tokens.weight"), codec::Role::kFloat);
  bool rans = false;
  for (const auto& ch : c.index.chunks) rans |= ch.codec == codec::ChunkCodec::kBytes;
  EXPECT_TRUE(rans) << "the golden file must exercise the rANS decoder";
}

TEST(GoldenContainer, CorruptVariantsFailWithTheRecordedError) {
  std::istringstream tsv(tu::read_text(kGolden + "/errors/expected.tsv"));
  std::string line;
  size_t n = 0;
  while (std::getline(tsv, line)) {
    size_t tab = line.find('\t');
    ASSERT_NE(tab, std::string::npos) << line;
    std::string file = kGolden + "/errors/" + line.substr(0, tab), want = line.substr(tab + 1);
    tu::CommandResult r = tu::run_command(tu::kFp4z + " decompress --test " + tu::shell_quote(file));
    EXPECT_EQ(r.code, 2) << file;
    EXPECT_NE(r.err.find(want), std::string::npos) << file << ": expected \"" << want << "\", got " << r.err;
    ++n;
  }
  EXPECT_GE(n, 8u);
}

TEST(GoldenContainer, Version11DecodesToTheRecordedHashes) {
  tu::TempDir tmp("fp4z-golden11");
  tu::CommandResult r = tu::run_command(tu::kFp4z + " decompress " + tu::shell_quote(kGolden11 + "/wide.fp4z") + " -o " +
                                        tu::shell_quote(tmp / "out"));
  ASSERT_EQ(r.code, 0) << r.err;
  tu::CommandResult sums = tu::run_command("cd " + tu::shell_quote(tmp / "out") + " && sha256sum config.json model.safetensors && ls | wc -l");
  ASSERT_EQ(sums.code, 0) << sums.err;
  EXPECT_EQ(sums.out, tu::read_text(kGolden11 + "/wide.sha256") + "2\n");
}

TEST(GoldenContainer, Version11HoldsAWideStream) {
  codec::Container c = codec::open_container(kGolden11 + "/wide.fp4z");
  EXPECT_EQ(c.index.version_major, 1);
  EXPECT_EQ(c.index.version_minor, 1);
  bool wide = false;
  for (const auto& ch : c.index.chunks)
    if (ch.codec == codec::ChunkCodec::kBytes && ch.role == codec::Role::kFp4Codes)
      wide |= c.map.data[ch.offset] == uint8_t(codec::StreamMode::kRansWide);  // a kBytes payload is one stream
  EXPECT_TRUE(wide) << "the v1.1 golden file must exercise the 64-lane (mode 3) decoder";
}

}  // namespace
