// Internals of `fp4z check`, split by concern: config (check_config.cpp), per-module tensors
// (check_modules.cpp), fused groups (check_fused.cpp), inventory (check_inventory.cpp), driver (check.cpp).
#pragma once
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
#include "pipeline/check.h"
#include "pipeline/fused_groups.h"

namespace fp4z::check_detail {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

// The finding kind of a fault of the shared NVFP4 lookup.
inline CheckKind check_kind_of(Nvfp4FaultKind k) {
  switch (k) {
    case Nvfp4FaultKind::kMissingTensor: return CheckKind::kMissingTensor;
    case Nvfp4FaultKind::kDtype: return CheckKind::kDtype;
    case Nvfp4FaultKind::kShape: return CheckKind::kShape;
    case Nvfp4FaultKind::kKNotMultipleOf16: return CheckKind::kKNotMultipleOf16;
    case Nvfp4FaultKind::kBadGlobalScale: return CheckKind::kBadGlobalScale;
  }
  return CheckKind::kShape;
}

inline constexpr const char* kFormatName = "nvfp4-pack-quantized";

inline std::string fmt_g(double v, int digits = 9) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*g", digits, v);
  return buf;
}

inline std::string shape_str(const std::vector<int64_t>& s) {
  std::string o = "[";
  for (size_t i = 0; i < s.size(); ++i) o += (i ? ", " : "") + std::to_string(s[i]);
  return o + "]";
}

inline std::string leaf_of(const std::string& module) {
  size_t p = module.rfind('.');
  return p == std::string::npos ? module : module.substr(p + 1);
}
inline std::string parent_of(const std::string& module) {
  size_t p = module.rfind('.');
  return p == std::string::npos ? std::string() : module.substr(0, p);
}

// The member of a fused group whose scale vLLM's MoE kernels use for the whole group (gate/w1).
inline std::string gate_member_of(const std::vector<std::string>& leaves) {
  for (const auto& l : leaves)
    if (l == "gate_proj" || l == "w1") return l;
  return "";
}

inline bool is_moe_expert(const std::string& module) { return module.find(".experts.") != std::string::npos; }

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
// The shared state of one check run; its methods live in the file of their concern.
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

  static bool is_str(const json& o, const char* k, const char* v) {
    return o.contains(k) && o[k].is_string() && o[k].get<std::string>() == v;
  }
  static bool is_int(const json& o, const char* k, int64_t v) {
    return o.contains(k) && o[k].is_number_integer() && o[k].get<int64_t>() == v;
  }

  // Output features of each quantized Linear, for the Marlin shape remark made once at the end.
  std::map<std::string, int64_t> quantized_n;

  struct FusedMemberRef {
    std::string leaf;
    Module* module;
  };

  void build_patterns(const json& list, const std::string& where, NamePatterns& out, bool globs);
  // Splits tensor names into modules and roles; quantized = the shared lookup finds NVFP4 tensors
  // (or the module carries compressed-tensors-only quantization tensors).
  void index_tensors();
  void check_metadata();
  // Checks the QuantizationArgs of weights or input_activations of one group.
  void check_quant_args(const json& a, const std::string& where, bool weights);
  void check_ct_config();
  void check_modelopt_config();
  // Reports the numeric scan of a module's block scales (and the codes of zero-scale blocks).
  void report_block_scales(const TensorRef* scale, const TensorRef* packed);
  // Does any compressed-tensors config group target this module (Linear class, exact name or re:)?
  const ConfigGroup* group_for(const Module& m);
  // vLLM checks Marlin's N on the fused layer (q+k+v, gate+up), per tensor-parallel partition.
  void report_marlin();
  // What a loader does with each fault of the shared lookup (format/nvfp4_tensors.h).
  std::string fault_loader(const Nvfp4Fault& f, bool mo);
  // One quantized module, either convention: the shared lookup's faults, then what only loaders care
  // about (extra tensors, config groups, ignore lists, activation scales, [1] vs [] scalars).
  void check_module(Module& m);
  // Orphan quantization tensors on modules that are not quantized cannot happen by construction
  // (any such tensor makes the module quantized); this checks the unquantized Linears instead.
  void check_unquantized_linear(const Module& m);
  // lm_head is a Linear even when tied and absent from the file: it must be ignored unless quantized.
  void check_lm_head();
  void check_fused_groups();
  // `scale` picks the members' global (weights) or input scale from the shared lookup.
  void compare_scales(const std::string& label, const std::vector<FusedMemberRef>& members,
                      const TensorRef* Nvfp4Lookup::*scale, bool moe, const std::string& gate, bool weights);
  void check_inventory();
  void run();
};

}  // namespace fp4z::check_detail
