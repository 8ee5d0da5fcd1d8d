// Hugging Face tokenizer.json BPE (byte-level as in Qwen2/Qwen3, or byte-fallback as in Llama) and load_tokenizer.
#include <algorithm>
#include <array>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <queue>
#include <sstream>
#include <string_view>
#include <unordered_map>

#include "common/error.h"
#include "format/json_reader.h"
#include "text/pretokenize.h"
#include "text/tokenizer.h"
#include "text/unicode.h"

namespace fp4z {
namespace {

using nlohmann::json;

// GPT-2 byte-level map: printable Latin-1 bytes map to themselves, the other 68 bytes to U+0100...
std::array<char32_t, 256> byte_to_unicode_table() {
  std::array<char32_t, 256> map{};
  char32_t next = 256;
  for (int b = 0; b < 256; ++b) {
    bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    map[b] = printable ? char32_t(b) : next++;
  }
  return map;
}

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false;
  bool lstrip = false;
  bool rstrip = false;
};

struct NormalizerStep {
  enum Kind { kNfc, kPrepend, kReplace } kind;
  std::string a;  // Prepend: prefix; Replace: pattern
  std::string b;  // Replace: content
};

struct DecoderStep {
  enum Kind { kByteLevel, kReplace, kByteFallback, kFuse, kStrip } kind;
  std::string a;  // Replace: pattern; Strip: content
  std::string b;  // Replace: content
  int start = 0, stop = 0;
};

struct MergeInfo {
  int32_t rank;
  int32_t result;
};

// One adjacent pair waiting to be merged; the smallest (priority, position) goes first.
struct PairCandidate {
  int32_t priority;
  int32_t pos;
  int32_t left_id;
  int32_t right_id;
  int32_t result;
  bool operator>(const PairCandidate& o) const {
    return priority != o.priority ? priority > o.priority : pos > o.pos;
  }
};

// Hash and equality that let unordered_maps keyed by std::string be searched with a string_view.
struct StringViewHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
};

uint64_t pair_key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }

[[noreturn]] void fail_json(const std::string& label, const std::string& what) {
  fail_input(label + ": " + what);
}

std::string read_text_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail_input(path + ": cannot open file");
  std::ostringstream ss;
  ss << f.rdbuf();
  if (f.bad()) fail_input(path + ": read error");
  return ss.str();
}

json parse_json_file(const std::string& path) {
  std::string text = read_text_file(path);
  require_json_depth(text, path);
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    std::string msg = e.what();
    std::replace(msg.begin(), msg.end(), '\n', ' ');
    fail_input(path + ": invalid JSON (" + msg + ")");
  }
}

// model.vocab and model.merges of a tokenizer.json, taken out of the JSON while parsing (they
// are most of the 11 MB of a Qwen file; building DOM nodes for them would double the load time).
struct VocabAndMerges {
  std::vector<std::pair<std::string, int64_t>> vocab;
  std::vector<std::pair<std::string, std::string>> merges;
  std::string fault;  // first malformed entry, if any
};

json parse_tokenizer_json(const std::string& path, VocabAndMerges& out) {
  std::string text = read_text_file(path);
  require_json_depth(text, path);
  std::string key1, key2, pending_key;
  auto cb = [&](int depth, json::parse_event_t event, json& parsed) -> bool {
    using E = json::parse_event_t;
    if (event == E::key && depth == 1) key1 = parsed.get<std::string>();
    if (event == E::key && depth == 2) key2 = parsed.get<std::string>();
    if (depth != 3 || key1 != "model") return true;
    if (key2 == "vocab") {
      if (event == E::key) {
        pending_key = parsed.get<std::string>();
      } else if (event == E::value && parsed.is_number_integer()) {
        out.vocab.emplace_back(std::move(pending_key), parsed.get<int64_t>());
      } else if ((event == E::value || event == E::object_end || event == E::array_end) && out.fault.empty()) {
        out.fault = "vocab entry \"" + pending_key + "\" has a non-integer id";
      }
      return false;
    }
    if (key2 == "merges") {
      if (event == E::value && parsed.is_string()) {
        const std::string& m = parsed.get_ref<const std::string&>();
        size_t sp = m.find(' ');
        if (sp == std::string::npos || m.find(' ', sp + 1) != std::string::npos) {
          if (out.fault.empty()) out.fault = "merge " + std::to_string(out.merges.size()) + " is not \"a b\": \"" + m + "\"";
        } else {
          out.merges.emplace_back(m.substr(0, sp), m.substr(sp + 1));
        }
      } else if (event == E::array_end && parsed.size() == 2 && parsed[0].is_string() && parsed[1].is_string()) {
        out.merges.emplace_back(std::move(parsed[0].get_ref<std::string&>()), std::move(parsed[1].get_ref<std::string&>()));
      } else if ((event == E::value || event == E::object_end || event == E::array_end) && out.fault.empty()) {
        out.fault = "merge " + std::to_string(out.merges.size()) + " is neither \"a b\" nor a pair of strings";
      }
      return event != E::value && event != E::object_end && event != E::array_end && event != E::key;
    }
    return true;
  };
  try {
    return json::parse(text, cb);
  } catch (const json::exception& e) {
    std::string msg = e.what();
    std::replace(msg.begin(), msg.end(), '\n', ' ');
    fail_input(path + ": invalid JSON (" + msg + ")");
  }
}

