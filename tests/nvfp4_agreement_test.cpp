// Every command gives the same verdict on the same malformed NVFP4 module: check, compare, stats, generate,
// eval ppl, export-gguf and quantize's seed --template all reject it naming the module (check: an error
// finding, exit 1; the others exit 2), or all accept it; compress + decompress restores every variant byte
// for byte (the container judges no format).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "format/checkpoint.h"
#include "test_util.h"

namespace fp4z {
namespace {

using testing::CommandResult;
using testing::StTensor;
using testing::TempDir;
using testing::run_command;

const std::string kModule = "model.layers.0.mlp.up_proj";

std::string q(const std::string& s) { return "'" + s + "'"; }

// Copies checkpoint `src` into `out` as one safetensors file, passing each tensor through `edit`
// (which returns false to drop it); other files are copied unchanged.
void rewrite(const std::string& src, const std::string& out, const std::function<bool(StTensor&)>& edit) {
  auto ck = open_checkpoint(src);
  std::vector<StTensor> ts;
  for (const auto& name : ck->names) {
    const TensorRef& r = ck->get(name);
    StTensor t{name, dtype_name(r.info->dtype), r.info->shape,
               std::vector<uint8_t>(r.data(), r.data() + r.info->nbytes())};
    if (edit(t)) ts.push_back(std::move(t));
  }
  testing::write_safetensors(out + "/model.safetensors", ts);
  for (const auto& rel : ck->other_files()) copy_file_exact(src + "/" + rel, out + "/" + rel);
}

struct Names {  // the module's tensors under one convention (written out here, independent of the library)
  std::string codes, scales, global;
};
Names names_of(bool modelopt) {
  if (modelopt) return {kModule + ".weight", kModule + ".weight_scale", kModule + ".weight_scale_2"};
  return {kModule + ".weight_packed", kModule + ".weight_scale", kModule + ".weight_global_scale"};
}

void set_f32(StTensor& t, float v) {
  for (size_t i = 0; i + 4 <= t.data.size(); i += 4) std::memcpy(&t.data[i], &v, 4);
}
void drop_last_row(StTensor& t) {
  size_t row = t.data.size() / size_t(t.shape[0]);
  t.data.resize(t.data.size() - row);
  --t.shape[0];
}

struct Variant {
  std::string name;
  bool malformed;
  std::function<bool(StTensor&, const Names&)> edit;
};

std::vector<Variant> variants() {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  auto on = [](std::string Names::*which, std::function<bool(StTensor&)> f) {
    return [which, f](StTensor& t, const Names& n) { return t.name == n.*which ? f(t) : true; };
  };
  return {
      {"unchanged", false, [](StTensor&, const Names&) { return true; }},
      {"no_global_scale", true, on(&Names::global, [](StTensor&) { return false; })},
      {"no_block_scales", true, on(&Names::scales, [](StTensor&) { return false; })},
      {"no_codes", true, on(&Names::codes, [](StTensor&) { return false; })},
      {"zero_global_scale", true, on(&Names::global, [](StTensor& t) { set_f32(t, 0.0f); return true; })},
      {"nan_global_scale", true, on(&Names::global, [nan](StTensor& t) { set_f32(t, nan); return true; })},
      {"inf_global_scale", true, on(&Names::global, [inf](StTensor& t) { set_f32(t, inf); return true; })},
      {"negative_global_scale", true, on(&Names::global, [](StTensor& t) { set_f32(t, -2.0f); return true; })},
      {"two_global_scales", true, on(&Names::global, [](StTensor& t) {
         t.data.insert(t.data.end(), t.data.begin(), t.data.end());
         t.shape = {2};
         return true;
       })},
      {"global_scale_bf16", true, on(&Names::global, [](StTensor& t) {
         t.dtype = "BF16";
         t.data.resize(2);
         t.shape = {1};
         return true;
       })},
      // FP8 E4M3 block-scale values: 0x7F is NaN, 0xB8 is -1.0 (check: nan_scale / negative_scale).
      {"nan_block_scale", true, on(&Names::scales, [](StTensor& t) { t.data[5] = 0x7F; return true; })},
      {"negative_block_scale", true, on(&Names::scales, [](StTensor& t) { t.data[5] = 0xB8; return true; })},
      {"block_scales_u8", true, on(&Names::scales, [](StTensor& t) { t.dtype = "U8"; return true; })},
      {"block_scales_short", true, on(&Names::scales, [](StTensor& t) { drop_last_row(t); return true; })},
      {"codes_i8", true, on(&Names::codes, [](StTensor& t) { t.dtype = "I8"; return true; })},
      {"codes_short", true, on(&Names::codes, [](StTensor& t) { drop_last_row(t); return true; })},
  };
}

class Agreement : public ::testing::TestWithParam<bool> {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir("fp4z-agree");
    const std::string fx = testing::kFixtures + "/stories260K/";
    const std::string f = testing::kFp4z;
    ASSERT_EQ(run_command(f + " import-llama2c " + q(fx + "stories260K.bin") + " --tokenizer " + q(fx + "tok512.bin") +
                          " --out " + q(*dir_ / "src")).code, 0);
    ASSERT_EQ(run_command(f + " quantize --quiet --source " + q(*dir_ / "src") + " --out " + q(*dir_ / "ct")).code, 0);
    ASSERT_EQ(run_command(f + " quantize --quiet --format modelopt --source " + q(*dir_ / "src") + " --out " +
                          q(*dir_ / "modelopt")).code, 0);
    testing::write_text(*dir_ / "text.txt", "Once upon a time there was a little girl who liked to play in the park. She saw a big red ball and ran to get it. Her mom smiled.\n");
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static TempDir* dir_;
};
TempDir* Agreement::dir_ = nullptr;

TEST_P(Agreement, EveryCommandGivesTheSameVerdict) {
  const bool modelopt = GetParam();
  ASSERT_NE(dir_, nullptr);
  const std::string base = *dir_ / (modelopt ? "modelopt" : "ct");
  const std::string src = *dir_ / "src";
  const std::string f = testing::kFp4z;
  const Names n = names_of(modelopt);
  for (const Variant& v : variants()) {
    SCOPED_TRACE(v.name);
    TempDir work("fp4z-agree-v");
    const std::string d = work / "ck";
    rewrite(base, d, [&](StTensor& t) { return v.edit(t, n); });

    // check: an error finding about the module (exit 1), or none.
    CommandResult c = run_command(f + " check --json " + q(d));
    ASSERT_TRUE(c.code == 0 || c.code == 1) << c.err;
    auto j = nlohmann::json::parse(c.out);
    bool check_rejects = false;
    for (const auto& fd : j["findings"])
      if (fd["severity"] == "error" && fd["tensor"].get<std::string>().find(kModule) != std::string::npos) check_rejects = true;
    EXPECT_EQ(check_rejects, v.malformed) << c.out;

    std::vector<std::pair<std::string, std::string>> cmds = {
        {"compare", f + " compare --reference " + q(src) + " " + q(d)},
        {"stats", f + " stats --no-zstd --reference " + q(src) + " " + q(d)},
        {"generate", f + " generate -q --model " + q(d) + " --prompt-ids 1 -n 2"},
        {"eval ppl", f + " eval ppl -q --model " + q(d) + " --text " + q(*dir_ / "text.txt") + " --ctx 8 --chunks 2"},
        {"export-gguf", f + " export-gguf " + q(d) + " -o " + q(work / "x.gguf")},
    };
    // quantize reads NVFP4 only as seed's --template (an NVFP4 --source is refused as already quantized),
    // and the template must be compressed-tensors: a ModelOpt one is refused whole, malformed or not.
    if (!modelopt)
      cmds.push_back({"quantize --template", f + " quantize --quiet --method seed --source " + q(src) + " --template " + q(d) +
                                                 " --out " + q(work / "seed")});
    for (const auto& [what, cmd] : cmds) {
      CommandResult r = run_command(cmd);
      if (v.malformed) {
        EXPECT_EQ(r.code, 2) << what << ": " << r.out << r.err;
        EXPECT_NE(r.err.find(kModule), std::string::npos) << what << ": " << r.err;
        EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << what << ": one-line error expected: " << r.err;
      } else {
        EXPECT_EQ(r.code, 0) << what << ": " << r.err;
      }
    }

    // The container stores any variant losslessly.
    CommandResult z = run_command(f + " compress -q --zstd-level 3 " + q(d) + " -o " + q(work / "c.fp4z") + " && " + f +
                                  " decompress " + q(work / "c.fp4z") + " -o " + q(work / "back") + " && cmp " +
                                  q(d + "/model.safetensors") + " " + q(work / "back/model.safetensors"));
    EXPECT_EQ(z.code, 0) << z.out << z.err;
  }
}

// stats and compare measure the same dequantization error of the same files with the same formula.
TEST_P(Agreement, StatsAndCompareReportIdenticalMse) {
  ASSERT_NE(dir_, nullptr);
  const std::string d = *dir_ / (GetParam() ? "modelopt" : "ct");
  const std::string src = *dir_ / "src";
  CommandResult s = run_command(testing::kFp4z + " stats --json --no-zstd --reference " + q(src) + " " + q(d));
  CommandResult c = run_command(testing::kFp4z + " compare --json --reference " + q(src) + " " + q(d));
  ASSERT_EQ(s.code, 0) << s.err;
  ASSERT_EQ(c.code, 0) << c.err;
  auto sj = nlohmann::json::parse(s.out), cj = nlohmann::json::parse(c.out);
  std::map<std::string, double> compare_mse;
  for (const auto& l : cj["layers"])
    if (l["results"][0]["quantized"].get<bool>()) compare_mse[l["layer"].get<std::string>()] = l["results"][0]["mse"].get<double>();
  ASSERT_FALSE(compare_mse.empty());
  size_t seen = 0;
  for (const auto& l : sj["layers"]) {
    std::string name = l["name"].get<std::string>();
    ASSERT_TRUE(compare_mse.count(name)) << name;
    EXPECT_GT(l["mse"].get<double>(), 0.0) << name;
    EXPECT_EQ(l["mse"].get<double>(), compare_mse[name]) << name;
    ++seen;
  }
  EXPECT_EQ(seen, compare_mse.size());
  EXPECT_EQ(sj["total"]["mse"].get<double>(), cj["total"][0]["mse"].get<double>());
}

INSTANTIATE_TEST_SUITE_P(Conventions, Agreement, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? std::string("modelopt") : std::string("compressed_tensors"); });

}  // namespace
}  // namespace fp4z
