// Qwen2 / Llama-3 pre-tokenizer: the regex's alternatives applied in order at each position.
#include "text/pretokenize.h"

#include "text/unicode.h"

namespace fp4z::text {
namespace {

bool is_letter(char32_t cp) { return codepoint_flags(cp) & kFlagLetter; }
bool is_number(char32_t cp) { return codepoint_flags(cp) & kFlagNumber; }
bool is_space(char32_t cp) { return codepoint_flags(cp) & kFlagWhitespace; }
bool is_crlf(char32_t cp) { return cp == '\r' || cp == '\n'; }
// [^\s\p{L}\p{N}]
bool is_other(char32_t cp) { return (codepoint_flags(cp) & (kFlagLetter | kFlagNumber | kFlagWhitespace)) == 0; }

// Case-insensitive match of one ASCII letter, as Oniguruma's (?i:) folds it (U+017F folds to s).
bool folds_to(char32_t cp, char lower) {
  if (cp == char32_t(lower) || cp == char32_t(lower - 'a' + 'A')) return true;
  return lower == 's' && cp == 0x017F;
}

}  // namespace

void split_words(std::string_view text, int max_digits, std::vector<std::pair<size_t, size_t>>& pieces) {
  // Decode once: code points and their byte offsets (offsets[n] = text.size()).
  std::vector<char32_t> cps;
  std::vector<size_t> offsets;
  cps.reserve(text.size());
  offsets.reserve(text.size() + 1);
  for (size_t i = 0; i < text.size();) {
    size_t len;
    char32_t cp = decode_utf8(text, i, &len);
    cps.push_back(cp);
    offsets.push_back(i);
    i += len;
  }
  offsets.push_back(text.size());
  const size_t n = cps.size();
  auto at = [&](size_t k) -> char32_t { return k < n ? cps[k] : kInvalidCodepoint; };
  auto emit = [&](size_t from, size_t to) { pieces.emplace_back(offsets[from], offsets[to]); };

  size_t i = 0;
  while (i < n) {
    const char32_t c = cps[i];
    // 1. (?i:'s|'t|'re|'ve|'m|'ll|'d)
    if (c == '\'' && i + 1 < n) {
      char32_t c1 = cps[i + 1];
      if (folds_to(c1, 's') || folds_to(c1, 't') || folds_to(c1, 'm') || folds_to(c1, 'd')) {
        emit(i, i + 2);
        i += 2;
        continue;
      }
      if (i + 2 < n) {
        char32_t c2 = cps[i + 2];
        if ((folds_to(c1, 'r') && folds_to(c2, 'e')) || (folds_to(c1, 'v') && folds_to(c2, 'e')) ||
            (folds_to(c1, 'l') && folds_to(c2, 'l'))) {
          emit(i, i + 3);
          i += 3;
          continue;
        }
      }
    }
    // 2. [^\r\n\p{L}\p{N}]?\p{L}+
    {
      size_t start = i, j = i;
      if (!is_letter(c) && !is_number(c) && !is_crlf(c) && is_letter(at(i + 1))) j = i + 1;
      if (is_letter(at(j))) {
        while (j < n && is_letter(cps[j])) ++j;
        emit(start, j);
        i = j;
        continue;
      }
    }
    // 3. \p{N} (or \p{N}{1,3})
    if (is_number(c)) {
      size_t j = i + 1;
      while (j < n && int(j - i) < max_digits && is_number(cps[j])) ++j;
      emit(i, j);
      i = j;
      continue;
    }
    // 4.  ?[^\s\p{L}\p{N}]+[\r\n]*
    {
      size_t j = i;
      if (c == ' ' && is_other(at(i + 1))) j = i + 1;
      if (j < n && is_other(cps[j])) {
        while (j < n && is_other(cps[j])) ++j;
        while (j < n && is_crlf(cps[j])) ++j;
        emit(i, j);
        i = j;
        continue;
      }
    }
    // 5-7. Whitespace: \s*[\r\n]+ | \s+(?!\S) | \s+
    if (is_space(c)) {
      size_t end = i;
      size_t last_newline = SIZE_MAX;
      while (end < n && is_space(cps[end])) {
        if (is_crlf(cps[end])) last_newline = end;
        ++end;
      }
      size_t j;
      if (last_newline != SIZE_MAX) {
        j = last_newline + 1;
      } else if (end == n || end - i == 1) {
        j = end;
      } else {
        j = end - 1;
      }
      emit(i, j);
      i = j;
      continue;
    }
    // 8. Not reachable for valid text; keeps the splitter total.
    emit(i, i + 1);
    ++i;
  }
}

}  // namespace fp4z::text
