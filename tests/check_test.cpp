// Tests of `fp4z check`: a clean tiny NVFP4 checkpoint passes, and every kind of defect is named with exit 1.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "format/checkpoint.h"
#include "format/safetensors.h"
#include "nvfp4/codec.h"
#include "pipeline/check.h"
#include "test_util.h"

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;
using fp4z::DType;

namespace {

struct Tensor {
  DType dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};

Tensor f32_scalar(float v, std::vector<int64_t> shape = {1}) {
  Tensor t{DType::F32, shape, std::vector<uint8_t>(4)};
  std::memcpy(t.bytes.data(), &v, 4);
  return t;
}

Tensor bf16_random(std::vector<int64_t> shape, std::mt19937& rng) {
  size_t n = 1;
  for (int64_t d : shape) n *= size_t(d);
  Tensor t{DType::BF16, shape, std::vector<uint8_t>(2 * n)};
  std::normal_distribution<float> nd(0.0f, 0.05f);
  for (size_t i = 0; i < n; ++i) {
    uint16_t h = fp4z::f32_to_bf16_rne(nd(rng));
    std::memcpy(t.bytes.data() + 2 * i, &h, 2);
  }
  return t;
}

// A tiny Llama-shaped model (hidden 64, intermediate 128, 2 layers, 4 q heads / 2 kv heads, tied
// embeddings) quantized to compressed-tensors NVFP4 (or ModelOpt) with random but valid codes.
struct TinyCheckpoint {
  json config;
  json hf_quant;  // ModelOpt only
  std::map<std::string, Tensor> tensors;
  bool modelopt = false;

  static constexpr int64_t kHidden = 64, kInter = 128, kLayers = 2, kKv = 32, kVocab = 32;

  void add_quantized(const std::string& m, int64_t N, int64_t K, float gs, std::mt19937& rng, bool w4a4) {
    std::vector<uint8_t> packed(size_t(N * K / 2)), scales(size_t(N * ((K + 15) / 16)));
    std::uniform_int_distribution<int> code(0, 15), sc(0x28, 0x58);
    for (auto& b : packed) b = uint8_t(code(rng) | code(rng) << 4);
    for (auto& s : scales) s = uint8_t(sc(rng));
    int64_t groups = (K + 15) / 16;
    if (modelopt) {
      tensors[m + ".weight"] = Tensor{DType::U8, {N, K / 2}, packed};
      tensors[m + ".weight_scale"] = Tensor{DType::F8_E4M3, {N, groups}, scales};
      tensors[m + ".weight_scale_2"] = f32_scalar(1.0f / gs, {});
      if (w4a4) tensors[m + ".input_scale"] = f32_scalar(0.01f, {});
    } else {
      tensors[m + ".weight_packed"] = Tensor{DType::U8, {N, K / 2}, packed};
      tensors[m + ".weight_scale"] = Tensor{DType::F8_E4M3, {N, groups}, scales};
      tensors[m + ".weight_global_scale"] = f32_scalar(gs);
      if (w4a4) tensors[m + ".input_global_scale"] = f32_scalar(300.0f);
    }
  }

  void remove_module(const std::string& m) {
    for (auto it = tensors.begin(); it != tensors.end();)
      if (it->first.rfind(m + ".", 0) == 0) it = tensors.erase(it);
      else ++it;
  }

  // Replaces a quantized Linear by a dense BF16 one.
  void make_dense(const std::string& m, std::mt19937& rng) {
    const Tensor& p = tensors.at(m + (modelopt ? ".weight" : ".weight_packed"));
    std::vector<int64_t> shape = {p.shape[0], p.shape[1] * 2};
    remove_module(m);
    tensors[m + ".weight"] = bf16_random(shape, rng);
  }

  json& qc() { return config["quantization_config"]; }

