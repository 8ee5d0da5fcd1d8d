// llama2.c tokenizer -> Hugging Face tokenizer.json whose BPE merges reproduce run.c's score-greedy encode.
#include "text/llama2c_tokenizer.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <unordered_map>
#include <vector>

#include "common/error.h"
#include "text/unicode.h"

namespace fp4z {
namespace {

constexpr const char* kMetaSpace = "\xE2\x96\x81";  // U+2581, SentencePiece's visible space

struct Piece {
  float score = 0;
  std::string bytes;
};

std::string to_hf_piece(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == ' ') {
      out += kMetaSpace;
    } else {
      out.push_back(c);
    }
  }
  return out;
}

// Strict UTF-8 (no overlongs, surrogates or values above U+10FFFF), as JSON output requires.
bool is_valid_utf8(const std::string& s) {
  for (size_t i = 0, len = 0; i < s.size(); i += len) {
    if (text::decode_utf8(s, i, &len) == text::kInvalidCodepoint) return false;
  }
  return true;
}

}  // namespace

nlohmann::ordered_json llama2c_tokenizer_to_json(const uint8_t* data, size_t size, const std::string& label) {
  auto read_i32 = [&](size_t off) {
    int32_t v;
    std::memcpy(&v, data + off, 4);
    return v;
  };
  if (size < 4) fail_input(label + ": truncated llama2.c tokenizer (" + std::to_string(size) + " bytes, no header)");
  int32_t max_len = read_i32(0);
  if (max_len <= 0 || max_len > 4096) {
    fail_input(label + ": not a llama2.c tokenizer (max_token_length " + std::to_string(max_len) + ")");
  }
  std::vector<Piece> pieces;
  size_t off = 4;
  while (off < size) {
    size_t id = pieces.size();
    if (size - off < 8) fail_input(label + ": truncated record for token " + std::to_string(id) + " at byte " + std::to_string(off));
    Piece p;
    std::memcpy(&p.score, data + off, 4);
    int32_t len = read_i32(off + 4);
    off += 8;
    if (!std::isfinite(p.score)) fail_input(label + ": token " + std::to_string(id) + " has a non-finite score");
    if (len < 0 || len > max_len) {
      fail_input(label + ": token " + std::to_string(id) + " has length " + std::to_string(len) +
                 " outside 0.." + std::to_string(max_len));
    }
    if (size - off < size_t(len)) fail_input(label + ": truncated piece of token " + std::to_string(id));
    p.bytes.assign(reinterpret_cast<const char*>(data + off), size_t(len));
    off += size_t(len);
    pieces.push_back(std::move(p));
    if (pieces.size() > (1u << 20)) fail_input(label + ": more than 2^20 tokens");
  }
  if (pieces.size() < 259) {
    fail_input(label + ": " + std::to_string(pieces.size()) + " tokens; a llama2.c tokenizer has at least 259 (<unk>, BOS, EOS, 256 bytes)");
  }
  for (int b = 0; b < 256; ++b) {
    char hex[8];
    std::snprintf(hex, sizeof hex, "<0x%02X>", b);
    if (pieces[size_t(b) + 3].bytes != hex) {
      fail_input(label + ": token " + std::to_string(b + 3) + " is not the byte piece " + hex + " (no byte fallback)");
    }
  }

  // Hugging Face piece strings: specials get their usual names, spaces become U+2581.
  const size_t n = pieces.size();
  std::vector<std::string> hf(n);
  hf[size_t(kLlama2cUnkId)] = "<unk>";
  hf[size_t(kLlama2cBosId)] = "<s>";
  hf[size_t(kLlama2cEosId)] = "</s>";
  std::unordered_map<std::string, int32_t> by_bytes;  // run.c's vocabulary lookup (raw bytes)
  std::unordered_map<std::string, int32_t> by_hf;
  for (size_t id = 0; id < n; ++id) {
    if (id >= 3) {
      if (!is_valid_utf8(pieces[id].bytes)) fail_input(label + ": token " + std::to_string(id) + " is not valid UTF-8");
      if (pieces[id].bytes.empty()) fail_input(label + ": token " + std::to_string(id) + " is empty");
      hf[id] = id < 259 ? pieces[id].bytes : to_hf_piece(pieces[id].bytes);
    }
    by_bytes.emplace(pieces[id].bytes, int32_t(id));
    if (!by_hf.emplace(hf[id], int32_t(id)).second) {
      fail_input(label + ": token " + std::to_string(id) + " duplicates piece \"" + hf[id] + "\"");
    }
  }

  // Merges: every (left, right) of ordinary pieces (id >= 259) whose concatenation is an ordinary
  // piece; run.c merges the pair whose result scores highest, so order by result score
  // (descending), then result id, then split point. Hugging Face then ranks pairs the same way.
  struct Merge {
    float score;
    int32_t result;
    size_t split;
    int32_t left, right;
  };
  std::vector<Merge> merges;
  for (size_t id = 259; id < n; ++id) {
    const std::string& s = pieces[id].bytes;
    for (size_t k = 1; k < s.size(); ++k) {
      auto l = by_bytes.find(s.substr(0, k));
      auto r = by_bytes.find(s.substr(k));
      if (l == by_bytes.end() || r == by_bytes.end() || l->second < 259 || r->second < 259) continue;
      merges.push_back({pieces[id].score, int32_t(id), k, l->second, r->second});
    }
  }
  std::stable_sort(merges.begin(), merges.end(), [](const Merge& a, const Merge& b) {
    if (a.score != b.score) return a.score > b.score;
    if (a.result != b.result) return a.result < b.result;
    return a.split < b.split;
  });

  using ojson = nlohmann::ordered_json;
  ojson vocab = ojson::object();
  for (size_t id = 0; id < n; ++id) vocab[hf[id]] = int32_t(id);
  ojson merge_list = ojson::array();
  for (const Merge& m : merges) merge_list.push_back(ojson::array({hf[size_t(m.left)], hf[size_t(m.right)]}));

  ojson added = ojson::array();
  for (int32_t id : {kLlama2cUnkId, kLlama2cBosId, kLlama2cEosId}) {
    added.push_back({{"id", id}, {"content", hf[size_t(id)]}, {"single_word", false}, {"lstrip", false},
                     {"rstrip", false}, {"normalized", false}, {"special", true}});
  }
  ojson j;
  j["version"] = "1.0";
  j["truncation"] = nullptr;
  j["padding"] = nullptr;
  j["added_tokens"] = added;
  j["normalizer"] = {{"type", "Sequence"},
                     {"normalizers", ojson::array({ojson{{"type", "Prepend"}, {"prepend", kMetaSpace}},
                                                   ojson{{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", kMetaSpace}}})}};
  j["pre_tokenizer"] = nullptr;
  j["post_processor"] = {
      {"type", "TemplateProcessing"},
      {"single", ojson::array({ojson{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}}, ojson{{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
      {"pair", ojson::array({ojson{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}}, ojson{{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                             ojson{{"SpecialToken", {{"id", "<s>"}, {"type_id", 1}}}}, ojson{{"Sequence", {{"id", "B"}, {"type_id", 1}}}}})},
      {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", ojson::array({kLlama2cBosId})}, {"tokens", ojson::array({"<s>"})}}}}}};
  j["decoder"] = {{"type", "Sequence"},
                  {"decoders", ojson::array({ojson{{"type", "Replace"}, {"pattern", {{"String", kMetaSpace}}}, {"content", " "}},
                                             ojson{{"type", "ByteFallback"}}, ojson{{"type", "Fuse"}},
                                             ojson{{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}})}};
  j["model"] = {{"type", "BPE"},
                {"dropout", nullptr},
                {"unk_token", "<unk>"},
                {"continuing_subword_prefix", nullptr},
                {"end_of_word_suffix", nullptr},
                {"fuse_unk", true},
                {"byte_fallback", true},
                {"ignore_merges", false},
                {"vocab", vocab},
                {"merges", merge_list}};
  return j;
}

}  // namespace fp4z
