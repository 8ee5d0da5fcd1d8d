// Conversion of an fp4z / compressed-tensors / ModelOpt checkpoint (Qwen3, Llama) to a llama.cpp GGUF file.
#pragma once
#include <cstdint>
#include <string>

namespace fp4z {

// How the decoder's linear layers are written.
enum class GgufLinearFormat {
  kNvfp4,  // NVFP4 linears losslessly as ggml NVFP4 (+ an F32 ".scale" global); dense ones as stored
  kQ4_0,   // every linear re-quantized to Q4_0 (from the dequantized NVFP4 or the stored floats)
};

struct ExportGgufOptions {
  std::string model_dir;
  std::string out_path;
  GgufLinearFormat format = GgufLinearFormat::kNvfp4;
  bool force = false;
  int threads = 0;  // 0 = all cores
};

struct ExportGgufResult {
  std::string architecture;  // GGUF architecture: "qwen3" or "llama"
  std::string tokenizer;     // GGUF tokenizer model: "gpt2" or "llama"
  int64_t vocab = 0;
  uint64_t tensors = 0;
  uint64_t nvfp4 = 0, q4_0 = 0, dense = 0;  // linears (lm_head included) by written type
  uint64_t dequantized = 0;  // NVFP4 linears written as F32 because ggml's NVFP4 needs in_features % 64 == 0
  uint64_t bytes = 0;        // size of the output file
};

// Writes `out_path` (staged: temporary name, renamed when complete; an existing file is replaced
// only with `force`). Token embedding, norms and a dense head keep their stored values (1-D tensors
// as F32, as llama.cpp's converter does); Llama q/k rows are reordered from Hugging Face's rotate-half
// layout to the interleaved RoPE layout llama.cpp's "llama" architecture expects. Throws
// Error(exit 2) with one line naming the file and the fault on bad input.
ExportGgufResult export_gguf(const ExportGgufOptions& opt);

}  // namespace fp4z
