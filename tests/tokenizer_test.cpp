// Tokenizer tests: Qwen3 byte-level BPE against llama.cpp vectors, golden ids and PyPI tokenizers; llama2.c import.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "common/error.h"
#include "text/llama2c_tokenizer.h"
#include "text/pretokenize.h"
#include "text/tokenizer.h"
#include "text/unicode.h"
#include "test_util.h"

namespace fs = std::filesystem;
using fp4z::Tokenizer;

namespace {

const std::string kFixtures = fp4z::testing::kFixtures;
using fp4z::testing::TempDir;
const std::string kQwenDir = kFixtures + "/qwen3-tokenizer";
const std::string kTok512 = kFixtures + "/stories260K/tok512.bin";

// Physical lines of a file (split on '\n'; a '\r' before it stays part of the line).
std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    out.push_back(text.substr(pos, nl - pos));
    pos = nl + 1;
  }
  return out;
}

std::vector<int32_t> parse_ids(const std::string& s) {
  std::vector<int32_t> ids;
  std::istringstream in(s);
  for (long v; in >> v;) ids.push_back(int32_t(v));
  return ids;
}

std::string ids_str(const std::vector<int32_t>& ids) {
  std::string s;
  for (size_t k = 0; k < ids.size(); ++k) {
    if (k) s.push_back(' ');
    s.append(std::to_string(ids[k]));
  }
  return s;
}

// Encodes texts with an external reference program (JSON string lines in, JSON id arrays out),
// split over `shards` concurrent processes (the machine has 2 cores).
std::vector<std::vector<int32_t>> run_reference(const std::string& command, const std::vector<std::string>& texts,
                                                const TempDir& dir, size_t shards = 1) {
  std::string script = "status=0; pids=''";
  std::vector<std::string> out_paths, err_paths;
  for (size_t s = 0; s < shards; ++s) {
    std::string in_path = dir / ("texts" + std::to_string(s) + ".jsonl");
    out_paths.push_back(dir / ("ids" + std::to_string(s) + ".jsonl"));
    err_paths.push_back(dir / ("stderr" + std::to_string(s) + ".txt"));
    std::ofstream in(in_path, std::ios::binary);
    for (size_t k = texts.size() * s / shards; k < texts.size() * (s + 1) / shards; ++k) in << nlohmann::json(texts[k]).dump() << '\n';
    script += "; " + command + " < '" + in_path + "' > '" + out_paths[s] + "' 2> '" + err_paths[s] + "' & pids=\"$pids $!\"";
  }
  script += "; for p in $pids; do wait $p || status=1; done; exit $status";
  int rc = fp4z::testing::run_command(script).code;
  std::string errors;
  for (const auto& e : err_paths) errors += fp4z::testing::read_text(e);
  EXPECT_EQ(rc, 0) << "reference command failed: " << command << "\n" << errors;
  std::vector<std::vector<int32_t>> out;
  if (rc != 0) return out;
  for (const auto& path : out_paths) {
    for (const auto& line : lines_of(fp4z::testing::read_text(path))) {
      if (!line.empty()) out.push_back(nlohmann::json::parse(line).get<std::vector<int32_t>>());
    }
  }
  EXPECT_EQ(out.size(), texts.size()) << "reference printed a wrong number of lines";
  return out;
}

// The command running tests/py/tokenizer_reference.py with PyPI `tokenizers` from the project's .venv
// (scripts/venv.sh); fails (never skips) if the environment is missing.
std::string hf_reference_command(const std::string& tokenizer_dir) {
  std::string python = FP4Z_VENV_PYTHON;
  if (!fs::exists(python)) {
    ADD_FAILURE() << "the Python test environment is missing (" << python << "): run scripts/venv.sh";
    return "";
  }
  return "'" + python + "' '" FP4Z_SOURCE_DIR "/tests/py/tokenizer_reference.py' '" + tokenizer_dir + "'";
}

class TokenizerQwen3 : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { tok_ = fp4z::load_tokenizer(kQwenDir).release(); }
  static void TearDownTestSuite() {
    delete tok_;
    tok_ = nullptr;
  }
  static Tokenizer* tok_;
};
Tokenizer* TokenizerQwen3::tok_ = nullptr;

