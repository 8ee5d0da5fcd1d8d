// `fp4z check`, inventory: layers of one kind hold the same tensors, layer count, lm_head, legacy buffers.
#include "pipeline/check_internal.h"

namespace fp4z::check_detail {

void Checker::check_inventory() {
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

}  // namespace fp4z::check_detail
