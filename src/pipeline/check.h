// `fp4z check`: validates an NVFP4 checkpoint (compressed-tensors or ModelOpt) against loader rules.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace fp4z {

enum class CheckSeverity { Error, Info };

// What a finding is about. The names (check_kind_name) are the "kind" values of --json, an API:
// docs/check.md describes each; add new kinds at the end, never rename one.
enum class CheckKind {
  kConfig,  // "config"
  kMetadata,  // "metadata"
  kMissingTensor,  // "missing_tensor"
  kExtraTensor,  // "extra_tensor"
  kDtype,  // "dtype"
  kShape,  // "shape"
  kKNotMultipleOf16,  // "k_not_multiple_of_16"
  kBadGlobalScale,  // "bad_global_scale"
  kNanScale,  // "nan_scale"
  kNegativeScale,  // "negative_scale"
  kZeroScaleNonzeroCodes,  // "zero_scale_nonzero_codes"
  kIgnore,  // "ignore"
  kFusedDecision,  // "fused_decision"
  kFusedGlobalScale,  // "fused_global_scale"
  kFusedInputScale,  // "fused_input_scale"
  kMarlin,  // "marlin"
  kNoQuantizedLinear,  // "no_quantized_linear"
};
const char* check_kind_name(CheckKind k);

// One problem (Error: makes the check fail) or remark (Info: never affects the exit code).
struct CheckFinding {
  CheckSeverity severity = CheckSeverity::Error;
  CheckKind kind = CheckKind::kConfig;
  std::string tensor;   // tensor, module, fused group or file the finding is about
  std::string message;  // what is wrong
  std::string loader;   // what a loader (transformers / vLLM / compressed-tensors) would do
  std::vector<std::string> details;  // extra lines (e.g. one per fused-group member)
};

// One member of a fused group whose global scales differ.
struct FusedScaleMember {
  std::string module;
  std::string tensor;  // the scale tensor read
  double scale = 0;    // CT: global scale (divisor); ModelOpt: weight_scale_2 (multiplier)
  double factor = 1;   // what vLLM's fused dequantization multiplies this member's weights by
};

struct FusedScaleMismatch {
  std::string group;       // e.g. "model.layers.0.self_attn.{q_proj,k_proj,v_proj}"
  std::string scale_name;  // "weight_global_scale", "input_global_scale", "weight_scale_2", "input_scale"
  std::string rule;        // "max" (dense fused linear) or "gate" (MoE w1/w3: the gate's scale is used)
  std::vector<FusedScaleMember> members;
};

struct CheckReport {
  std::string dir;
  std::string format;  // "compressed-tensors", "modelopt" or "unknown"
  std::string scheme;  // "W4A16", "W4A4" or "" when undetermined
  uint64_t tensors = 0;
  uint64_t quantized_linears = 0;
  uint64_t unquantized_linears = 0;
  std::vector<CheckFinding> findings;
  std::vector<FusedScaleMismatch> fused;
  size_t errors() const;
  size_t infos() const;
  // 0 when no errors were found, 1 otherwise (unreadable input throws Error(exit 2) instead).
  int exit_code() const { return errors() ? 1 : 0; }
};

struct CheckOptions {
  int threads = 0;  // 0 = all cores
  bool quiet = true;
};

// Reads the checkpoint tensor by tensor from the mapping. Throws Error(exit 2) when the
// directory, a safetensors file or a JSON config cannot be read or parsed.
CheckReport check_checkpoint(const std::string& dir, const CheckOptions& opt = {});

// Machine-readable form (stable keys: dir, format, scheme, ok, errors, infos, tensors,
// quantized_linears, unquantized_linears, findings[], fused_groups[]).
nlohmann::ordered_json check_report_json(const CheckReport& r);
// Human-readable form: a summary line, one block per finding, a result line.
std::string check_report_text(const CheckReport& r);

}  // namespace fp4z
