// Tests of `fp4z import-llama2c`: exact values under HF names/layout (checked by a numpy oracle), errors, dtypes.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "format/checkpoint.h"
#include "format/dtype.h"
#include "pipeline/import_llama2c.h"
#include "test_util.h"

namespace fs = std::filesystem;

namespace {

const std::string kFixtures = std::string(FP4Z_SOURCE_DIR) + "/../shared/fixtures/stories260K";
const std::string kModel = kFixtures + "/stories260K.bin";
const std::string kTok = kFixtures + "/tok512.bin";

struct RunResult {
  int code = -1;
  std::string out;  // stdout followed by stderr
};

RunResult run_cmd(const std::string& cmd) {
  fp4z::testing::CommandResult c = fp4z::testing::run_command(cmd);
  return RunResult{c.code, c.out + c.err};
}

RunResult run_fp4z(const std::string& args) { return run_cmd(std::string(FP4Z_BINARY) + " " + args); }
RunResult run_oracle(const std::string& model, const std::string& out, const std::string& dtype = "f32") {
  return run_cmd("/usr/bin/python3 " + std::string(FP4Z_SOURCE_DIR) + "/tests/oracle_llama2c.py " + model + " " + out +
                 " --dtype " + dtype);
}

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}
void write_file(const std::string& path, const std::vector<uint8_t>& b) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
}

// A synthetic legacy llama2.c file: header + `floats` random values.
std::vector<uint8_t> synthetic_llama2c(int32_t dim, int32_t hidden, int32_t layers, int32_t heads, int32_t kv, int32_t vocab,
                                       int32_t seq) {
  int32_t hdr[7] = {dim, hidden, layers, heads, kv, vocab, seq};
  fp4z::Llama2cHeader h;
  h.dim = dim;
  h.hidden_dim = hidden;
  h.n_layers = layers;
  h.n_heads = heads;
  h.n_kv_heads = kv;
  h.vocab_size = vocab < 0 ? -vocab : vocab;
  h.seq_len = seq;
  h.shared_classifier = vocab > 0;
  std::vector<uint8_t> b(28 + 4 * h.expected_floats());
  std::memcpy(b.data(), hdr, 28);
  std::mt19937 rng(42);
  std::normal_distribution<float> nd(0.0f, 0.1f);
  for (uint64_t i = 0; i < h.expected_floats(); ++i) {
    float v = nd(rng);
    std::memcpy(b.data() + 28 + 4 * i, &v, 4);
  }
  return b;
}

bool has_leftovers(const std::string& parent, const std::string& name) {
  for (const auto& e : fs::directory_iterator(parent))
    if (e.path().filename().string().find(name) != std::string::npos) return true;
  return false;
}

class ImportLlama2cTest : public ::testing::Test {
 protected:
  fp4z::testing::TempDir tmp{"fp4z-import"};  // FP4Z_KEEP_TEST_DIRS=1 keeps it for inspection
  std::string dir = tmp.path;
};

