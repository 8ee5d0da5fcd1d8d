// safetensors reader validation (one malformed file per rule) and writer layout (padding, metadata, shards).
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/staged_output.h"
#include "format/checkpoint.h"
#include "format/safetensors.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace fp4z;

namespace {

using fp4z::testing::TempDir;
using fp4z::testing::write_text;

std::string le64(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = char((n >> (8 * i)) & 0xFF);
  return s;
}

// A file with a given header text (length prefix computed) and data bytes.
std::string make_file(const std::string& header, const std::string& data) { return le64(header.size()) + header + data; }

void write_bytes(const std::string& path, const std::string& bytes) { write_text(path, bytes); }

// Returns the error message (and checks exit code 2), or "" if the file was accepted.
std::string open_error(const std::string& bytes) {
  TempDir d;
  std::string p = d.path + "/x.safetensors";
  write_bytes(p, bytes);
  try {
    open_safetensors(p);
  } catch (const Error& e) {
    EXPECT_EQ(e.code, 2);
    std::string m = e.what();
    EXPECT_NE(m.find(p), std::string::npos) << "message must name the file: " << m;
    EXPECT_EQ(m.find('\n'), std::string::npos) << "one line: " << m;
    return m;
  }
  return "";
}

const std::string kGoodHeader = R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"U8","shape":[2,2],"data_offsets":[8,12]}})";
const std::string kGoodData = std::string(12, '\x01');

}  // namespace

TEST(SafetensorsReader, AcceptsValidFile) {
  EXPECT_EQ(open_error(make_file(kGoodHeader, kGoodData)), "");
  EXPECT_EQ(open_error(make_file(kGoodHeader + "    ", kGoodData)), "");  // space padding
  EXPECT_EQ(open_error(make_file("{}", "")), "");                         // empty is legal
  EXPECT_EQ(open_error(make_file(R"({"s":{"dtype":"F32","shape":[],"data_offsets":[0,4]},"e":{"dtype":"BF16","shape":[0,3],"data_offsets":[4,4]}})", "abcd")), "");
}

TEST(SafetensorsReader, RejectsEachMalformation) {
  struct Case { const char* what; std::string bytes; const char* expect; };
  const std::vector<Case> cases = {
      {"shorter than 8 bytes", std::string("\x02\x00\x00", 3), "shorter than the 8-byte"},
      {"header length over 100 MB", le64(100000001) + "{}", "100,000,000"},
      {"header past EOF", le64(64) + "{}", "past the end"},
      {"not an object", make_file("[1,2]", ""), "not a JSON object"},
      {"leading garbage", make_file("x{}", ""), "not a JSON object"},
      {"invalid JSON", make_file("{\"a\":", ""), "malformed JSON"},
      {"invalid UTF-8", make_file("{\"\xff\":{}}", ""), "malformed JSON"},
      {"duplicate key", make_file(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})", "xy"), "duplicate"},
      {"unknown dtype", make_file(R"({"a":{"dtype":"F7","shape":[1],"data_offsets":[0,1]}})", "x"), "unknown dtype"},
      {"negative shape", make_file(R"({"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,1]}})", "x"), "non-negative"},
      {"float shape", make_file(R"({"a":{"dtype":"U8","shape":[1.5],"data_offsets":[0,1]}})", "x"), "non-negative"},
      {"offsets not a pair", make_file(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0]}})", "x"), "pair"},
      {"end before begin", make_file(R"({"a":{"dtype":"U8","shape":[0],"data_offsets":[1,0]}})", "x"), "end < begin"},
      {"size mismatch", make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", "abcd"), "data_offsets span"},
      {"not starting at 0", make_file(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})", "xy"), "hole"},
      {"hole", make_file(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"b":{"dtype":"U8","shape":[1],"data_offsets":[2,3]}})", "xyz"), "hole"},
      {"overlap", make_file(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}})", "xyz"), "overlaps"},
      {"truncated data", make_file(kGoodHeader, kGoodData.substr(0, 11)), "truncated"},
      {"trailing bytes", make_file(kGoodHeader, kGoodData + "zz"), "trailing"},
      {"metadata not string", make_file(R"({"__metadata__":{"format":1}})", ""), "not a string"},
      {"shape overflow", make_file(R"({"a":{"dtype":"F64","shape":[4294967296,4294967296,16],"data_offsets":[0,1]}})", "x"), "overflow"},
      {"entry not an object", make_file(R"({"a":3})", ""), "not an object"},
      {"missing field", make_file(R"({"a":{"dtype":"U8","shape":[1]}})", ""), "lacks"},
  };
  for (const auto& c : cases) {
    std::string m = open_error(c.bytes);
    EXPECT_NE(m, "") << c.what << ": accepted";
    EXPECT_NE(m.find(c.expect), std::string::npos) << c.what << ": " << m;
  }
}

