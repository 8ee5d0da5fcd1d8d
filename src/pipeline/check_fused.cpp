// `fp4z check`, fused groups: one quantize decision per group, and global scales that agree.
#include "pipeline/check_internal.h"

namespace fp4z::check_detail {

void Checker::check_fused_groups() {
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
    compare_scales(label, members, &Nvfp4Lookup::global_scale, moe, gate, true);
    compare_scales(label, members, &Nvfp4Lookup::input_scale, moe, gate, false);
  }
}

void Checker::compare_scales(const std::string& label, const std::vector<FusedMemberRef>& members,
                             const TensorRef* Nvfp4Lookup::*scale, bool moe, const std::string& gate, bool weights) {
  std::vector<std::pair<const FusedMemberRef*, float>> vals;
  std::string role;  // the scale's name suffix, e.g. "weight_global_scale"
  const bool divisor = !modelopt;  // compressed-tensors global scales divide, ModelOpt's multiply
  for (const auto& mm : members) {
    const TensorRef* t = mm.module->nv.*scale;
    if (!t || t->info->dtype != DType::F32 || t->info->numel() != 1) return;
    // A member stored in the other convention than the checkpoint's is reported per module.
    if ((mm.module->nv.convention == Nvfp4Convention::kModelOpt) != modelopt) return;
    role = classify_nvfp4_name(t->info->name).suffix;
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

}  // namespace fp4z::check_detail