class BpeTokenizer final : public Tokenizer {
 public:
  BpeTokenizer(const json& root, VocabAndMerges& vocab_and_merges, const std::string& label);

  std::vector<int32_t> encode(const std::string& text) const override;
  std::string decode(const std::vector<int32_t>& ids) const override;
  size_t vocab_size() const override { return id_to_token_.size(); }
  int32_t token_id(const std::string& piece) const override {
    for (const auto& t : added_) {
      if (t.content == piece) return t.id;
    }
    auto it = vocab_.find(piece);
    return it == vocab_.end() ? -1 : it->second;
  }
  int32_t bos_id() const override { return bos_id_; }
  std::vector<int32_t> eos_ids() const override { return eos_ids_; }

  void set_special_ids(int32_t bos, std::vector<int32_t> eos) {
    bos_id_ = bos;
    eos_ids_ = std::move(eos);
  }
  int32_t template_bos_id() const { return template_bos_id_; }
  // Id of an added (not merely vocab) token, or -1.
  int32_t added_token_id(const std::string& content) const {
    for (const auto& t : added_) {
      if (t.content == content) return t.id;
    }
    return -1;
  }

 private:
  void parse_model(const json& model, VocabAndMerges& vm, const std::string& label);
  void parse_normalizer(const json& n, const std::string& label);
  void parse_pre_tokenizer(const json& p, const std::string& label);
  void parse_decoder(const json& d, const std::string& label);
  void parse_post_processor(const json& p);

  std::string normalize(std::string_view segment) const;
  void encode_segment(std::string_view segment, std::vector<int32_t>& out) const;
  void encode_word(std::string_view word, std::vector<int32_t>& out) const;
  std::vector<int32_t> bpe_word(std::string_view word) const;
  void merge_symbols(std::vector<int32_t>& symbols) const;

  std::unordered_map<std::string, int32_t> vocab_;
  std::vector<std::string> id_to_token_;
  std::unordered_map<uint64_t, MergeInfo> merges_;
  // Score-greedy mode (byte_fallback models): priority of a merge result = the rank of the first
  // merge producing it, so the highest-scored piece wins and ties go to the leftmost pair (run.c).
  std::vector<int32_t> piece_rank_;
  bool score_greedy_ = false;
  bool byte_fallback_ = false;
  bool ignore_merges_ = false;
  bool fuse_unk_ = false;
  int32_t unk_id_ = -1;
  std::array<int32_t, 256> byte_token_id_{};     // byte-level: id of the mapped character of each byte
  std::array<int32_t, 256> fallback_token_id_{};  // byte fallback: id of "<0xHH>"
  std::array<char32_t, 256> byte_to_char_ = byte_to_unicode_table();
  std::unordered_map<char32_t, uint8_t> char_to_byte_;

  std::vector<AddedToken> added_;
  std::array<std::vector<size_t>, 256> added_by_first_byte_;  // indices into added_, longest first
  std::vector<int32_t> added_content_of_id_;                  // id -> index into added_ or -1

  std::vector<NormalizerStep> normalizer_;
  bool byte_level_ = false;
  int split_digits_ = 0;  // 0: no Split pre-tokenizer; 1: Qwen2 pattern; 3: Llama-3 pattern
  std::vector<DecoderStep> decoder_;

  int64_t id_limit_ = 0;  // vocab entries + added tokens: every id must be below it

  int32_t bos_id_ = -1;
  std::vector<int32_t> eos_ids_;
  int32_t template_bos_id_ = -1;

