// Hand-written splitter equivalent to the Qwen2 / Llama-3 pre-tokenizer regex (no regex engine).
#pragma once
#include <cstddef>
#include <string_view>
#include <utility>
#include <vector>

namespace fp4z::text {

// The Split pre-tokenizer patterns this splitter implements (compared verbatim with tokenizer.json).
inline constexpr std::string_view kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
inline constexpr std::string_view kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// Splits `text` (one segment; its end is the regex's end of text) into the byte ranges
// [begin, end) of the pieces the pattern matches, in order, covering the whole text (Isolated).
// `max_digits` is 1 for kQwen2Pattern and 3 for kLlama3Pattern. Bytes that are not valid UTF-8
// count as punctuation-like code points (neither letter, number nor whitespace).
void split_words(std::string_view text, int max_digits, std::vector<std::pair<size_t, size_t>>& pieces);

}  // namespace fp4z::text