TEST(SafetensorsReader, TruncationAtEveryOffsetFailsCleanly) {
  std::string good = make_file(kGoodHeader, kGoodData);
  for (size_t n = 0; n < good.size(); ++n) EXPECT_NE(open_error(good.substr(0, n)), "") << n;
}

TEST(SafetensorsWriter, PaddedHeaderMetadataAndShards) {
  TempDir d;
  std::vector<TensorSpec> specs = {{"w1", DType::BF16, {3, 5}}, {"w2", DType::F32, {7}}, {"s", DType::F32, {}}};
  {
    CheckpointWriter w(d.path, specs, 1000000, {{"note", "x"}});
    std::vector<uint8_t> a(30, 0xAB), b(28, 0xCD), c(4, 0xEF);
    w.write("w2", b.data(), b.size());  // any order
    w.write("w1", a.data(), a.size());
    w.write("s", c.data(), c.size());
    w.finish();
  }
  auto f = open_safetensors(d.path + "/model.safetensors");
  EXPECT_EQ(f->header_len % 8, 0u);
  ASSERT_GE(f->metadata.size(), 1u);
  EXPECT_EQ(f->metadata[0].first, "format");
  EXPECT_EQ(f->metadata[0].second, "pt");
  EXPECT_EQ(f->data_of(*f->find("w1"))[0], 0xAB);
  EXPECT_EQ(f->data_of(*f->find("w2"))[27], 0xCD);
  EXPECT_EQ(f->find("s")->shape.size(), 0u);

  TempDir d2;
  {
    CheckpointWriter w(d2.path, specs, 40);  // forces 2 shards: w1 (30) | w2 (28) + s (4)
    std::vector<uint8_t> a(30, 1), b(28, 2), c(4, 3);
    w.write("w1", a.data(), a.size());
    w.write("w2", b.data(), b.size());
    w.write("s", c.data(), c.size());
    w.finish();
  }
  EXPECT_TRUE(fs::exists(d2.path + "/model-00001-of-00002.safetensors"));
  EXPECT_TRUE(fs::exists(d2.path + "/model-00002-of-00002.safetensors"));
  auto idx = read_json_file(d2.path + "/model.safetensors.index.json");
  EXPECT_EQ(idx["metadata"]["total_size"].get<uint64_t>(), 62u);
  auto ck = open_checkpoint(d2.path);
  EXPECT_TRUE(ck->sharded);
  EXPECT_EQ(ck->get("s").data()[0], 3);
  EXPECT_EQ(ck->get("w2").file->path(), d2.path + "/model-00002-of-00002.safetensors");
}

TEST(Checkpoint, RejectsInconsistentIndex) {
  TempDir d;
  std::vector<TensorSpec> specs = {{"a", DType::U8, {4}}, {"b", DType::U8, {4}}};
  {
    CheckpointWriter w(d.path, specs, 4);
    uint8_t x[4] = {1, 2, 3, 4};
    w.write("a", x, 4);
    w.write("b", x, 4);
    w.finish();
  }
  write_bytes(d.path + "/model.safetensors.index.json",
              R"({"metadata":{"total_size":8},"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00001-of-00002.safetensors"}})");
  try {
    open_checkpoint(d.path);
    FAIL() << "accepted an index that maps b to the wrong shard";
  } catch (const Error& e) {
    EXPECT_EQ(e.code, 2);
  }
  write_bytes(d.path + "/model.safetensors.index.json", R"({"weight_map":{"a":"../etc/passwd"}})");
  EXPECT_THROW(open_checkpoint(d.path), Error);
}

TEST(StagedDir, RefusesNonEmptyWithoutForceAndCleansUp) {
  TempDir d;
  std::string out = d.path + "/out";
  fs::create_directory(out);
  write_bytes(out + "/keep", "x");
  EXPECT_THROW(StagedDir(out, false), Error);
  std::string temp;
  {
    StagedDir s(out, true);
    temp = s.temp;
    write_bytes(s.path("y"), "y");
  }  // not committed: removed, original untouched
  EXPECT_FALSE(fs::exists(temp));
  EXPECT_TRUE(fs::exists(out + "/keep"));
  {
    StagedDir s(out, true);
    write_bytes(s.path("y"), "y");
    s.commit();
  }
  EXPECT_TRUE(fs::exists(out + "/y"));
  EXPECT_FALSE(fs::exists(out + "/keep"));
}
