// NVFP4 checkpoint validation: tensor inventory, dtypes/shapes, scale scans, fused groups, config and ignore list.
#include "pipeline/check.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <regex>
#include <set>
#include <sstream>

#include "common/error.h"
#include "common/glob.h"
#include "common/mapped_file.h"
#include "common/parallel.h"
#include "common/progress.h"
#include "format/checkpoint.h"
#include "format/dtype.h"
#include "format/nvfp4_tensors.h"
#include "nvfp4/measure.h"
#include "pipeline/fused_groups.h"

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

namespace fp4z {

const char* check_kind_name(CheckKind k) {
  switch (k) {
    case CheckKind::kConfig: return "config";
    case CheckKind::kMetadata: return "metadata";
    case CheckKind::kMissingTensor: return "missing_tensor";
    case CheckKind::kExtraTensor: return "extra_tensor";
    case CheckKind::kDtype: return "dtype";
    case CheckKind::kShape: return "shape";
    case CheckKind::kKNotMultipleOf16: return "k_not_multiple_of_16";
    case CheckKind::kBadGlobalScale: return "bad_global_scale";
    case CheckKind::kNanScale: return "nan_scale";
    case CheckKind::kNegativeScale: return "negative_scale";
    case CheckKind::kZeroScaleNonzeroCodes: return "zero_scale_nonzero_codes";
    case CheckKind::kIgnore: return "ignore";
    case CheckKind::kFusedDecision: return "fused_decision";
    case CheckKind::kFusedGlobalScale: return "fused_global_scale";
    case CheckKind::kFusedInputScale: return "fused_input_scale";
    case CheckKind::kMarlin: return "marlin";
    case CheckKind::kNoQuantizedLinear: return "no_quantized_linear";
  }
  return "unknown";
}

size_t CheckReport::errors() const {
  return size_t(std::count_if(findings.begin(), findings.end(), [](const CheckFinding& f) { return f.severity == CheckSeverity::Error; }));
}
size_t CheckReport::infos() const { return findings.size() - errors(); }

namespace {

// The finding kind of a fault of the shared NVFP4 lookup.
CheckKind check_kind_of(Nvfp4FaultKind k) {
  switch (k) {
    case Nvfp4FaultKind::kMissingTensor: return CheckKind::kMissingTensor;
    case Nvfp4FaultKind::kDtype: return CheckKind::kDtype;
    case Nvfp4FaultKind::kShape: return CheckKind::kShape;
    case Nvfp4FaultKind::kKNotMultipleOf16: return CheckKind::kKNotMultipleOf16;
    case Nvfp4FaultKind::kBadGlobalScale: return CheckKind::kBadGlobalScale;
  }
  return CheckKind::kShape;
}

const char* kFormatName = "nvfp4-pack-quantized";

std::string fmt_g(double v, int digits = 9) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*g", digits, v);
  return buf;
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string o = "[";
  for (size_t i = 0; i < s.size(); ++i) o += (i ? ", " : "") + std::to_string(s[i]);
  return o + "]";
}

std::string leaf_of(const std::string& module) {
  size_t p = module.rfind('.');
  return p == std::string::npos ? module : module.substr(p + 1);
}
std::string parent_of(const std::string& module) {
  size_t p = module.rfind('.');
  return p == std::string::npos ? std::string() : module.substr(0, p);
}

// The member of a fused group whose scale vLLM's MoE kernels use for the whole group (gate/w1).
std::string gate_member_of(const std::vector<std::string>& leaves) {
  for (const auto& l : leaves)
    if (l == "gate_proj" || l == "w1") return l;
  return "";
}

bool is_moe_expert(const std::string& module) { return module.find(".experts.") != std::string::npos; }

struct Module {
  std::string name;
  std::map<std::string, const TensorRef*> roles;  // by role suffix ("weight", "weight_scale", ...)
  Nvfp4Lookup nv;                                 // the shared lookup (format/nvfp4_tensors.h)
  bool quantized = false;
  bool linear = false;  // Linear-looking (by leaf) with a 2-D weight, or quantized
  const TensorRef* role(const std::string& r) const {
    auto it = roles.find(r);
    return it == roles.end() ? nullptr : it->second;
  }
};

// One compressed-tensors config group, reduced to what the check needs.
struct ConfigGroup {
  std::string name;
  std::vector<std::string> targets;
  std::vector<std::regex> target_regexes;  // compiled `re:` targets
  bool input_activations = false;
};

// A `re:` or exact-name pattern list (compressed-tensors `ignore`/`targets`), or fnmatch globs (ModelOpt).
struct NamePatterns {
  std::vector<std::string> exact;
  std::vector<std::pair<std::string, std::regex>> regexes;
  std::vector<std::string> globs;
  bool matches(const std::string& name) const {
    for (const auto& e : exact)
      if (e == name) return true;
    for (const auto& [src, re] : regexes)
      if (std::regex_search(name, re, std::regex_constants::match_continuous)) return true;
    return glob_match_any(globs, name);
  }
};

// The shared state of one check run.
struct Checker {
  CheckReport& rep;
  const Checkpoint& ck;
  int threads;
  json config;  // null when config.json is absent
  json hf_quant;  // null when hf_quant_config.json is absent
  bool modelopt = false;
  bool w4a4 = false;  // ModelOpt NVFP4 (not W4A16_NVFP4)
  std::vector<ConfigGroup> groups;
  bool ct_config_usable = false;
  NamePatterns ignore;  // CT ignore, or ModelOpt exclude_modules
  std::map<std::string, Module> modules;
  std::vector<std::string> other_tensors;  // tensors with no recognised role

  bool quiet = true;

  Checker(CheckReport& report, const Checkpoint& checkpoint, int n_threads, bool quiet_progress)
      : rep(report), ck(checkpoint), threads(n_threads), quiet(quiet_progress) {}

