// fp4z export-gguf: maps a Qwen3/Llama checkpoint's tensors, config and tokenizer onto llama.cpp's GGUF conventions.
#include "pipeline/export_gguf.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <unordered_map>
#include <vector>

#include "common/error.h"
#include "common/file_text.h"
#include "common/parallel.h"
#include "common/staged_output.h"
#include "format/checkpoint.h"
#include "format/dtype.h"
#include "format/gguf.h"
#include "format/json_reader.h"
#include "model/model.h"
#include "nvfp4/ggml_blocks.h"

namespace fp4z {

namespace {

// llama.cpp's token types (llama-vocab.h, LLAMA_TOKEN_TYPE_*).
enum TokenType : int32_t { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };
// llama.cpp's llama_ftype values for general.file_type.
constexpr uint32_t kFtypeAllF32 = 0, kFtypeMostlyF16 = 1, kFtypeMostlyQ4_0 = 2, kFtypeMostlyBF16 = 32,
                   kFtypeMostlyNvfp4 = 39;

// One linear layer of the model as the exporter needs it: the engine's binding of its weights
// (NVFP4 codes/scales/global, or dense) plus the stored dense tensor when there is one.
// This is the single place that finds a module's tensors; it goes through the engine's loader.
struct LinearSource {
  const Linear* lin = nullptr;
  const TensorRef* dense = nullptr;  // the stored "<base>.weight" for dense linears
};

LinearSource find_linear(const Model& m, const Linear& lin) {
  LinearSource s{&lin, nullptr};
  if (lin.kind != WeightKind::kNvfp4) s.dense = &m.ckpt->get(lin.name + ".weight");
  return s;
}

GgmlType ggml_type_of(const TensorRef& t) {
  switch (t.info->dtype) {
    case DType::F32: return GgmlType::kF32;
    case DType::F16: return GgmlType::kF16;
    case DType::BF16: return GgmlType::kBF16;
    default:
      fail_input(t.file->path() + ": tensor " + t.info->name + " has dtype " + dtype_name(t.info->dtype) +
                 ", which GGUF export does not support");
  }
}

// A tensor of the output: its declaration and a producer of its rows (row r -> row_bytes bytes).
struct PlannedTensor {
  std::string name;
  GgmlType type;
  std::vector<int64_t> shape;  // row-major, outermost first
  std::function<void(int64_t row, uint8_t* out)> row;
};

int64_t rows_of(const std::vector<int64_t>& shape) {
  int64_t r = 1;
  for (size_t i = 0; i + 1 < shape.size(); ++i) r *= shape[i];
  return r;
}

// Hugging Face q/k rows (rotate-half: within a head, pairs are (i, i + d/2)) -> the interleaved
// order of llama.cpp's "llama" architecture (pairs (2i, 2i + 1)), as convert_hf_to_gguf.py permutes:
// GGUF row h·d + 2i + j takes HF row h·d + j·d/2 + i.
std::function<int64_t(int64_t)> rope_interleave_rows(int64_t head_dim) {
  return [head_dim](int64_t r) {
    int64_t h = r / head_dim, w = r % head_dim;
    return h * head_dim + (w % 2) * (head_dim / 2) + w / 2;
  };
}

struct Exporter {
  const Model& m;
  const ExportGgufOptions& opt;
  ExportGgufResult& res;
  std::vector<PlannedTensor> plan;
  std::vector<std::string> nvfp4_names;  // for prec_a4 tagging

  void add_dense_as_stored(const std::string& name, const TensorRef& t, std::function<int64_t(int64_t)> src_row = {}) {
    GgmlType type = ggml_type_of(t);
    std::vector<int64_t> shape = t.info->shape;
    const uint64_t rb = ggml_row_bytes(type, shape.back());
    const uint8_t* base = t.data();
    plan.push_back({name, type, shape, [base, rb, src_row](int64_t r, uint8_t* out) {
                      std::memcpy(out, base + uint64_t(src_row ? src_row(r) : r) * rb, rb);
                    }});
  }

  // 1-D float tensors (norms) as F32, exactly (every stored float type widens losslessly).
  void add_vector_f32(const std::string& name, const std::string& ckpt_name) {
    const TensorRef& t = m.ckpt->get(ckpt_name);
    if (t.info->shape.size() != 1) fail_input(t.file->path() + ": tensor " + ckpt_name + " is not 1-D");
    const int64_t n = t.info->shape[0];
    const uint8_t* data = t.data();
    DType d = t.info->dtype;
    ggml_type_of(t);  // validates the dtype
    plan.push_back({name, GgmlType::kF32, {n}, [data, d, n](int64_t, uint8_t* out) {
                      convert_to_f32(data, d, size_t(n), reinterpret_cast<float*>(out));
                    }});
  }

