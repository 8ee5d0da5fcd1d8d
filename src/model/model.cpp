// Reads config.json and binds the checkpoint's tensors (F32/F16/BF16, NVFP4 CT or ModelOpt) to a Model.
#include "model/model.h"

#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/error.h"
#include "common/mapped_file.h"
#include "common/parallel.h"
#include "format/nvfp4_tensors.h"
#include "nvfp4/measure.h"
#include "model/thread_pool.h"

namespace fp4z {

namespace {

bool file_exists(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0;
}

template <class T>
T get_num(const nlohmann::ordered_json& j, const char* key, const std::string& path, bool required, T def) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (required) fail_input(path + ": missing \"" + key + "\"");
    return def;
  }
  if (!it->is_number()) fail_input(path + ": \"" + key + "\" is not a number");
  return it->get<T>();
}

bool get_bool(const nlohmann::ordered_json& j, const char* key, bool def) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return def;
  return it->is_boolean() ? it->get<bool>() : def;
}

}  // namespace

ModelConfig parse_model_config(const nlohmann::ordered_json& j, const std::string& path) {
  ModelConfig c;
  if (!j.is_object()) fail_input(path + ": not a JSON object");
  auto arch = j.find("architectures");
  if (arch == j.end() || !arch->is_array() || arch->empty() || !(*arch)[0].is_string())
    fail_input(path + ": missing \"architectures\"");
  c.architecture = (*arch)[0].get<std::string>();
  if (c.architecture == "Qwen3ForCausalLM") c.qk_norm = true;
  else if (c.architecture != "LlamaForCausalLM")
    fail_input(path + ": unsupported architecture " + c.architecture +
               " (supported: Qwen3ForCausalLM, LlamaForCausalLM)");
  c.hidden = get_num<int64_t>(j, "hidden_size", path, true, 0);
  c.intermediate = get_num<int64_t>(j, "intermediate_size", path, true, 0);
  c.layers = get_num<int64_t>(j, "num_hidden_layers", path, true, 0);
  c.heads = get_num<int64_t>(j, "num_attention_heads", path, true, 0);
  c.kv_heads = get_num<int64_t>(j, "num_key_value_heads", path, false, c.heads);
  if (c.heads <= 0 || c.hidden <= 0) fail_input(path + ": bad hidden_size / num_attention_heads");
  c.head_dim = get_num<int64_t>(j, "head_dim", path, false, c.hidden / c.heads);
  c.vocab = get_num<int64_t>(j, "vocab_size", path, true, 0);
  c.rms_eps = float(get_num<double>(j, "rms_norm_eps", path, false, 1e-6));
  c.tied = get_bool(j, "tie_word_embeddings", false);  // Qwen3Config and LlamaConfig default
  c.max_positions = get_num<int64_t>(j, "max_position_embeddings", path, false, 0);
  double theta = get_num<double>(j, "rope_theta", path, false, 0.0);
  auto rp = j.find("rope_parameters");
  if (theta == 0.0 && rp != j.end() && rp->is_object()) theta = get_num<double>(*rp, "rope_theta", path, false, 0.0);
  c.rope_theta = theta > 0.0 ? theta : 10000.0;
  c.bos = get_num<int32_t>(j, "bos_token_id", path, false, -1);
  auto eos = j.find("eos_token_id");
  if (eos != j.end()) {
    if (eos->is_number_integer()) c.eos.push_back(eos->get<int32_t>());
    else if (eos->is_array())
      for (const auto& e : *eos)
        if (e.is_number_integer()) c.eos.push_back(e.get<int32_t>());
  }
  if (c.layers <= 0 || c.intermediate <= 0 || c.vocab <= 0 || c.head_dim <= 0 || c.head_dim % 2 ||
      c.kv_heads <= 0 || c.heads % c.kv_heads)
    fail_input(path + ": inconsistent model dimensions");
  auto act = j.find("hidden_act");
  if (act != j.end() && act->is_string() && act->get<std::string>() != "silu")
    fail_input(path + ": hidden_act " + act->get<std::string>() + " is not supported (only silu)");
  if (get_bool(j, "attention_bias", false)) fail_input(path + ": attention_bias=true is not supported");
  if (get_bool(j, "mlp_bias", false)) fail_input(path + ": mlp_bias=true is not supported");
  if (get_bool(j, "use_sliding_window", false)) fail_input(path + ": use_sliding_window=true is not supported");
  const nlohmann::ordered_json* scaling = nullptr;
  auto rs = j.find("rope_scaling");
  if (rs != j.end() && !rs->is_null()) scaling = &*rs;
  else if (rp != j.end() && rp->is_object() && (rp->contains("rope_type") || rp->contains("type"))) scaling = &*rp;
  if (scaling) {
    std::string type;
    if (scaling->contains("rope_type") && (*scaling)["rope_type"].is_string()) type = (*scaling)["rope_type"];
    else if (scaling->contains("type") && (*scaling)["type"].is_string()) type = (*scaling)["type"];
    if (type == "llama3" && c.architecture == "LlamaForCausalLM") {
      c.llama3_factor = get_num<double>(*scaling, "factor", path, true, 0);
      c.llama3_low = get_num<double>(*scaling, "low_freq_factor", path, true, 0);
      c.llama3_high = get_num<double>(*scaling, "high_freq_factor", path, true, 0);
      c.llama3_original = get_num<double>(*scaling, "original_max_position_embeddings", path, true, 0);
    } else if (!(type.empty() || type == "default")) {
      fail_input(path + ": rope_scaling type \"" + type + "\" is not supported");
    }
  }
  return c;
}