  void add(CheckSeverity sev, CheckKind kind, const std::string& tensor, const std::string& msg,
           const std::string& loader, std::vector<std::string> details = {}) {
    rep.findings.push_back(CheckFinding{sev, kind, tensor, msg, loader, std::move(details)});
  }
  void error(CheckKind kind, const std::string& tensor, const std::string& msg, const std::string& loader,
             std::vector<std::string> details = {}) {
    add(CheckSeverity::Error, kind, tensor, msg, loader, std::move(details));
  }
  void info(CheckKind kind, const std::string& tensor, const std::string& msg, const std::string& loader = "") {
    add(CheckSeverity::Info, kind, tensor, msg, loader);
  }

  void build_patterns(const json& list, const std::string& where, NamePatterns& out, bool globs) {
    if (list.is_null()) return;
    if (!list.is_array()) {
      error(CheckKind::kConfig, where, "must be a list of module names", "compressed-tensors rejects the config");
      return;
    }
    for (const auto& e : list) {
      if (!e.is_string()) {
        error(CheckKind::kConfig, where, "contains a non-string entry " + e.dump(), "compressed-tensors rejects the config");
        continue;
      }
      std::string s = e.get<std::string>();
      if (!globs && s.rfind("re:", 0) == 0) {
        try {
          out.regexes.emplace_back(s, std::regex(s.substr(3), std::regex::ECMAScript));
        } catch (const std::regex_error&) {
          info(CheckKind::kConfig, where, "entry '" + s + "' is not a regular expression fp4z can evaluate; it is treated as matching nothing");
        }
      } else if (globs && s.find_first_of("*?[") != std::string::npos) {
        out.globs.push_back(s);
      } else {
        out.exact.push_back(s);
      }
    }
  }

  // Splits tensor names into modules and roles; quantized = the shared lookup finds NVFP4 tensors
  // (or the module carries compressed-tensors-only quantization tensors).
  void index_tensors() {
    for (const auto& name : ck.names) {
      Nvfp4NameRole nr = classify_nvfp4_name(name);
      if (nr.role == Nvfp4Role::kNone) {
        other_tensors.push_back(name);
        continue;
      }
      Module& mod = modules[nr.module];
      mod.name = nr.module;
      mod.roles[nr.suffix] = ck.find(name);
    }
    for (auto& [name, m] : modules) {
      m.nv = find_nvfp4_tensors(ck, name);
      if (!m.nv.quantized() && (m.role("weight_zero_point") || m.role("weight_shape")))
        m.nv.convention = Nvfp4Convention::kCompressedTensors;
      m.quantized = m.nv.quantized();
      const TensorRef* w = m.role("weight");
      bool two_d = w && w->info->shape.size() == 2;
      m.linear = m.quantized || (two_d && is_linear_leaf(leaf_of(name)));
    }
    rep.tensors = ck.names.size();
  }

  void check_metadata() {
    for (const auto& f : ck.files) {
      std::string fmt;
      bool has = false;
      for (const auto& [k, v] : f->metadata)
        if (k == "format") {
          has = true;
          fmt = v;
        }
      std::string file = fs::path(f->path()).filename().string();
      if (!has)
        error(CheckKind::kMetadata, file, "safetensors __metadata__ has no \"format\": \"pt\" entry",
              "some transformers versions crash or refuse to load the file");
      else if (fmt != "pt")
        error(CheckKind::kMetadata, file, "safetensors __metadata__ format is \"" + fmt + "\", not \"pt\"",
              "transformers refuses files whose format is not pt (or loads them through another framework)");
    }
  }

  // ---- configuration -------------------------------------------------------------------------

  static bool is_str(const json& o, const char* k, const char* v) {
    return o.contains(k) && o[k].is_string() && o[k].get<std::string>() == v;
  }
  static bool is_int(const json& o, const char* k, int64_t v) {
    return o.contains(k) && o[k].is_number_integer() && o[k].get<int64_t>() == v;
  }

  // Checks the QuantizationArgs of weights or input_activations of one group.
  void check_quant_args(const json& a, const std::string& where, bool weights) {
    static const std::set<std::string> kKnown = {"num_bits", "type", "symmetric", "group_size", "strategy",
                                                 "block_structure", "dynamic", "actorder", "scale_dtype", "zp_dtype",
                                                 "observer", "observer_kwargs"};
    const std::string reject = "compressed-tensors rejects the config (transformers and vLLM cannot load it)";
    const std::string scheme = "vLLM does not recognise the NVFP4 scheme and refuses to load the model";
    if (!a.is_object()) {
      error(CheckKind::kConfig, where, "must be an object", reject);
      return;
    }
    for (auto it = a.begin(); it != a.end(); ++it)
      if (!kKnown.count(it.key()))
        error(CheckKind::kConfig, where + "." + it.key(), "unknown quantization argument",
              "compressed-tensors >= 0.11 forbids unknown keys and rejects the config");
    if (!is_str(a, "strategy", "tensor_group"))
      error(CheckKind::kConfig, where + ".strategy", "must be \"tensor_group\" (found " + (a.contains("strategy") ? a["strategy"].dump() : "nothing") + ")", scheme);
    if (!is_str(a, "type", "float"))
      error(CheckKind::kConfig, where + ".type", "must be \"float\" (found " + (a.contains("type") ? a["type"].dump() : "nothing") + ")", scheme);
    if (!is_int(a, "num_bits", 4))
      error(CheckKind::kConfig, where + ".num_bits", "must be 4 (found " + (a.contains("num_bits") ? a["num_bits"].dump() : "nothing") + ")", scheme);
    if (!is_int(a, "group_size", 16))
      error(CheckKind::kConfig, where + ".group_size", "must be 16 (found " + (a.contains("group_size") ? a["group_size"].dump() : "nothing") + ")", scheme);
    if (!(a.contains("symmetric") && a["symmetric"].is_boolean() && a["symmetric"].get<bool>()))
      error(CheckKind::kConfig, where + ".symmetric", "must be true (found " + (a.contains("symmetric") ? a["symmetric"].dump() : "nothing") + ")", scheme);
    if (a.contains("observer") && !a["observer"].is_null() && !a["observer"].is_string())
      error(CheckKind::kConfig, where + ".observer", "must be a string or null", reject);
    if (a.contains("observer_kwargs") && !a["observer_kwargs"].is_object())
      error(CheckKind::kConfig, where + ".observer_kwargs", "must be an object", reject);
    if (weights && (a.contains("scale_dtype") || a.contains("zp_dtype")))
      info(CheckKind::kConfig, where, "contains scale_dtype/zp_dtype: compressed-tensors <= 0.12 rejects such configs (fine for >= 0.13)");
  }

