// Fused Linear groups (q/k/v, gate/up, w1/w3, q_a/kv_a) recognised by module name.
#include "pipeline/fused_groups.h"

#include <unordered_map>

namespace fp4z {

namespace {
struct GroupKind {
  const char* tag;
  std::vector<std::string> leaves;
};
const GroupKind kKinds[] = {
    {"qkv", {"q_proj", "k_proj", "v_proj"}},
    {"gate_up", {"gate_proj", "up_proj"}},
    {"w13", {"w1", "w3"}},
    {"mla_a", {"q_a_proj", "kv_a_proj_with_mqa"}},
};
}  // namespace

std::string fused_group_key(const std::string& module) {
  size_t dot = module.rfind('.');
  std::string parent = dot == std::string::npos ? "" : module.substr(0, dot);
  std::string leaf = dot == std::string::npos ? module : module.substr(dot + 1);
  for (const auto& k : kKinds)
    for (const auto& l : k.leaves)
      if (leaf == l) return parent + "#" + k.tag;
  return "";
}

std::vector<std::string> fused_group_members(const std::string& key) {
  size_t h = key.rfind('#');
  if (h == std::string::npos) return {};
  std::string tag = key.substr(h + 1);
  for (const auto& k : kKinds)
    if (tag == k.tag) return k.leaves;
  return {};
}

std::vector<std::vector<std::string>> group_fused(const std::vector<std::string>& modules) {
  std::vector<std::vector<std::string>> groups;
  std::unordered_map<std::string, size_t> at;
  for (const auto& m : modules) {
    std::string key = fused_group_key(m);
    if (key.empty()) key = m;
    auto it = at.find(key);
    if (it == at.end()) {
      at.emplace(key, groups.size());
      groups.push_back({m});
    } else {
      groups[it->second].push_back(m);
    }
  }
  return groups;
}

}  // namespace fp4z