void Embedding::row(int64_t id, float* out) const {
  convert_to_f32(data + uint64_t(id) * uint64_t(cols) * dtype_size(dtype), dtype, size_t(cols), out);
}

uint64_t Model::weight_bytes() const {
  uint64_t b = uint64_t(embed.rows * embed.cols) * dtype_size(embed.dtype);
  for (const auto& l : layers)
    for (const Linear* w : {&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down}) b += w->stored_bytes();
  if (!cfg.tied) b += lm_head.stored_bytes();
  return b;
}

namespace {

std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

void expect_shape(const TensorRef& t, std::vector<int64_t> want) {
  if (t.info->shape != want)
    fail_input(t.file->path() + ": tensor " + t.info->name + " has shape " + shape_str(t.info->shape) +
               ", expected " + shape_str(want));
}

struct Binder {
  Model& m;
  int n_nvfp4 = 0, n_with_input_scale = 0;
  bool saw_ct = false, saw_modelopt = false;

  NormWeight norm(const std::string& name, int64_t len) {
    const TensorRef& t = m.ckpt->get(name);
    if (!dtype_is_float_weight(t.info->dtype))
      fail_input(t.file->path() + ": tensor " + name + " has dtype " + dtype_name(t.info->dtype) + ", expected a float type");
    expect_shape(t, {len});
    NormWeight w(static_cast<size_t>(len));
    convert_to_f32(t.data(), t.info->dtype, size_t(len), w.data());
    return w;
  }

  Linear dense_from(const TensorRef& t, const std::string& name, int64_t n, int64_t k) {
    expect_shape(t, {n, k});
    Linear l;
    l.name = name;
    l.n = n;
    l.k = k;
    switch (t.info->dtype) {
      case DType::F32: l.kind = WeightKind::kF32; l.data = t.data(); break;
      case DType::BF16: l.kind = WeightKind::kBF16; l.data = t.data(); break;
      case DType::F16: {  // rare: converted once to f32 (owned)
        m.owned.emplace_back(static_cast<size_t>(n * k));
        convert_to_f32(t.data(), DType::F16, size_t(n * k), m.owned.back().data());
        l.kind = WeightKind::kF32;
        l.data = reinterpret_cast<const uint8_t*>(m.owned.back().data());
        break;
      }
      default:
        fail_input(t.file->path() + ": tensor " + t.info->name + " has unsupported dtype " + dtype_name(t.info->dtype));
    }
    return l;
  }

  Linear linear(const std::string& base, int64_t n, int64_t k) {
    const Checkpoint& c = *m.ckpt;
    Nvfp4Lookup found = find_nvfp4_tensors(c, base);
    if (!found.quantized()) return dense_from(c.get(base + ".weight"), base, n, k);
    Nvfp4Tensors t = require_nvfp4_tensors(found, n, k);
    require_usable_block_scales(t);
    Linear l;
    l.name = base;
    l.n = n;
    l.k = k;
    l.kind = WeightKind::kNvfp4;
    l.data = t.codes->data();
    l.scales = t.block_scales->data();
    if (t.global_is_divisor) {
      saw_ct = true;
      l.global_div = t.global_scale;
    } else {
      saw_modelopt = true;
      l.global_mul = t.global_scale;
    }
    l.input_global_scale = t.input_global_scale();
    ++n_nvfp4;
    if (l.input_global_scale > 0.0f) ++n_with_input_scale;
    return l;
  }
};

}  // namespace

void require_usable_block_scales(const Nvfp4Tensors& t, int threads) {
  const TensorInfo& s = *t.block_scales->info;
  const size_t groups = size_t(s.shape[1]);
  BlockScaleScan r = scan_block_scales(t.block_scales->data(), nullptr, size_t(s.shape[0]), groups, resolve_threads(threads));
  if (!r.nan && !r.negative) return;
  const bool nan = r.nan != 0;
  const uint64_t at = nan ? r.first_nan : r.first_negative;
  fail_input(t.block_scales->file->path() + ": " + s.name + ": " + std::to_string(nan ? r.nan : r.negative) +
             " block scale(s) are " + (nan ? "NaN (0x7F/0xFF)" : "negative") + ", first at row " + std::to_string(at / groups) +
             ", block " + std::to_string(at % groups) + " (" + nvfp4_convention_name(t.convention) + " NVFP4 module " +
             t.module + ")");
}