TEST_F(TokenizerQwen3, Metadata) {
  EXPECT_EQ(tok_->vocab_size(), 151669u);
  EXPECT_EQ(tok_->bos_id(), -1);
  auto eos = tok_->eos_ids();
  EXPECT_NE(std::find(eos.begin(), eos.end(), 151645), eos.end());
  EXPECT_NE(std::find(eos.begin(), eos.end(), 151643), eos.end());
  EXPECT_EQ(tok_->token_id("<|im_end|>"), 151645);
  EXPECT_EQ(tok_->token_id("</think>"), 151668);
  EXPECT_EQ(tok_->token_id("\xC4\xA0"), 220);  // "Ġ" = space
  EXPECT_EQ(tok_->token_id("no such piece"), -1);
}

TEST_F(TokenizerQwen3, LlamaCppVectors) {
  const std::string dir = kFixtures + "/tokenizer-test-vectors/";
  std::string inp = fp4z::testing::read_text(dir + "ggml-vocab-qwen2.gguf.inp");
  std::vector<std::string> out = lines_of(fp4z::testing::read_text(dir + "ggml-vocab-qwen2.gguf.out"));
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> texts;
  for (size_t pos = 0; pos < inp.size();) {
    size_t hit = inp.find(sep, pos);
    ASSERT_NE(hit, std::string::npos) << "unterminated test case in .inp";
    texts.push_back(inp.substr(pos, hit - pos));
    pos = hit + sep.size();
  }
  ASSERT_EQ(texts.size(), 46u);
  ASSERT_EQ(out.size(), texts.size());
  for (size_t k = 0; k < texts.size(); ++k) {
    EXPECT_EQ(ids_str(tok_->encode(texts[k])), ids_str(parse_ids(out[k]))) << "case " << k << ": " << nlohmann::json(texts[k]).dump();
  }
}

TEST_F(TokenizerQwen3, GoldenEncodings) {
  // fixtures/qwen3-tokenizer/README.md and design/inference.md section 2.
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"Hello world", "9707 1879"},
      {"Hello World", "9707 4337"},
      {"Hello, my dog is cute", "9707 11 847 5562 374 18838"},
      {"Answer: A", "16141 25 362"},
      {" A", "362"},
      {" B", "425"},
      {" C", "356"},
      {" D", "422"},
      {" 12345 numbers\n\n  and   spaces\t tab", "220 16 17 18 19 20 5109 271 220 323 256 12621 197 5651"},
      {"<|im_start|>user\nhi<|im_end|>\n", "151644 872 198 6023 151645 198"},
      {"\xE4\xB8\xAD\xE6\x96\x87\xE6\xB5\x8B\xE8\xAF\x95 \xC3\xA7" "a va? \xF0\x9F\x98\x80", "104811 81705 37943 11164 30 90316"},
      {"I'm don't THEY'LL", "40 2776 1513 944 62493 6 4086"},
      {"don't DON'T it's  two  spaces   \n\n tabs\t\tend ", "15007 944 44273 17323 432 594 220 1378 220 12621 33933 22398 197 6246 220"},
      {"Find 1234567 + 89.\n", "9885 220 16 17 18 19 20 21 22 488 220 23 24 624"},
      {"\xE6\x95\xB0\xE5\xAD\xA6 caf\xC3\xA9 na\xC3\xAFve \xCE\xA9\xCE\xBC\xCE\xAD\xCE\xB3\xCE\xB1 \xF0\x9F\x98\x80 \xD9\xA1\xD9\xA2\xD9\xA3",
       "104552 51950 94880 586 7851 102 43123 79431 59374 18945 90316 220 149 94 149 95 149 96"},
      {"'tis 'Sam ' s\xC2\xA0word", "944 285 364 23950 364 274 4102 1158"},
  };
  for (const auto& [text, ids] : cases) EXPECT_EQ(ids_str(tok_->encode(text)), ids) << nlohmann::json(text).dump();
}

TEST_F(TokenizerQwen3, AddedTokens) {
  EXPECT_EQ(ids_str(tok_->encode("<|endoftext|>")), "151643");
  EXPECT_EQ(ids_str(tok_->encode("<|im_start|><|im_end|>")), "151644 151645");
  // Non-special added tokens are matched atomically too.
  EXPECT_EQ(ids_str(tok_->encode("<think>\n\n</think>\n\n")), "151667 271 151668 271");
  EXPECT_EQ(ids_str(tok_->encode("a<tool_call>b")), ids_str({64, 151657, 65}));
  // An incomplete special token is ordinary text.
  auto partial = tok_->encode("<|im_start");
  EXPECT_EQ(std::find(partial.begin(), partial.end(), 151644), partial.end());
  // Text on both sides is pre-tokenized separately (segment ends are the regex's end of text).
  EXPECT_EQ(ids_str(tok_->encode("  <|im_end|>  ")), ids_str(tok_->encode("  ")) + " 151645 " + ids_str(tok_->encode("  ")));
}

