// Checkpoint-level NVFP4 quantization: plans the output, streams each layer once from mmap through
// the row kernels on all cores, writes shards in place from a background thread, publishes atomically.
#include "pipeline/quantize.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <unordered_map>

#include "common/error.h"
#include "common/glob.h"
#include "common/parallel.h"
#include "common/progress.h"
#include "common/staged_output.h"
#include "format/checkpoint.h"
#include "format/nvfp4_tensors.h"
#include "format/shard_inputs.h"
#include "nvfp4/codec.h"
#include "nvfp4/kernels.h"
#include "nvfp4/scales.h"
#include "pipeline/fused_groups.h"
#include "pipeline/io_queue.h"
#include "pipeline/rd_quantize.h"

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

namespace fp4z {

namespace {

bool ends_with(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}
std::string strip_suffix(const std::string& s, const std::string& suf) { return s.substr(0, s.size() - suf.size()); }

// A fused group up to this size stays mapped from its amax pass to its encoding, so it is read once
// (Qwen3-4B: 100 MB, 70B-class: 0.9 GB); a larger one is released in between and read twice.
constexpr uint64_t kGroupResidentBytes = 1ull << 30;

WeightView view_of(const TensorRef& r) {
  return WeightView{r.data(), r.info->dtype, r.info->shape[0], r.info->shape[1]};
}

void check_float_source(const TensorRef& r, const std::string& what) {
  if (!dtype_is_float_weight(r.info->dtype))
    fail_input(r.file->path() + ": " + what + " '" + r.info->name + "' has dtype " + dtype_name(r.info->dtype) +
               " (expected BF16, F16 or F32)");
}

// Copies every non-weight file of `from` into the staged output (relative paths kept).
void copy_other_files(const Checkpoint& ck, const StagedDir& out, const std::set<std::string>& skip) {
  for (const auto& rel : ck.other_files()) {
    if (skip.count(rel)) continue;
    fs::path dst = fs::path(out.temp) / rel;
    std::error_code ec;
    fs::create_directories(dst.parent_path(), ec);
    copy_file_exact(ck.dir + "/" + rel, dst.string());
  }
}

// ------------------------------------------------------------------------------------------
// absmax

struct AbsmaxPlan {
  std::vector<std::string> quantized;  // module prefixes, source order
  std::map<std::string, std::string> kept;  // module -> reason (Linear kept in source dtype)
};

AbsmaxPlan plan_absmax(const Checkpoint& src, const QuantizeOptions& o) {
  AbsmaxPlan plan;
  std::vector<std::string> linears;
  for (const auto& n : src.names) {
    const TensorRef& r = src.get(n);
    if (!is_linear_weight(n, *r.info)) continue;
    std::string m = strip_suffix(n, ".weight");
    std::string reason = linear_kept_reason(m, r.info->shape[1]);
    if (reason != "K % 16 != 0" && !reason.empty()) { plan.kept[m] = reason; continue; }
    if (glob_match_any(o.ignore, m)) { plan.kept[m] = "--ignore"; continue; }
    if (!reason.empty()) { plan.kept[m] = reason; continue; }
    check_float_source(r, "weight");
    linears.push_back(m);
  }
  // One decision per fused group: if any member is kept, all are.
  for (const auto& g : group_fused(linears)) {
    std::string reason;
    for (const auto& m : g) {
      std::string key = fused_group_key(m);
      if (key.empty()) continue;
      std::string parent = key.substr(0, key.rfind('#'));
      for (const auto& leaf : fused_group_members(key)) {
        auto it = plan.kept.find(parent + "." + leaf);
        if (it != plan.kept.end()) reason = "fused with " + it->first + " (" + it->second + ")";
      }
    }
    for (const auto& m : g) {
      if (reason.empty()) plan.quantized.push_back(m);
      else plan.kept[m] = reason;
    }
  }
  return plan;
}

json quantization_config_ct(const std::vector<std::string>& ignore, bool legacy) {
  json weights = {{"actorder", nullptr}, {"block_structure", nullptr}, {"dynamic", false}, {"group_size", 16},
                  {"num_bits", 4}, {"observer", "memoryless_minmax"}, {"observer_kwargs", json::object()}};
  if (!legacy) weights["scale_dtype"] = "torch.float8_e4m3fn";
  weights["strategy"] = "tensor_group";
  weights["symmetric"] = true;
  weights["type"] = "float";
  if (!legacy) weights["zp_dtype"] = nullptr;
  json group = {{"format", "nvfp4-pack-quantized"}, {"input_activations", nullptr}, {"output_activations", nullptr},
                {"targets", json::array({"Linear"})}, {"weights", weights}};
  return json{{"config_groups", {{"group_0", group}}},
              {"format", "nvfp4-pack-quantized"},
              {"global_compression_ratio", nullptr},
              {"ignore", ignore},
              {"kv_cache_scheme", nullptr},
              {"quant_method", "compressed-tensors"},
              {"quantization_status", "compressed"},
              {"sparsity_config", json::object()},
              {"transform_config", json::object()},
              {"version", legacy ? "0.10.0" : "0.13.0"}};
}

// compressed-tensors (0.19) decompresses NVFP4 weights to BF16 whatever the model's dtype, so a
// checkpoint that declares float32/float16 fails in transformers at its first matrix product. NVFP4
// outputs therefore declare bfloat16 compute; the kept tensors stay exactly as stored (lossless), and
// fp4z's engine still reads them in their own dtype.
void declare_bf16_compute(json& cfg) {
  bool found = false;
  for (const char* key : {"torch_dtype", "dtype"}) {
    if (cfg.contains(key)) {
      cfg[key] = "bfloat16";
      found = true;
    }
  }
  if (!found) cfg["torch_dtype"] = "bfloat16";
}

// True when the config ties the head to the embedding and lm_head.weight is stored with exactly the
// embedding's bytes (Qwen3-0.6B does this): llm-compressor then saves one shared table, and so does
// fp4z, byte for byte like it. A stored head with other values is kept (transformers uses it).
bool redundant_tied_head(const Checkpoint& src, const json& cfg) {
  if (!cfg.value("tie_word_embeddings", false)) return false;
  const TensorRef* head = src.find("lm_head.weight");
  const TensorRef* embed = src.find("model.embed_tokens.weight");
  if (!head || !embed || head->info->dtype != embed->info->dtype || head->info->shape != embed->info->shape) return false;
  bool same = std::memcmp(head->data(), embed->data(), head->info->nbytes()) == 0;
  head->release();
  embed->release();
  return same;
}

// Weight-count-weighted means over the quantized layers, accumulated in double in layer order
// (the seed report's aggregate definition; for seed the layer order is the report order).
void aggregate(QuantizeResult& res) {
  double sw = 0, bp = 0, np = 0, bm = 0, nm = 0;
  for (const auto& l : res.layers) {
    if (!l.quantized) continue;
    double n = double(l.rows) * double(l.cols);
    sw += n;
    bp += n * l.baseline.compression_rate;
    np += n * l.result.compression_rate;
    bm += n * l.baseline.mse;
    nm += n * l.result.mse;
  }
  res.quantized_weights = uint64_t(sw);
  if (sw == 0) return;
  res.base_proxy = bp / sw;
  res.new_proxy = np / sw;
  res.base_mse = bm / sw;
  res.new_mse = nm / sw;
}

void run_absmax(const QuantizeOptions& o, QuantizeResult& res) {
  auto src = open_checkpoint(o.source);
  std::string cfg_path = o.source + "/config.json";
  if (!fs::exists(cfg_path)) fail_input(o.source + ": config.json is missing");
  json cfg = read_json_file(cfg_path);
  if (!cfg.is_object()) fail_input(cfg_path + ": not a JSON object");
  if (cfg.contains("quantization_config")) fail_input(cfg_path + ": the source is already quantized (has quantization_config)");
  AbsmaxPlan plan = plan_absmax(*src, o);
  if (plan.quantized.empty()) fail_input(o.source + ": no Linear weight can be quantized");
  const bool modelopt = o.format == "modelopt";
  const Nvfp4Convention convention = modelopt ? Nvfp4Convention::kModelOpt : Nvfp4Convention::kCompressedTensors;
  std::set<std::string> qset(plan.quantized.begin(), plan.quantized.end());
  const bool drop_head = redundant_tied_head(*src, cfg);
  // rd: same plan and files; its job chooses global scales, codes and the write order (decoder order).
  std::unique_ptr<RdJob> rd;
  if (o.method == "rd") rd = std::make_unique<RdJob>(o, *src, plan.quantized);

  std::vector<TensorSpec> specs;
  for (const auto& n : src->names) {
    if (drop_head && n == "lm_head.weight") continue;
    const TensorInfo& t = *src->get(n).info;
    if (ends_with(n, ".weight") && qset.count(strip_suffix(n, ".weight"))) {
      const Nvfp4Names names = nvfp4_names(strip_suffix(n, ".weight"), convention);
      int64_t R = t.shape[0], C = t.shape[1];
      specs.push_back({names.codes, DType::U8, {R, C / 2}});
      specs.push_back({names.block_scales, DType::F8_E4M3, {R, C / 16}});
      // ModelOpt stores a 0-d scalar, compressed-tensors [1] (as each library writes them).
      specs.push_back({names.global_scale, DType::F32, modelopt ? std::vector<int64_t>{} : std::vector<int64_t>{1}});
    } else {
      specs.push_back({n, t.dtype, t.shape});
    }
  }
  StagedDir out(o.out, o.force);
  CheckpointWriter writer(out.temp, specs, o.max_shard_bytes);
  const int threads = resolve_threads(o.threads);
  const NvKernels& K = nv_kernels(o.isa);
  uint64_t total_bytes = 0;
  for (const auto& n : src->names) total_bytes += src->get(n).info->nbytes();
  res.input_bytes = total_bytes;
  Progress prog("quantize", src->names.size(), total_bytes, o.quiet);

  ShardInputs input(*src);
  IoQueue io(writer);
  LayerEncoding enc;  // reused across layers (buffers keep their pages)
  auto emit = [&](const std::string& m) {
    const Nvfp4Names names = nvfp4_names(m, convention);
    io.write(names.codes, std::move(enc.packed));
    io.write(names.block_scales, std::move(enc.scales));
    float g_out = modelopt ? 1.0f / enc.global_scale : enc.global_scale;
    ByteBuffer g_bytes(4);
    std::memcpy(g_bytes.data(), &g_out, 4);
    io.write(names.global_scale, std::move(g_bytes));
    enc.packed = io.spare();
    enc.scales = io.spare();
    LayerResult lr;
    lr.name = m;
    const TensorInfo& t = *src->get(m + ".weight").info;
    lr.rows = t.shape[0];
    lr.cols = t.shape[1];
    lr.result = enc.metrics;
    return lr;
  };
  auto prefetch = [&](const std::string& m) {
    const TensorRef& r = src->get(m + ".weight");
    io.prefetch(input.file_of(r), ShardInputs::offset_of(r), r.info->nbytes());
  };

  // absmax: each fused group is encoded when its first member comes up in source order (its amax,
  // hence the shared global scale, needs every member first); the next group is read ahead meanwhile.
  std::vector<std::vector<std::string>> groups;
  if (!rd) groups = group_fused(plan.quantized);
  std::unordered_map<std::string, size_t> group_of;
  for (size_t g = 0; g < groups.size(); ++g)
    for (const auto& m : groups[g]) group_of[m] = g;
  std::vector<size_t> group_order;  // groups in the order the source loop meets them
  std::vector<size_t> order_pos(groups.size(), SIZE_MAX);
  for (const auto& n : src->names) {
    auto it = ends_with(n, ".weight") ? group_of.find(strip_suffix(n, ".weight")) : group_of.end();
    if (it == group_of.end() || order_pos[it->second] != SIZE_MAX) continue;
    order_pos[it->second] = group_order.size();
    group_order.push_back(it->second);
  }
  std::unordered_map<std::string, LayerResult> encoded;  // members encoded ahead of their turn
  auto encode_group = [&](size_t gi) {
    const std::vector<std::string>& g = groups[gi];
    if (order_pos[gi] + 1 < group_order.size())
      for (const auto& m : groups[group_order[order_pos[gi] + 1]]) prefetch(m);
    uint64_t bytes = 0;
    for (const auto& m : g) bytes += src->get(m + ".weight").info->nbytes();
    const bool resident = bytes <= kGroupResidentBytes;
    float amax = 0;
    SourceRounding rnd = SourceRounding::kF32;
    for (const auto& m : g) {
      const TensorRef& r = src->get(m + ".weight");
      rnd = r.info->dtype == DType::BF16 ? SourceRounding::kBF16 : SourceRounding::kF32;
      bool finite = true;
      amax = std::max(amax, weight_amax(view_of(r), threads, &finite));
      if (!resident) r.release();  // read again when encoded; keeps resident memory to one tensor
      if (!finite) fail_input(r.file->path() + ": tensor '" + m + ".weight' holds NaN or Inf (absmax refuses non-finite weights)");
    }
    // F16 sources: computed in f32 (compressed-tensors would overflow in F16; documented deviation).
    const float gs = absmax_global_scale(amax, rnd);
    for (const auto& m : g) {
      const TensorRef& r = src->get(m + ".weight");
      absmax_encode(view_of(r), gs, o.canonical_zero, threads, K, enc);
      r.release();
      encoded[m] = emit(m);
    }
  };
  if (!group_order.empty()) for (const auto& m : groups[group_order[0]]) prefetch(m);
  // After the first group's read-ahead: a cold run waits on that, not on the tokenizer copy.
  io.call([&] { copy_other_files(*src, out, {"config.json", "hf_quant_config.json", "fp4z_rd_report.json"}); });

  for (const auto& n : rd ? rd->write_order(src->names) : src->names) {
    const TensorRef& r = src->get(n);
    if (drop_head && n == "lm_head.weight") {
      prog.advance(1, r.info->nbytes(), n);
      continue;
    }
    std::string m = ends_with(n, ".weight") ? strip_suffix(n, ".weight") : "";
    if (m.empty() || !qset.count(m)) {
      io.copy(n, input.file_of(r), ShardInputs::offset_of(r));
      prog.advance(1, r.info->nbytes(), n);
      continue;
    }
    if (rd) {
      rd->encode(m, enc);
      r.release();
      res.layers.push_back(emit(m));
    } else {
      if (!encoded.count(m)) encode_group(group_of.at(m));
      res.layers.push_back(std::move(encoded.at(m)));
      encoded.erase(m);
    }
    prog.advance(1, r.info->nbytes(), n);
  }
  io.finish();
  prog.finish();
  for (const auto& [m, why] : plan.kept) {
    LayerResult lr;
    lr.name = m;
    lr.quantized = false;
    lr.kept_reason = why;
    const TensorInfo& t = *src->get(m + ".weight").info;
    lr.rows = t.shape[0];
    lr.cols = t.shape[1];
    res.layers.push_back(lr);
  }
  writer.finish();

  std::vector<std::string> ignore;
  bool has_lm_head = false;
  for (const auto& [m, why] : plan.kept) {
    ignore.push_back(m);
    has_lm_head |= (m == "lm_head");
  }
  if (!has_lm_head) ignore.insert(ignore.begin(), "lm_head");  // a Linear module even when tied/absent
  std::sort(ignore.begin(), ignore.end());
  if (modelopt) {
    json excl = ignore;
    json hf = {{"producer", {{"name", "fp4z"}, {"version", "0.1.0"}}},
               {"quantization", {{"quant_algo", "W4A16_NVFP4"}, {"kv_cache_quant_algo", nullptr}, {"group_size", 16}, {"exclude_modules", excl}}}};
    write_json_file(out.path("hf_quant_config.json"), hf);
    json wq = {{"dynamic", false}, {"num_bits", 4}, {"type", "float"}, {"group_size", 16}};
    cfg["quantization_config"] = {{"config_groups", {{"group_0", {{"input_activations", nullptr}, {"weights", wq}, {"targets", {"Linear"}}}}}},
                                  {"ignore", excl}, {"quant_algo", "W4A16_NVFP4"}, {"producer", {{"name", "fp4z"}, {"version", "0.1.0"}}},
                                  {"quant_method", "modelopt"}};
  } else {
    cfg["quantization_config"] = quantization_config_ct(ignore, o.legacy_config);
  }
  declare_bf16_compute(cfg);
  write_json_file(out.path("config.json"), cfg);
  if (rd) {
    write_json_file(out.path("fp4z_rd_report.json"), rd->report());
    res.rd_lambda = rd->lambda();
    res.rd_bits_per_weight = rd->bits_per_weight();
  }
  out.commit();
  aggregate(res);
}

// ------------------------------------------------------------------------------------------
// seed

struct SeedLayer {
  std::string prefix;
  const TensorRef* w;       // source weight
  const TensorRef* packed;  // template
  const TensorRef* scale;
  const TensorRef* gscale;
  int64_t R, C;
  float g_t;
  float g1 = 1;
  std::shared_ptr<SeedScales> scales;  // steps 1-3 and their maximum M from the planning pass (per code: kept, not redone)
};

std::vector<SeedLayer> plan_seed(const Checkpoint& src, const Checkpoint& tpl, const QuantizeOptions& o) {
  std::vector<std::string> prefixes;
  std::set<std::string> seen;
  for (const auto& n : tpl.names) {
    Nvfp4NameRole nr = classify_nvfp4_name(n);
    if (nr.role == Nvfp4Role::kNone || nr.role == Nvfp4Role::kWeight || !seen.insert(nr.module).second) continue;
    const std::string& p = nr.module;
    if (!o.include.empty() && !glob_match_any(o.include, p)) continue;
    if (glob_match_any(o.exclude, p)) continue;
    prefixes.push_back(p);
  }
  std::sort(prefixes.begin(), prefixes.end());  // byte order, as Python sorts str
  std::vector<SeedLayer> layers;
  for (const auto& p : prefixes) {
    Nvfp4Lookup found = find_nvfp4_tensors(tpl, p);
    if (found.convention != Nvfp4Convention::kCompressedTensors)
      fail_input(tpl.dir + ": '" + p + "' is " + nvfp4_convention_name(found.convention) +
                 " NVFP4; --template must be a compressed-tensors checkpoint");
    const TensorRef* w = src.find(p + ".weight");
    if (!w) fail_input(src.dir + ": source has no tensor '" + p + ".weight' for template layer '" + p + "'");
    check_float_source(*w, "weight");
    const auto& ws = w->info->shape;
    if (ws.size() != 2) fail_input(src.dir + ": '" + p + ".weight' is not 2-D");
    if (ws[1] % 16 != 0) fail_input(src.dir + ": '" + p + ".weight' has K = " + std::to_string(ws[1]) + ", not a multiple of 16");
    Nvfp4Tensors q = require_nvfp4_tensors(found, ws[0], ws[1]);
    SeedLayer L;
    L.prefix = p;
    L.w = w;
    L.packed = q.codes;
    L.scale = q.block_scales;
    L.gscale = found.global_scale;
    L.R = ws[0];
    L.C = ws[1];
    L.g_t = q.global_scale;
    const TensorRef* sc = q.block_scales;
    // Planning pass: steps 1-3 are tabulated per scale code (with their maximum M, which sets the global
    // scale); the encoding takes the block scales from these tables.
    L.scales = std::make_shared<SeedScales>(seed_scales(sc->data(), size_t(L.R) * size_t(L.C / 16), L.g_t, o.alpha));
    if (L.scales->bad_block >= 0)
      fail_input(tpl.dir + ": '" + sc->info->name + "' holds a negative or NaN scale at block " + std::to_string(L.scales->bad_block));
    sc->release();
    if (!std::isfinite(L.scales->M)) fail_input(tpl.dir + ": '" + p + "': block scales divided by the global scale are not finite");
    layers.push_back(std::move(L));
  }
  if (layers.empty()) fail_input(tpl.dir + ": no template layer (NVFP4 module) selected");
  return layers;
}

// Python's json writes NaN and +-Infinity (e.g. the MSE of a layer whose weights overflow f32 when
// squared); nlohmann cannot, so non-finite values become sentinel strings patched after dump().
json py_number(double v) {
  if (std::isnan(v)) return "__fp4z_NaN__";
  if (std::isinf(v)) return v > 0 ? "__fp4z_Infinity__" : "__fp4z_-Infinity__";
  return v;
}

std::string dump_python_style(const json& j) {
  std::string text = j.dump(2);
  for (const char* tok : {"NaN", "Infinity", "-Infinity"}) {
    std::string sentinel = std::string("\"__fp4z_") + tok + "__\"";
    for (size_t p; (p = text.find(sentinel)) != std::string::npos;) text.replace(p, sentinel.size(), tok);
  }
  return text;
}

json metrics_json(const LayerMetrics& m) {
  return json{{"mean_entropy_bits", py_number(m.mean_entropy_bits)}, {"std_entropy_bits", py_number(m.std_entropy_bits)},
              {"compression_rate", py_number(m.compression_rate)}, {"compressed_size_ratio", py_number(m.compressed_size_ratio)},
              {"effective_bits_per_weight", py_number(m.effective_bits_per_weight)}, {"mse_to_baseline", py_number(m.mse)},
              {"global_scale", py_number(m.global_scale)}, {"scale_ratio_mean", py_number(m.scale_ratio_mean)},
              {"scale_ratio_std", py_number(m.scale_ratio_std)}, {"zero_fraction", py_number(m.zero_fraction)},
              {"small_code_fraction", py_number(m.small_code_fraction)}, {"n_chunks", m.n_chunks}};
}

void run_seed(const QuantizeOptions& o, QuantizeResult& res) {
  if (o.template_dir.empty()) fail_input("--method seed needs --template NVFP4_DIR");
  if (!(o.alpha > 0.0f) || !std::isfinite(o.alpha)) fail_input("--alpha must be a positive number");
  auto src = open_checkpoint(o.source);
  auto tpl = open_checkpoint(o.template_dir);
  std::vector<SeedLayer> layers = plan_seed(*src, *tpl, o);

  // Global scales: per tensor (reference), or per complete fused group (--fused-global-scale).
  std::vector<std::string> prefixes;
  std::unordered_map<std::string, SeedLayer*> by_prefix;
  for (auto& L : layers) {
    prefixes.push_back(L.prefix);
    by_prefix[L.prefix] = &L;
  }
  for (auto& L : layers) L.g1 = seed_global_scale(L.scales->M);
  for (const auto& g : group_fused(prefixes)) {
    std::string key = fused_group_key(g[0]);
    if (key.empty()) continue;
    // Complete = every member the template quantized (a member the template kept unquantized, or
    // that the model lacks, does not make the group partial).
    size_t want = 0;
    std::string parent = key.substr(0, key.rfind('#'));
    for (const auto& leaf : fused_group_members(key)) want += find_nvfp4_tensors(*tpl, parent + "." + leaf).quantized();
    if (o.fused_global_scale) {
      if (g.size() != want)
        fail_input("--fused-global-scale: the selection holds only part of the fused group of '" + g[0] + "' (" +
                   std::to_string(g.size()) + " of the template's " + std::to_string(want) + " quantized members)");
      float MG = 0;
      for (const auto& p : g) MG = std::max(MG, by_prefix[p]->scales->M);
      float gG = seed_global_scale(MG);
      for (const auto& p : g) by_prefix[p]->g1 = gG;
    } else if (g.size() > 1) {
      float gmax = 0;
      for (const auto& p : g) gmax = std::max(gmax, by_prefix[p]->g1);
      for (const auto& p : g) {
        float f = by_prefix[p]->g1 / gmax;
        if (f < 1.0f) {
          res.worst_fused_factor = std::min(res.worst_fused_factor, double(f));
          char buf[256];
          std::snprintf(buf, sizeof buf, "%s: global scale %.6g differs from its fused group's max %.6g: vLLM would dequantize it x%.3f",
                        p.c_str(), by_prefix[p]->g1, gmax, f);
          res.warnings.push_back(buf);
        }
      }
    }
  }

  std::vector<TensorSpec> specs;
  for (const auto& n : tpl->names) {
    const TensorInfo& t = *tpl->get(n).info;
    specs.push_back({n, t.dtype, t.shape});
  }
  StagedDir out(o.out, o.force);
  std::vector<std::pair<std::string, std::string>> meta;
  for (const auto& f : tpl->files)
    for (const auto& kv : f->metadata) meta.push_back(kv);
  CheckpointWriter writer(out.temp, specs, o.max_shard_bytes, meta);
  const int threads = resolve_threads(o.threads);
  const NvKernels& K = nv_kernels(o.isa);
  uint64_t total_bytes = 0;
  for (auto& L : layers) total_bytes += L.w->info->nbytes();
  res.input_bytes = total_bytes;
  Progress prog("seed", layers.size(), total_bytes, o.quiet);
  std::set<std::string> replaced;

  json jl = json::array();
  ShardInputs src_in(*src), tpl_in(*tpl);
  LayerEncoding enc;  // reused across layers (buffers keep their pages); outlives io, which writes from it
  IoQueue io(writer);
  auto prefetch = [&](const ShardInputs& in, const TensorRef& r) {
    io.prefetch(in.file_of(r), ShardInputs::offset_of(r), r.info->nbytes());
  };
  auto prefetch_layer = [&](const SeedLayer& L) {
    prefetch(src_in, *L.w);
    prefetch(tpl_in, *L.packed);
    prefetch(tpl_in, *L.scale);
  };
  if (!layers.empty()) prefetch_layer(layers[0]);
  // After the first layer's read-ahead: a cold run waits on that, not on the tokenizer copy.
  io.call([&] { copy_other_files(*tpl, out, {"nvfp4_scale_inflation_from_full_precision_export.json"}); });
  for (size_t li = 0; li < layers.size(); ++li) {
    SeedLayer& L = layers[li];
    if (li + 1 < layers.size()) prefetch_layer(layers[li + 1]);
    const size_t R = size_t(L.R), C = size_t(L.C);
    const SeedScales& sc = *L.scales;
    // The template's own tensor names (its module's compressed-tensors triple).
    const std::string packed_name = L.packed->info->name, scale_name = L.scale->info->name, global_name = L.gscale->info->name;
    // Each finished segment of rows goes to the file (and the disk) while the next is encoded.
    seed_encode(view_of(*L.w), L.packed->data(), sc, L.g_t, L.g1, o.canonical_zero, threads, K, enc, [&](size_t r0, size_t r1) {
      io.write_part(packed_name, r0 * C / 2, enc.packed.data() + r0 * C / 2, (r1 - r0) * C / 2);
      io.write_part(scale_name, r0 * (C / 16), enc.scales.data() + r0 * (C / 16), (r1 - r0) * (C / 16));
    });
    // The last layer's input pages are released (unmapped) on the I/O thread, off the critical path
    // to the final fsync; earlier layers' right here, so that at most one layer's stay resident.
    auto release_inputs = [&L] {
      L.w->release();
      L.packed->release();
      L.scale->release();
    };
    if (li + 1 < layers.size()) release_inputs();
    else io.call(release_inputs);
    io.complete(packed_name, std::move(enc.packed));
    io.complete(scale_name, std::move(enc.scales));
    enc.packed = io.spare();
    enc.scales = io.spare();
    ByteBuffer gbytes(L.gscale->info->nbytes(), 0);
    std::memcpy(gbytes.data(), &L.g1, 4);
    io.write(global_name, std::move(gbytes));
    replaced.insert(packed_name);
    replaced.insert(scale_name);
    replaced.insert(global_name);

    LayerResult lr;
    lr.name = L.prefix;
    lr.rows = L.R;
    lr.cols = L.C;
    lr.has_baseline = true;
    uint64_t numel = uint64_t(R) * C;
    lr.baseline = enc.baseline;
    lr.result = enc.metrics;

    jl.push_back(json{{"layer", L.prefix}, {"shape", {L.R, L.C}}, {"num_weights", numel},
                      {"baseline", metrics_json(lr.baseline)}, {"alpha_only", metrics_json(lr.result)}, {"optimized", nullptr}});
    res.layers.push_back(std::move(lr));
    prog.advance(1, L.w->info->nbytes(), L.prefix);
  }
  for (const auto& n : tpl->names)
    if (!replaced.count(n)) {
      const TensorRef& r = tpl->get(n);
      io.copy(n, tpl_in.file_of(r), ShardInputs::offset_of(r));
    }
  io.finish();
  prog.finish();
  writer.finish();

  aggregate(res);
  json report;
  report["full_precision_model_dir"] = o.source;
  report["template_nvfp4_dir"] = o.template_dir;
  report["output_dir"] = o.out;
  report["alpha"] = py_number(double(o.alpha));
  report["num_modified_layers"] = layers.size();
  report["num_optimized_layers"] = 0;
  report["include_patterns"] = o.include;
  report["exclude_patterns"] = o.exclude;
  report["aggregate"] = {{"num_layers", layers.size()}, {"num_optimized_layers", 0},
                         {"baseline_weighted_compression_rate", py_number(res.base_proxy)},
                         {"alpha_only_weighted_compression_rate", py_number(res.new_proxy)},
                         {"baseline_weighted_mse", py_number(res.base_mse)}, {"alpha_only_weighted_mse", py_number(res.new_mse)}};
  report["layers"] = jl;
  std::string text = dump_python_style(report);
  {
    std::string path = out.path("nvfp4_scale_inflation_from_full_precision_export.json");
    FILE* f = std::fopen(path.c_str(), "wb");
    if (!f || std::fwrite(text.data(), 1, text.size(), f) != text.size() || std::fclose(f) != 0) fail_io(path + ": write failed");
  }
  out.commit();
}

}  // namespace

QuantizeResult quantize_checkpoint(const QuantizeOptions& opts) {
  QuantizeOptions o = opts;
  Isa best = detect_isa();
  if (int(o.isa) > int(best)) o.isa = best;
  if (o.format != "compressed-tensors" && o.format != "modelopt") fail_input("--format must be compressed-tensors or modelopt");
  if (o.method == "seed" && o.format != "compressed-tensors") fail_input("seed mode writes the template's format (compressed-tensors)");
  auto t0 = std::chrono::steady_clock::now();
  QuantizeResult res;
  if (o.method == "absmax") run_absmax(o, res);
  else if (o.method == "seed") run_seed(o, res);
  else if (o.method == "rd") run_absmax(o, res);  // the absmax plan and writer with RdJob's encodings
  else fail_input("unknown --method '" + o.method + "' (expected absmax, seed or rd)");
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

}  // namespace fp4z