  // Per-word cache of BPE results (words are short; bounded so long runs cannot grow it forever).
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int32_t>, StringViewHash, std::equal_to<>> cache_;
  static constexpr size_t kCacheMaxEntries = 1 << 18;
  static constexpr size_t kCacheMaxWordBytes = 128;
};

BpeTokenizer::BpeTokenizer(const json& root, VocabAndMerges& vocab_and_merges, const std::string& label) {
  if (!root.is_object()) fail_json(label, "top level is not a JSON object");
  if (!root.contains("model") || !root["model"].is_object()) fail_json(label, "missing \"model\" object");
  // Ids index dense tables, so they are bounded by the number of entries (vocab + added tokens):
  // an 11 KB file naming id 2^27 must not cost gigabytes.
  size_t added_count = root.contains("added_tokens") && root["added_tokens"].is_array() ? root["added_tokens"].size() : 0;
  id_limit_ = int64_t(vocab_and_merges.vocab.size() + added_count);
  parse_model(root["model"], vocab_and_merges, label);
  parse_normalizer(root.value("normalizer", json()), label);
  parse_pre_tokenizer(root.value("pre_tokenizer", json()), label);
  parse_decoder(root.value("decoder", json()), label);
  parse_post_processor(root.value("post_processor", json()));

  // Added tokens (matched in the raw text before normalization and splitting).
  if (root.contains("added_tokens") && !root["added_tokens"].is_null()) {
    const json& list = root["added_tokens"];
    if (!list.is_array()) fail_json(label, "\"added_tokens\" is not an array");
    for (const json& t : list) {
      if (!t.is_object() || !t.contains("id") || !t["id"].is_number_integer() || !t.contains("content") ||
          !t["content"].is_string()) {
        fail_json(label, "added token without integer \"id\" and string \"content\"");
      }
      AddedToken a;
      a.content = t["content"].get<std::string>();
      int64_t id = t["id"].get<int64_t>();
      if (id < 0 || id >= id_limit_)
        fail_json(label, "added token id " + std::to_string(id) + " out of range (the file has " + std::to_string(id_limit_) +
                             " entries; ids must be below that)");
      if (a.content.empty()) fail_json(label, "added token with empty content (id " + std::to_string(id) + ")");
      a.id = int32_t(id);
      a.special = t.value("special", false);
      a.lstrip = t.value("lstrip", false);
      a.rstrip = t.value("rstrip", false);
      added_.push_back(a);
    }
  }
  int32_t max_id = int32_t(id_to_token_.size()) - 1;
  for (const auto& a : added_) max_id = std::max(max_id, a.id);
  id_to_token_.resize(size_t(max_id) + 1);
  added_content_of_id_.assign(size_t(max_id) + 1, -1);
  for (size_t k = 0; k < added_.size(); ++k) {
    added_content_of_id_[size_t(added_[k].id)] = int32_t(k);
    id_to_token_[size_t(added_[k].id)] = added_[k].content;
    added_by_first_byte_[(unsigned char)added_[k].content[0]].push_back(k);
  }
  for (auto& list : added_by_first_byte_) {
    std::stable_sort(list.begin(), list.end(),
                     [&](size_t x, size_t y) { return added_[x].content.size() > added_[y].content.size(); });
  }
}