TEST_F(TokenizerQwen3, DecodeRoundTrip) {
  const std::vector<std::string> texts = {
      "", "Hello world", "<|im_start|>user\nhi<|im_end|>\n", " 12345 numbers\n\n  and   spaces\t tab",
      "\xE4\xB8\xAD\xE6\x96\x87 \xF0\x9F\x98\x80 caf\xC3\xA9 \xD8\xB9\xD8\xB1\xD8\xA8\xD9\x8A", "<think>x</think>\r\n\t\x01\x7F"};
  for (const auto& t : texts) EXPECT_EQ(tok_->decode(tok_->encode(t)), t) << nlohmann::json(t).dump();
  // A lone byte of a multi-byte character decodes to U+FFFD ("ä" = C3 A4; byte C3 is token "Ã").
  auto ids = tok_->encode("\xC3\xA4");
  ASSERT_EQ(ids.size(), 1u);
  EXPECT_EQ(tok_->decode({tok_->token_id("\xC3\x83")}), "\xEF\xBF\xBD");
  // NFC is applied before encoding: e + combining acute encodes like the precomposed é.
  EXPECT_EQ(tok_->encode("caf\x65\xCC\x81"), tok_->encode("caf\xC3\xA9"));
  // Every line of WikiText-2 survives encode -> decode byte for byte.
  auto lines = lines_of(fp4z::testing::read_text(kFixtures + "/eval/wikitext-2/wiki.test.raw"));
  ASSERT_EQ(lines.size(), 2891u);
  size_t failures = 0;
  for (const auto& l : lines) {
    if (tok_->decode(tok_->encode(l)) != l && ++failures < 5) ADD_FAILURE() << "round trip: " << nlohmann::json(l).dump();
  }
  EXPECT_EQ(failures, 0u);
}

TEST(TokenizerUnicode, Nfc) {
  using fp4z::text::nfc;
  EXPECT_EQ(nfc("abc"), "abc");
  EXPECT_EQ(nfc("e\xCC\x81"), "\xC3\xA9");                           // e + U+0301 -> é
  EXPECT_EQ(nfc("\xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8"), "\xEA\xB0\x81");  // Hangul L V T -> 각
  EXPECT_EQ(nfc("\xE2\x84\xAB"), "\xC3\x85");                         // Angstrom sign -> Å (singleton)
  // Canonical ordering: dot below (220) moves before acute (230), then composes with a/e if possible.
  EXPECT_EQ(nfc("a\xCC\x81\xCC\xA3"), nfc("a\xCC\xA3\xCC\x81"));
  EXPECT_EQ(nfc("\xE0\xA4\x95\xE0\xA4\xBC"), "\xE0\xA4\x95\xE0\xA4\xBC");  // excluded composition (U+0958)
  EXPECT_EQ(nfc("\xFF" "e\xCC\x81"), "\xFF\xC3\xA9");                     // invalid byte passes through
}

// The Unicode conformance file, when the Debian package unicode-data is installed.
TEST(TokenizerUnicode, NormalizationTestFile) {
  const std::string path = "/usr/share/unicode/NormalizationTest.txt.bz2";
  ASSERT_TRUE(fs::exists(path)) << "unicode-data is not installed (" << path << "): run scripts/install-deps.sh";
  TempDir dir("fp4z-tok-nfc");
  std::string txt = dir / "NormalizationTest.txt";
  ASSERT_EQ(fp4z::testing::run_command("bzcat '" + path + "' > '" + txt + "'").code, 0);
  auto field = [](const std::string& hex) {
    std::string out;
    std::istringstream in(hex);
    for (std::string cp; in >> cp;) fp4z::text::append_utf8(out, char32_t(std::stoul(cp, nullptr, 16)));
    return out;
  };
  size_t checked = 0, failed = 0;
  for (const auto& line : lines_of(fp4z::testing::read_text(txt))) {
    if (line.empty() || line[0] == '#' || line[0] == '@') continue;
    std::vector<std::string> cols;
    std::istringstream in(line);
    for (std::string c; std::getline(in, c, ';') && cols.size() < 5;) cols.push_back(field(c));
    if (cols.size() < 5) continue;
    // c2 == NFC(c1) == NFC(c2) == NFC(c3); c4 == NFC(c4) == NFC(c5).
    for (int k : {0, 1, 2}) failed += fp4z::text::nfc(cols[size_t(k)]) != cols[1];
    for (int k : {3, 4}) failed += fp4z::text::nfc(cols[size_t(k)]) != cols[3];
    ++checked;
  }
  EXPECT_GT(checked, 10000u);
  EXPECT_EQ(failed, 0u);
}

