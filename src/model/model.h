// Dense decoder model (Qwen3ForCausalLM / LlamaForCausalLM) loaded zero-copy from a checkpoint directory.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "format/checkpoint.h"
#include "format/nvfp4_tensors.h"
#include "model/linear.h"

namespace fp4z {

// The config.json fields the forward pass needs (../shared/design/inference.md §1).
struct ModelConfig {
  std::string architecture;  // "Qwen3ForCausalLM" or "LlamaForCausalLM"
  bool qk_norm = false;      // Qwen3: per-head RMSNorm on q and k before RoPE
  int64_t hidden = 0, intermediate = 0, layers = 0, heads = 0, kv_heads = 0, head_dim = 0, vocab = 0;
  float rms_eps = 1e-6f;
  double rope_theta = 10000.0;
  bool tied = false;
  int64_t max_positions = 0;
  int32_t bos = -1;
  std::vector<int32_t> eos;
  // Llama-3 rope_scaling (rope_type "llama3"); factor 0 = none.
  double llama3_factor = 0, llama3_low = 1, llama3_high = 4, llama3_original = 8192;
};

// Parses and validates config.json (refuses unsupported architectures and options, exit 2).
ModelConfig parse_model_config(const nlohmann::ordered_json& j, const std::string& path);

// A vector of per-channel weights (norms), converted to f32 at load (small).
using NormWeight = std::vector<float>;

struct LayerWeights {
  NormWeight input_norm, post_norm, q_norm, k_norm;
  Linear q, k, v, o, gate, up, down;
};

// Token embedding table [vocab, hidden] in F32/F16/BF16, read through the mapping.
struct Embedding {
  DType dtype = DType::F32;
  int64_t rows = 0, cols = 0;
  const uint8_t* data = nullptr;
  void row(int64_t id, float* out) const;
};

struct Model {
  ModelConfig cfg;
  std::unique_ptr<Checkpoint> ckpt;  // keeps the mappings alive; weights point into it
  Embedding embed;
  std::vector<LayerWeights> layers;
  NormWeight final_norm;
  Linear lm_head;  // the embedding table itself when tied
  std::string quant_format;  // "none", "compressed-tensors", "modelopt" (what was found)
  bool has_input_global_scale = false;  // every NVFP4 linear carries an activation scale
  std::vector<std::vector<float>> owned;  // F16 weights converted to f32 at load
  std::vector<AlignedVector<uint8_t>> owned_int8;  // NVFP4 linears repacked for the int8 kernels (64-byte aligned rows)
  uint64_t weight_bytes() const;          // bytes of all linears + embedding as stored
};

// Opens `dir` and builds the model (no copies of BF16/F32/NVFP4 weights). Throws Error(exit 2)
// naming the file and the fault.
std::unique_ptr<Model> load_model(const std::string& dir);

// The numeric half of the strict NVFP4 lookup (format/nvfp4_tensors.h checks names, dtypes, shapes and
// global scales; the format module cannot scan E4M3 values): NaN (0x7F/0xFF) or negative block scales
// make the module unusable. Throws Error (exit 2) "<file>: <scales>: N block scale(s) are NaN ...,
// first at row r, block b (... NVFP4 module <m>)". Used by the loader (eval, generate, export-gguf),
// compare and stats, so that they refuse what `fp4z check` reports as nan_scale / negative_scale.
void require_usable_block_scales(const Nvfp4Tensors& t, int threads = 0);

// Repacks every NVFP4 linear for the int8 kernels (Linear::int8; the fast default path) on `threads`
// threads and drops the checkpoint's now unused code/scale pages from the resident set, so memory
// stays at one copy (the f32 --exact kernels still read the mapping, which pages back in). Idempotent.
void prepare_int8_weights(Model& m, int threads);

}  // namespace fp4z