void BpeTokenizer::parse_model(const json& model, VocabAndMerges& vm, const std::string& label) {
  std::string type = model.value("type", std::string("BPE"));
  if (type != "BPE") fail_json(label, "unsupported model type \"" + type + "\" (only BPE)");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (model.contains(key) && !model[key].is_null() && !(model[key].is_string() && model[key].get<std::string>().empty())) {
      fail_json(label, std::string("unsupported BPE option \"") + key + "\"");
    }
  }
  if (model.contains("dropout") && model["dropout"].is_number() && model["dropout"].get<double>() > 0.0) {
    fail_json(label, "unsupported BPE option \"dropout\"");
  }
  byte_fallback_ = model.value("byte_fallback", false);
  ignore_merges_ = model.value("ignore_merges", false);
  fuse_unk_ = model.value("fuse_unk", false);
  score_greedy_ = byte_fallback_;

  if (!model.contains("vocab") || !model["vocab"].is_object()) fail_json(label, "model has no \"vocab\" object");
  if (model.contains("merges") && !model["merges"].is_null() && !model["merges"].is_array()) {
    fail_json(label, "model \"merges\" is not an array");
  }
  if (!vm.fault.empty()) fail_json(label, vm.fault);
  vocab_.reserve(vm.vocab.size() * 2);
  int64_t max_id = -1;
  for (const auto& [piece, id] : vm.vocab) {
    if (id < 0 || id >= id_limit_)
      fail_json(label, "vocab id " + std::to_string(id) + " out of range (the file has " + std::to_string(id_limit_) +
                           " entries; ids must be below that)");
    max_id = std::max(max_id, id);
  }
  id_to_token_.assign(size_t(max_id + 1), std::string());
  for (auto& [piece, id] : vm.vocab) {
    id_to_token_[size_t(id)] = piece;
    vocab_.emplace(std::move(piece), int32_t(id));
  }
  vm.vocab.clear();

  merges_.reserve(vm.merges.size() * 2);
  piece_rank_.assign(id_to_token_.size(), INT32_MAX);
  std::string joined;
  int32_t rank = 0;
  for (const auto& [left, right] : vm.merges) {
    joined.assign(left).append(right);
    auto l = vocab_.find(left), r = vocab_.find(right), res = vocab_.find(joined);
    if (l == vocab_.end() || r == vocab_.end() || res == vocab_.end()) {
      fail_json(label, "merge " + std::to_string(rank) + " (\"" + left + "\", \"" + right + "\") uses a token missing from the vocab");
    }
    merges_.emplace(pair_key(l->second, r->second), MergeInfo{rank, res->second});
    piece_rank_[size_t(res->second)] = std::min(piece_rank_[size_t(res->second)], rank);
    ++rank;
  }
  vm.merges.clear();

  if (model.contains("unk_token") && model["unk_token"].is_string()) {
    auto it = vocab_.find(model["unk_token"].get<std::string>());
    if (it == vocab_.end()) fail_json(label, "unk_token is not in the vocab");
    unk_id_ = it->second;
  }
  auto map = byte_to_unicode_table();
  for (int b = 0; b < 256; ++b) {
    char_to_byte_[map[b]] = uint8_t(b);
    std::string ch;
    text::append_utf8(ch, map[b]);
    auto it = vocab_.find(ch);
    byte_token_id_[b] = it == vocab_.end() ? -1 : it->second;
    char hex[8];
    std::snprintf(hex, sizeof hex, "<0x%02X>", b);
    auto fb = vocab_.find(hex);
    fallback_token_id_[b] = fb == vocab_.end() ? -1 : fb->second;
  }
}

void BpeTokenizer::parse_normalizer(const json& n, const std::string& label) {
  if (n.is_null()) return;
  std::string type = n.value("type", std::string());
  if (type == "Sequence") {
    for (const json& s : n.value("normalizers", json::array())) parse_normalizer(s, label);
  } else if (type == "NFC") {
    normalizer_.push_back({NormalizerStep::kNfc, "", ""});
  } else if (type == "Prepend") {
    normalizer_.push_back({NormalizerStep::kPrepend, n.value("prepend", std::string()), ""});
  } else if (type == "Replace") {
    const json& pattern = n.value("pattern", json());
    if (!pattern.is_object() || !pattern.contains("String")) fail_json(label, "unsupported Replace normalizer (only String patterns)");
    normalizer_.push_back({NormalizerStep::kReplace, pattern["String"].get<std::string>(), n.value("content", std::string())});
  } else {
    fail_json(label, "unsupported normalizer \"" + type + "\"");
  }
}

void BpeTokenizer::parse_pre_tokenizer(const json& p, const std::string& label) {
  if (p.is_null()) return;
  std::string type = p.value("type", std::string());
  if (type == "Sequence") {
    for (const json& s : p.value("pretokenizers", json::array())) parse_pre_tokenizer(s, label);
  } else if (type == "Split") {
    const json& pattern = p.value("pattern", json());
    std::string regex = pattern.is_object() && pattern.contains("Regex") ? pattern["Regex"].get<std::string>() : "";
    if (regex == text::kQwen2Pattern) {
      split_digits_ = 1;
    } else if (regex == text::kLlama3Pattern) {
      split_digits_ = 3;
    } else {
      fail_json(label, "unsupported Split pre-tokenizer pattern (only the Qwen2 and Llama-3 regexes)");
    }
    if (p.value("behavior", std::string()) != "Isolated" || p.value("invert", false)) {
      fail_json(label, "unsupported Split pre-tokenizer behavior (only Isolated, not inverted)");
    }
  } else if (type == "ByteLevel") {
    if (p.value("add_prefix_space", false)) fail_json(label, "unsupported ByteLevel option add_prefix_space=true");
    if (p.value("use_regex", true)) fail_json(label, "unsupported ByteLevel option use_regex=true (GPT-2 regex)");
    byte_level_ = true;
  } else {
    fail_json(label, "unsupported pre-tokenizer \"" + type + "\"");
  }
}