  void check_ct_config() {
    const std::string cfg = "config.json";
    if (config.is_null()) {
      error(CheckKind::kConfig, cfg, "config.json is missing", "transformers and vLLM cannot load a checkpoint without config.json");
      return;
    }
    if (!config.is_object()) {
      error(CheckKind::kConfig, cfg, "config.json is not a JSON object", "transformers and vLLM cannot load the model");
      return;
    }
    if (!config.contains("quantization_config") || !config["quantization_config"].is_object()) {
      error(CheckKind::kConfig, cfg, "has no quantization_config object",
            "loaders treat the model as unquantized; any weight_packed/weight_scale tensors cannot be loaded");
      return;
    }
    const json& qc = config["quantization_config"];
    const std::string q = "quantization_config";
    if (!is_str(qc, "quant_method", "compressed-tensors"))
      error(CheckKind::kConfig, q + ".quant_method", "must be \"compressed-tensors\" (found " + (qc.contains("quant_method") ? qc["quant_method"].dump() : "nothing") + ")",
            "loaders pick another (or no) quantization method and cannot load the packed weights");
    if (!is_str(qc, "quantization_status", "compressed"))
      error(CheckKind::kConfig, q + ".quantization_status", "must be \"compressed\" (found " + (qc.contains("quantization_status") ? qc["quantization_status"].dump() : "nothing") + ")",
            "transformers decompresses NVFP4 weights only when the status is \"compressed\"");
    std::string top;
    if (qc.contains("format")) {
      if (qc["format"].is_string()) top = qc["format"].get<std::string>();
      else error(CheckKind::kConfig, q + ".format", "must be a string", "compressed-tensors rejects the config");
    }
    if (!top.empty() && top != kFormatName && top != "mixed-precision")
      error(CheckKind::kConfig, q + ".format", "is \"" + top + "\", expected \"" + kFormatName + "\"",
            "compressed-tensors picks another compressor and cannot decompress the packed NVFP4 tensors");
    if (!qc.contains("config_groups") || !qc["config_groups"].is_object() || qc["config_groups"].empty()) {
      error(CheckKind::kConfig, q + ".config_groups", "is missing or empty", "no Linear is treated as quantized; loading the packed tensors fails");
    } else {
      for (auto it = qc["config_groups"].begin(); it != qc["config_groups"].end(); ++it) {
        std::string where = q + ".config_groups." + it.key();
        const json& g = it.value();
        if (!g.is_object()) {
          error(CheckKind::kConfig, where, "must be an object", "compressed-tensors rejects the config");
          continue;
        }
        static const std::set<std::string> kScheme = {"targets", "weights", "input_activations", "output_activations", "format"};
        for (auto k = g.begin(); k != g.end(); ++k)
          if (!kScheme.count(k.key()))
            error(CheckKind::kConfig, where + "." + k.key(), "unknown quantization scheme key",
                  "compressed-tensors >= 0.11 forbids unknown keys and rejects the config");
        ConfigGroup cg;
        cg.name = it.key();
        if (g.contains("format") && !g["format"].is_null()) {
          if (!g["format"].is_string() || g["format"].get<std::string>() != kFormatName)
            error(CheckKind::kConfig, where + ".format", "is " + g["format"].dump() + ", expected \"" + kFormatName + "\"",
                  "compressed-tensors picks another compressor for this group");
        } else if (top.empty() || top == "mixed-precision") {
          error(CheckKind::kConfig, where + ".format", "no format for this group (top-level format is " + (top.empty() ? std::string("missing") : top) + ")",
                "compressed-tensors cannot tell how the group is compressed");
        }
        if (!g.contains("targets") || !g["targets"].is_array() || g["targets"].empty()) {
          error(CheckKind::kConfig, where + ".targets", "is missing or empty", "the group applies to no module");
        } else {
          for (const auto& t : g["targets"]) {
            if (!t.is_string()) {
              error(CheckKind::kConfig, where + ".targets", "contains a non-string entry", "compressed-tensors rejects the config");
              continue;
            }
            std::string ts = t.get<std::string>();
            if (ts.rfind("re:", 0) == 0) {
              try {
                cg.target_regexes.emplace_back(ts.substr(3), std::regex::ECMAScript);
              } catch (const std::regex_error&) {
                info(CheckKind::kConfig, where + ".targets", "entry '" + ts + "' is not a regular expression fp4z can evaluate; it is treated as matching nothing");
              }
            } else {
              cg.targets.push_back(ts);
            }
          }
        }
        if (!g.contains("weights") || g["weights"].is_null())
          error(CheckKind::kConfig, where + ".weights", "is missing", "the group quantizes no weights; the packed tensors cannot be loaded");
        else
          check_quant_args(g["weights"], where + ".weights", true);
        if (g.contains("input_activations") && !g["input_activations"].is_null()) {
          cg.input_activations = true;
          check_quant_args(g["input_activations"], where + ".input_activations", false);
        }
        if (g.contains("output_activations") && !g["output_activations"].is_null())
          error(CheckKind::kConfig, where + ".output_activations", "must be null for NVFP4", "vLLM does not support output activation quantization");
        groups.push_back(std::move(cg));
      }
    }
    if (qc.contains("ignore")) build_patterns(qc["ignore"], q + ".ignore", ignore, false);
    ct_config_usable = !groups.empty();
  }

