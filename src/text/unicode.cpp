// UTF-8 coding, code point classification tables and NFC normalization for the tokenizers.
#include "text/unicode.h"

#include <algorithm>
#include <vector>

namespace fp4z::text {
namespace {

constexpr char32_t kHangulSBase = 0xAC00, kHangulLBase = 0x1100, kHangulVBase = 0x1161,
                   kHangulTBase = 0x11A7;
constexpr int kHangulLCount = 19, kHangulVCount = 21, kHangulTCount = 28;
constexpr int kHangulNCount = kHangulVCount * kHangulTCount, kHangulSCount = kHangulLCount * kHangulNCount;

// Two-stage lookup table of the flag ranges: 128-code-point blocks, identical blocks shared.
struct FlagTable {
  std::vector<uint16_t> block_of;  // code point >> 7 -> block index
  std::vector<uint8_t> blocks;     // block index * 128 + (code point & 127) -> flags
};

FlagTable build_flag_table() {
  FlagTable t;
  constexpr size_t kBlock = 128, kBlocks = 0x110000 / kBlock;
  t.block_of.resize(kBlocks);
  std::vector<uint8_t> block(kBlock);
  size_t r = 0;
  for (size_t b = 0; b < kBlocks; ++b) {
    for (size_t k = 0; k < kBlock; ++k) {
      char32_t cp = char32_t(b * kBlock + k);
      while (r < tables::kFlagRangeCount && tables::kFlagRanges[r].last < cp) ++r;
      bool inside = r < tables::kFlagRangeCount && tables::kFlagRanges[r].first <= cp;
      block[k] = inside ? tables::kFlagRanges[r].value : 0;
    }
    size_t found = t.blocks.size() / kBlock;
    for (size_t j = 0; j < t.blocks.size() / kBlock; ++j) {
      if (std::equal(block.begin(), block.end(), t.blocks.begin() + j * kBlock)) {
        found = j;
        break;
      }
    }
    if (found == t.blocks.size() / kBlock) t.blocks.insert(t.blocks.end(), block.begin(), block.end());
    t.block_of[b] = uint16_t(found);
  }
  return t;
}

const FlagTable& flag_table() {
  static const FlagTable table = build_flag_table();
  return table;
}

const tables::DecompositionEntry* find_decomposition(char32_t cp) {
  const auto* begin = tables::kDecompositions;
  const auto* end = begin + tables::kDecompositionCount;
  auto it = std::lower_bound(begin, end, cp, [](const auto& e, char32_t c) { return e.cp < c; });
  return it != end && it->cp == cp ? it : nullptr;
}

// The primary composite of (a, b), or 0.
char32_t compose_pair(char32_t a, char32_t b) {
  if (a >= kHangulLBase && a < kHangulLBase + kHangulLCount && b >= kHangulVBase &&
      b < kHangulVBase + kHangulVCount) {
    return kHangulSBase + ((a - kHangulLBase) * kHangulVCount + (b - kHangulVBase)) * kHangulTCount;
  }
  if (a >= kHangulSBase && a < kHangulSBase + kHangulSCount && (a - kHangulSBase) % kHangulTCount == 0 &&
      b > kHangulTBase && b < kHangulTBase + kHangulTCount) {
    return a + (b - kHangulTBase);
  }
  const auto* begin = tables::kCompositions;
  const auto* end = begin + tables::kCompositionCount;
  auto it = std::lower_bound(begin, end, std::pair{a, b}, [](const auto& e, const std::pair<char32_t, char32_t>& k) {
    return e.first < k.first || (e.first == k.first && e.second < k.second);
  });
  return it != end && it->first == a && it->second == b ? it->composite : 0;
}

void decompose_into(char32_t cp, std::vector<char32_t>& out) {
  if (cp >= kHangulSBase && cp < kHangulSBase + kHangulSCount) {
    char32_t s = cp - kHangulSBase;
    out.push_back(kHangulLBase + s / kHangulNCount);
    out.push_back(kHangulVBase + (s % kHangulNCount) / kHangulTCount);
    if (s % kHangulTCount) out.push_back(kHangulTBase + s % kHangulTCount);
    return;
  }
  if (const auto* d = find_decomposition(cp)) {
    out.insert(out.end(), tables::kDecompositionData + d->offset, tables::kDecompositionData + d->offset + d->length);
    return;
  }
  out.push_back(cp);
}

// True when a valid UTF-8 run is certainly already in NFC (the UAX #15 quick check says Yes).
bool quick_check_nfc(std::string_view run) {
  uint8_t last_ccc = 0;
  for (size_t i = 0; i < run.size();) {
    size_t len;
    char32_t cp = decode_utf8(run, i, &len);
    i += len;
    uint8_t f = codepoint_flags(cp);
    if (f & kFlagNfcQc) return false;
    uint8_t ccc = (f & kFlagCombining) ? combining_class(cp) : 0;
    if (ccc != 0 && last_ccc > ccc) return false;
    last_ccc = ccc;
  }
  return true;
}

// Full NFC of a valid UTF-8 run: canonical decomposition, canonical ordering, canonical composition.
void nfc_run(std::string_view run, std::string& out) {
  std::vector<char32_t> cps;
  cps.reserve(run.size());
  for (size_t i = 0; i < run.size();) {
    size_t len;
    char32_t cp = decode_utf8(run, i, &len);
    i += len;
    decompose_into(cp, cps);
  }
  // Canonical ordering: stable sort of each run of non-starters by combining class.
  for (size_t i = 0; i < cps.size();) {
    if (combining_class(cps[i]) == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < cps.size() && combining_class(cps[j]) != 0) ++j;
    std::stable_sort(cps.begin() + i, cps.begin() + j,
                     [](char32_t a, char32_t b) { return combining_class(a) < combining_class(b); });
    i = j;
  }
  // Canonical composition.
  std::vector<char32_t> composed;
  composed.reserve(cps.size());
  size_t starter = SIZE_MAX;
  uint8_t last_ccc = 0;
  for (char32_t cp : cps) {
    uint8_t ccc = combining_class(cp);
    if (starter != SIZE_MAX) {
      bool adjacent = starter + 1 == composed.size();
      if (adjacent || (last_ccc != 0 && last_ccc < ccc)) {
        if (char32_t c = compose_pair(composed[starter], cp)) {
          composed[starter] = c;
          continue;
        }
      }
    }
    if (ccc == 0) {
      starter = composed.size();
      last_ccc = 0;
    } else {
      last_ccc = ccc;
    }
    composed.push_back(cp);
  }
  for (char32_t cp : composed) append_utf8(out, cp);
}

}  // namespace

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(char(cp));
  } else if (cp < 0x800) {
    out.push_back(char(0xC0 | (cp >> 6)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(char(0xE0 | (cp >> 12)));
    out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(char(0xF0 | (cp >> 18)));
    out.push_back(char(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  }
}

uint8_t codepoint_flags(char32_t cp) {
  if (cp > 0x10FFFF) return 0;
  const FlagTable& t = flag_table();
  return t.blocks[size_t(t.block_of[cp >> 7]) * 128 + (cp & 127)];
}

uint8_t combining_class(char32_t cp) {
  const auto* begin = tables::kCombiningClassRanges;
  const auto* end = begin + tables::kCombiningClassRangeCount;
  auto it = std::lower_bound(begin, end, cp, [](const auto& r, char32_t c) { return r.last < c; });
  return it != end && it->first <= cp ? it->value : 0;
}

std::string nfc(std::string_view text) {
  bool ascii = std::all_of(text.begin(), text.end(), [](char c) { return (unsigned char)c < 0x80; });
  if (ascii) return std::string(text);
  // Split into maximal valid UTF-8 runs; invalid bytes are copied and block composition.
  std::string out;
  out.reserve(text.size() + 8);
  size_t i = 0;
  while (i < text.size()) {
    size_t j = i;
    while (j < text.size()) {
      size_t len;
      if (decode_utf8(text, j, &len) == kInvalidCodepoint) break;
      j += len;
    }
    std::string_view run = text.substr(i, j - i);
    if (quick_check_nfc(run)) {
      out.append(run);
    } else {
      nfc_run(run, out);
    }
    if (j < text.size()) out.push_back(text[j++]);
    i = j;
  }
  return out;
}

std::string utf8_lossy(std::string_view bytes) {
  const auto* s = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t n = bytes.size();
  std::string out;
  out.reserve(n);
  size_t i = 0;
  while (i < n) {
    size_t len;
    if (decode_utf8(bytes, i, &len) != kInvalidCodepoint) {
      out.append(bytes.substr(i, len));
      i += len;
      continue;
    }
    // Maximal subpart: the longest prefix of a well-formed sequence starting at i (at least 1 byte).
    unsigned char c = s[i];
    size_t need = (c >= 0xC2 && c <= 0xDF) ? 2 : (c >= 0xE0 && c <= 0xEF) ? 3 : (c >= 0xF0 && c <= 0xF4) ? 4 : 1;
    size_t k = 1;
    while (k < need && i + k < n) {
      unsigned char b = s[i + k];
      unsigned char lo = 0x80, hi = 0xBF;
      if (k == 1) {
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
      }
      if (b < lo || b > hi) break;
      ++k;
    }
    out.append("\xEF\xBF\xBD");
    i += k;
  }
  return out;
}

const char* unicode_tables_version() { return tables::kUnicodeVersion; }

}  // namespace fp4z::text