void BpeTokenizer::parse_decoder(const json& d, const std::string& label) {
  if (d.is_null()) return;
  std::string type = d.value("type", std::string());
  if (type == "Sequence") {
    for (const json& s : d.value("decoders", json::array())) parse_decoder(s, label);
  } else if (type == "ByteLevel") {
    decoder_.push_back({DecoderStep::kByteLevel, "", "", 0, 0});
  } else if (type == "ByteFallback") {
    decoder_.push_back({DecoderStep::kByteFallback, "", "", 0, 0});
  } else if (type == "Fuse") {
    decoder_.push_back({DecoderStep::kFuse, "", "", 0, 0});
  } else if (type == "Replace") {
    const json& pattern = d.value("pattern", json());
    if (!pattern.is_object() || !pattern.contains("String")) fail_json(label, "unsupported Replace decoder (only String patterns)");
    decoder_.push_back({DecoderStep::kReplace, pattern["String"].get<std::string>(), d.value("content", std::string()), 0, 0});
  } else if (type == "Strip") {
    decoder_.push_back({DecoderStep::kStrip, d.value("content", std::string(" ")), "", d.value("start", 0), d.value("stop", 0)});
  } else {
    fail_json(label, "unsupported decoder \"" + type + "\"");
  }
}

void BpeTokenizer::parse_post_processor(const json& p) {
  // Only used to learn whether the model expects a BOS (TemplateProcessing "<s> $A").
  if (!p.is_object() || p.value("type", std::string()) != "TemplateProcessing") return;
  const json& single = p.value("single", json());
  if (!single.is_array() || single.empty() || !single[0].is_object() || !single[0].contains("SpecialToken")) return;
  std::string name = single[0]["SpecialToken"].value("id", std::string());
  const json& specials = p.value("special_tokens", json());
  if (specials.is_object() && specials.contains(name)) {
    const json& ids = specials[name].value("ids", json());
    if (ids.is_array() && ids.size() == 1 && ids[0].is_number_integer()) template_bos_id_ = ids[0].get<int32_t>();
  }
}

std::string BpeTokenizer::normalize(std::string_view segment) const {
  std::string s(segment);
  for (const auto& step : normalizer_) {
    switch (step.kind) {
      case NormalizerStep::kNfc:
        s = text::nfc(s);
        break;
      case NormalizerStep::kPrepend:
        if (!s.empty()) s = step.a + s;
        break;
      case NormalizerStep::kReplace: {
        if (step.a.empty()) break;
        std::string r;
        r.reserve(s.size());
        size_t pos = 0;
        for (size_t hit; (hit = s.find(step.a, pos)) != std::string::npos; pos = hit + step.a.size()) {
          r.append(s, pos, hit - pos);
          r.append(step.b);
        }
        r.append(s, pos, std::string::npos);
        s = std::move(r);
        break;
      }
    }
  }
  return s;
}

void BpeTokenizer::merge_symbols(std::vector<int32_t>& symbols) const {
  const int32_t n = int32_t(symbols.size());
  if (n < 2 || merges_.empty()) return;
  std::vector<int32_t> prev(static_cast<size_t>(n)), next(static_cast<size_t>(n));
  for (int32_t k = 0; k < n; ++k) {
    prev[size_t(k)] = k - 1;
    next[size_t(k)] = k + 1 < n ? k + 1 : -1;
  }
  std::vector<PairCandidate> heap_storage;
  heap_storage.reserve(size_t(n) * 2);
  std::priority_queue<PairCandidate, std::vector<PairCandidate>, std::greater<>> heap(std::greater<>(), std::move(heap_storage));
  auto push = [&](int32_t pos) {
    int32_t nx = next[size_t(pos)];
    if (nx < 0) return;
    auto it = merges_.find(pair_key(symbols[size_t(pos)], symbols[size_t(nx)]));
    if (it == merges_.end()) return;
    int32_t priority = score_greedy_ ? piece_rank_[size_t(it->second.result)] : it->second.rank;
    heap.push({priority, pos, symbols[size_t(pos)], symbols[size_t(nx)], it->second.result});
  };
  for (int32_t k = 0; k + 1 < n; ++k) push(k);
  while (!heap.empty()) {
    PairCandidate c = heap.top();
    heap.pop();
    int32_t pos = c.pos;
    if (symbols[size_t(pos)] != c.left_id) continue;  // left symbol merged away or changed
    int32_t nx = next[size_t(pos)];
    if (nx < 0 || symbols[size_t(nx)] != c.right_id) continue;
    // Merge: pos absorbs nx.
    symbols[size_t(pos)] = c.result;
    symbols[size_t(nx)] = -1;
    int32_t after = next[size_t(nx)];
    next[size_t(pos)] = after;
    if (after >= 0) prev[size_t(after)] = pos;
    if (prev[size_t(pos)] >= 0) push(prev[size_t(pos)]);
    push(pos);
  }
  size_t w = 0;
  for (int32_t k = 0; k >= 0 && k < n; k = next[size_t(k)]) symbols[w++] = symbols[size_t(k)];
  symbols.resize(w);
}