std::unique_ptr<Model> load_model(const std::string& dir) {
  auto m = std::make_unique<Model>();
  std::string cfg_path = dir + "/config.json";
  m->cfg = parse_model_config(read_json_file(cfg_path), cfg_path);
  std::string hq = dir + "/hf_quant_config.json";
  if (file_exists(hq)) {
    auto q = read_json_file(hq);
    auto quant = q.find("quantization");
    if (quant != q.end() && quant->is_object() && quant->contains("quant_algo") && (*quant)["quant_algo"].is_string()) {
      std::string algo = (*quant)["quant_algo"];
      if (algo != "NVFP4" && algo != "W4A16_NVFP4")
        fail_input(hq + ": quant_algo " + algo + " is not supported (only NVFP4, W4A16_NVFP4)");
    }
  }
  m->ckpt = open_checkpoint(dir);
  const ModelConfig& c = m->cfg;
  Binder b{*m};
  const TensorRef& emb = m->ckpt->get("model.embed_tokens.weight");
  if (!dtype_is_float_weight(emb.info->dtype))
    fail_input(emb.file->path() + ": model.embed_tokens.weight has unsupported dtype " + dtype_name(emb.info->dtype));
  expect_shape(emb, {c.vocab, c.hidden});
  m->embed = Embedding{emb.info->dtype, c.vocab, c.hidden, emb.data()};
  const int64_t H = c.hidden, qd = c.heads * c.head_dim, kvd = c.kv_heads * c.head_dim, I = c.intermediate;
  for (int64_t i = 0; i < c.layers; ++i) {
    std::string p = "model.layers." + std::to_string(i) + ".";
    LayerWeights l;
    l.input_norm = b.norm(p + "input_layernorm.weight", H);
    l.post_norm = b.norm(p + "post_attention_layernorm.weight", H);
    if (c.qk_norm) {
      l.q_norm = b.norm(p + "self_attn.q_norm.weight", c.head_dim);
      l.k_norm = b.norm(p + "self_attn.k_norm.weight", c.head_dim);
    }
    l.q = b.linear(p + "self_attn.q_proj", qd, H);
    l.k = b.linear(p + "self_attn.k_proj", kvd, H);
    l.v = b.linear(p + "self_attn.v_proj", kvd, H);
    l.o = b.linear(p + "self_attn.o_proj", H, qd);
    l.gate = b.linear(p + "mlp.gate_proj", I, H);
    l.up = b.linear(p + "mlp.up_proj", I, H);
    l.down = b.linear(p + "mlp.down_proj", H, I);
    m->layers.push_back(std::move(l));
  }
  m->final_norm = b.norm("model.norm.weight", H);
  if (c.tied) {
    m->lm_head = b.dense_from(emb, "model.embed_tokens", c.vocab, H);
  } else {
    const Nvfp4Lookup head = find_nvfp4_tensors(*m->ckpt, "lm_head");
    if (!head.quantized() && !head.dense) fail_input(dir + ": tie_word_embeddings is false but lm_head.weight is missing");
    m->lm_head = b.linear("lm_head", c.vocab, H);
  }
  m->quant_format = b.saw_ct && b.saw_modelopt ? "mixed" : b.saw_ct ? "compressed-tensors" : b.saw_modelopt ? "modelopt" : "none";
  if (b.saw_ct && b.saw_modelopt) fail_input(dir + ": mixes compressed-tensors and ModelOpt NVFP4 tensors");
  m->has_input_global_scale = b.n_nvfp4 > 0 && b.n_with_input_scale == b.n_nvfp4;
  return m;
}

namespace {
// Drops the pages of [p, p+len) from the resident set if they lie in one of the checkpoint's mappings.
void release_mapped(const Checkpoint& ck, const uint8_t* p, size_t len) {
  for (const auto& f : ck.files)
    if (f->map.data && p >= f->map.data && p + len <= f->map.data + f->map.size)
      release_pages(f->map, size_t(p - f->map.data), len);
}
}  // namespace

void prepare_int8_weights(Model& m, int threads) {
  std::vector<Linear*> lins;
  for (auto& l : m.layers)
    for (Linear* w : {&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down}) lins.push_back(w);
  lins.push_back(&m.lm_head);
  ThreadPool pool(std::max(1, threads));
  for (Linear* w : lins) {
    if (w->kind != WeightKind::kNvfp4 || w->int8) continue;
    m.owned_int8.emplace_back(int8_layout::bytes(w->n, w->k));
    uint8_t* out = m.owned_int8.back().data();
    const int64_t rows = 64, tasks = (w->n + rows - 1) / rows;
    pool.run(tasks, [&](int64_t task, int) { pack_int8_rows(*w, task * rows, std::min(w->n, task * rows + rows), out); });
    w->int8 = out;
    if (m.ckpt) {
      release_mapped(*m.ckpt, w->data, size_t(w->n * w->k / 2));
      release_mapped(*m.ckpt, w->scales, size_t(w->n * (w->k / 16)));
    }
  }
}

}  // namespace fp4z
