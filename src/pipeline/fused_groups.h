// Fused Linear groups that vLLM loads as one layer (q/k/v, gate/up, MoE w1/w3) and must share one global scale.
#pragma once
#include <map>
#include <string>
#include <vector>

namespace fp4z {

// For a module name ("model.layers.0.self_attn.q_proj"), the key of its fused group
// ("model.layers.0.self_attn#qkv"), or "" when the module is not fused with others.
std::string fused_group_key(const std::string& module);
// Leaf names that make up a complete group of the given key ("q_proj","k_proj","v_proj").
std::vector<std::string> fused_group_members(const std::string& key);

// Groups `modules` by fused_group_key; unfused modules form singleton groups keyed by their own
// name. Groups are returned in order of their first member in `modules`.
std::vector<std::vector<std::string>> group_fused(const std::vector<std::string>& modules);

}  // namespace fp4z