std::vector<int32_t> BpeTokenizer::bpe_word(std::string_view word) const {
  std::vector<int32_t> symbols;
  if (byte_level_) {
    if (ignore_merges_) {
      std::string mapped;
      for (unsigned char b : word) text::append_utf8(mapped, byte_to_char_[b]);
      auto it = vocab_.find(mapped);
      if (it != vocab_.end()) return {it->second};
    }
    symbols.reserve(word.size());
    for (unsigned char b : word) {
      int32_t id = byte_token_id_[b];
      if (id < 0) id = unk_id_;
      if (id >= 0) symbols.push_back(id);
    }
  } else {
    if (ignore_merges_) {
      auto it = vocab_.find(std::string(word));
      if (it != vocab_.end()) return {it->second};
    }
    std::string ch;
    for (size_t i = 0; i < word.size();) {
      size_t len;
      text::decode_utf8(word, i, &len);
      ch.assign(word.substr(i, len));
      i += len;
      auto it = vocab_.find(ch);
      if (it != vocab_.end()) {
        symbols.push_back(it->second);
        continue;
      }
      bool all_bytes = byte_fallback_;
      for (unsigned char b : ch) all_bytes = all_bytes && fallback_token_id_[b] >= 0;
      if (all_bytes) {
        for (unsigned char b : ch) symbols.push_back(fallback_token_id_[b]);
      } else if (unk_id_ >= 0) {
        if (!(fuse_unk_ && !symbols.empty() && symbols.back() == unk_id_)) symbols.push_back(unk_id_);
      }
    }
  }
  merge_symbols(symbols);
  return symbols;
}

void BpeTokenizer::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (word.size() > kCacheMaxWordBytes) {
    auto ids = bpe_word(word);
    out.insert(out.end(), ids.begin(), ids.end());
    return;
  }
  {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    auto it = cache_.find(word);
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  auto ids = bpe_word(word);
  out.insert(out.end(), ids.begin(), ids.end());
  std::lock_guard<std::mutex> lock(cache_mutex_);
  if (cache_.size() >= kCacheMaxEntries) cache_.clear();
  cache_.emplace(std::string(word), std::move(ids));
}

void BpeTokenizer::encode_segment(std::string_view segment, std::vector<int32_t>& out) const {
  if (segment.empty()) return;
  std::string normalized = normalize(segment);
  if (split_digits_ == 0) {
    encode_word(normalized, out);
    return;
  }
  std::vector<std::pair<size_t, size_t>> pieces;
  text::split_words(normalized, split_digits_, pieces);
  std::string_view view(normalized);
  for (const auto& [b, e] : pieces) encode_word(view.substr(b, e - b), out);
}

