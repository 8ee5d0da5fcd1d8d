// Naming conventions, presence and strict lookups of NVFP4 modules, and the quantizable-Linear rule.
#include "format/nvfp4_tensors.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <set>

#include "common/error.h"

namespace fp4z {

namespace {

bool ends_with(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string o = "[";
  for (size_t i = 0; i < s.size(); ++i) o += (i ? ", " : "") + std::to_string(s[i]);
  return o + "]";
}

struct SuffixRole {
  const char* suffix;
  Nvfp4Role role;
  Nvfp4Convention convention;
};
// Longest suffixes first where one ends another ("weight_scale_2" before "weight_scale").
constexpr SuffixRole kSuffixes[] = {
    {"weight_packed", Nvfp4Role::kPackedCodes, Nvfp4Convention::kCompressedTensors},
    {"weight_global_scale", Nvfp4Role::kGlobalScale, Nvfp4Convention::kCompressedTensors},
    {"input_global_scale", Nvfp4Role::kInputScale, Nvfp4Convention::kCompressedTensors},
    {"weight_zero_point", Nvfp4Role::kCtUnused, Nvfp4Convention::kCompressedTensors},
    {"weight_shape", Nvfp4Role::kCtUnused, Nvfp4Convention::kCompressedTensors},
    {"weight_scale_2", Nvfp4Role::kGlobalScale, Nvfp4Convention::kModelOpt},
    {"input_scale", Nvfp4Role::kInputScale, Nvfp4Convention::kModelOpt},
    {"weight_scale", Nvfp4Role::kBlockScales, Nvfp4Convention::kNone},
    {"weight", Nvfp4Role::kWeight, Nvfp4Convention::kNone},
};

}  // namespace

const char* nvfp4_convention_name(Nvfp4Convention c) {
  switch (c) {
    case Nvfp4Convention::kCompressedTensors: return "compressed-tensors";
    case Nvfp4Convention::kModelOpt: return "modelopt";
    default: return "none";
  }
}

Nvfp4NameRole classify_nvfp4_name(const std::string& name) {
  Nvfp4NameRole r;
  for (const SuffixRole& s : kSuffixes) {
    size_t n = std::strlen(s.suffix);
    if (name.size() > n + 1 && ends_with(name, s.suffix) && name[name.size() - n - 1] == '.') {
      r.role = s.role;
      r.convention = s.convention;
      r.module = name.substr(0, name.size() - n - 1);
      r.suffix = s.suffix;
      return r;
    }
  }
  return r;
}

bool is_packed_codes_tensor(const SafetensorsFile& file, const TensorInfo& t) {
  return t.dtype == DType::U8 && is_packed_codes_name(t.name, [&](const std::string& n) {
           const TensorInfo* s = file.find(n);
           return s && s->dtype == DType::F8_E4M3;
         });
}

Nvfp4Names nvfp4_names(const std::string& m, Nvfp4Convention c) {
  if (c == Nvfp4Convention::kModelOpt) return {m + ".weight", m + ".weight_scale", m + ".weight_scale_2", m + ".input_scale"};
  return {m + ".weight_packed", m + ".weight_scale", m + ".weight_global_scale", m + ".input_global_scale"};
}

Nvfp4Lookup find_nvfp4_tensors(const Checkpoint& ck, const std::string& m) {
  Nvfp4Lookup l;
  l.module = m;
  const Nvfp4Names ct = nvfp4_names(m, Nvfp4Convention::kCompressedTensors);
  const Nvfp4Names mo = nvfp4_names(m, Nvfp4Convention::kModelOpt);
  const TensorRef* weight = ck.find(m + ".weight");
  const TensorRef* scales = ck.find(ct.block_scales);
  const TensorRef* ct_codes = ck.find(ct.codes);
  const TensorRef* ct_global = ck.find(ct.global_scale);
  const TensorRef* ct_input = ck.find(ct.input_scale);
  const TensorRef* mo_global = ck.find(mo.global_scale);
  const TensorRef* mo_input = ck.find(mo.input_scale);
  const bool weight_u8 = weight && weight->info->dtype == DType::U8;
  // weight_zero_point / weight_shape belong to compressed-tensors' packed formats only: a module
  // carrying one is a (broken) compressed module, not a dense Linear.
  const bool ct_only = ck.find(m + ".weight_zero_point") || ck.find(m + ".weight_shape");
  if (ct_codes || ct_global || ct_input || ct_only) {
    l.convention = Nvfp4Convention::kCompressedTensors;
  } else if (mo_global || mo_input || (scales && weight_u8)) {
    l.convention = Nvfp4Convention::kModelOpt;
  } else if (scales) {
    l.convention = Nvfp4Convention::kCompressedTensors;
  } else {
    l.dense = weight;
    return l;
  }
  l.block_scales = scales;
  if (l.convention == Nvfp4Convention::kCompressedTensors) {
    l.codes = ct_codes;
    l.global_scale = ct_global;
    l.input_scale = ct_input;
    l.dense = weight;
  } else {
    l.codes = weight;
    l.global_scale = mo_global;
    l.input_scale = mo_input;
  }
  return l;
}

const char* nvfp4_fault_kind_name(Nvfp4FaultKind k) {
  switch (k) {
    case Nvfp4FaultKind::kMissingTensor: return "missing_tensor";
    case Nvfp4FaultKind::kDtype: return "dtype";
    case Nvfp4FaultKind::kShape: return "shape";
    case Nvfp4FaultKind::kKNotMultipleOf16: return "k_not_multiple_of_16";
    case Nvfp4FaultKind::kBadGlobalScale: return "bad_global_scale";
  }
  return "?";
}

std::vector<Nvfp4Fault> nvfp4_faults(const Nvfp4Lookup& l, int64_t n, int64_t k) {
  std::vector<Nvfp4Fault> out;
  if (!l.quantized()) return out;
  const Nvfp4Names names = nvfp4_names(l.module, l.convention);
  auto add = [&](Nvfp4FaultKind kind, Nvfp4Role role, const std::string& tensor, const std::string& msg) {
    out.push_back(Nvfp4Fault{kind, role, tensor, msg});
  };
  auto dtype_ok = [&](const TensorRef* t, DType want, Nvfp4Role role) {
    if (t->info->dtype == want) return true;
    add(Nvfp4FaultKind::kDtype, role, t->info->name,
        std::string("dtype is ") + dtype_name(t->info->dtype) + ", expected " + dtype_name(want));
    return false;
  };
  if (!l.codes) add(Nvfp4FaultKind::kMissingTensor, Nvfp4Role::kPackedCodes, names.codes, "missing for a quantized Linear");
  if (!l.block_scales)
    add(Nvfp4FaultKind::kMissingTensor, Nvfp4Role::kBlockScales, names.block_scales, "missing for a quantized Linear");
  if (!l.global_scale)
    add(Nvfp4FaultKind::kMissingTensor, Nvfp4Role::kGlobalScale, names.global_scale, "missing for a quantized Linear");

  int64_t N = -1, K = -1;
  bool codes_ok = false;
  if (l.codes && dtype_ok(l.codes, DType::U8, Nvfp4Role::kPackedCodes)) {
    const auto& s = l.codes->info->shape;
    if (s.size() != 2) {
      add(Nvfp4FaultKind::kShape, Nvfp4Role::kPackedCodes, l.codes->info->name,
          "shape is " + shape_str(s) + ", expected 2-D [N, K/2]");
    } else if (n >= 0 && k >= 0 && (s[0] != n || s[1] * 2 != k)) {
      add(Nvfp4FaultKind::kShape, Nvfp4Role::kPackedCodes, l.codes->info->name,
          "shape is " + shape_str(s) + ", expected [" + std::to_string(n) + ", " + std::to_string(k / 2) +
              "] for a weight of shape [" + std::to_string(n) + ", " + std::to_string(k) + "]");
    } else {
      N = s[0];
      K = s[1] * 2;
      if (K % 16 != 0)
        add(Nvfp4FaultKind::kKNotMultipleOf16, Nvfp4Role::kPackedCodes, l.codes->info->name,
            "K = " + std::to_string(K) + " (input features) is not a multiple of 16");
      else
        codes_ok = true;
    }
  }
  if (l.block_scales && dtype_ok(l.block_scales, DType::F8_E4M3, Nvfp4Role::kBlockScales)) {
    const auto& s = l.block_scales->info->shape;
    if (s.size() != 2)
      add(Nvfp4FaultKind::kShape, Nvfp4Role::kBlockScales, l.block_scales->info->name,
          "shape is " + shape_str(s) + ", expected 2-D [N, K/16]");
    else if (codes_ok && (s[0] != N || s[1] != K / 16))
      add(Nvfp4FaultKind::kShape, Nvfp4Role::kBlockScales, l.block_scales->info->name,
          "shape is " + shape_str(s) + ", expected [" + std::to_string(N) + ", " + std::to_string(K / 16) + "] for " +
              l.codes->info->name + " " + shape_str(l.codes->info->shape));
  }
  const bool ct = l.convention == Nvfp4Convention::kCompressedTensors;
  for (auto [t, role] : {std::pair{l.global_scale, Nvfp4Role::kGlobalScale}, std::pair{l.input_scale, Nvfp4Role::kInputScale}}) {
    if (!t || !dtype_ok(t, DType::F32, role)) continue;
    if (t->info->numel() != 1) {
      add(Nvfp4FaultKind::kShape, role, t->info->name,
          "shape is " + shape_str(t->info->shape) + ", expected " + (ct ? "[1]" : "[]"));
      continue;
    }
    float v;
    std::memcpy(&v, t->data(), 4);
    const std::string& name = t->info->name;
    if (std::isnan(v)) add(Nvfp4FaultKind::kBadGlobalScale, role, name, "is NaN");
    else if (std::isinf(v)) add(Nvfp4FaultKind::kBadGlobalScale, role, name, "is infinite");
    else if (v == 0) add(Nvfp4FaultKind::kBadGlobalScale, role, name, "is zero");
    else if (v < 0) {
      char buf[64];
      std::snprintf(buf, sizeof buf, "is negative (%.9g)", double(v));
      add(Nvfp4FaultKind::kBadGlobalScale, role, name, buf);
    }
  }
  return out;
}

float Nvfp4Tensors::input_global_scale() const {
  if (input_scale <= 0) return 0;
  return global_is_divisor ? input_scale : 1.0f / input_scale;
}

Nvfp4Tensors require_nvfp4_tensors(const Nvfp4Lookup& l, int64_t n, int64_t k) {
  std::vector<Nvfp4Fault> faults = nvfp4_faults(l, n, k);
  if (!faults.empty()) {
    const Nvfp4Fault& f = faults.front();
    const TensorRef* any = l.codes ? l.codes : l.block_scales ? l.block_scales : l.global_scale ? l.global_scale : l.input_scale;
    std::string where = any ? any->file->path() : l.module;
    fail_input(where + ": " + f.tensor + ": " + f.message + " (" + nvfp4_convention_name(l.convention) +
               " NVFP4 module " + l.module + ")");
  }
  Nvfp4Tensors t;
  t.module = l.module;
  t.convention = l.convention;
  t.codes = l.codes;
  t.block_scales = l.block_scales;
  t.rows = l.codes->info->shape[0];
  t.cols = l.codes->info->shape[1] * 2;
  std::memcpy(&t.global_scale, l.global_scale->data(), 4);
  t.global_is_divisor = l.convention == Nvfp4Convention::kCompressedTensors;
  if (l.input_scale) std::memcpy(&t.input_scale, l.input_scale->data(), 4);
  return t;
}

bool is_linear_weight(const std::string& name, const TensorInfo& t) {
  if (!ends_with(name, ".weight") || t.shape.size() != 2) return false;
  return name.find("embed") == std::string::npos && name.find("wte") == std::string::npos;
}

std::string linear_kept_reason(const std::string& m, int64_t k) {
  std::string leaf = m.substr(m.rfind('.') + 1);
  if (leaf == "lm_head") return "lm_head";
  if (ends_with(m, ".mlp.gate") || ends_with(m, ".router")) return "MoE router";
  if (k % 16 != 0) return "K % 16 != 0";
  return "";
}

bool is_linear_leaf(const std::string& leaf) {
  static const std::set<std::string> kLeaves = {
      "q_proj", "k_proj", "v_proj", "o_proj", "qkv_proj", "gate_proj", "up_proj", "down_proj", "gate_up_proj",
      "lm_head", "w1", "w2", "w3", "wq", "wk", "wv", "wo", "q_a_proj", "q_b_proj", "kv_a_proj_with_mqa",
      "kv_b_proj", "dense", "fc1", "fc2", "c_attn", "c_proj", "c_fc", "query_key_value", "dense_h_to_4h",
      "dense_4h_to_h", "out_proj", "gate", "shared_expert_gate"};
  return kLeaves.count(leaf) > 0;
}

}  // namespace fp4z