  void add_scalar_f32(const std::string& name, float v) {
    plan.push_back({name, GgmlType::kF32, {1}, [v](int64_t, uint8_t* out) { std::memcpy(out, &v, 4); }});
  }

  // One dense row of a linear as f32 values: dense weights widened, NVFP4 dequantized with its global scale.
  static void linear_row_f32(const LinearSource& s, int64_t r, float* out) {
    const Linear& l = *s.lin;
    if (l.kind == WeightKind::kNvfp4) {
      nvfp4_row_dequantize(l.data + uint64_t(r) * uint64_t(l.k / 2), l.scales + uint64_t(r) * uint64_t(l.k / 16), l.k, out);
      for (int64_t c = 0; c < l.k; ++c) out[c] = l.global_div != 1.0f ? out[c] / l.global_div : out[c] * l.global_mul;
    } else {
      const TensorRef& t = *s.dense;
      convert_to_f32(t.data() + uint64_t(r) * uint64_t(l.k) * dtype_size(t.info->dtype), t.info->dtype, size_t(l.k), out);
    }
  }

  void add_linear(const std::string& gguf_base, const Linear& lin, std::function<int64_t(int64_t)> src_row = {}) {
    LinearSource s = find_linear(m, lin);
    const std::string wname = gguf_base + ".weight";
    const int64_t n = lin.n, k = lin.k;
    auto src = [src_row](int64_t r) { return src_row ? src_row(r) : r; };
    if (opt.format == GgufLinearFormat::kQ4_0 && k % kGgmlQ4_0BlockElems == 0) {
      plan.push_back({wname, GgmlType::kQ4_0, {n, k}, [s, k, src](int64_t r, uint8_t* out) {
                        thread_local std::vector<float> row;
                        row.resize(size_t(k));
                        linear_row_f32(s, src(r), row.data());
                        q4_0_row_quantize(row.data(), k, out);
                      }});
      ++res.q4_0;
      return;
    }
    if (lin.kind == WeightKind::kNvfp4 && opt.format == GgufLinearFormat::kNvfp4 && k % kGgmlNvfp4BlockElems == 0) {
      const Linear* l = &lin;
      std::string label = m.ckpt->dir + ": " + lin.name;
      plan.push_back({wname, GgmlType::kNvfp4, {n, k}, [l, k, src, label](int64_t r, uint8_t* out) {
                        int64_t sr = src(r);
                        if (!nvfp4_row_to_ggml(l->data + uint64_t(sr) * uint64_t(k / 2), l->scales + uint64_t(sr) * uint64_t(k / 16), k, out))
                          fail_input(label + ": row " + std::to_string(sr) + " has a NaN block scale (not representable in GGUF)");
                      }});
      // ggml multiplies the product by the ".scale" tensor: ModelOpt's weight_scale_2, or the
      // reciprocal of compressed-tensors' weight_global_scale (rounded once to f32).
      float global = lin.global_div != 1.0f ? 1.0f / lin.global_div : lin.global_mul;
      if (global != 1.0f) add_scalar_f32(gguf_base + ".scale", global);
      nvfp4_names.push_back(wname);
      ++res.nvfp4;
      return;
    }
    if (lin.kind == WeightKind::kNvfp4) {  // no ggml NVFP4 layout for this width: exact products in F32
      plan.push_back({wname, GgmlType::kF32, {n, k}, [s, src](int64_t r, uint8_t* out) {
                        linear_row_f32(s, src(r), reinterpret_cast<float*>(out));
                      }});
      ++res.dequantized;
      return;
    }
    add_dense_as_stored(wname, *s.dense, src_row);
    ++res.dense;
  }
};

// ---- tokenizer ----

struct GgufVocab {
  std::string model, pre;
  std::vector<std::string> tokens;
  std::vector<int32_t> types;
  std::vector<float> scores;         // "llama" only
  std::vector<std::string> merges;   // "gpt2" only
  int32_t unk = -1;
};

std::string merge_text(const nlohmann::json& mj, const std::string& path) {
  if (mj.is_string()) return mj.get<std::string>();
  if (mj.is_array() && mj.size() == 2 && mj[0].is_string() && mj[1].is_string())
    return mj[0].get<std::string>() + " " + mj[1].get<std::string>();
  fail_input(path + ": a merge is neither \"a b\" nor [\"a\", \"b\"]");
}

GgufVocab read_vocab(const std::string& dir, const ModelConfig& cfg) {
  const std::string path = dir + "/tokenizer.json";
  if (!std::filesystem::exists(path)) fail_input(path + ": missing (GGUF needs the tokenizer)");
  // nlohmann::json (sorted map), not the strict ordered_json reader: ordered_json looks keys up
  // linearly, quadratic for a 150k-entry vocab. Ids, not key order, place the tokens.
  nlohmann::json tj;
  try {
    std::string text = read_whole_file(path);
    require_json_depth(text, path);
    tj = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail_input(path + ": invalid JSON: " + e.what());
  }
  auto model = tj.find("model");
  if (model == tj.end() || !model->is_object() || model->value("type", std::string()) != "BPE" || !model->contains("vocab") ||
      !(*model)["vocab"].is_object() || !model->contains("merges") || !(*model)["merges"].is_array())
    fail_input(path + ": only BPE tokenizers with a vocab and merges are supported");
  const bool spm = model->value("byte_fallback", false);
  GgufVocab v;
  v.model = spm ? "llama" : "gpt2";
  v.pre = spm ? "default" : cfg.architecture == "Qwen3ForCausalLM" ? "qwen2" : "llama-bpe";
  const int64_t V = cfg.vocab;
  v.tokens.resize(size_t(V));
  v.types.assign(size_t(V), kUnused);
  std::vector<bool> have(size_t(V), false);
  auto place = [&](int64_t id, const std::string& text, int32_t type) {
    if (id < 0 || id >= V)
      fail_input(path + ": token id " + std::to_string(id) + " (" + text + ") is outside the model's vocab_size " + std::to_string(V));
    v.tokens[size_t(id)] = text;
    v.types[size_t(id)] = type;
    have[size_t(id)] = true;
  };
  std::unordered_map<std::string, int64_t> id_of;
  for (const auto& [text, idj] : (*model)["vocab"].items()) {
    if (!idj.is_number_integer()) fail_input(path + ": vocab id of " + text + " is not an integer");
    int64_t id = idj.get<int64_t>();
    bool byte_piece = spm && text.size() == 6 && text.rfind("<0x", 0) == 0 && text.back() == '>';
    place(id, text, byte_piece ? kByte : kNormal);
    id_of[text] = id;
  }
  if (tj.contains("added_tokens") && tj["added_tokens"].is_array()) {
    for (const auto& a : tj["added_tokens"]) {
      if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer() || !a.contains("content") || !a["content"].is_string())
        fail_input(path + ": malformed added_tokens entry");
      place(a["id"].get<int64_t>(), a["content"].get<std::string>(), a.value("special", false) ? kControl : kUserDefined);
    }
  }
  if (spm) {
    std::string unk = model->contains("unk_token") && (*model)["unk_token"].is_string() ? (*model)["unk_token"].get<std::string>() : "";
    if (auto it = id_of.find(unk); it != id_of.end()) {
      v.unk = int32_t(it->second);
      v.types[size_t(v.unk)] = kUnknown;
    } else {
      for (int64_t i = 0; i < V; ++i)
        if (v.tokens[size_t(i)] == "<unk>") v.unk = int32_t(i), v.types[size_t(i)] = kUnknown;
    }
  }
  for (int64_t i = 0; i < V; ++i)
    if (!have[size_t(i)]) v.tokens[size_t(i)] = "[PAD" + std::to_string(i) + "]";  // as convert_hf_to_gguf.py pads
  const auto& merges = (*model)["merges"];
  if (spm) {
    // SentencePiece merges the adjacent pair whose concatenation scores highest; Hugging Face BPE the
    // pair of lowest merge rank. Scoring each merge result by minus its first rank is the same order.
    v.scores.assign(size_t(V), 0.0f);
    std::vector<bool> scored(size_t(V), false);
    for (size_t r = 0; r < merges.size(); ++r) {
      std::string mt = merge_text(merges[r], path);
      size_t sp = mt.find(' ');
      if (sp == std::string::npos) fail_input(path + ": merge " + std::to_string(r) + " has no space");
      auto it = id_of.find(mt.substr(0, sp) + mt.substr(sp + 1));
      if (it == id_of.end()) fail_input(path + ": merge " + std::to_string(r) + " produces a token missing from the vocab");
      if (!scored[size_t(it->second)]) {
        scored[size_t(it->second)] = true;
        v.scores[size_t(it->second)] = -float(r + 1);
      }
    }
  } else {
    v.merges.reserve(merges.size());
    for (const auto& mj : merges) v.merges.push_back(merge_text(mj, path));
  }
  return v;
}

// Llama-3 rope_scaling as llama.cpp's per-dimension frequency divisors (convert_hf_to_gguf.py's
// LlamaModel rope_freqs): 1 for short wavelengths, `factor` for long ones, smooth in between.
std::vector<float> llama3_rope_factors(const ModelConfig& c) {
  std::vector<float> f;
  const double low_wavelen = c.llama3_original / c.llama3_low, high_wavelen = c.llama3_original / c.llama3_high;
  for (int64_t i = 0; i < c.head_dim; i += 2) {
    double freq = 1.0 / std::pow(c.rope_theta, double(i) / double(c.head_dim));
    double wavelen = 2.0 * M_PI / freq;
    if (wavelen < high_wavelen) f.push_back(1.0f);
    else if (wavelen > low_wavelen) f.push_back(float(c.llama3_factor));
    else {
      double smooth = (c.llama3_original / wavelen - c.llama3_low) / (c.llama3_high - c.llama3_low);
      f.push_back(float(1.0 / ((1.0 - smooth) / c.llama3_factor + smooth)));
    }
  }
  return f;
}

}  // namespace

