// UTF-8 well-formedness and terminal-safe escaping of names read from untrusted files.
#include "common/printable.h"

#include <cstdio>

namespace fp4z {

size_t utf8_sequence(std::string_view text, size_t i, char32_t* cp) {
  auto byte = [&](size_t k) { return (unsigned char)text[k]; };
  unsigned char b0 = byte(i);
  if (b0 < 0x80) {
    *cp = b0;
    return 1;
  }
  size_t len;
  char32_t min;
  if (b0 >= 0xC2 && b0 <= 0xDF) len = 2, min = 0x80, *cp = b0 & 0x1F;
  else if (b0 >= 0xE0 && b0 <= 0xEF) len = 3, min = 0x800, *cp = b0 & 0x0F;
  else if (b0 >= 0xF0 && b0 <= 0xF4) len = 4, min = 0x10000, *cp = b0 & 0x07;
  else return 0;
  if (text.size() - i < len) return 0;
  for (size_t k = 1; k < len; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
    *cp = (*cp << 6) | (byte(i + k) & 0x3F);
  }
  if (*cp < min || *cp > 0x10FFFF || (*cp >= 0xD800 && *cp <= 0xDFFF)) return 0;
  return len;
}

bool is_valid_utf8(std::string_view text) {
  char32_t cp;
  for (size_t i = 0; i < text.size();) {
    size_t n = utf8_sequence(text, i, &cp);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

bool is_control(char32_t cp) { return cp < 0x20 || (cp >= 0x7F && cp <= 0x9F); }

std::string printable(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  char buf[16];
  for (size_t i = 0; i < text.size();) {
    char32_t cp;
    size_t n = utf8_sequence(text, i, &cp);
    if (n == 0) {
      std::snprintf(buf, sizeof buf, "\\x%02X", (unsigned char)text[i]);
      out += buf;
      ++i;
      continue;
    }
    if (cp == '\\') {
      out += "\\\\";
    } else if (cp == '\n') {
      out += "\\n";
    } else if (cp == '\t') {
      out += "\\t";
    } else if (cp == '\r') {
      out += "\\r";
    } else if (is_control(cp)) {
      for (size_t k = 0; k < n; ++k) {
        std::snprintf(buf, sizeof buf, "\\x%02X", (unsigned char)text[i + k]);
        out += buf;
      }
    } else if ((cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069)) {
      std::snprintf(buf, sizeof buf, "\\u{%04X}", unsigned(cp));
      out += buf;
    } else {
      out.append(text.substr(i, n));
    }
    i += n;
  }
  return out;
}

}  // namespace fp4z