std::vector<int32_t> BpeTokenizer::encode(const std::string& text) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  std::string_view view(text);
  size_t segment_start = 0;
  size_t i = 0;
  while (i < view.size()) {
    const auto& candidates = added_by_first_byte_[(unsigned char)view[i]];
    const AddedToken* match = nullptr;
    for (size_t k : candidates) {
      const std::string& c = added_[k].content;
      if (view.compare(i, c.size(), c) == 0) {
        match = &added_[k];
        break;
      }
    }
    if (!match) {
      ++i;
      continue;
    }
    size_t start = i, end = i + match->content.size();
    auto is_ws = [](char32_t cp) { return (text::codepoint_flags(cp) & text::kFlagWhitespace) != 0; };
    if (match->lstrip) {
      // Absorb whitespace to the left, back to the previous segment boundary.
      while (start > segment_start) {
        size_t b = start - 1;
        while (b > segment_start && (static_cast<unsigned char>(view[b]) & 0xC0) == 0x80) --b;
        size_t len;
        if (!is_ws(text::decode_utf8(view, b, &len))) break;
        start = b;
      }
    }
    if (match->rstrip) {
      while (end < view.size()) {
        size_t len;
        if (!is_ws(text::decode_utf8(view, end, &len))) break;
        end += len;
      }
    }
    encode_segment(view.substr(segment_start, start - segment_start), out);
    out.push_back(match->id);
    segment_start = end;
    i = end;
  }
  encode_segment(view.substr(segment_start), out);
  return out;
}

std::string BpeTokenizer::decode(const std::vector<int32_t>& ids) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    if (id < 0 || size_t(id) >= id_to_token_.size()) continue;  // unknown ids decode to nothing, as in HF
    tokens.push_back(id_to_token_[size_t(id)]);
  }
  for (const auto& step : decoder_) {
    switch (step.kind) {
      case DecoderStep::kByteLevel: {
        std::string bytes;
        for (const std::string& t : tokens) {
          std::string mapped;
          bool ok = true;
          for (size_t i = 0; i < t.size() && ok;) {
            size_t len;
            char32_t cp = text::decode_utf8(t, i, &len);
            i += len;
            auto it = char_to_byte_.find(cp);
            if (it == char_to_byte_.end()) {
              ok = false;
            } else {
              mapped.push_back(char(it->second));
            }
          }
          bytes += ok ? mapped : t;  // tokens with characters outside the map pass as their UTF-8
        }
        tokens.assign(1, text::utf8_lossy(bytes));
        break;
      }
      case DecoderStep::kReplace:
        for (std::string& t : tokens) {
          if (step.a.empty()) continue;
          std::string r;
          size_t pos = 0;
          for (size_t hit; (hit = t.find(step.a, pos)) != std::string::npos; pos = hit + step.a.size()) {
            r.append(t, pos, hit - pos);
            r.append(step.b);
          }
          r.append(t, pos, std::string::npos);
          t = std::move(r);
        }
        break;
      case DecoderStep::kByteFallback: {
        std::vector<std::string> out;
        std::string pending;
        size_t pending_count = 0;
        auto flush = [&]() {
          if (pending_count == 0) return;
          size_t len;
          bool valid = true;
          for (size_t i = 0; i < pending.size() && valid; i += len) {
            valid = text::decode_utf8(pending, i, &len) != text::kInvalidCodepoint;
          }
          if (valid) {
            out.push_back(pending);
          } else {
            for (size_t k = 0; k < pending_count; ++k) out.push_back("\xEF\xBF\xBD");
          }
          pending.clear();
          pending_count = 0;
        };
        for (std::string& t : tokens) {
          unsigned v = 0;
          bool is_byte = t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>' &&
                         std::isxdigit((unsigned char)t[3]) && std::isxdigit((unsigned char)t[4]);
          if (is_byte) {
            v = unsigned(std::stoul(t.substr(3, 2), nullptr, 16));
            pending.push_back(char(v));
            ++pending_count;
          } else {
            flush();
            out.push_back(std::move(t));
          }
        }
        flush();
        tokens = std::move(out);
        break;
      }
      case DecoderStep::kFuse: {
        std::string all;
        for (const std::string& t : tokens) all += t;
        tokens.assign(1, std::move(all));
        break;
      }
      case DecoderStep::kStrip: {
        // Strips up to `start` leading and `stop` trailing occurrences of the content character.
        for (std::string& t : tokens) {
          const std::string& c = step.a;
          if (c.empty()) continue;
          for (int k = 0; k < step.start && t.compare(0, c.size(), c) == 0; ++k) t.erase(0, c.size());
          for (int k = 0; k < step.stop && t.size() >= c.size() && t.compare(t.size() - c.size(), c.size(), c) == 0; ++k) {
            t.erase(t.size() - c.size());
          }
        }
        break;
      }
    }
  }
  std::string result;
  for (const std::string& t : tokens) result += t;
  return result;
}

// An id from a JSON value that is an integer, or a token string / {"content": ...} looked up in the tokenizer.
int32_t id_of_json(const json& v, const BpeTokenizer& tok) {
  if (v.is_number_integer()) return v.get<int32_t>();
  if (v.is_string()) return tok.token_id(v.get<std::string>());
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return tok.token_id(v["content"].get<std::string>());
  return -1;
}