ExportGgufResult export_gguf(const ExportGgufOptions& opt) {
  ExportGgufResult res;
  StagedFile staged(opt.out_path, opt.force);
  std::unique_ptr<Model> mp = load_model(opt.model_dir);
  const Model& m = *mp;
  const ModelConfig& c = m.cfg;
  const bool llama = c.architecture == "LlamaForCausalLM";
  res.architecture = llama ? "llama" : "qwen3";
  const std::string& A = res.architecture;
  GgufVocab vocab = read_vocab(opt.model_dir, c);
  res.tokenizer = vocab.model;
  res.vocab = c.vocab;

  Exporter ex{m, opt, res, {}, {}};
  ex.add_dense_as_stored("token_embd.weight", m.ckpt->get("model.embed_tokens.weight"));
  if (llama && c.llama3_factor > 0) {
    std::vector<float> rf = llama3_rope_factors(c);
    ex.plan.push_back({"rope_freqs.weight", GgmlType::kF32, {int64_t(rf.size())},
                       [rf](int64_t, uint8_t* out) { std::memcpy(out, rf.data(), rf.size() * 4); }});
  }
  auto qk_rows = llama ? rope_interleave_rows(c.head_dim) : std::function<int64_t(int64_t)>{};
  for (int64_t i = 0; i < c.layers; ++i) {
    const LayerWeights& l = m.layers[size_t(i)];
    const std::string b = "blk." + std::to_string(i) + ".", p = "model.layers." + std::to_string(i) + ".";
    ex.add_vector_f32(b + "attn_norm.weight", p + "input_layernorm.weight");
    ex.add_linear(b + "attn_q", l.q, qk_rows);
    ex.add_linear(b + "attn_k", l.k, qk_rows);
    ex.add_linear(b + "attn_v", l.v);
    ex.add_linear(b + "attn_output", l.o);
    if (c.qk_norm) {
      ex.add_vector_f32(b + "attn_q_norm.weight", p + "self_attn.q_norm.weight");
      ex.add_vector_f32(b + "attn_k_norm.weight", p + "self_attn.k_norm.weight");
    }
    ex.add_vector_f32(b + "ffn_norm.weight", p + "post_attention_layernorm.weight");
    ex.add_linear(b + "ffn_gate", l.gate);
    ex.add_linear(b + "ffn_up", l.up);
    ex.add_linear(b + "ffn_down", l.down);
  }
  ex.add_vector_f32("output_norm.weight", "model.norm.weight");
  if (!c.tied) {
    // A dense head keeps its stored bytes in both formats ("the same bytes" as fp4z reads).
    if (m.lm_head.kind == WeightKind::kNvfp4) ex.add_linear("output", m.lm_head);
    else ex.add_dense_as_stored("output.weight", m.ckpt->get("lm_head.weight")), ++res.dense;
  }

  GgufWriter w;
  w.add_string("general.architecture", A);
  w.add_string("general.name", std::filesystem::path(opt.model_dir).lexically_normal().filename().string());
  uint32_t ftype = kFtypeAllF32;  // what most linears are, as llama.cpp's converter labels files
  if (res.q4_0) ftype = kFtypeMostlyQ4_0;
  else if (res.nvfp4) ftype = kFtypeMostlyNvfp4;
  else if (const TensorRef* q = m.ckpt->find("model.layers.0.self_attn.q_proj.weight"))
    ftype = q->info->dtype == DType::BF16 ? kFtypeMostlyBF16 : q->info->dtype == DType::F16 ? kFtypeMostlyF16 : kFtypeAllF32;
  w.add_u32("general.file_type", ftype);
  w.add_u32("general.quantization_version", 2);
  w.add_u32(A + ".vocab_size", uint32_t(c.vocab));
  w.add_u32(A + ".context_length", uint32_t(c.max_positions > 0 ? c.max_positions : 4096));
  w.add_u32(A + ".embedding_length", uint32_t(c.hidden));
  w.add_u32(A + ".block_count", uint32_t(c.layers));
  w.add_u32(A + ".feed_forward_length", uint32_t(c.intermediate));
  w.add_u32(A + ".attention.head_count", uint32_t(c.heads));
  w.add_u32(A + ".attention.head_count_kv", uint32_t(c.kv_heads));
  w.add_u32(A + ".attention.key_length", uint32_t(c.head_dim));
  w.add_u32(A + ".attention.value_length", uint32_t(c.head_dim));
  w.add_f32(A + ".attention.layer_norm_rms_epsilon", c.rms_eps);
  w.add_f32(A + ".rope.freq_base", float(c.rope_theta));
  w.add_u32(A + ".rope.dimension_count", uint32_t(c.head_dim));
  w.add_string("tokenizer.ggml.model", vocab.model);
  w.add_string("tokenizer.ggml.pre", vocab.pre);
  w.add_string_array("tokenizer.ggml.tokens", vocab.tokens);
  w.add_i32_array("tokenizer.ggml.token_type", vocab.types);
  if (!vocab.scores.empty()) w.add_f32_array("tokenizer.ggml.scores", vocab.scores);
  if (!vocab.merges.empty()) w.add_string_array("tokenizer.ggml.merges", vocab.merges);
  if (c.bos >= 0) w.add_u32("tokenizer.ggml.bos_token_id", uint32_t(c.bos));
  if (!c.eos.empty()) w.add_u32("tokenizer.ggml.eos_token_id", uint32_t(c.eos[0]));
  if (vocab.unk >= 0) w.add_u32("tokenizer.ggml.unknown_token_id", uint32_t(vocab.unk));
  w.add_bool("tokenizer.ggml.add_bos_token", vocab.model == "llama");
  w.add_bool("tokenizer.ggml.add_eos_token", false);
  const std::string tc_path = opt.model_dir + "/tokenizer_config.json";
  if (std::filesystem::exists(tc_path)) {
    nlohmann::ordered_json tc = read_json_file(tc_path);
    if (tc.contains("chat_template") && tc["chat_template"].is_string())
      w.add_string("tokenizer.chat_template", tc["chat_template"].get<std::string>());
  }
  if (!ex.nvfp4_names.empty()) {
    // fp4z's checkpoints are weight-only NVFP4: keep activations at >= 8 bits where a backend could use 4.
    w.add_string_array("general.tensor_extra.name", ex.nvfp4_names);
    w.add_bool_array("general.tensor_extra.prec_a4", std::vector<bool>(ex.nvfp4_names.size(), false));
  }
  for (const auto& t : ex.plan) w.add_tensor(t.name, t.type, t.shape);

  const int threads = resolve_threads(opt.threads);
  w.write_header(staged.temp);
  std::vector<uint8_t> buf;
  for (size_t ti = 0; ti < ex.plan.size(); ++ti) {
    const PlannedTensor& t = ex.plan[ti];
    const int64_t rows = rows_of(t.shape);
    const uint64_t rb = ggml_row_bytes(t.type, t.shape.back());
    const int64_t chunk = std::max<int64_t>(1, int64_t((16u << 20) / rb));
    for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
      const int64_t nr = std::min(chunk, rows - r0);
      buf.resize(size_t(uint64_t(nr) * rb));
      parallel_for(size_t(nr), threads, 16, [&](size_t b, size_t e) {
        for (size_t r = b; r < e; ++r) t.row(r0 + int64_t(r), buf.data() + r * rb);
      });
      w.append(buf.data(), buf.size());
    }
    w.end_tensor();
  }
  w.finish();
  res.tensors = ex.plan.size();
  res.bytes = std::filesystem::file_size(staged.temp);
  staged.commit();
  return res;
}

}  // namespace fp4z