TEST(TokenizerPretokenize, Pieces) {
  auto split = [](const std::string& s) {
    std::vector<std::pair<size_t, size_t>> p;
    fp4z::text::split_words(s, 1, p);
    std::vector<std::string> out;
    for (auto [b, e] : p) out.push_back(s.substr(b, e - b));
    return out;
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(split("Hello world"), (V{"Hello", " world"}));
  EXPECT_EQ(split("it's 12"), (V{"it", "'s", " ", "1", "2"}));
  EXPECT_EQ(split("a  b"), (V{"a", " ", " b"}));
  EXPECT_EQ(split("x \n\n y"), (V{"x", " \n\n", " y"}));
  EXPECT_EQ(split("end  "), (V{"end", "  "}));
  EXPECT_EQ(split(" ...\n\nz"), (V{" ...\n\n", "z"}));
  EXPECT_EQ(split("'LL'\xC5\xBF"), (V{"'LL", "'\xC5\xBF"}));  // case-insensitive, long s folds to s
}

// Deterministic random strings over characters that stress the splitter and NFC: whitespace kinds,
// apostrophes and contraction letters, long s, combining marks, Hangul jamo, several scripts,
// digits of several scripts, emoji, control characters and added tokens, U+0085 and U+FEFF (whose
// whitespace class differs between regex engines).
std::vector<std::string> random_texts(size_t count) {
  static const char* const kAlphabet[] = {
      "a", "Z", "0", "9", " ", " ", " ", "'", "\t", "\n", "\r", "\v", "\f", ".", ",", "!", "?", "-", "_", "\"",
      "(", "]", "{", "<", ">", "|", "s", "S", "t", "T", "l", "L", "d", "D", "m", "M", "r", "R", "e", "E", "v", "V",
      "\u00a0", "\u2000", "\u2003", "\u200a", "\u2028", "\u2029", "\u202f", "\u205f", "\u3000", "\u1680",
      "\u017f", "\u0301", "\u0323", "\u0308", "e\u0301", "\u00e9", "\u212b", "\u0958", "\u0915\u093c",
      "\u1100", "\u1161", "\u11a8", "\uac00", "\ud55c", "\u4e2d", "\u6587", "\u0661", "\u00bd", "\u2163",
      "\u00b2", "\U0001F600", "\U0001F44D\U0001F3FD", "\u200d", "\u0627", "\u0644", "\u05d0", "\u0e01",
      "\u0e31", "\u17a0", "\u17d2", "\u0410", "\u044f", "\u03a9", "\u1f00", "\u0345", "\u00c5", "A\u030a",
      "\u2019", "\u201c", "\u2026", "\u00ad", "\u0085", "\ufeff", "\x01", "\x7f", "<|im_start|>", "<|im_end|>", "<think>",
      "<|endoftext|>", "<|im_sta", "\u00ff", "\u0100", "\u0120", "\u010a", "\U00010400", "\U0001d7d8",
      "\u2160", "\u3007", "\uff10", "\uff21", "\u02b0", "\u0e50", "\u0966"};
  const size_t n = sizeof(kAlphabet) / sizeof(kAlphabet[0]);
  uint64_t state = 0x9E3779B97F4A7C15ull;
  auto next = [&]() {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return uint32_t(state >> 33);
  };
  std::vector<std::string> out;
  for (size_t k = 0; k < count; ++k) {
    std::string t;
    for (uint32_t len = next() % 26, j = 0; j < len; ++j) {
      t += kAlphabet[next() % n];
    }
    out.push_back(t);
  }
  return out;
}

// Every physical line of every MMLU CSV (test and the dev shots) and of WikiText-2 (plus the random
// strings above), against Hugging Face's `tokenizers` (PyPI).
TEST_F(TokenizerQwen3, MatchesHuggingFaceTokenizers) {
  std::vector<std::string> texts;
  std::vector<std::string> files;
  for (const char* split : {"/eval/mmlu/test", "/eval/mmlu/dev"}) {
    for (const auto& e : fs::directory_iterator(kFixtures + split)) {
      if (e.path().extension() == ".csv") files.push_back(e.path().string());
    }
  }
  std::sort(files.begin(), files.end());
  ASSERT_EQ(files.size(), 2u * 57u);
  files.push_back(kFixtures + "/eval/wikitext-2/wiki.test.raw");
  for (const auto& f : files) {
    auto lines = lines_of(fp4z::testing::read_text(f));
    texts.insert(texts.end(), lines.begin(), lines.end());
  }
  auto random = random_texts(4000);
  texts.insert(texts.end(), random.begin(), random.end());
  std::string cmd = hf_reference_command(kQwenDir);
  if (cmd.empty()) return;
  TempDir dir("fp4z-tok-hf");
  auto reference = run_reference(cmd, texts, dir, 2);
  ASSERT_EQ(reference.size(), texts.size());
  size_t differences = 0;
  for (size_t k = 0; k < texts.size(); ++k) {
    auto ids = tok_->encode(texts[k]);
    if (ids != reference[k] && ++differences <= 5) {
      ADD_FAILURE() << "line " << k << " " << nlohmann::json(texts[k]).dump() << "\n  fp4z: " << ids_str(ids)
                    << "\n  hf:   " << ids_str(reference[k]);
    }
  }
  EXPECT_EQ(differences, 0u) << "of " << texts.size() << " lines";
  std::printf("compared %zu lines with PyPI tokenizers: %zu differences\n", texts.size(), differences);
}

// llama2.c tok512.bin -> tokenizer.json -> load_tokenizer: must encode like run.c.
class TokenizerLlama2c : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir("fp4z-tok-llama2c");
    std::string bin = fp4z::testing::read_text(kTok512);
    auto j = fp4z::llama2c_tokenizer_to_json(reinterpret_cast<const uint8_t*>(bin.data()), bin.size(), kTok512);
    fp4z::testing::write_text(*dir_ / "tokenizer.json", j.dump(2));
    tok_ = fp4z::load_tokenizer(dir_->path).release();
  }
  static void TearDownTestSuite() {
    delete tok_;
    delete dir_;
  }
  static TempDir* dir_;
  static Tokenizer* tok_;
};
TempDir* TokenizerLlama2c::dir_ = nullptr;
Tokenizer* TokenizerLlama2c::tok_ = nullptr;