void append_ids(const json& v, const BpeTokenizer& tok, std::vector<int32_t>& out) {
  if (v.is_array()) {
    for (const json& e : v) append_ids(e, tok, out);
    return;
  }
  int32_t id = id_of_json(v, tok);
  if (id >= 0 && std::find(out.begin(), out.end(), id) == out.end()) out.push_back(id);
}

}  // namespace

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& model_dir) {
  namespace fs = std::filesystem;
  const std::string path = (fs::path(model_dir) / "tokenizer.json").string();
  if (!fs::exists(path)) fail_input(path + ": file not found (the model directory needs a tokenizer.json)");
  std::unique_ptr<BpeTokenizer> tok;
  try {
    VocabAndMerges vocab_and_merges;
    json root = parse_tokenizer_json(path, vocab_and_merges);
    tok = std::make_unique<BpeTokenizer>(root, vocab_and_merges, path);
  } catch (const json::exception& e) {
    std::string msg = e.what();
    std::replace(msg.begin(), msg.end(), '\n', ' ');
    fail_input(path + ": unexpected structure (" + msg + ")");
  }

  auto optional_json = [&](const char* name) -> json {
    std::string p = (fs::path(model_dir) / name).string();
    if (!fs::exists(p)) return json();
    json j = parse_json_file(p);
    if (!j.is_object()) fail_input(p + ": top level is not a JSON object");
    return j;
  };
  json tcfg = optional_json("tokenizer_config.json");
  json gcfg = optional_json("generation_config.json");
  json cfg = optional_json("config.json");

  // BOS: only when the tokenizer itself adds one (tokenizer_config add_bos_token, else the
  // post-processor template). config.json's bos_token_id alone does not mean "prepend" (Qwen3
  // names one but never adds it).
  int32_t bos = -1;
  if (tcfg.is_object() && tcfg.contains("add_bos_token") && tcfg["add_bos_token"].is_boolean()) {
    if (tcfg["add_bos_token"].get<bool>()) {
      if (tcfg.contains("bos_token")) bos = id_of_json(tcfg["bos_token"], *tok);
      if (bos < 0 && gcfg.is_object() && gcfg.contains("bos_token_id")) bos = id_of_json(gcfg["bos_token_id"], *tok);
      if (bos < 0 && cfg.is_object() && cfg.contains("bos_token_id")) bos = id_of_json(cfg["bos_token_id"], *tok);
    }
  } else {
    bos = tok->template_bos_id();
  }

  // EOS: union of generation_config, config and tokenizer_config, in that order.
  std::vector<int32_t> eos;
  if (gcfg.is_object() && gcfg.contains("eos_token_id")) append_ids(gcfg["eos_token_id"], *tok, eos);
  if (cfg.is_object() && cfg.contains("eos_token_id")) append_ids(cfg["eos_token_id"], *tok, eos);
  if (tcfg.is_object() && tcfg.contains("eos_token")) append_ids(tcfg["eos_token"], *tok, eos);
  // ChatML models (Qwen) end a turn with <|im_end|> and a document with <|endoftext|>; Qwen's
  // generation_config.json lists both, so do the same when only one of the files is present.
  int32_t im_end = tok->token_id("<|im_end|>"), endoftext = tok->token_id("<|endoftext|>");
  if (im_end >= 0 && endoftext >= 0 && std::find(eos.begin(), eos.end(), im_end) != eos.end()) {
    append_ids(json(endoftext), *tok, eos);
  }
  if (eos.empty()) {
    // Only added tokens count: Qwen's vocab has an ordinary piece "</s>".
    for (const char* name : {"</s>", "<|endoftext|>", "<|end_of_text|>"}) {
      if (tok->added_token_id(name) >= 0) {
        eos.push_back(tok->added_token_id(name));
        break;
      }
    }
  }
  for (int32_t id : eos) {
    if (id < 0 || size_t(id) >= tok->vocab_size()) fail_input(model_dir + ": EOS id " + std::to_string(id) + " is outside the vocabulary");
  }
  if (bos >= 0 && size_t(bos) >= tok->vocab_size()) fail_input(model_dir + ": BOS id " + std::to_string(bos) + " is outside the vocabulary");
  tok->set_special_ids(bos, std::move(eos));
  return tok;
}

}  // namespace fp4z
