// Conversion of a llama2.c checkpoint (legacy v0 .bin + tokenizer .bin) into a Hugging Face Llama checkpoint.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "format/dtype.h"

namespace fp4z {

// The 7-int32 header of a legacy llama2.c checkpoint, validated against the file size.
struct Llama2cHeader {
  int64_t dim = 0;
  int64_t hidden_dim = 0;
  int64_t n_layers = 0;
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;
  int64_t vocab_size = 0;  // absolute value of the stored field
  int64_t seq_len = 0;
  bool shared_classifier = true;  // stored vocab_size > 0: the classifier is the embedding table
  int64_t head_size() const { return dim / n_heads; }
  int64_t kv_dim() const { return dim / n_heads * n_kv_heads; }
  // Number of float32 values after the 28-byte header (freq_cis and wcls included).
  uint64_t expected_floats() const;
};

inline constexpr size_t kLlama2cHeaderBytes = 28;

// Parses and validates the header of the mapped file (dimensions positive and sane,
// dim % n_heads == 0, n_heads % n_kv_heads == 0, even head size, and a file size of exactly
// 28 + 4 * expected_floats()). Throws Error(exit 2) naming `label` and the fault.
Llama2cHeader parse_llama2c_header(const uint8_t* data, size_t size, const std::string& label);

// Reorders the rows of one q or k projection [n_heads * head_size, cols] from llama2.c's
// interleaved RoPE pairs to Hugging Face's rotate-half layout: within each head, output row
// j * head_size/2 + i is input row 2 * i + j (so the rows become 0, 2, 4, ..., 1, 3, 5, ...).
void permute_rope_rows(const float* src, float* dst, int64_t n_heads, int64_t head_size, int64_t cols);

struct ImportLlama2cOptions {
  std::string model_path;
  std::string tokenizer_path;
  std::string out_dir;
  DType dtype = DType::F32;  // F32 (exact), BF16 or F16 (round to nearest even)
  bool force = false;
  bool quiet = false;
};

struct ImportLlama2cResult {
  Llama2cHeader header;
  uint64_t tensors = 0;
  uint64_t parameters = 0;  // trained parameters written (freq_cis excluded)
};

// Converts and publishes `out_dir` atomically (config.json, generation_config.json,
// model.safetensors, tokenizer.json, tokenizer_config.json). Nothing is left behind on error.
ImportLlama2cResult import_llama2c(const ImportLlama2cOptions& opt);

}  // namespace fp4z
