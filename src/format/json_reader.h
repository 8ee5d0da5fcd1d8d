// Strict JSON reading in linear time: key order kept, duplicate keys refused, nesting bounded.
#pragma once
#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace fp4z {

// Bounds that keep hostile JSON cheap. The text size itself is bounded by the caller (e.g. the
// 100,000,000-byte safetensors header limit); every value costs at least one byte of text, so
// memory stays proportional to the input.
struct JsonLimits {
  size_t max_depth = 128;            // nested objects/arrays (real configs use < 10)
  size_t max_string_bytes = 1 << 24;  // one string or key
};

// Parses `text` into an ordered_json (object keys in file order, as the safetensors and HF config
// readers need) at a cost linear in the size of the text. nlohmann's own ordered_json::parse finds
// each new key by a linear search of the object, which is quadratic: 160,000 keys took 28 s. Here
// every member is appended directly, and duplicate keys (which nlohmann would silently collapse)
// are found with a hash set per large object. Malformed JSON, a duplicate key or a broken limit
// throws Error (exit 2) with one line naming `label`.
nlohmann::ordered_json parse_json_linear(std::string_view text, const std::string& label, const JsonLimits& limits = {});

// Throws Error (exit 2, one line naming `label`) when `text` nests objects and arrays deeper than
// `max_depth`, in one pass over the text. For readers that parse with nlohmann::json directly
// (tokenizers): its copies and lookups recurse once per level, so a few MB of brackets would
// overflow the stack. Malformed JSON is left for the parser to report.
void require_json_depth(std::string_view text, const std::string& label, size_t max_depth = JsonLimits{}.max_depth);

}  // namespace fp4z