TEST_F(TokenizerLlama2c, Metadata) {
  EXPECT_EQ(tok_->vocab_size(), 512u);
  EXPECT_EQ(tok_->bos_id(), 1);
  EXPECT_EQ(tok_->eos_ids(), std::vector<int32_t>{2});
  EXPECT_EQ(tok_->token_id("\xE2\x96\x81t"), 259);  // " t"
  EXPECT_EQ(tok_->token_id("<0x41>"), 68);
  EXPECT_TRUE(tok_->encode("").empty());
  // Dummy prefix, then pieces: "Hello" -> ▁H e l l o merged by score.
  auto ids = tok_->encode("Once upon a time");
  EXPECT_EQ(ids_str(ids), "403 407 261 378");
  EXPECT_EQ(tok_->decode(ids), "Once upon a time");
  // Byte fallback: U+4E2D is not a piece, its three bytes are (E4 B8 AD -> 231 187 176).
  auto cjk = tok_->encode("\xE4\xB8\xAD");
  EXPECT_EQ(ids_str(cjk), "410 231 187 176");
  EXPECT_EQ(tok_->decode(cjk), "\xE4\xB8\xAD");
  EXPECT_EQ(tok_->decode({231}), "\xEF\xBF\xBD");
}

TEST_F(TokenizerLlama2c, MatchesRunCOnTinyStories) {
  auto lines = lines_of(fp4z::testing::read_text(kFixtures + "/eval/tinystories/tinystories_val.txt"));
  auto sample = lines_of(fp4z::testing::read_text(kFixtures + "/eval/tinystories/tinystories_sample.txt"));
  lines.insert(lines.end(), sample.begin(), sample.end());
  lines.push_back("  leading spaces, tabs\tand \xE2\x80\x9Cquotes\xE2\x80\x9D \xC3\xA9 \xE4\xB8\xAD\xE6\x96\x87 \xF0\x9F\x98\x80");
  TempDir dir("fp4z-tok-runc");
  auto reference = run_reference("/usr/bin/python3 '" FP4Z_SOURCE_DIR "/tests/tokenizer_llama2c_reference.py' '" + kTok512 + "'", lines, dir);
  ASSERT_EQ(reference.size(), lines.size());
  size_t differences = 0;
  for (size_t k = 0; k < lines.size(); ++k) {
    auto ids = tok_->encode(lines[k]);
    if (ids != reference[k] && ++differences <= 5) {
      ADD_FAILURE() << "line " << k << " " << nlohmann::json(lines[k]).dump() << "\n  fp4z:  " << ids_str(ids)
                    << "\n  run.c: " << ids_str(reference[k]);
    }
    if (ids == reference[k] && tok_->decode(ids) != lines[k] && ++differences <= 5) {
      ADD_FAILURE() << "round trip of line " << k;
    }
  }
  EXPECT_EQ(differences, 0u) << "of " << lines.size() << " lines";
}