  void check_modelopt_config() {
    const std::string reject = "vLLM's ModelOpt loader refuses the quantization config";
    json quant;
    if (!hf_quant.is_null()) {
      if (!hf_quant.is_object() || !hf_quant.contains("quantization") || !hf_quant["quantization"].is_object()) {
        error(CheckKind::kConfig, "hf_quant_config.json", "has no \"quantization\" object", reject);
      } else {
        quant = hf_quant["quantization"];
        for (const char* k : {"group_size", "kv_cache_quant_algo", "exclude_modules"})
          if (!quant.contains(k)) error(CheckKind::kConfig, std::string("hf_quant_config.json quantization.") + k, "key is missing", reject);
      }
    }
    if (config.is_null()) {
      error(CheckKind::kConfig, "config.json", "config.json is missing", "transformers and vLLM cannot load a checkpoint without config.json");
    } else if (config.is_object() && config.contains("quantization_config") && config["quantization_config"].is_object()) {
      const json& qc = config["quantization_config"];
      if (!is_str(qc, "quant_method", "modelopt"))
        error(CheckKind::kConfig, "quantization_config.quant_method", "must be \"modelopt\" (found " + (qc.contains("quant_method") ? qc["quant_method"].dump() : "nothing") + ")",
              "vLLM picks another quantization method and cannot load the ModelOpt tensors");
      if (quant.is_null()) quant = qc;
    } else if (hf_quant.is_null()) {
      error(CheckKind::kConfig, "config.json", "no quantization_config and no hf_quant_config.json",
            "loaders treat the model as unquantized and fail on the packed weights");
    } else {
      info(CheckKind::kConfig, "config.json", "has no quantization_config block; vLLM reads hf_quant_config.json, other loaders may not");
    }
    if (quant.is_null()) return;
    std::string algo = quant.contains("quant_algo") && quant["quant_algo"].is_string() ? quant["quant_algo"].get<std::string>() : "";
    if (algo == "NVFP4") w4a4 = true;
    else if (algo != "W4A16_NVFP4")
      error(CheckKind::kConfig, "quant_algo", "is \"" + algo + "\", expected \"NVFP4\" or \"W4A16_NVFP4\"", "vLLM does not select its NVFP4 path");
    if (quant.contains("group_size") && !is_int(quant, "group_size", 16))
      error(CheckKind::kConfig, "group_size", "must be 16 (found " + quant["group_size"].dump() + ")", "vLLM rejects NVFP4 with another group size");
    if (quant.contains("exclude_modules")) build_patterns(quant["exclude_modules"], "exclude_modules", ignore, true);
    else if (quant.contains("ignore")) build_patterns(quant["ignore"], "ignore", ignore, true);
  }

  // ---- per-module tensor checks --------------------------------------------------------------

  // Reports the numeric scan of a module's block scales (and the codes of zero-scale blocks).
  void report_block_scales(const TensorRef* scale, const TensorRef* packed) {
    const uint64_t groups = uint64_t(scale->info->shape[1]);
    BlockScaleScan r = scan_block_scales(scale->data(), packed ? packed->data() : nullptr, size_t(scale->info->shape[0]),
                                         size_t(groups), threads);
    const std::string& n = scale->info->name;
    auto where = [&](uint64_t at) {
      return "first at row " + std::to_string(at / groups) + ", block " + std::to_string(at % groups) + " (columns " +
             std::to_string((at % groups) * 16) + ".." + std::to_string((at % groups) * 16 + 15) + ")";
    };
    if (r.nan)
      error(CheckKind::kNanScale, n, std::to_string(r.nan) + " block scale(s) are NaN (0x7F/0xFF), " + where(r.first_nan),
            "the whole 16-weight block dequantizes to NaN, and NaN spreads through every activation downstream");
    if (r.negative)
      error(CheckKind::kNegativeScale, n, std::to_string(r.negative) + " block scale(s) are negative, " + where(r.first_negative),
            "the block's weights flip sign; vLLM's Marlin kernel assumes scales >= 0 (\"NVFP4 Marlin assumes the scales to be >=0\")");
    if (r.zero_nonzero_codes)
      error(CheckKind::kZeroScaleNonzeroCodes, n,
            std::to_string(r.zero_nonzero_codes) + " block(s) have a zero scale but nonzero FP4 codes, " + where(r.first_zero),
            "those weights dequantize to 0: the stored codes are silently lost");
    release_pages(scale->file->map, size_t(scale->data() - scale->file->map.data), size_t(scale->info->nbytes()));
    if (packed)
      release_pages(packed->file->map, size_t(packed->data() - packed->file->map.data), size_t(packed->info->nbytes()));
  }

  // Does any compressed-tensors config group target this module (Linear class, exact name or re:)?
  const ConfigGroup* group_for(const Module& m) {
    for (const auto& g : groups) {
      for (const auto& t : g.targets)
        if (((t == "Linear" || t == "LinearBase") && m.linear) || t == m.name) return &g;
      for (const auto& re : g.target_regexes)
        if (std::regex_search(m.name, re, std::regex_constants::match_continuous)) return &g;
    }
    return nullptr;
  }

  // Output features of each quantized Linear, for the Marlin shape remark made once at the end.
  std::map<std::string, int64_t> quantized_n;
  // vLLM checks Marlin's N on the fused layer (q+k+v, gate+up), per tensor-parallel partition.
  void report_marlin() {
    struct FusedLayer {
      std::string parent;
      std::vector<std::string> leaves;
      int64_t n = 0;
    };
    std::map<std::string, FusedLayer> layers;
    for (const auto& [name, n] : quantized_n) {
      std::string key = fused_group_key(name);
      FusedLayer& e = layers[key.empty() ? name : key];
      e.parent = parent_of(name);
      e.leaves.push_back(leaf_of(name));
      e.n += n;
    }
    std::vector<std::string> det;
    for (auto& [key, e] : layers) {
      if (e.n % 64 == 0) continue;
      std::string label = e.parent.empty() ? e.leaves[0] : e.parent + "." + e.leaves[0];
      if (e.leaves.size() > 1) {
        const std::vector<std::string> order = fused_group_members(key);
        std::sort(e.leaves.begin(), e.leaves.end(), [&](const std::string& a, const std::string& b) {
          return std::find(order.begin(), order.end(), a) < std::find(order.begin(), order.end(), b);
        });
        label = e.parent + ".{";
        for (size_t i = 0; i < e.leaves.size(); ++i) label += (i ? "," : "") + e.leaves[i];
        label += "}";
      }
      det.push_back(label + ": N = " + std::to_string(e.n));
    }
    if (det.empty()) return;
    add(CheckSeverity::Info, CheckKind::kMarlin, std::to_string(det.size()) + " layer(s)",
        "output features N not a multiple of 64 (fused groups summed, tensor parallelism 1)",
        "vLLM's Marlin kernel (Hopper and older GPUs) needs N per tensor-parallel partition % 64 == 0 and refuses "
        "these layers; Blackwell's CUTLASS path pads N and loads them",
        det);
  }

