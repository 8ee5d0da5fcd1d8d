// Linear-time strict JSON reader: nlohmann's SAX lexer feeding a builder that appends members in O(1).
#include "format/json_reader.h"

#include <algorithm>
#include <memory>
#include <unordered_set>
#include <vector>

#include "common/error.h"

namespace fp4z {
namespace {

using ojson = nlohmann::ordered_json;

// Objects up to this many members are searched linearly for duplicates; larger ones get a set.
constexpr size_t kLinearKeySearch = 16;

struct OpenContainer {
  ojson* value;
  std::unique_ptr<std::unordered_set<std::string>> keys;  // for objects past kLinearKeySearch
};

// SAX consumer that builds the DOM. Parent pointers stay valid because only the innermost open
// container ever grows.
class LinearBuilder {
 public:
  LinearBuilder(const std::string& label, const JsonLimits& limits) : label_(label), limits_(limits) {}

  ojson& result() { return root_; }
  const std::string& fault() const { return fault_; }

  bool null() { return add(ojson(nullptr)) != nullptr; }
  bool boolean(bool v) { return add(ojson(v)) != nullptr; }
  bool number_integer(ojson::number_integer_t v) { return add(ojson(v)) != nullptr; }
  bool number_unsigned(ojson::number_unsigned_t v) { return add(ojson(v)) != nullptr; }
  bool number_float(ojson::number_float_t v, const std::string&) { return add(ojson(v)) != nullptr; }
  bool string(std::string& v) {
    if (v.size() > limits_.max_string_bytes) return stop("a string is longer than " + std::to_string(limits_.max_string_bytes) + " bytes");
    return add(ojson(std::move(v))) != nullptr;
  }
  bool binary(ojson::binary_t&) { return stop("binary values are not JSON"); }
  bool start_object(size_t) { return open(ojson::value_t::object); }
  bool start_array(size_t) { return open(ojson::value_t::array); }
  bool end_object() { return close(); }
  bool end_array() { return close(); }

  bool key(std::string& k) {
    if (k.size() > limits_.max_string_bytes) return stop("a key is longer than " + std::to_string(limits_.max_string_bytes) + " bytes");
    OpenContainer& top = stack_.back();
    auto& members = top.value->get_ref<ojson::object_t&>();
    bool duplicate = false;
    if (top.keys) {
      duplicate = !top.keys->insert(k).second;
    } else {
      for (const auto& m : members) duplicate = duplicate || m.first == k;
      if (!duplicate && members.size() + 1 > kLinearKeySearch) {
        top.keys = std::make_unique<std::unordered_set<std::string>>();
        top.keys->reserve(members.size() * 2 + 2);
        for (const auto& m : members) top.keys->insert(m.first);
        top.keys->insert(k);
      }
    }
    if (duplicate) return stop("duplicate JSON key '" + k + "'");
    pending_key_ = std::move(k);
    return true;
  }

  bool parse_error(size_t, const std::string&, const nlohmann::detail::exception& e) {
    if (fault_.empty()) fault_ = std::string("malformed JSON: ") + e.what();
    for (char& c : fault_)
      if (c == '\n' || c == '\r') c = ' ';  // the lexer quotes what it read; the message stays one line
    return false;
  }

 private:
  // Appends a value to the innermost container (or makes it the root); returns where it lives.
  ojson* add(ojson&& v) {
    if (stack_.empty()) {
      root_ = std::move(v);
      return &root_;
    }
    ojson* top = stack_.back().value;
    if (top->is_array()) {
      auto& items = top->get_ref<ojson::array_t&>();
      items.push_back(std::move(v));
      return &items.back();
    }
    auto& members = top->get_ref<ojson::object_t&>();
    members.emplace_back(std::move(pending_key_), std::move(v));  // the vector's append: no key search
    return &members.back().second;
  }

  bool open(ojson::value_t kind) {
    if (stack_.size() >= limits_.max_depth)
      return stop("nested deeper than " + std::to_string(limits_.max_depth) + " levels");
    ojson* at = add(ojson(kind));
    stack_.push_back({at, nullptr});
    return true;
  }

  bool close() {
    stack_.pop_back();
    return true;
  }

  bool stop(const std::string& why) {
    if (fault_.empty()) fault_ = why;
    return false;
  }

  const std::string& label_;
  const JsonLimits& limits_;
  ojson root_;
  std::vector<OpenContainer> stack_;
  std::string pending_key_;
  std::string fault_;
};

}  // namespace

nlohmann::ordered_json parse_json_linear(std::string_view text, const std::string& label, const JsonLimits& limits) {
  LinearBuilder builder(label, limits);
  bool ok = false;
  try {
    ok = ojson::sax_parse(text.begin(), text.end(), &builder);
  } catch (const nlohmann::json::exception& e) {
    fail_input(label + ": malformed JSON: " + e.what());
  }
  if (!ok) fail_input(label + ": " + (builder.fault().empty() ? std::string("malformed JSON") : builder.fault()));
  return std::move(builder.result());
}

void require_json_depth(std::string_view text, const std::string& label, size_t max_depth) {
  size_t depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (in_string) {
      if (c == '\\') ++i;  // the escaped character cannot end the string
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) fail_input(label + ": nested deeper than " + std::to_string(max_depth) + " levels");
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
}

}  // namespace fp4z