  void write(const std::string& dir, uint64_t max_shard = UINT64_MAX) const {
    fs::remove_all(dir);
    fs::create_directories(dir);
    std::vector<fp4z::TensorSpec> specs;
    for (const auto& [n, t] : tensors) specs.push_back({n, t.dtype, t.shape});
    {
      fp4z::CheckpointWriter w(dir, specs, max_shard);
      for (const auto& [n, t] : tensors) w.write(n, t.bytes.data(), t.bytes.size());
      w.finish();
    }
    if (!config.is_null()) fp4z::write_json_file(dir + "/config.json", config);
    if (!hf_quant.is_null()) fp4z::write_json_file(dir + "/hf_quant_config.json", hf_quant);
  }
};

json ct_quant_args() {
  return json{{"actorder", nullptr}, {"block_structure", nullptr}, {"dynamic", false}, {"group_size", 16},
              {"num_bits", 4}, {"observer", "memoryless_minmax"}, {"observer_kwargs", json::object()},
              {"scale_dtype", "torch.float8_e4m3fn"}, {"strategy", "tensor_group"}, {"symmetric", true},
              {"type", "float"}, {"zp_dtype", nullptr}};
}

json base_config() {
  json c;
  c["architectures"] = {"LlamaForCausalLM"};
  c["hidden_size"] = TinyCheckpoint::kHidden;
  c["intermediate_size"] = TinyCheckpoint::kInter;
  c["model_type"] = "llama";
  c["num_attention_heads"] = 4;
  c["num_hidden_layers"] = TinyCheckpoint::kLayers;
  c["num_key_value_heads"] = 2;
  c["tie_word_embeddings"] = true;
  c["torch_dtype"] = "bfloat16";
  c["vocab_size"] = TinyCheckpoint::kVocab;
  return c;
}

TinyCheckpoint make_tiny(bool w4a4 = false, bool modelopt = false) {
  std::mt19937 rng(1234);
  TinyCheckpoint ck;
  ck.modelopt = modelopt;
  const int64_t H = TinyCheckpoint::kHidden, I = TinyCheckpoint::kInter, KV = TinyCheckpoint::kKv;
  ck.tensors["model.embed_tokens.weight"] = bf16_random({TinyCheckpoint::kVocab, H}, rng);
  ck.tensors["model.norm.weight"] = bf16_random({H}, rng);
  for (int64_t l = 0; l < TinyCheckpoint::kLayers; ++l) {
    std::string p = "model.layers." + std::to_string(l) + ".";
    ck.tensors[p + "input_layernorm.weight"] = bf16_random({H}, rng);
    ck.tensors[p + "post_attention_layernorm.weight"] = bf16_random({H}, rng);
    float g_attn = 2000.0f + 100.0f * float(l), g_mlp = 1500.0f + 50.0f * float(l);
    ck.add_quantized(p + "self_attn.q_proj", H, H, g_attn, rng, w4a4);
    ck.add_quantized(p + "self_attn.k_proj", KV, H, g_attn, rng, w4a4);
    ck.add_quantized(p + "self_attn.v_proj", KV, H, g_attn, rng, w4a4);
    ck.add_quantized(p + "self_attn.o_proj", H, H, 1800.0f, rng, w4a4);
    ck.add_quantized(p + "mlp.gate_proj", I, H, g_mlp, rng, w4a4);
    ck.add_quantized(p + "mlp.up_proj", I, H, g_mlp, rng, w4a4);
    ck.add_quantized(p + "mlp.down_proj", H, I, 1700.0f, rng, w4a4);
  }
  ck.config = base_config();
  if (modelopt) {
    ck.hf_quant = {{"producer", {{"name", "modelopt"}, {"version", "0.29.0"}}},
                   {"quantization", {{"quant_algo", w4a4 ? "NVFP4" : "W4A16_NVFP4"}, {"kv_cache_quant_algo", nullptr},
                                     {"group_size", 16}, {"exclude_modules", {"lm_head"}}}}};
  } else {
    json group = {{"format", "nvfp4-pack-quantized"}, {"input_activations", nullptr}, {"output_activations", nullptr},
                  {"targets", {"Linear"}}, {"weights", ct_quant_args()}};
    if (w4a4) {
      json ia = ct_quant_args();
      ia["dynamic"] = "local";
      ia["observer"] = "static_minmax";
      group["input_activations"] = ia;
    }
    ck.config["quantization_config"] = {
        {"config_groups", {{"group_0", group}}}, {"format", "nvfp4-pack-quantized"}, {"global_compression_ratio", nullptr},
        {"ignore", {"lm_head"}}, {"kv_cache_scheme", nullptr}, {"quant_method", "compressed-tensors"},
        {"quantization_status", "compressed"}, {"sparsity_config", json::object()}, {"transform_config", json::object()},
        {"version", "0.13.0"}};
  }
  return ck;
}

struct RunResult {
  int code = -1;
  std::string out;  // stdout followed by stderr
};

RunResult run_fp4z(const std::string& args) {
  fp4z::testing::CommandResult c = fp4z::testing::run_command(fp4z::testing::kFp4z + " " + args);
  return RunResult{c.code, c.out + c.err};
}

class CheckTest : public ::testing::Test {
 protected:
  fp4z::testing::TempDir tmp{"fp4z-check"};  // FP4Z_KEEP_TEST_DIRS=1 keeps it for inspection
  std::string dir = tmp / "ck";
  RunResult check(const TinyCheckpoint& ck, const std::string& extra = "") {
    ck.write(dir);
    return run_fp4z("check " + dir + " " + extra);
  }
  // Runs with --json and returns the parsed report (asserting it parses).
  json check_json(const TinyCheckpoint& ck, int expect_code) {
    ck.write(dir);
    RunResult r = run_fp4z("check --json " + dir);
    EXPECT_EQ(r.code, expect_code) << r.out;
    json j;
    try {
      j = json::parse(r.out);
    } catch (const std::exception& e) {
      ADD_FAILURE() << "--json output does not parse: " << e.what() << "\n" << r.out;
    }
    return j;
  }
};

bool has_finding(const json& report, const std::string& kind, const std::string& tensor) {
  for (const auto& f : report["findings"])
    if (f["kind"] == kind && f["tensor"] == tensor && f["severity"] == "error") return true;
  return false;
}

void set_scale_byte(TinyCheckpoint& ck, const std::string& m, int64_t row, int64_t block, uint8_t v) {
  Tensor& s = ck.tensors.at(m + ".weight_scale");
  s.bytes[size_t(row * s.shape[1] + block)] = v;
}

TEST_F(CheckTest, CleanCompressedTensorsPasses) {
  RunResult r = check(make_tiny());
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("OK: no problems found"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("14 quantized Linear"), std::string::npos) << r.out;
  // Fused q+k+v has N = 128, fine for Marlin; nothing is reported.
  EXPECT_EQ(r.out.find("[marlin]"), std::string::npos) << r.out;
}

TEST_F(CheckTest, CleanW4A4AndShardedPass) {
  TinyCheckpoint ck = make_tiny(true);
  ck.write(dir, 20000);
  ASSERT_TRUE(fs::exists(dir + "/model.safetensors.index.json"));
  RunResult r = run_fp4z("check " + dir);
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("W4A4"), std::string::npos) << r.out;
}

