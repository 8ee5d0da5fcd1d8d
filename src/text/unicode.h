// Unicode support for the tokenizers: UTF-8 coding, character classes (\p{L}, \p{N}, \s) and NFC.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace fp4z::text {

// Per-code-point flag bits (generated from the UCD by scripts/gen_unicode_tables.py).
enum CodepointFlag : uint8_t {
  kFlagLetter = 1,      // general category L*
  kFlagNumber = 2,      // general category N*
  kFlagWhitespace = 4,  // White_Space property (Oniguruma's \s)
  kFlagNfcQc = 8,       // NFC_Quick_Check No or Maybe
  kFlagCombining = 16,  // canonical combining class != 0
};

// Marks a byte that does not start a valid UTF-8 sequence; it is carried through unchanged.
inline constexpr char32_t kInvalidCodepoint = 0xFFFFFFFFu;

// Decodes one code point at text[i] (well-formed UTF-8 only: no overlongs, surrogates or values
// above U+10FFFF). Returns kInvalidCodepoint with length 1 for a byte that starts no valid sequence.
inline char32_t decode_utf8(std::string_view text, size_t i, size_t* length) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  unsigned char c = s[i];
  if (c < 0x80) {
    *length = 1;
    return c;
  }
  *length = 1;
  auto cont = [&](size_t k) { return i + k < n && (s[i + k] & 0xC0) == 0x80; };
  if (c >= 0xC2 && c <= 0xDF) {
    if (!cont(1)) return kInvalidCodepoint;
    *length = 2;
    return (char32_t(c & 0x1F) << 6) | (s[i + 1] & 0x3F);
  }
  if (c >= 0xE0 && c <= 0xEF) {
    if (!cont(1) || !cont(2)) return kInvalidCodepoint;
    char32_t cp = (char32_t(c & 0x0F) << 12) | (char32_t(s[i + 1] & 0x3F) << 6) | (s[i + 2] & 0x3F);
    if (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF)) return kInvalidCodepoint;
    *length = 3;
    return cp;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (!cont(1) || !cont(2) || !cont(3)) return kInvalidCodepoint;
    char32_t cp = (char32_t(c & 0x07) << 18) | (char32_t(s[i + 1] & 0x3F) << 12) |
                  (char32_t(s[i + 2] & 0x3F) << 6) | (s[i + 3] & 0x3F);
    if (cp < 0x10000 || cp > 0x10FFFF) return kInvalidCodepoint;
    *length = 4;
    return cp;
  }
  return kInvalidCodepoint;
}

// Appends the UTF-8 encoding of cp (cp must be a Unicode scalar value).
void append_utf8(std::string& out, char32_t cp);

// Flags of a code point (0 for kInvalidCodepoint and unassigned code points).
uint8_t codepoint_flags(char32_t cp);
// Canonical combining class.
uint8_t combining_class(char32_t cp);

// Unicode Normalization Form C. Bytes that are not valid UTF-8 pass through unchanged and block
// composition across them. ASCII and already-normalized text are returned without rebuilding.
std::string nfc(std::string_view text);

// Converts bytes to UTF-8 like Rust's String::from_utf8_lossy: each maximal ill-formed subpart
// becomes one U+FFFD.
std::string utf8_lossy(std::string_view bytes);

// Unicode version of the generated tables.
const char* unicode_tables_version();

namespace tables {
struct CodepointRange {
  char32_t first;
  char32_t last;
  uint8_t value;
};
struct DecompositionEntry {
  char32_t cp;
  uint16_t offset;  // into kDecompositionData
  uint8_t length;
};
struct CompositionEntry {
  char32_t first;
  char32_t second;
  char32_t composite;
};
extern const char kUnicodeVersion[];
extern const CodepointRange kFlagRanges[];
extern const size_t kFlagRangeCount;
extern const CodepointRange kCombiningClassRanges[];
extern const size_t kCombiningClassRangeCount;
extern const DecompositionEntry kDecompositions[];
extern const size_t kDecompositionCount;
extern const char32_t kDecompositionData[];
extern const CompositionEntry kCompositions[];
extern const size_t kCompositionCount;
}  // namespace tables

}  // namespace fp4z::text