TEST_F(ImportLlama2cTest, Stories260KExactUnderHfNames) {
  std::string out = dir + "/hf";
  RunResult r = run_fp4z("import-llama2c " + kModel + " --tokenizer " + kTok + " --out " + out);
  ASSERT_EQ(r.code, 0) << r.out;
  for (const char* f : {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"})
    EXPECT_TRUE(fs::exists(out + "/" + f)) << f;
  RunResult o = run_oracle(kModel, out);
  EXPECT_EQ(o.code, 0) << o.out;
  EXPECT_NE(o.out.find("OK 47 tensors match (f32)"), std::string::npos) << o.out;

  // The C++ reader agrees on names, shapes and dtype; the tied classifier is not stored.
  auto ck = fp4z::open_checkpoint(out);
  EXPECT_EQ(ck->names.size(), 47u);
  EXPECT_EQ(ck->find("lm_head.weight"), nullptr);
  const auto& q = ck->get("model.layers.4.self_attn.q_proj.weight");
  EXPECT_EQ(q.info->dtype, fp4z::DType::F32);
  EXPECT_EQ(q.info->shape, (std::vector<int64_t>{64, 64}));
  EXPECT_EQ(ck->get("model.layers.0.self_attn.k_proj.weight").info->shape, (std::vector<int64_t>{32, 64}));
  EXPECT_EQ(ck->get("model.layers.0.mlp.down_proj.weight").info->shape, (std::vector<int64_t>{64, 172}));
  auto cfg = fp4z::read_json_file(out + "/config.json");
  EXPECT_EQ(cfg["tie_word_embeddings"], true);
  EXPECT_EQ(cfg["num_key_value_heads"], 4);
  auto tc = fp4z::read_json_file(out + "/tokenizer_config.json");
  EXPECT_EQ(tc["bos_token"], "<s>");
  auto tok = fp4z::read_json_file(out + "/tokenizer.json");
  EXPECT_TRUE(tok.contains("model"));
}

TEST_F(ImportLlama2cTest, Bf16AndF16RoundToNearestEven) {
  std::string out = dir + "/bf16";
  RunResult r = run_fp4z("import-llama2c " + kModel + " --tokenizer " + kTok + " --out " + out + " --dtype bf16 -q");
  ASSERT_EQ(r.code, 0) << r.out;
  RunResult o = run_oracle(kModel, out, "bf16");
  EXPECT_EQ(o.code, 0) << o.out;
  // Rounding, not truncation: the embedding table holds values whose RNE result differs from
  // plain truncation, and the file matches RNE on every element.
  auto ck = fp4z::open_checkpoint(out);
  const auto& emb = ck->get("model.embed_tokens.weight");
  ASSERT_EQ(emb.info->dtype, fp4z::DType::BF16);
  std::vector<uint8_t> bin = read_file(kModel);
  size_t rounded_up = 0;
  for (size_t i = 0; i < 512 * 64; ++i) {
    float f;
    std::memcpy(&f, bin.data() + 28 + 4 * i, 4);
    uint16_t got;
    std::memcpy(&got, emb.data() + 2 * i, 2);
    ASSERT_EQ(got, fp4z::f32_to_bf16_rne(f)) << i;
    rounded_up += got != uint16_t(fp4z::bits_from_f32(f) >> 16);
  }
  EXPECT_GT(rounded_up, 1000u);

  std::string out16 = dir + "/f16";
  r = run_fp4z("import-llama2c " + kModel + " --tokenizer " + kTok + " --out " + out16 + " --dtype f16 -q");
  ASSERT_EQ(r.code, 0) << r.out;
  o = run_oracle(kModel, out16, "f16");
  EXPECT_EQ(o.code, 0) << o.out;
}

TEST_F(ImportLlama2cTest, SeparateClassifierBecomesLmHead) {
  std::string model = dir + "/untied.bin";
  write_file(model, synthetic_llama2c(32, 48, 2, 4, 2, -512, 16));
  std::string out = dir + "/hf";
  RunResult r = run_fp4z("import-llama2c " + model + " --tokenizer " + kTok + " --out " + out);
  ASSERT_EQ(r.code, 0) << r.out;
  RunResult o = run_oracle(model, out);
  EXPECT_EQ(o.code, 0) << o.out;
  EXPECT_NE(o.out.find("shared classifier False"), std::string::npos) << o.out;
  auto ck = fp4z::open_checkpoint(out);
  ASSERT_NE(ck->find("lm_head.weight"), nullptr);
  EXPECT_EQ(fp4z::read_json_file(out + "/config.json")["tie_word_embeddings"], false);
}

TEST_F(ImportLlama2cTest, MultiHeadPermutationOnSyntheticModel) {
  // head size 16, 3 kv heads of 6 q heads: the oracle checks the permutation per head.
  std::string model = dir + "/m.bin";
  write_file(model, synthetic_llama2c(96, 40, 1, 6, 3, 512, 8));
  std::string out = dir + "/hf";
  RunResult r = run_fp4z("import-llama2c " + model + " --tokenizer " + kTok + " --out " + out);
  ASSERT_EQ(r.code, 0) << r.out;
  RunResult o = run_oracle(model, out);
  EXPECT_EQ(o.code, 0) << o.out;
}

TEST_F(ImportLlama2cTest, TruncatedFileGivesExit2AndNoOutput) {
  std::vector<uint8_t> bin = read_file(kModel);
  ASSERT_EQ(bin.size(), 1056540u);
  std::string model = dir + "/trunc.bin";
  bin.resize(bin.size() - 4);
  write_file(model, bin);
  std::string out = dir + "/out";
  RunResult r = run_fp4z("import-llama2c " + model + " --tokenizer " + kTok + " --out " + out);
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("truncated"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("trunc.bin"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(out));
  EXPECT_FALSE(has_leftovers(dir, "out"));

  // Trailing bytes are as wrong as missing ones.
  bin = read_file(kModel);
  bin.push_back(0);
  write_file(model, bin);
  r = run_fp4z("import-llama2c " + model + " --tokenizer " + kTok + " --out " + out);
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("trailing"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(out));

  // Shorter than the header.
  write_file(model, std::vector<uint8_t>(10));
  r = run_fp4z("import-llama2c " + model + " --tokenizer " + kTok + " --out " + out);
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_FALSE(fs::exists(out));
  EXPECT_FALSE(has_leftovers(dir, "out"));
}

TEST_F(ImportLlama2cTest, InvalidHeadersGiveExit2) {
  std::string model = dir + "/bad.bin";
  std::string out = dir + "/out";
  struct Case {
    std::vector<int32_t> hdr;
    const char* expect;
  };
  const Case cases[] = {
      {{64, 172, 5, 7, 7, 512, 512}, "not a multiple of n_heads"},
      {{64, 172, 5, 8, 3, 512, 512}, "not a multiple of n_kv_heads"},
      {{64, 172, 0, 8, 4, 512, 512}, "n_layers"},
      {{-64, 172, 5, 8, 4, 512, 512}, "dim"},
      {{64, 172, 5, 8, 4, 0, 512}, "vocab_size"},
      {{64, 172, 5, 64, 64, 512, 512}, "odd"},  // head size 1
  };
  std::vector<uint8_t> bin = read_file(kModel);
  for (const auto& c : cases) {
    std::memcpy(bin.data(), c.hdr.data(), 28);
    write_file(model, bin);
    RunResult r = run_fp4z("import-llama2c " + model + " --tokenizer " + kTok + " --out " + out);
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_NE(r.out.find(c.expect), std::string::npos) << r.out;
    EXPECT_FALSE(fs::exists(out));
  }
  // A header that is valid on its own but does not match the file size (vocab 1024).
  int32_t hdr[7] = {64, 172, 5, 8, 4, 1024, 512};
  std::memcpy(bin.data(), hdr, 28);
  write_file(model, bin);
  RunResult r = run_fp4z("import-llama2c " + model + " --tokenizer " + kTok + " --out " + out);
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("size mismatch"), std::string::npos) << r.out;
}

TEST_F(ImportLlama2cTest, BadTokenizerAndExistingOutput) {
  std::string out = dir + "/out";
  std::string tok = dir + "/tok.bin";
  std::vector<uint8_t> t = read_file(kTok);
  t.resize(t.size() / 2);
  write_file(tok, t);
  RunResult r = run_fp4z("import-llama2c " + kModel + " --tokenizer " + tok + " --out " + out);
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_FALSE(fs::exists(out));
  EXPECT_FALSE(has_leftovers(dir, "out"));

  fs::create_directories(out);
  write_file(out + "/keep.txt", {'x'});
  r = run_fp4z("import-llama2c " + kModel + " --tokenizer " + kTok + " --out " + out + " -q");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_TRUE(fs::exists(out + "/keep.txt"));
  r = run_fp4z("import-llama2c " + kModel + " --tokenizer " + kTok + " --out " + out + " --force -q");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_FALSE(fs::exists(out + "/keep.txt"));
  EXPECT_TRUE(fs::exists(out + "/model.safetensors"));
  r = run_fp4z("import-llama2c " + kModel + " --tokenizer " + kTok + " --out " + dir + "/x --dtype f8");
  EXPECT_EQ(r.code, 2) << r.out;
}

TEST(Llama2cPermutation, RowsBecomeEvenThenOddPerHead) {
  // 2 heads of size 4, 1 column: rows 0..7 -> per head [0, 2, 1, 3].
  std::vector<float> src = {0, 1, 2, 3, 4, 5, 6, 7}, dst(8);
  fp4z::permute_rope_rows(src.data(), dst.data(), 2, 4, 1);
  EXPECT_EQ(dst, (std::vector<float>{0, 2, 1, 3, 4, 6, 5, 7}));
}

}  // namespace