  // What a loader does with each fault of the shared lookup (format/nvfp4_tensors.h).
  std::string fault_loader(const Nvfp4Fault& f, bool mo) {
    const bool codes = f.role == Nvfp4Role::kPackedCodes, scales = f.role == Nvfp4Role::kBlockScales;
    switch (f.kind) {
      case Nvfp4FaultKind::kMissingTensor:
        return mo ? "vLLM's ModelOpt NVFP4 loader fails to load the layer"
                  : "transformers reports missing keys and leaves the parameter uninitialised; vLLM fails to load the layer";
      case Nvfp4FaultKind::kDtype:
        if (codes) return mo ? "vLLM expects packed FP4 weights as U8" : "transformers and vLLM expect packed FP4 as U8; loading fails";
        if (scales) return mo ? "vLLM expects F8_E4M3 block scales" : "transformers and vLLM expect F8_E4M3 block scales; loading fails";
        return mo ? "vLLM's ModelOpt loader cannot load the scale" : "transformers and vLLM load F32 global scales only";
      case Nvfp4FaultKind::kShape:
        if (scales && f.message.find("2-D") == std::string::npos)
          return mo ? "vLLM allocates [N, K/16] and fails with a size mismatch"
                    : "transformers and vLLM allocate [N, K/16] and fail with a size mismatch";
        return "the loader fails with a size mismatch";
      case Nvfp4FaultKind::kKNotMultipleOf16:
        return mo ? "vLLM allocates [N, K/16] scales and fails; keep this Linear unquantized and exclude it"
                  : "compressed-tensors refuses to quantize it and vLLM allocates [N, K/16] scales: keep this Linear unquantized "
                    "in its source dtype and list it in ignore";
      case Nvfp4FaultKind::kBadGlobalScale:
        if (f.message == "is zero")
          return mo ? "every dequantized weight becomes zero" : "dequantization divides by it: every weight becomes inf/NaN";
        if (f.message.rfind("is negative", 0) == 0) return "every weight changes sign; Marlin assumes non-negative scales";
        return "every dequantized weight of this Linear becomes NaN/inf (or zero)";
    }
    return "";
  }

  // One quantized module, either convention: the shared lookup's faults, then what only loaders care
  // about (extra tensors, config groups, ignore lists, activation scales, [1] vs [] scalars).
  void check_module(Module& m) {
    const std::string& n = m.name;
    const Nvfp4Lookup& nv = m.nv;
    const bool mo = nv.convention == Nvfp4Convention::kModelOpt;
    if (mo != modelopt)
      error(CheckKind::kConfig, n, std::string("stored as ") + nvfp4_convention_name(nv.convention) + " NVFP4, but the checkpoint is " +
                             (modelopt ? "ModelOpt" : "compressed-tensors"),
            "the loader looks for the other convention's tensor names and fails to load the layer");
    bool codes_ok = nv.codes != nullptr, scales_ok = nv.block_scales != nullptr;
    for (const Nvfp4Fault& f : nvfp4_faults(nv)) {
      codes_ok &= f.role != Nvfp4Role::kPackedCodes;
      scales_ok &= f.role != Nvfp4Role::kBlockScales;
      error(check_kind_of(f.kind), f.tensor, f.message, fault_loader(f, mo));
    }
    const TensorRef* input = nv.input_scale;
    if (mo) {
      if (w4a4 && !input)
        error(CheckKind::kMissingTensor, n + ".input_scale", "missing: quant_algo NVFP4 quantizes input activations",
              "vLLM's ModelOpt NVFP4 loader fails to load the layer");
      if (!w4a4 && input) info(CheckKind::kExtraTensor, input->info->name, "present although quant_algo is W4A16_NVFP4 (weight-only)", "vLLM ignores it");
      if ((!ignore.globs.empty() || !ignore.exact.empty() || !ignore.regexes.empty()) && ignore.matches(n))
        error(CheckKind::kIgnore, n, "quantized in the checkpoint but matched by exclude_modules",
              "vLLM builds an unquantized Linear for it and fails on the packed U8 weight");
    } else {
      if (nv.dense)
        error(CheckKind::kExtraTensor, nv.dense->info->name, "a dense weight next to weight_packed",
              "the compressed module has no 'weight' parameter: transformers reports an unexpected key, vLLM fails on the unknown parameter");
      for (const char* r : {"weight_zero_point", "weight_shape"})
        if (const TensorRef* t = m.role(r))
          error(CheckKind::kExtraTensor, t->info->name, "not part of nvfp4-pack-quantized (symmetric, no zero point or shape tensor)",
                "transformers reports an unexpected key; vLLM fails on the unknown parameter");
      const ConfigGroup* g = ct_config_usable ? group_for(m) : nullptr;
      if (ct_config_usable && !g)
        error(CheckKind::kConfig, n, "quantized in the checkpoint but no config group's targets match it",
              "loaders treat it as an unquantized Linear and fail to find " + n + ".weight");
      if (ct_config_usable && ignore.matches(n))
        error(CheckKind::kIgnore, n, "quantized in the checkpoint but listed in quantization_config.ignore",
              "loaders build a plain Linear for it, expect " + n + ".weight, and fail on the packed tensors");
      bool want_input = g ? g->input_activations : w4a4;
      if (want_input && !input)
        error(CheckKind::kMissingTensor, n + ".input_global_scale", "missing: the config quantizes input activations (W4A4)",
              "transformers reports missing keys and leaves the parameter uninitialised; vLLM fails to load the layer");
      if (!want_input && input && ct_config_usable)
        error(CheckKind::kExtraTensor, input->info->name, "present although the config has no input_activations (W4A16)",
              "transformers reports an unexpected key; vLLM fails on the unknown parameter");
      // transformers requires exactly [1]; the lookup (and vLLM) also accept a 0-d scalar.
      for (const TensorRef* t : {nv.global_scale, input})
        if (t && t->info->dtype == DType::F32 && t->info->shape.empty())
          error(CheckKind::kShape, t->info->name, "shape is [] (0-d), expected [1]",
                "transformers requires exactly [1] and fails with a size mismatch (vLLM would accept it)");
    }
    if (scales_ok && nv.block_scales->info->shape.size() == 2) report_block_scales(nv.block_scales, codes_ok ? nv.codes : nullptr);
    if (codes_ok) quantized_n[n] = nv.codes->info->shape[0];
  }

