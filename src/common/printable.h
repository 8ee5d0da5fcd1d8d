// Names from files, made safe to print and checked for well-formed UTF-8 (one helper for every command).
#pragma once
#include <string>
#include <string_view>

namespace fp4z {

// Length of the well-formed UTF-8 sequence at text[i] (1..4), or 0 when the bytes there are not
// one (overlong forms, surrogates and code points above U+10FFFF are not). *cp gets the code point.
size_t utf8_sequence(std::string_view text, size_t i, char32_t* cp);

// True when the whole text is well-formed UTF-8.
bool is_valid_utf8(std::string_view text);

// True for C0 controls (U+0000..U+001F), DEL and C1 controls (U+0080..U+009F).
bool is_control(char32_t cp);

// The text as one terminal-safe line: printable UTF-8 passes unchanged; backslash becomes "\\",
// controls and ill-formed bytes become "\n", "\t", "\r" or "\xHH" per byte, and the invisible
// bidirectional overrides/isolates (U+202A..U+202E, U+2066..U+2069) become "\u{XXXX}", so a stored
// name can neither start a new output line nor reach the terminal as an escape sequence.
std::string printable(std::string_view text);

}  // namespace fp4z