// The converted tokenizer.json read by Hugging Face's own BPE (PyPI tokenizers) gives run.c's ids too.
TEST_F(TokenizerLlama2c, HuggingFaceReadsConvertedJsonLikeRunC) {
  auto lines = lines_of(fp4z::testing::read_text(kFixtures + "/eval/tinystories/tinystories_val.txt"));
  lines.resize(std::min<size_t>(lines.size(), 3000));
  std::string cmd = hf_reference_command(dir_->path);
  if (cmd.empty()) return;
  TempDir dir("fp4z-tok-hf_llama2c");
  auto reference = run_reference(cmd, lines, dir);
  ASSERT_EQ(reference.size(), lines.size());
  size_t differences = 0;
  for (size_t k = 0; k < lines.size(); ++k) {
    auto ids = tok_->encode(lines[k]);
    if (ids != reference[k] && ++differences <= 5) {
      ADD_FAILURE() << "line " << k << " " << nlohmann::json(lines[k]).dump() << "\n  fp4z: " << ids_str(ids)
                    << "\n  hf:   " << ids_str(reference[k]);
    }
  }
  EXPECT_EQ(differences, 0u) << "of " << lines.size() << " lines";
}

TEST(TokenizerLlama2cConversion, RejectsBadFiles) {
  std::string bin = fp4z::testing::read_text(kTok512);
  auto convert = [](const std::string& bytes) {
    fp4z::llama2c_tokenizer_to_json(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "tok.bin");
  };
  auto expect_input_error = [&](const std::string& bytes, const char* what) {
    try {
      convert(bytes);
      ADD_FAILURE() << "accepted " << what;
    } catch (const fp4z::Error& e) {
      EXPECT_EQ(e.code, 2) << what;
      EXPECT_NE(std::string(e.what()).find("tok.bin"), std::string::npos) << e.what();
      EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << e.what();
    }
  };
  expect_input_error("", "an empty file");
  expect_input_error(bin.substr(0, bin.size() - 1), "a truncated file");
  expect_input_error(bin.substr(0, 1000), "a file cut inside the byte pieces");
  std::string garbage(6227, '\x7F');
  expect_input_error(garbage, "garbage");
  std::string bad_len = bin;
  bad_len[8] = '\x40';  // length of token 0
  expect_input_error(bad_len, "an oversized piece length");
  EXPECT_NO_THROW(convert(bin));
}

