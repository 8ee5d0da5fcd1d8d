// `fp4z check`, per module: the shared NVFP4 lookup's faults, loader-only rules, block-scale scan, ignore lists.
#include "pipeline/check_internal.h"

namespace fp4z::check_detail {

// Splits tensor names into modules and roles; quantized = the shared lookup finds NVFP4 tensors.
void Checker::index_tensors() {
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
    m.quantized = m.nv.quantized();
    const TensorRef* w = m.role("weight");
    bool two_d = w && w->info->shape.size() == 2;
    m.linear = m.quantized || (two_d && is_linear_leaf(leaf_of(name)));
  }
  rep.tensors = ck.names.size();
}

// Reports the numeric scan of a module's block scales (and the codes of zero-scale blocks).
void Checker::report_block_scales(const TensorRef* scale, const TensorRef* packed) {
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
  scale->release();
  if (packed) packed->release();
}

// Does any compressed-tensors config group target this module (Linear class, exact name or re:)?
const ConfigGroup* Checker::group_for(const Module& m) {
  for (const auto& g : groups) {
    for (const auto& t : g.targets)
      if (((t == "Linear" || t == "LinearBase") && m.linear) || t == m.name) return &g;
    for (const auto& re : g.target_regexes)
      if (std::regex_search(m.name, re, std::regex_constants::match_continuous)) return &g;
  }
  return nullptr;
}

// What a loader does with each fault of the shared lookup (format/nvfp4_tensors.h).
std::string Checker::fault_loader(const Nvfp4Fault& f, bool mo) {
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
void Checker::check_module(Module& m) {
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
void Checker::check_unquantized_linear(const Module& m) {
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
void Checker::check_lm_head() {
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

// vLLM checks Marlin's N on the fused layer (q+k+v, gate+up), per tensor-parallel partition.
void Checker::report_marlin() {
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

}  // namespace fp4z::check_detail