  // Orphan quantization tensors on modules that are not quantized cannot happen by construction
  // (any such tensor makes the module quantized); this checks the unquantized Linears instead.
  void check_unquantized_linear(const Module& m) {
    if (modelopt) {
      if (!ignore.matches(m.name))
        error(CheckKind::kIgnore, m.name, "unquantized Linear (" + std::string(dtype_name(m.role("weight")->info->dtype)) +
                                    ") is not listed in exclude_modules",
              "vLLM builds an NVFP4 layer for it and fails to load the dense weight");
      return;
    }
    if (!ct_config_usable) return;
    if (!group_for(m)) return;  // no group targets it, so loaders keep it dense anyway
    if (!ignore.matches(m.name))
      error(CheckKind::kIgnore, m.name, "unquantized Linear (" + std::string(dtype_name(m.role("weight")->info->dtype)) + " " +
                                  shape_str(m.role("weight")->info->shape) + ") is not listed in quantization_config.ignore",
            "transformers and vLLM build a compressed NVFP4 module for it, find no weight_packed/weight_scale and fail "
            "(transformers: missing keys, random weights)");
  }

  // lm_head is a Linear even when tied and absent from the file: it must be ignored unless quantized.
  void check_lm_head() {
    auto it = modules.find("lm_head");
    bool quantized = it != modules.end() && it->second.quantized;
    if (quantized) return;
    if (it != modules.end() && it->second.linear) return;  // present and dense: handled with the other Linears
    if (modelopt) {
      if (!ignore.matches("lm_head"))
        error(CheckKind::kIgnore, "lm_head", "lm_head (tied or absent) is not listed in exclude_modules",
              "vLLM would build an NVFP4 lm_head and fail to load it");
      return;
    }
    if (!ct_config_usable) return;
    Module probe;
    probe.name = "lm_head";
    probe.linear = true;
    if (group_for(probe) && !ignore.matches("lm_head"))
      error(CheckKind::kIgnore, "lm_head", "lm_head is a Linear (even when tied or absent from the file) and is not listed in quantization_config.ignore",
            "transformers and vLLM build a compressed NVFP4 lm_head and fail to load it");
  }

  // ---- fused groups ----------------------------------------------------------------------------

  struct FusedMemberRef {
    std::string leaf;
    Module* module;
  };

  void check_fused_groups() {
    std::map<std::string, std::vector<FusedMemberRef>> by_group;
    for (auto& [name, m] : modules) {
      if (!m.linear) continue;
      std::string key = fused_group_key(name);
      if (!key.empty()) by_group[key].push_back({leaf_of(name), &m});
    }
    for (auto& [key, members] : by_group) {
      if (members.size() < 2) continue;
      const std::vector<std::string> order = fused_group_members(key);
      std::sort(members.begin(), members.end(), [&](const FusedMemberRef& a, const FusedMemberRef& b) {
        return std::find(order.begin(), order.end(), a.leaf) < std::find(order.begin(), order.end(), b.leaf);
      });
      const std::string gate = gate_member_of(order);
      std::string parent = parent_of(members[0].module->name);
      std::string label = parent + ".{";
      for (size_t i = 0; i < members.size(); ++i) label += (i ? "," : "") + members[i].leaf;
      label += "}";
      // One quantize/ignore decision per fused group.
      size_t nq = 0;
      for (const auto& mm : members) nq += mm.module->quantized;
      if (nq != 0 && nq != members.size()) {
        std::vector<std::string> det;
        for (const auto& mm : members)
          det.push_back(mm.module->name + ": " + (mm.module->quantized ? "NVFP4" : dtype_name(mm.module->role("weight")->info->dtype)));
        error(CheckKind::kFusedDecision, label, "members of a fused group are not all quantized (or all ignored)",
              "vLLM raises \"Found a different quantization schemes for ...\" and refuses to load the model", det);
        continue;
      }
      if (nq == 0) continue;
      bool moe = is_moe_expert(parent) || is_moe_expert(members[0].module->name);
      if (modelopt) {
        compare_scales(label, members, "weight_scale_2", false, moe, gate, true);
        compare_scales(label, members, "input_scale", false, moe, gate, false);
      } else {
        compare_scales(label, members, "weight_global_scale", true, moe, gate, true);
        compare_scales(label, members, "input_global_scale", true, moe, gate, false);
      }
    }
  }