TEST(TokenizerLoad, RejectsBadFiles) {
  TempDir dir("fp4z-tok-bad");
  auto expect_input_error = [&](const char* what) {
    try {
      fp4z::load_tokenizer(dir.path);
      ADD_FAILURE() << "accepted " << what;
    } catch (const fp4z::Error& e) {
      EXPECT_EQ(e.code, 2) << what;
      EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << e.what();
    }
  };
  expect_input_error("a directory without tokenizer.json");
  fp4z::testing::write_text(dir / "tokenizer.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}");
  expect_input_error("truncated JSON");
  fp4z::testing::write_text(dir / "tokenizer.json", "{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}");
  expect_input_error("a Unigram model");
  fp4z::testing::write_text(dir / "tokenizer.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [[\"a\", \"b\"]]}}");
  expect_input_error("a merge outside the vocab");
  fp4z::testing::write_text(dir / "tokenizer.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": \"x\"}}}");
  expect_input_error("a string id");
  fp4z::testing::write_text(dir / "tokenizer.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"byte_fallback\": null}}");
  expect_input_error("a null flag");
  fp4z::testing::write_text(dir / "tokenizer.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": [\"a b\"]}}");
  EXPECT_NO_THROW(fp4z::load_tokenizer(dir.path));
  fp4z::testing::write_text(dir / "config.json", "[1, 2");
  expect_input_error("a broken config.json");
}

// BOS/EOS from the config files next to tokenizer.json.
TEST(TokenizerLoad, SpecialIdsFromConfigs) {
  TempDir dir("fp4z-tok-configs");
  fs::create_symlink(kQwenDir + "/tokenizer.json", dir / "tokenizer.json");
  auto load = [&]() { return fp4z::load_tokenizer(dir.path); };
  // tokenizer.json alone: Qwen's post-processor adds nothing; EOS falls back to <|endoftext|>.
  EXPECT_EQ(load()->bos_id(), -1);
  EXPECT_EQ(load()->eos_ids(), std::vector<int32_t>{151643});
  // Qwen3-4B's config.json names bos_token_id 151643, which Qwen never prepends.
  fp4z::testing::write_text(dir / "config.json", "{\"bos_token_id\": 151643, \"eos_token_id\": 151645}");
  EXPECT_EQ(load()->bos_id(), -1);
  EXPECT_EQ(load()->eos_ids(), (std::vector<int32_t>{151645, 151643}));
  fp4z::testing::write_text(dir / "generation_config.json", "{\"eos_token_id\": [151645, 151643]}");
  fp4z::testing::write_text(dir / "tokenizer_config.json",
             "{\"add_bos_token\": true, \"bos_token\": {\"content\": \"<|endoftext|>\"}, \"eos_token\": \"<|im_end|>\"}");
  EXPECT_EQ(load()->bos_id(), 151643);
  EXPECT_EQ(load()->eos_ids(), (std::vector<int32_t>{151645, 151643}));
  fp4z::testing::write_text(dir / "generation_config.json", "{\"eos_token_id\": 999999}");
  try {
    load();
    ADD_FAILURE() << "accepted an EOS id outside the vocabulary";
  } catch (const fp4z::Error& e) {
    EXPECT_EQ(e.code, 2);
  }
}

// The CLI: encode, --json, --file, --decode, and a one-line error for a bad model directory.
TEST(TokenizerCli, EncodeDecode) {
  TempDir dir("fp4z-tok-cli");
  const std::string bin = FP4Z_BINARY;
  auto capture = [&](const std::string& args, int* rc) {
    std::string out = dir / "out.txt";
    *rc = fp4z::testing::run_command("'" + bin + "' tokenize " + args + " > '" + out + "' 2>&1").code;
    return fp4z::testing::read_text(out);
  };
  int rc = 0;
  EXPECT_EQ(capture("--model '" + kQwenDir + "' 'Hello, my dog is cute'", &rc), "9707 11 847 5562 374 18838\n");
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(capture("--model '" + kQwenDir + "' --decode 9707 11 847 5562 374 18838", &rc), "Hello, my dog is cute\n");
  EXPECT_EQ(rc, 0);
  fp4z::testing::write_text(dir / "text.txt", "<|im_start|>user\nhi<|im_end|>\n");
  EXPECT_EQ(capture("--model '" + kQwenDir + "' --file '" + dir / "text.txt" + "'", &rc),
            "151644 872 198 6023 151645 198\n");
  std::string json_out = capture("--model '" + kQwenDir + "' --json 'Hello World'", &rc);
  EXPECT_EQ(rc, 0);
  auto j = nlohmann::json::parse(json_out);
  EXPECT_EQ(j["ids"], nlohmann::json({9707, 4337}));
  EXPECT_EQ(j["pieces"], nlohmann::json({"Hello", " World"}));
  std::string err = capture("--model '" + dir.path + "/missing' 'x'", &rc);
  EXPECT_EQ(rc, 2);
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
}

}  // namespace
