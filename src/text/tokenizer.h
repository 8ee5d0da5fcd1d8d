// Tokenizer interface shared by the evaluation engine and `fp4z tokenize`.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace fp4z {

// A loaded tokenizer (Hugging Face byte-level BPE as in Qwen2/Qwen3, or SentencePiece-style BPE
// with byte fallback as in Llama / llama2.c). Implementations live in src/text/.
struct Tokenizer {
  virtual ~Tokenizer() = default;
  // Encodes text exactly as Hugging Face `tokenizers` would with add_special_tokens=false
  // (added/special tokens in the text are matched before splitting).
  virtual std::vector<int32_t> encode(const std::string& text) const = 0;
  // Concatenated decoded text of ids (special tokens included).
  virtual std::string decode(const std::vector<int32_t>& ids) const = 0;
  virtual size_t vocab_size() const = 0;
  // Token id of a piece string, or -1.
  virtual int32_t token_id(const std::string& piece) const = 0;
  // BOS id to prepend when the model expects one (Llama / llama2.c), or -1 (Qwen3).
  virtual int32_t bos_id() const = 0;
  // EOS ids that end generation.
  virtual std::vector<int32_t> eos_ids() const = 0;
};

// Loads `<dir>/tokenizer.json` (plus tokenizer_config.json / generation_config.json / config.json
// for BOS/EOS when present). Throws fp4z::Error(exit 2) with a one-line message on bad input.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& model_dir);

}  // namespace fp4z
