// Conversion of a llama2.c tokenizer (tok*.bin: scores and pieces) into a Hugging Face tokenizer.json.
#pragma once
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

namespace fp4z {

// Special ids of every llama2.c tokenizer (run.c hard-codes them): BOS is prepended by the caller.
inline constexpr int32_t kLlama2cUnkId = 0;
inline constexpr int32_t kLlama2cBosId = 1;
inline constexpr int32_t kLlama2cEosId = 2;

// Validates the bytes of a llama2.c tokenizer file (int32 max_token_length, then records
// {f32 score, int32 length, bytes}; ids 0-2 <unk>/BOS/EOS, ids 3-258 the byte pieces <0x00>..<0xFF>)
// and returns the equivalent Hugging Face tokenizer.json: BPE with byte_fallback, pieces with
// spaces written as U+2581, merges for every pair of pieces whose concatenation is a piece,
// ordered by the score of the result (highest first), normalizer Prepend U+2581 + Replace
// " " -> U+2581, decoder Replace/ByteFallback/Fuse/Strip, added tokens <unk>, <s>, </s>, and a
// TemplateProcessing post-processor "<s> $A" that records BOS = kLlama2cBosId (EOS is
// kLlama2cEosId). Throws fp4z::Error (exit 2) naming `label` on a truncated or malformed file.
nlohmann::ordered_json llama2c_tokenizer_to_json(const uint8_t* data, size_t size, const std::string& label);

}  // namespace fp4z