TEST_F(CheckTest, RegexIgnoreAndIgnoredDenseLinearPass) {
  std::mt19937 rng(7);
  TinyCheckpoint ck = make_tiny();
  for (int l = 0; l < 2; ++l) ck.make_dense("model.layers." + std::to_string(l) + ".mlp.down_proj", rng);
  ck.qc()["ignore"] = {"lm_head", "re:.*mlp\\.down_proj$"};
  RunResult r = check(ck);
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("2 unquantized Linear"), std::string::npos) << r.out;
}

TEST_F(CheckTest, MarlinShapeIsInfoOnly) {
  std::mt19937 rng(23);
  TinyCheckpoint ck = make_tiny();
  ck.remove_module("model.layers.1.self_attn.o_proj");
  ck.add_quantized("model.layers.1.self_attn.o_proj", 48, 64, 1800.0f, rng, false);  // N = 48
  RunResult r = check(ck);
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("info  [marlin] 1 layer(s)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("model.layers.1.self_attn.o_proj: N = 48"), std::string::npos) << r.out;
}

TEST_F(CheckTest, MismatchedFusedGlobalScalesNameMembersAndFactors) {
  TinyCheckpoint ck = make_tiny();
  ck.tensors["model.layers.0.self_attn.q_proj.weight_global_scale"] = f32_scalar(2000.0f);
  ck.tensors["model.layers.0.self_attn.k_proj.weight_global_scale"] = f32_scalar(1000.0f);
  ck.tensors["model.layers.0.self_attn.v_proj.weight_global_scale"] = f32_scalar(4000.0f);
  ck.tensors["model.layers.1.mlp.up_proj.weight_global_scale"] = f32_scalar(4000.0f);  // gate 1550
  RunResult r = check(ck);
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("[fused_global_scale] model.layers.0.self_attn.{q_proj,k_proj,v_proj}"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("model.layers.0.self_attn.q_proj.weight_global_scale = 2000 -> dequantization factor 0.5"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("model.layers.0.self_attn.k_proj.weight_global_scale = 1000 -> dequantization factor 0.25"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("model.layers.0.self_attn.v_proj.weight_global_scale = 4000 -> dequantization factor 1"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("[fused_global_scale] model.layers.1.mlp.{gate_proj,up_proj}"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("model.layers.1.mlp.gate_proj.weight_global_scale = 1550 -> dequantization factor 0.3875"), std::string::npos) << r.out;
  // The other groups are consistent and not reported.
  EXPECT_EQ(r.out.find("model.layers.1.self_attn.{q_proj"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("model.layers.0.mlp.{gate_proj"), std::string::npos) << r.out;

  json j = check_json(ck, 1);
  ASSERT_TRUE(j.contains("fused_groups"));
  ASSERT_EQ(j["fused_groups"].size(), 2u) << j.dump(2);
  const json& g = j["fused_groups"][0];
  EXPECT_EQ(g["group"], "model.layers.0.self_attn.{q_proj,k_proj,v_proj}");
  EXPECT_EQ(g["rule"], "max");
  ASSERT_EQ(g["members"].size(), 3u);
  EXPECT_EQ(g["members"][0]["module"], "model.layers.0.self_attn.q_proj");
  EXPECT_DOUBLE_EQ(g["members"][0]["factor"].get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(g["members"][1]["factor"].get<double>(), 0.25);
  EXPECT_DOUBLE_EQ(g["members"][2]["factor"].get<double>(), 1.0);
}

TEST_F(CheckTest, MoeExpertGateUpUsesTheGateScale) {
  std::mt19937 rng(3);
  TinyCheckpoint ck = make_tiny();
  ck.add_quantized("model.layers.0.mlp.experts.0.gate_proj", 32, 64, 1000.0f, rng, false);
  ck.add_quantized("model.layers.0.mlp.experts.0.up_proj", 32, 64, 500.0f, rng, false);
  ck.add_quantized("model.layers.0.mlp.experts.0.down_proj", 64, 32, 500.0f, rng, false);
  json j = check_json(ck, 1);
  bool found = false;
  for (const auto& g : j["fused_groups"])
    if (g["group"] == "model.layers.0.mlp.experts.0.{gate_proj,up_proj}") {
      found = true;
      EXPECT_EQ(g["rule"], "gate");
      EXPECT_DOUBLE_EQ(g["members"][0]["factor"].get<double>(), 1.0);
      EXPECT_DOUBLE_EQ(g["members"][1]["factor"].get<double>(), 0.5);
    }
  EXPECT_TRUE(found) << j.dump(2);
}

TEST_F(CheckTest, NaNNegativeAndZeroBlockScales) {
  TinyCheckpoint ck = make_tiny();
  set_scale_byte(ck, "model.layers.1.self_attn.o_proj", 3, 1, 0x7F);
  set_scale_byte(ck, "model.layers.0.mlp.down_proj", 5, 2, 0xB8);  // -1.0
  // A zero scale whose block holds nonzero codes (row 0, block 0 of gate_proj).
  Tensor& p = ck.tensors.at("model.layers.0.mlp.gate_proj.weight_packed");
  p.bytes[0] = 0x21;
  set_scale_byte(ck, "model.layers.0.mlp.gate_proj", 0, 0, 0x00);
  // A zero scale over an all-zero block is fine (codes 0 and 8 are both zero).
  Tensor& pu = ck.tensors.at("model.layers.0.mlp.up_proj.weight_packed");
  for (int i = 0; i < 8; ++i) pu.bytes[size_t(i)] = (i % 2) ? 0x80 : 0x08;
  set_scale_byte(ck, "model.layers.0.mlp.up_proj", 0, 0, 0x00);
  RunResult r = check(ck);
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("[nan_scale] model.layers.1.self_attn.o_proj.weight_scale: 1 block scale(s) are NaN"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("first at row 3, block 1"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("[negative_scale] model.layers.0.mlp.down_proj.weight_scale"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("[zero_scale_nonzero_codes] model.layers.0.mlp.gate_proj.weight_scale"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("model.layers.0.mlp.up_proj.weight_scale"), std::string::npos) << r.out;
}

TEST_F(CheckTest, BadGlobalScales) {
  TinyCheckpoint ck = make_tiny();
  ck.tensors["model.layers.0.self_attn.o_proj.weight_global_scale"] = f32_scalar(0.0f);
  ck.tensors["model.layers.1.self_attn.o_proj.weight_global_scale"] = f32_scalar(std::nanf(""));
  ck.tensors["model.layers.1.mlp.down_proj.weight_global_scale"] = f32_scalar(-3.0f);
  json j = check_json(ck, 1);
  EXPECT_TRUE(has_finding(j, "bad_global_scale", "model.layers.0.self_attn.o_proj.weight_global_scale")) << j.dump(2);
  EXPECT_TRUE(has_finding(j, "bad_global_scale", "model.layers.1.self_attn.o_proj.weight_global_scale")) << j.dump(2);
  EXPECT_TRUE(has_finding(j, "bad_global_scale", "model.layers.1.mlp.down_proj.weight_global_scale")) << j.dump(2);
}

TEST_F(CheckTest, WrongShapesAndDtypes) {
  TinyCheckpoint ck = make_tiny();
  Tensor& s = ck.tensors.at("model.layers.0.self_attn.o_proj.weight_scale");
  s.shape = {64, 2};
  s.bytes.resize(128);
  ck.tensors["model.layers.1.self_attn.o_proj.weight_global_scale"] = f32_scalar(1800.0f, {});
  ck.tensors.at("model.layers.1.mlp.down_proj.weight_scale").dtype = DType::U8;
  RunResult r = check(ck);
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("[shape] model.layers.0.self_attn.o_proj.weight_scale: shape is [64, 2], expected [64, 4]"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("[shape] model.layers.1.self_attn.o_proj.weight_global_scale: shape is [] (0-d), expected [1]"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("[dtype] model.layers.1.mlp.down_proj.weight_scale: dtype is U8, expected F8_E4M3"), std::string::npos) << r.out;
}

TEST_F(CheckTest, MissingTensors) {
  TinyCheckpoint ck = make_tiny();
  ck.tensors.erase("model.layers.0.self_attn.v_proj.weight_global_scale");
  ck.remove_module("model.layers.1.mlp.down_proj");
  ck.tensors.erase("model.layers.1.post_attention_layernorm.weight");
  RunResult r = check(ck);
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("[missing_tensor] model.layers.0.self_attn.v_proj.weight_global_scale"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("[missing_tensor] model.layers.1.mlp.down_proj.weight"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("[missing_tensor] model.layers.1.post_attention_layernorm.weight"), std::string::npos) << r.out;
}

TEST_F(CheckTest, MissingUntiedLmHeadAndMissingLayer) {
  TinyCheckpoint ck = make_tiny();
  ck.config["tie_word_embeddings"] = false;
  ck.config["num_hidden_layers"] = 3;
  json j = check_json(ck, 1);
  EXPECT_TRUE(has_finding(j, "missing_tensor", "lm_head.weight")) << j.dump(2);
  EXPECT_TRUE(has_finding(j, "missing_tensor", "model.layers.2.*")) << j.dump(2);
}

TEST_F(CheckTest, ExtraTensors) {
  std::mt19937 rng(5);
  TinyCheckpoint ck = make_tiny();
  ck.tensors["model.layers.0.self_attn.q_proj.weight"] = bf16_random({64, 64}, rng);
  ck.tensors["model.layers.0.self_attn.o_proj.input_global_scale"] = f32_scalar(100.0f);
  ck.tensors["model.layers.1.mlp.down_proj.weight_zero_point"] = Tensor{DType::U8, {64, 8}, std::vector<uint8_t>(512)};
  ck.tensors["model.layers.7.input_layernorm.weight"] = bf16_random({64}, rng);
  RunResult r = check(ck);
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("[extra_tensor] model.layers.0.self_attn.q_proj.weight:"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("[extra_tensor] model.layers.0.self_attn.o_proj.input_global_scale"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("[extra_tensor] model.layers.1.mlp.down_proj.weight_zero_point"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("[extra_tensor] model.layers.7.*"), std::string::npos) << r.out;
}

TEST_F(CheckTest, MissingInputGlobalScaleInW4A4) {
  TinyCheckpoint ck = make_tiny(true);
  ck.tensors.erase("model.layers.1.mlp.gate_proj.input_global_scale");
  json j = check_json(ck, 1);
  EXPECT_TRUE(has_finding(j, "missing_tensor", "model.layers.1.mlp.gate_proj.input_global_scale")) << j.dump(2);
}

TEST_F(CheckTest, KNotMultipleOf16) {
  std::mt19937 rng(11);
  TinyCheckpoint ck = make_tiny();
  ck.remove_module("model.layers.0.self_attn.o_proj");
  ck.remove_module("model.layers.1.self_attn.o_proj");
  ck.add_quantized("model.layers.0.self_attn.o_proj", 64, 72, 1800.0f, rng, false);
  ck.add_quantized("model.layers.1.self_attn.o_proj", 64, 72, 1800.0f, rng, false);
  RunResult r = check(ck);
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("[k_not_multiple_of_16] model.layers.0.self_attn.o_proj.weight_packed: K = 72"), std::string::npos) << r.out;
}

TEST_F(CheckTest, UnquantizedLinearMissingFromIgnore) {
  std::mt19937 rng(13);
  TinyCheckpoint ck = make_tiny();
  ck.make_dense("model.layers.0.mlp.down_proj", rng);
  ck.make_dense("model.layers.1.mlp.down_proj", rng);
  ck.qc()["ignore"] = {"lm_head", "model.layers.1.mlp.down_proj"};
  RunResult r = check(ck);
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("[ignore] model.layers.0.mlp.down_proj: unquantized Linear (BF16 [64, 128]) is not listed"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("[ignore] model.layers.1.mlp.down_proj"), std::string::npos) << r.out;
}

TEST_F(CheckTest, TiedLmHeadMustBeIgnored) {
  TinyCheckpoint ck = make_tiny();
  ck.qc()["ignore"] = json::array();
  RunResult r = check(ck);
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("[ignore] lm_head:"), std::string::npos) << r.out;
}

TEST_F(CheckTest, QuantizedLinearListedInIgnore) {
  TinyCheckpoint ck = make_tiny();
  ck.qc()["ignore"] = {"lm_head", "re:.*o_proj$"};
  json j = check_json(ck, 1);
  EXPECT_TRUE(has_finding(j, "ignore", "model.layers.0.self_attn.o_proj")) << j.dump(2);
  EXPECT_TRUE(has_finding(j, "ignore", "model.layers.1.self_attn.o_proj")) << j.dump(2);
}

TEST_F(CheckTest, FusedGroupWithMixedDecision) {
  std::mt19937 rng(17);
  TinyCheckpoint ck = make_tiny();
  ck.make_dense("model.layers.1.self_attn.k_proj", rng);
  ck.qc()["ignore"] = {"lm_head", "model.layers.1.self_attn.k_proj"};
  RunResult r = check(ck);
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.out.find("[fused_decision] model.layers.1.self_attn.{q_proj,k_proj,v_proj}"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("model.layers.1.self_attn.k_proj: BF16"), std::string::npos) << r.out;
}

TEST_F(CheckTest, BadConfigs) {
  {
    TinyCheckpoint ck = make_tiny();
    ck.qc()["config_groups"]["group_0"]["weights"]["group_size"] = 32;
    ck.qc()["quantization_status"] = "frozen";
    ck.qc()["config_groups"]["group_0"]["weights"]["bogus"] = 1;
    json j = check_json(ck, 1);
    EXPECT_TRUE(has_finding(j, "config", "quantization_config.config_groups.group_0.weights.group_size")) << j.dump(2);
    EXPECT_TRUE(has_finding(j, "config", "quantization_config.quantization_status")) << j.dump(2);
    EXPECT_TRUE(has_finding(j, "config", "quantization_config.config_groups.group_0.weights.bogus")) << j.dump(2);
  }
  {
    TinyCheckpoint ck = make_tiny();
    ck.qc()["quant_method"] = "awq";
    ck.qc()["format"] = "float-quantized";
    json j = check_json(ck, 1);
    EXPECT_TRUE(has_finding(j, "config", "quantization_config.format")) << j.dump(2);
  }
  {
    TinyCheckpoint ck = make_tiny();
    ck.config.erase("quantization_config");
    json j = check_json(ck, 1);
    EXPECT_TRUE(has_finding(j, "config", "config.json")) << j.dump(2);
  }
  {
    TinyCheckpoint ck = make_tiny();
    ck.config = json();
    json j = check_json(ck, 1);
    EXPECT_TRUE(has_finding(j, "config", "config.json")) << j.dump(2);
  }
}

TEST_F(CheckTest, UnreadableInputGivesExit2) {
  RunResult r = run_fp4z("check " + dir + "/does-not-exist");
  EXPECT_EQ(r.code, 2) << r.out;
  fs::create_directories(dir);
  r = run_fp4z("check " + dir);  // no safetensors at all
  EXPECT_EQ(r.code, 2) << r.out;
  {
    std::ofstream f(dir + "/model.safetensors", std::ios::binary);
    f << "\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":";  // truncated header
  }
  r = run_fp4z("check " + dir);
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("model.safetensors"), std::string::npos) << r.out;
  // Malformed config.json is unreadable input too.
  TinyCheckpoint ck = make_tiny();
  ck.write(dir);
  {
    std::ofstream f(dir + "/config.json", std::ios::binary | std::ios::trunc);
    f << "{\"quantization_config\": ";
  }
  r = run_fp4z("check --json " + dir);
  EXPECT_EQ(r.code, 2) << r.out;
}

TEST_F(CheckTest, JsonReportOfCleanCheckpoint) {
  json j = check_json(make_tiny(), 0);
  EXPECT_EQ(j["ok"], true);
  EXPECT_EQ(j["format"], "compressed-tensors");
  EXPECT_EQ(j["scheme"], "W4A16");
  EXPECT_EQ(j["errors"], 0);
  EXPECT_EQ(j["quantized_linears"], 14);
  EXPECT_TRUE(j["findings"].is_array());
  EXPECT_TRUE(j["fused_groups"].is_array());
  EXPECT_EQ(j["fused_groups"].size(), 0u);
}

TEST_F(CheckTest, ModelOptCleanAndMismatchedScale2) {
  TinyCheckpoint ck = make_tiny(false, true);
  RunResult r = check(ck);
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("modelopt"), std::string::npos) << r.out;
  // weight_scale_2 is a multiplier: vLLM takes the max over the group, so a member with a
  // smaller one is scaled up by max / s_i.
  ck.tensors["model.layers.0.mlp.gate_proj.weight_scale_2"] = f32_scalar(0.001f, {});
  ck.tensors["model.layers.0.mlp.up_proj.weight_scale_2"] = f32_scalar(0.004f, {});
  json j = check_json(ck, 1);
  ASSERT_EQ(j["fused_groups"].size(), 1u) << j.dump(2);
  EXPECT_EQ(j["fused_groups"][0]["group"], "model.layers.0.mlp.{gate_proj,up_proj}");
  EXPECT_NEAR(j["fused_groups"][0]["members"][0]["factor"].get<double>(), 4.0, 1e-6);
  EXPECT_NEAR(j["fused_groups"][0]["members"][1]["factor"].get<double>(), 1.0, 1e-6);
}

TEST_F(CheckTest, ModelOptMissingInputScaleAndExclusion) {
  std::mt19937 rng(19);
  TinyCheckpoint ck = make_tiny(true, true);
  ck.tensors.erase("model.layers.0.self_attn.o_proj.input_scale");
  ck.make_dense("model.layers.1.mlp.down_proj", rng);
  json j = check_json(ck, 1);
  EXPECT_TRUE(has_finding(j, "missing_tensor", "model.layers.0.self_attn.o_proj.input_scale")) << j.dump(2);
  EXPECT_TRUE(has_finding(j, "ignore", "model.layers.1.mlp.down_proj")) << j.dump(2);
  ck.hf_quant["quantization"]["exclude_modules"] = {"lm_head", "*layers.1.mlp.down_proj"};
  ck.tensors["model.layers.0.self_attn.o_proj.input_scale"] = f32_scalar(0.01f, {});
  j = check_json(ck, 0);
  EXPECT_EQ(j["ok"], true) << j.dump(2);
}

}  // namespace

// --json's "kind" values are an API: docs/check.md's table lists exactly the kinds of CheckKind.
TEST(CheckKinds, DocumentedExactlyInCheckMd) {
  const std::string doc = fp4z::testing::read_text(fp4z::testing::kSourceDir + "/docs/check.md");
  std::set<std::string> kinds;
  for (int k = 0; k < 1000; ++k) {  // kinds are numbered from 0 and only appended
    std::string name = fp4z::check_kind_name(fp4z::CheckKind(k));
    if (name == "unknown") break;
    EXPECT_TRUE(kinds.insert(name).second) << "two kinds named " << name;
    EXPECT_NE(doc.find("| `" + name + "` |"), std::string::npos) << name << " is not documented in docs/check.md";
  }
  size_t rows = 0;
  for (size_t at = doc.find("\n| `"); at != std::string::npos; at = doc.find("\n| `", at + 1)) {
    size_t end = doc.find('`', at + 4);
    std::string name = doc.substr(at + 4, end - at - 4);
    EXPECT_TRUE(kinds.count(name)) << "docs/check.md documents an unknown kind " << name;
    ++rows;
  }
  EXPECT_EQ(rows, kinds.size());
}
