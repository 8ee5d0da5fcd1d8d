// The one place that knows how NVFP4 modules are stored: compressed-tensors (weight_packed, weight_scale,
// weight_global_scale, input_global_scale) and ModelOpt (weight, weight_scale, weight_scale_2, input_scale).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "format/checkpoint.h"

namespace fp4z {

enum class Nvfp4Convention { kNone, kCompressedTensors, kModelOpt };
// "none", "compressed-tensors", "modelopt" (the names the CLI prints and --json uses).
const char* nvfp4_convention_name(Nvfp4Convention c);

// What a tensor is to its module, from its name alone (the container has nothing else).
enum class Nvfp4Role {
  kNone,         // not a module tensor of either convention (norms, embeddings' siblings, ...)
  kWeight,       // "<m>.weight": dense weight, or ModelOpt packed codes when U8 with a weight_scale
  kPackedCodes,  // "<m>.weight_packed" (compressed-tensors)
  kBlockScales,  // "<m>.weight_scale" (both conventions)
  kGlobalScale,  // "<m>.weight_global_scale" (CT divisor) or "<m>.weight_scale_2" (ModelOpt multiplier)
  kInputScale,   // "<m>.input_global_scale" (CT) or "<m>.input_scale" (ModelOpt)
  kCtUnused,     // "<m>.weight_zero_point" / "<m>.weight_shape": compressed-tensors, not part of NVFP4
};
struct Nvfp4NameRole {
  Nvfp4Role role = Nvfp4Role::kNone;
  Nvfp4Convention convention = Nvfp4Convention::kNone;  // kNone when the name is shared by both
  std::string module;                                   // name without the role suffix
  std::string suffix;                                   // the role suffix, e.g. "weight_scale_2"
};
Nvfp4NameRole classify_nvfp4_name(const std::string& name);

// Whether a U8 tensor holds packed E2M1 codes, knowing only names: "<m>.weight_packed", the bare
// "weight_packed", or a ModelOpt "<m>.weight" whose "<m>.weight_scale" exists with F8_E4M3.
// `scale_is_e4m3(name)` answers whether a tensor of that name exists with dtype F8_E4M3.
template <class ScaleIsE4m3>
bool is_packed_codes_name(const std::string& name, ScaleIsE4m3&& scale_is_e4m3) {
  if (name == "weight_packed") return true;
  Nvfp4NameRole r = classify_nvfp4_name(name);
  if (r.role == Nvfp4Role::kPackedCodes) return true;
  return r.role == Nvfp4Role::kWeight && scale_is_e4m3(name + "_scale");
}

// The container's rule (codec::CompressOptions::is_fp4_codes): a U8 tensor whose name is packed codes.
bool is_packed_codes_tensor(const SafetensorsFile& file, const TensorInfo& t);

// Tensor names of a module under a convention.
struct Nvfp4Names {
  std::string codes, block_scales, global_scale, input_scale;
};
Nvfp4Names nvfp4_names(const std::string& module, Nvfp4Convention c);

// Presence lookup: which of a module's NVFP4 tensors exist. The convention is compressed-tensors when
// weight_packed, weight_global_scale, input_global_scale, weight_zero_point or weight_shape exists; ModelOpt when weight_scale_2 or
// input_scale exists, or weight_scale exists next to a U8 weight; compressed-tensors when only
// weight_scale exists (next to a float or no weight); kNone for a dense (or absent) module.
struct Nvfp4Lookup {
  std::string module;
  Nvfp4Convention convention = Nvfp4Convention::kNone;
  const TensorRef* codes = nullptr;         // weight_packed (CT) / weight (ModelOpt)
  const TensorRef* block_scales = nullptr;  // weight_scale
  const TensorRef* global_scale = nullptr;  // weight_global_scale (CT) / weight_scale_2 (ModelOpt)
  const TensorRef* input_scale = nullptr;   // input_global_scale (CT) / input_scale (ModelOpt)
  const TensorRef* dense = nullptr;         // "<m>.weight" when it is not the ModelOpt codes
  bool quantized() const { return convention != Nvfp4Convention::kNone; }
};
Nvfp4Lookup find_nvfp4_tensors(const Checkpoint& ck, const std::string& module);

// A reason the module's NVFP4 tensors cannot be used; kinds match `fp4z check`'s finding kinds.
enum class Nvfp4FaultKind { kMissingTensor, kDtype, kShape, kKNotMultipleOf16, kBadGlobalScale };
const char* nvfp4_fault_kind_name(Nvfp4FaultKind k);  // "missing_tensor", "dtype", ...
struct Nvfp4Fault {
  Nvfp4FaultKind kind;
  Nvfp4Role role;       // which tensor of the module
  std::string tensor;   // its name
  std::string message;  // e.g. "dtype is BF16, expected U8"
};

// Every fault of a quantized module's tensors: presence, dtypes (U8 codes, F8_E4M3 block scales,
// F32 global/input scales), shapes ([N, K/2] codes, [N, K/16] scales, K % 16 == 0, one-element global
// scales: [] or [1]) and scale values (finite and > 0). With n/k >= 0 the codes must also match the
// logical shape [n, k] the caller expects (model config, reference weight).
std::vector<Nvfp4Fault> nvfp4_faults(const Nvfp4Lookup& l, int64_t n = -1, int64_t k = -1);

// A usable NVFP4 module (every fault above absent).
struct Nvfp4Tensors {
  std::string module;
  Nvfp4Convention convention = Nvfp4Convention::kNone;
  const TensorRef* codes = nullptr;
  const TensorRef* block_scales = nullptr;
  int64_t rows = 0, cols = 0;  // logical weight shape [N, K]
  float global_scale = 1;      // as stored: CT divisor, ModelOpt multiplier
  bool global_is_divisor = true;
  float input_scale = 0;       // as stored; 0 when absent
  // Activation global scale in the CT sense (divisor): CT input_global_scale, ModelOpt 1 / input_scale.
  float input_global_scale() const;
};

// Strict lookup: throws Error (exit 2) "<file>: <module>: <fault>" on the first fault. `l` must be quantized.
Nvfp4Tensors require_nvfp4_tensors(const Nvfp4Lookup& l, int64_t n = -1, int64_t k = -1);

// The one "is a quantizable Linear" rule: a 2-D "<m>.weight" that is not an embedding ("embed"/"wte").
// Such a module is quantized (or compared) unless linear_kept_reason names why it stays dense.
bool is_linear_weight(const std::string& name, const TensorInfo& t);
// Why a Linear is kept in its source dtype by the quantizers ("lm_head", "MoE router", "K % 16 != 0"),
// or "" when it is quantized. `k` is its input feature count.
std::string linear_kept_reason(const std::string& module, int64_t k);
// Module leaf names that are nn.Linear in Hugging Face decoder models (what a loader treats as Linear).
bool is_linear_leaf(const std::string& leaf);

}  // namespace fp4z
