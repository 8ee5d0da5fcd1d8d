// `fp4z check`, configuration: compressed-tensors quantization_config, ModelOpt hf_quant_config, safetensors metadata.
#include "pipeline/check_internal.h"

namespace fp4z::check_detail {

void Checker::build_patterns(const json& list, const std::string& where, NamePatterns& out, bool globs) {
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

void Checker::check_metadata() {
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
            "transformers 4.x refuses files whose format is not pt/tf/flax/mlx (5.17 loads them); vLLM expects pt");
  }
}

// Checks the QuantizationArgs of weights or input_activations of one group.
void Checker::check_quant_args(const json& a, const std::string& where, bool weights) {
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

void Checker::check_ct_config() {
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

void Checker::check_modelopt_config() {
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

}  // namespace fp4z::check_detail