  void compare_scales(const std::string& label, const std::vector<FusedMemberRef>& members, const std::string& role,
                      bool divisor, bool moe, const std::string& gate, bool weights) {
    std::vector<std::pair<const FusedMemberRef*, float>> vals;
    for (const auto& mm : members) {
      const TensorRef* t = mm.module->role(role);
      if (!t || t->info->dtype != DType::F32 || t->info->numel() != 1) return;
      float v;
      std::memcpy(&v, t->data(), 4);
      if (!std::isfinite(v) || v <= 0) return;  // already reported per tensor
      vals.push_back({&mm, v});
    }
    bool differ = false;
    for (const auto& [mm, v] : vals) differ |= v != vals[0].second;
    if (!differ) return;
    // vLLM dequantizes the fused parameter with one scale: dense layers take the max of the
    // divisor global scales (ModelOpt: the max of the multiplier weight_scale_2); MoE w1/w3 use
    // the gate's. A member with its own scale g_i is thus multiplied by g_i / g_used (CT) or by
    // s_used / s_i (ModelOpt).
    bool use_gate = moe && !gate.empty();
    float used = 0;
    if (use_gate) {
      for (const auto& [mm, v] : vals)
        if (mm->leaf == gate) used = v;
      if (used == 0) use_gate = false;
    }
    if (!use_gate)
      for (const auto& [mm, v] : vals) used = std::max(used, v);
    FusedScaleMismatch fm;
    fm.group = label;
    fm.scale_name = role;
    fm.rule = use_gate ? "gate" : "max";
    std::vector<std::string> det;
    for (const auto& [mm, v] : vals) {
      FusedScaleMember mem;
      mem.module = mm->module->name;
      mem.tensor = mm->module->name + "." + role;
      mem.scale = v;
      mem.factor = divisor ? double(v) / double(used) : double(used) / double(v);
      det.push_back(mem.tensor + " = " + fmt_g(v) + " -> dequantization factor " + fmt_g(mem.factor, 6));
      fm.members.push_back(mem);
    }
    std::string how = use_gate ? std::string("vLLM's MoE path uses the gate (") + gate + ") scale " + fmt_g(used) + " for the whole group"
                               : std::string("vLLM fuses the group and dequantizes every member with the ") +
                                     "largest " + role + " " + fmt_g(used) + " (only logging a warning; SGLang silently)";
    std::string effect = weights ? "; each member's weights are multiplied by the factor shown: silent accuracy loss"
                                 : "; activations of the members are quantized with that one scale";
    std::string msg = role + " differs inside the fused group (" + std::to_string(vals.size()) + " members)";
    if (weights)
      error(CheckKind::kFusedGlobalScale, label, msg, how + effect, det);
    else
      info(CheckKind::kFusedInputScale, label, msg + ": " + how + effect + " (unused on Hopper's weight-only Marlin path)");
    rep.fused.push_back(std::move(fm));
  }

  // ---- inventory: missing / extra tensors -------------------------------------------------------

  void check_inventory() {
    // Layer structure: every layer of one kind must hold the same modules.
    static const std::regex kLayer(R"((^|.*?\.)layers\.(\d+)\.(.*))");
    struct LayerFamily {
      std::map<int64_t, std::set<std::string>> layers;  // index -> canonical relative names
      uint64_t tensors = 0;
    };
    std::map<std::string, LayerFamily> families;
    auto canonical = [&](const std::string& name) -> std::string {
      // Quantization tensors stand for their module's weight; scale completeness is checked per module.
      Nvfp4NameRole nr = classify_nvfp4_name(name);
      if (nr.role == Nvfp4Role::kNone) return name;
      if (nr.role == Nvfp4Role::kWeight || nr.role == Nvfp4Role::kPackedCodes) return nr.module + ".weight";
      return "";
    };
    for (const auto& name : ck.names) {
      std::smatch mt;
      if (!std::regex_match(name, mt, kLayer)) continue;
      std::string c = canonical(name);
      if (c.empty()) continue;
      std::smatch mc;
      if (!std::regex_match(c, mc, kLayer)) continue;
      LayerFamily& f = families[mc[1].str()];
      f.layers[std::stoll(mc[2].str())].insert(mc[3].str());
      ++f.tensors;
    }
    std::string main_family;
    uint64_t best = 0;
    for (const auto& [p, f] : families)
      if (f.tensors > best) {
        best = f.tensors;
        main_family = p;
      }
    int64_t n_layers = -1;
    if (config.is_object() && config.contains("num_hidden_layers") && config["num_hidden_layers"].is_number_integer())
      n_layers = config["num_hidden_layers"].get<int64_t>();
    for (auto& [prefix, fam] : families) {
      // Kind of a layer: its attention type(s) and whether it holds MoE experts, so that hybrid
      // (linear/full attention) and mixed dense/MoE stacks are compared only within a kind.
      auto kind = [](const std::set<std::string>& rel) {
        std::set<std::string> attn;
        bool experts = false;
        for (const auto& r : rel) {
          std::string top = r.substr(0, r.find('.'));
          bool attention = top.find("attn") != std::string::npos || top.find("attention") != std::string::npos;
          if (attention && top.find("norm") == std::string::npos) attn.insert(top);
          experts |= r.find("experts.") != std::string::npos;
        }
        std::string k;
        for (const auto& t : attn) k += t + ",";
        return k + (experts ? "moe" : "dense");
      };
      std::map<std::string, std::set<std::string>> union_by_kind;
      std::map<std::string, size_t> count_by_kind;
      for (const auto& [i, rel] : fam.layers) {
        auto k = kind(rel);
        union_by_kind[k].insert(rel.begin(), rel.end());
        ++count_by_kind[k];
      }
      for (const auto& [i, rel] : fam.layers) {
        auto k = kind(rel);
        if (count_by_kind[k] < 2) continue;
        std::vector<std::string> missing;
        for (const auto& r : union_by_kind[k])
          if (!rel.count(r)) missing.push_back(r);
        for (const auto& r : missing) {
          std::string full = prefix + "layers." + std::to_string(i) + "." + r;
          error(CheckKind::kMissingTensor, full, "missing: other layers of the same kind have it",
                "transformers leaves the parameter randomly initialised (missing keys); vLLM fails to load the layer");
        }
      }
      if (prefix == main_family && n_layers >= 0) {
        for (const auto& [i, rel] : fam.layers)
          if (i >= n_layers)
            error(CheckKind::kExtraTensor, prefix + "layers." + std::to_string(i) + ".*",
                  "layer index " + std::to_string(i) + " >= num_hidden_layers " + std::to_string(n_layers),
                  "transformers ignores these tensors (unexpected keys); vLLM fails on unknown parameters");
        for (int64_t i = 0; i < n_layers; ++i)
          if (!fam.layers.count(i))
            error(CheckKind::kMissingTensor, prefix + "layers." + std::to_string(i) + ".*",
                  "layer " + std::to_string(i) + " has no tensors (num_hidden_layers is " + std::to_string(n_layers) + ")",
                  "transformers leaves the whole layer randomly initialised; vLLM fails to load");
      }
    }
    // An untied lm_head must be stored.
    if (config.is_object() && config.contains("tie_word_embeddings") && config["tie_word_embeddings"].is_boolean() &&
        !config["tie_word_embeddings"].get<bool>() && !modules.count("lm_head"))
      error(CheckKind::kMissingTensor, "lm_head.weight", "missing although tie_word_embeddings is false",
            "transformers leaves lm_head randomly initialised (missing keys); vLLM fails to load");
    for (const auto& name : other_tensors) {
      if (name.find("rotary_emb.inv_freq") != std::string::npos)
        info(CheckKind::kExtraTensor, name, "legacy RoPE buffer", "transformers and vLLM skip it");
    }
  }

