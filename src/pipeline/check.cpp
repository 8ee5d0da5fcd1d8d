// NVFP4 checkpoint validation driver: runs the concerns (check_*.cpp) in order, and prints the report.
#include "pipeline/check.h"

#include <algorithm>
#include <memory>
#include <sstream>

#include "common/printable.h"
#include "pipeline/check_internal.h"

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

namespace check_detail {

void Checker::run() {
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

}  // namespace check_detail

using check_detail::Checker;
using check_detail::json;
namespace fs = std::filesystem;

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
    Nvfp4NameRole nr = classify_nvfp4_name(n);
    has_packed |= nr.role == Nvfp4Role::kPackedCodes;
    has_s2 |= nr.role == Nvfp4Role::kGlobalScale && nr.convention == Nvfp4Convention::kModelOpt;
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
  // Tensor names and messages quote the checkpoint's own text: each one is printed as one escaped line.
  std::ostringstream o;
  o << printable(r.dir) << ": " << r.format;
  if (r.format != "unknown") o << " NVFP4 " << r.scheme;
  o << ", " << r.tensors << " tensors, " << r.quantized_linears << " quantized Linear, " << r.unquantized_linears
    << " unquantized Linear\n";
  for (const auto& f : r.findings) {
    o << (f.severity == CheckSeverity::Error ? "error" : "info ") << " [" << check_kind_name(f.kind) << "] " << printable(f.tensor) << ": " << printable(f.message) << "\n";
    for (const auto& d : f.details) o << "        " << printable(d) << "\n";
    if (!f.loader.empty()) o << "        loader: " << printable(f.loader) << "\n";
  }
  size_t e = r.errors(), i = r.infos();
  if (e == 0) o << "OK: no problems found";
  else o << "FAILED: " << e << " problem" << (e == 1 ? "" : "s");
  if (i) o << " (" << i << " info)";
  o << "\n";
  return o.str();
}

}  // namespace fp4z
