// llama2.c legacy checkpoint -> Hugging Face LlamaForCausalLM checkpoint, values kept exactly.
#include "pipeline/import_llama2c.h"

#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/mapped_file.h"
#include "common/progress.h"
#include "common/staged_output.h"
#include "format/checkpoint.h"
#include "format/safetensors.h"

#include "text/llama2c_tokenizer.h"

namespace fp4z {

namespace {

int32_t read_i32_le(const uint8_t* p) {
  uint32_t u = uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
  int32_t v;
  std::memcpy(&v, &u, 4);
  return v;
}

// Content of the added token with `id` in a tokenizer.json, or `fallback`.
std::string special_token_content(const nlohmann::ordered_json& tok, int64_t id, const std::string& fallback) {
  if (tok.is_object() && tok.contains("added_tokens") && tok["added_tokens"].is_array())
    for (const auto& t : tok["added_tokens"])
      if (t.is_object() && t.contains("id") && t["id"].is_number_integer() && t["id"].get<int64_t>() == id &&
          t.contains("content") && t["content"].is_string())
        return t["content"].get<std::string>();
  return fallback;
}

const char* torch_dtype_name(DType d) {
  switch (d) {
    case DType::BF16: return "bfloat16";
    case DType::F16: return "float16";
    default: return "float32";
  }
}

// One output tensor: where its f32 rows live in the input, and whether its rows are RoPE-permuted.
struct Llama2cTensor {
  std::string name;
  std::vector<int64_t> shape;
  uint64_t float_offset = 0;  // index of the first float after the header
  int64_t rope_heads = 0;     // > 0: permute rows per head (q: n_heads, k: n_kv_heads)
};

// Lays out every tensor of the legacy v0 file (llama2.c export.py legacy_export order).
std::vector<Llama2cTensor> plan_tensors(const Llama2cHeader& h) {
  const int64_t D = h.dim, F = h.hidden_dim, L = h.n_layers, V = h.vocab_size, KV = h.kv_dim();
  uint64_t pos = 0;
  uint64_t embed = pos;
  pos += uint64_t(V * D);
  uint64_t rms_att = pos;
  pos += uint64_t(L * D);
  uint64_t wq = pos;
  pos += uint64_t(L * D * D);
  uint64_t wk = pos;
  pos += uint64_t(L * KV * D);
  uint64_t wv = pos;
  pos += uint64_t(L * KV * D);
  uint64_t wo = pos;
  pos += uint64_t(L * D * D);
  uint64_t rms_ffn = pos;
  pos += uint64_t(L * D);
  uint64_t w1 = pos;
  pos += uint64_t(L * F * D);
  uint64_t w2 = pos;
  pos += uint64_t(L * D * F);
  uint64_t w3 = pos;
  pos += uint64_t(L * F * D);
  uint64_t rms_final = pos;
  pos += uint64_t(D);
  pos += uint64_t(h.seq_len * (h.head_size() / 2) * 2);  // freq_cis_real, freq_cis_imag (unused)
  uint64_t wcls = pos;

  std::vector<Llama2cTensor> out;
  out.push_back({"model.embed_tokens.weight", {V, D}, embed, 0});
  for (int64_t l = 0; l < L; ++l) {
    std::string p = "model.layers." + std::to_string(l) + ".";
    out.push_back({p + "input_layernorm.weight", {D}, rms_att + uint64_t(l * D), 0});
    out.push_back({p + "self_attn.q_proj.weight", {D, D}, wq + uint64_t(l * D * D), h.n_heads});
    out.push_back({p + "self_attn.k_proj.weight", {KV, D}, wk + uint64_t(l * KV * D), h.n_kv_heads});
    out.push_back({p + "self_attn.v_proj.weight", {KV, D}, wv + uint64_t(l * KV * D), 0});
    out.push_back({p + "self_attn.o_proj.weight", {D, D}, wo + uint64_t(l * D * D), 0});
    out.push_back({p + "post_attention_layernorm.weight", {D}, rms_ffn + uint64_t(l * D), 0});
    out.push_back({p + "mlp.gate_proj.weight", {F, D}, w1 + uint64_t(l * F * D), 0});
    out.push_back({p + "mlp.down_proj.weight", {D, F}, w2 + uint64_t(l * D * F), 0});
    out.push_back({p + "mlp.up_proj.weight", {F, D}, w3 + uint64_t(l * F * D), 0});
  }
  out.push_back({"model.norm.weight", {D}, rms_final, 0});
  if (!h.shared_classifier) out.push_back({"lm_head.weight", {V, D}, wcls, 0});
  return out;
}

nlohmann::ordered_json make_config(const Llama2cHeader& h, DType dtype) {
  nlohmann::ordered_json c;
  c["architectures"] = {"LlamaForCausalLM"};
  c["attention_bias"] = false;
  c["attention_dropout"] = 0.0;
  c["bos_token_id"] = kLlama2cBosId;
  c["eos_token_id"] = kLlama2cEosId;
  c["head_dim"] = h.head_size();
  c["hidden_act"] = "silu";
  c["hidden_size"] = h.dim;
  c["initializer_range"] = 0.02;
  c["intermediate_size"] = h.hidden_dim;
  c["max_position_embeddings"] = h.seq_len;
  c["mlp_bias"] = false;
  c["model_type"] = "llama";
  c["num_attention_heads"] = h.n_heads;
  c["num_hidden_layers"] = h.n_layers;
  c["num_key_value_heads"] = h.n_kv_heads;
  c["pretraining_tp"] = 1;
  c["rms_norm_eps"] = 1e-5;
  c["rope_scaling"] = nullptr;
  c["rope_theta"] = 10000.0;
  c["tie_word_embeddings"] = h.shared_classifier;
  c["torch_dtype"] = torch_dtype_name(dtype);
  c["use_cache"] = true;
  c["vocab_size"] = h.vocab_size;
  return c;
}

}  // namespace

uint64_t Llama2cHeader::expected_floats() const {
  // Every factor is below 2^31, so no product of three overflows 128 bits; the caller has
  // already bounded the dimensions so that the total fits in 64 bits.
  using u128 = unsigned __int128;
  u128 D = u128(dim), F = u128(hidden_dim), L = u128(n_layers), V = u128(vocab_size), KV = u128(kv_dim());
  u128 n = V * D                      // token_embedding_table
           + L * D                    // rms_att_weight
           + L * D * D + 2 * L * KV * D + L * D * D  // wq, wk, wv, wo
           + L * D                    // rms_ffn_weight
           + 3 * L * F * D            // w1, w2, w3
           + D                        // rms_final_weight
           + u128(seq_len) * u128(head_size() / 2) * 2;  // freq_cis_real, freq_cis_imag
  if (!shared_classifier) n += V * D;
  if (n > u128(std::numeric_limits<uint64_t>::max() / 8)) return std::numeric_limits<uint64_t>::max() / 8;
  return uint64_t(n);
}

Llama2cHeader parse_llama2c_header(const uint8_t* data, size_t size, const std::string& label) {
  if (size < kLlama2cHeaderBytes)
    fail_input(label + ": not a llama2.c checkpoint: " + std::to_string(size) + " bytes, shorter than the 28-byte header");
  int32_t f[7];
  for (int i = 0; i < 7; ++i) f[i] = read_i32_le(data + 4 * i);
  static const char* kNames[7] = {"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"};
  for (int i = 0; i < 7; ++i) {
    bool ok = (i == 5) ? (f[i] != 0 && f[i] != std::numeric_limits<int32_t>::min()) : f[i] > 0;
    if (!ok)
      fail_input(label + ": not a llama2.c checkpoint: header field " + kNames[i] + " = " + std::to_string(f[i]) +
                 " is not a positive dimension");
  }
  Llama2cHeader h;
  h.dim = f[0];
  h.hidden_dim = f[1];
  h.n_layers = f[2];
  h.n_heads = f[3];
  h.n_kv_heads = f[4];
  h.shared_classifier = f[5] > 0;
  h.vocab_size = f[5] > 0 ? f[5] : -int64_t(f[5]);
  h.seq_len = f[6];
  if (h.dim % h.n_heads != 0)
    fail_input(label + ": invalid llama2.c header: dim " + std::to_string(h.dim) + " is not a multiple of n_heads " +
               std::to_string(h.n_heads));
  if (h.n_kv_heads > h.n_heads || h.n_heads % h.n_kv_heads != 0)
    fail_input(label + ": invalid llama2.c header: n_heads " + std::to_string(h.n_heads) +
               " is not a multiple of n_kv_heads " + std::to_string(h.n_kv_heads));
  if (h.head_size() % 2 != 0)
    fail_input(label + ": invalid llama2.c header: head size " + std::to_string(h.head_size()) +
               " is odd, RoPE needs pairs");
  unsigned __int128 want = (unsigned __int128)h.expected_floats() * 4 + kLlama2cHeaderBytes;
  if (want != (unsigned __int128)size) {
    std::string w = h.expected_floats() >= std::numeric_limits<uint64_t>::max() / 8 ? std::string("an impossible size")
                                                                                      : std::to_string(uint64_t(want)) + " bytes";
    fail_input(label + ": llama2.c checkpoint size mismatch: the header (dim " + std::to_string(h.dim) + ", hidden_dim " +
               std::to_string(h.hidden_dim) + ", n_layers " + std::to_string(h.n_layers) + ", n_heads " +
               std::to_string(h.n_heads) + ", n_kv_heads " + std::to_string(h.n_kv_heads) + ", vocab_size " +
               std::to_string(f[5]) + ", seq_len " + std::to_string(h.seq_len) + ") implies " + w + ", the file has " +
               std::to_string(size) + (uint64_t(size) < uint64_t(want) ? " (truncated)" : " (trailing data)"));
  }
  return h;
}

void permute_rope_rows(const float* src, float* dst, int64_t n_heads, int64_t head_size, int64_t cols) {
  const int64_t half = head_size / 2;
  for (int64_t hd = 0; hd < n_heads; ++hd)
    for (int64_t j = 0; j < 2; ++j)
      for (int64_t i = 0; i < half; ++i) {
        const float* from = src + (hd * head_size + 2 * i + j) * cols;
        float* to = dst + (hd * head_size + j * half + i) * cols;
        std::memcpy(to, from, size_t(cols) * sizeof(float));
      }
}

ImportLlama2cResult import_llama2c(const ImportLlama2cOptions& opt) {
  if (opt.dtype != DType::F32 && opt.dtype != DType::BF16 && opt.dtype != DType::F16)
    fail_input(std::string("unsupported output dtype ") + dtype_name(opt.dtype) + " (use f32, bf16 or f16)");
  // Validate every input before anything is created, so bad input leaves no trace.
  MappedFile model = map_file(opt.model_path);
  Llama2cHeader h = parse_llama2c_header(model.data, model.size, opt.model_path);
  MappedFile tok = map_file(opt.tokenizer_path);
  nlohmann::ordered_json tok_json = llama2c_tokenizer_to_json(tok.data, tok.size, opt.tokenizer_path);
  if (tok_json.is_object() && tok_json.contains("model") && tok_json["model"].is_object() &&
      tok_json["model"].contains("vocab") && tok_json["model"]["vocab"].is_object()) {
    size_t n = tok_json["model"]["vocab"].size();
    if (int64_t(n) != h.vocab_size)
      fail_input(opt.tokenizer_path + ": tokenizer has " + std::to_string(n) + " tokens but the model's vocab_size is " +
                 std::to_string(h.vocab_size));
  }

  std::vector<Llama2cTensor> plan = plan_tensors(h);
  std::vector<TensorSpec> specs;
  uint64_t params = 0;
  for (const auto& t : plan) {
    specs.push_back({t.name, opt.dtype, t.shape});
    uint64_t n = 1;
    for (int64_t d : t.shape) n *= uint64_t(d);
    params += n;
  }

  StagedDir out(opt.out_dir, opt.force);
  {
    CheckpointWriter writer(out.temp, specs, std::numeric_limits<uint64_t>::max());
    const uint8_t* floats = model.data + kLlama2cHeaderBytes;
    Progress progress("import-llama2c", plan.size(), (model.size - kLlama2cHeaderBytes), opt.quiet);
    std::vector<float> rows;
    std::vector<uint8_t> converted;
    for (const auto& t : plan) {
      uint64_t n = 1;
      for (int64_t d : t.shape) n *= uint64_t(d);
      const uint8_t* src = floats + t.float_offset * 4;
      rows.resize(n);
      std::memcpy(rows.data(), src, n * 4);  // the mapping is only 4-byte aligned at best
      if (t.rope_heads > 0) {
        std::vector<float> permuted(n);
        permute_rope_rows(rows.data(), permuted.data(), t.rope_heads, h.head_size(), t.shape[1]);
        rows.swap(permuted);
      }
      if (opt.dtype == DType::F32) {
        writer.write(t.name, rows.data(), n * 4);
      } else {
        converted.resize(n * 2);
        for (uint64_t i = 0; i < n; ++i) {
          uint16_t v = opt.dtype == DType::BF16 ? f32_to_bf16_rne(rows[i]) : f32_to_f16_rne(rows[i]);
          std::memcpy(converted.data() + 2 * i, &v, 2);
        }
        writer.write(t.name, converted.data(), n * 2);
      }
      progress.advance(1, n * 4, t.name);
    }
    writer.finish();
    progress.finish();
  }

  write_json_file(out.path("config.json"), make_config(h, opt.dtype));
  nlohmann::ordered_json gen;
  gen["_from_model_config"] = true;
  gen["bos_token_id"] = kLlama2cBosId;
  gen["eos_token_id"] = kLlama2cEosId;
  write_json_file(out.path("generation_config.json"), gen);

  write_json_file(out.path("tokenizer.json"), tok_json);
  nlohmann::ordered_json tc;
  tc["add_bos_token"] = true;
  tc["add_eos_token"] = false;
  tc["bos_token"] = special_token_content(tok_json, kLlama2cBosId, "<s>");
  tc["clean_up_tokenization_spaces"] = false;
  tc["eos_token"] = special_token_content(tok_json, kLlama2cEosId, "</s>");
  tc["model_max_length"] = h.seq_len;
  tc["pad_token"] = nullptr;
  // PreTrainedTokenizerFast runs tokenizer.json exactly as written, which encodes like run.c. The
  // LlamaTokenizer(Fast) class of transformers 5 rebuilds its own pipeline (Metaspace, no dummy-prefix
  // normalizer) and then encodes text that starts with a space differently (" " -> 1 token, not 2).
  tc["tokenizer_class"] = "PreTrainedTokenizerFast";
  tc["unk_token"] = special_token_content(tok_json, kLlama2cUnkId, "<unk>");
  write_json_file(out.path("tokenizer_config.json"), tc);

  out.commit();
  ImportLlama2cResult r;
  r.header = h;
  r.tensors = plan.size();
  r.parameters = params;
  return r;
}

}  // namespace fp4z