  void run() {
    check_metadata();
    if (modelopt) check_modelopt_config();
    else check_ct_config();
    if (!modelopt && ct_config_usable)
      for (const auto& g : groups) w4a4 |= g.input_activations;
    rep.scheme = w4a4 ? "W4A4" : "W4A16";
    index_tensors();
    uint64_t n_quantized = 0, scan_bytes = 0;
    for (const auto& [name, m] : modules)
      if (m.quantized) {
        ++n_quantized;
        if (const TensorRef* s = m.nv.block_scales) scan_bytes += s->info->nbytes();
      }
    Progress progress("check", n_quantized, scan_bytes, quiet);
    for (auto& [name, m] : modules) {
      if (m.quantized) {
        const TensorRef* s = m.nv.block_scales;
        progress.advance(1, s ? s->info->nbytes() : 0, name);
        ++rep.quantized_linears;
        check_module(m);
      } else if (m.linear) {
        ++rep.unquantized_linears;
        check_unquantized_linear(m);
      }
    }
    progress.finish();
    if (rep.quantized_linears == 0)
      error(CheckKind::kNoQuantizedLinear, ck.dir, "no NVFP4-quantized Linear found (no " + std::string(modelopt ? "weight_scale_2" : "weight_packed") + " tensors)",
            "this is not an NVFP4 checkpoint");
    check_lm_head();
    check_fused_groups();
    check_inventory();
    report_marlin();
  }
};

}  // namespace

CheckReport check_checkpoint(const std::string& dir, const CheckOptions& opt) {
  CheckReport rep;
  rep.dir = dir;
  std::unique_ptr<Checkpoint> ck = open_checkpoint(dir);
  Checker c(rep, *ck, resolve_threads(opt.threads), opt.quiet);
  std::error_code ec;
  if (fs::exists(dir + "/config.json", ec)) c.config = read_json_file(dir + "/config.json");
  if (fs::exists(dir + "/hf_quant_config.json", ec)) c.hf_quant = read_json_file(dir + "/hf_quant_config.json");
  bool ct_config = c.config.is_object() && c.config.contains("quantization_config") && c.config["quantization_config"].is_object() &&
                   Checker::is_str(c.config["quantization_config"], "quant_method", "compressed-tensors");
  bool mo_config = c.config.is_object() && c.config.contains("quantization_config") && c.config["quantization_config"].is_object() &&
                   Checker::is_str(c.config["quantization_config"], "quant_method", "modelopt");
  bool has_packed = false, has_s2 = false;
  for (const auto& n : ck->names) {
    if (n.size() > 14 && n.compare(n.size() - 14, 14, ".weight_packed") == 0) has_packed = true;
    if (n.size() > 15 && n.compare(n.size() - 15, 15, ".weight_scale_2") == 0) has_s2 = true;
  }
  c.modelopt = !ct_config && (mo_config || !c.hf_quant.is_null() || (has_s2 && !has_packed));
  rep.format = c.modelopt ? "modelopt" : (ct_config || has_packed ? "compressed-tensors" : "unknown");
  c.run();
  return rep;
}

nlohmann::ordered_json check_report_json(const CheckReport& r) {
  json j;
  j["dir"] = r.dir;
  j["format"] = r.format;
  j["scheme"] = r.scheme;
  j["ok"] = r.errors() == 0;
  j["errors"] = r.errors();
  j["infos"] = r.infos();
  j["tensors"] = r.tensors;
  j["quantized_linears"] = r.quantized_linears;
  j["unquantized_linears"] = r.unquantized_linears;
  json fs_ = json::array();
  for (const auto& f : r.findings) {
    json o;
    o["severity"] = f.severity == CheckSeverity::Error ? "error" : "info";
    o["kind"] = check_kind_name(f.kind);
    o["tensor"] = f.tensor;
    o["message"] = f.message;
    o["loader"] = f.loader;
    if (!f.details.empty()) o["details"] = f.details;
    fs_.push_back(std::move(o));
  }
  j["findings"] = std::move(fs_);
  json gs = json::array();
  for (const auto& g : r.fused) {
    json o;
    o["group"] = g.group;
    o["scale"] = g.scale_name;
    o["rule"] = g.rule;
    json ms = json::array();
    for (const auto& m : g.members) ms.push_back({{"module", m.module}, {"tensor", m.tensor}, {"value", m.scale}, {"factor", m.factor}});
    o["members"] = std::move(ms);
    gs.push_back(std::move(o));
  }
  j["fused_groups"] = std::move(gs);
  return j;
}

std::string check_report_text(const CheckReport& r) {
  std::ostringstream o;
  o << r.dir << ": " << r.format;
  if (r.format != "unknown") o << " NVFP4 " << r.scheme;
  o << ", " << r.tensors << " tensors, " << r.quantized_linears << " quantized Linear, " << r.unquantized_linears
    << " unquantized Linear\n";
  for (const auto& f : r.findings) {
    o << (f.severity == CheckSeverity::Error ? "error" : "info ") << " [" << check_kind_name(f.kind) << "] " << f.tensor << ": " << f.message << "\n";
    for (const auto& d : f.details) o << "        " << d << "\n";
    if (!f.loader.empty()) o << "        loader: " << f.loader << "\n";
  }
  size_t e = r.errors(), i = r.infos();
  if (e == 0) o << "OK: no problems found";
  else o << "FAILED: " << e << " problem" << (e == 1 ? "" : "s");
  if (i) o << " (" << i << " info)";
  o << "\n";
  return o.str();
}

}  // namespace fp4z
