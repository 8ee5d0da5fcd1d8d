// Tokenizer benchmarks: tokenizer.json load time and encode/decode throughput (MB/s) on WikiText-2.
#include <benchmark/benchmark.h>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "text/llama2c_tokenizer.h"
#include "text/tokenizer.h"

namespace {

namespace fs = std::filesystem;

// Fixtures live beside the repository (`<repo>/../shared/fixtures`); FP4Z_FIXTURES overrides.
std::string fixtures_dir() {
  if (const char* env = std::getenv("FP4Z_FIXTURES")) return env;
  return (fs::path(__FILE__).parent_path().parent_path().parent_path() / "shared" / "fixtures").string();
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open " + path + " (set FP4Z_FIXTURES)");
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::vector<std::string> wikitext_lines() {
  std::string text = read_file(fixtures_dir() + "/eval/wikitext-2/wiki.test.raw");
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) lines.push_back(l + "\n");
  return lines;
}

const std::string& qwen_dir() {
  static const std::string dir = fixtures_dir() + "/qwen3-tokenizer";
  return dir;
}

void BM_LoadQwen3Tokenizer(benchmark::State& state) {
  for (auto _ : state) {
    auto tok = fp4z::load_tokenizer(qwen_dir());
    benchmark::DoNotOptimize(tok.get());
  }
}
BENCHMARK(BM_LoadQwen3Tokenizer)->Unit(benchmark::kMillisecond)->Iterations(5);

// First pass over WikiText with an empty word cache (load excluded from the timing).
void BM_EncodeWikiTextColdCache(benchmark::State& state) {
  auto lines = wikitext_lines();
  size_t bytes = 0, tokens = 0;
  for (const auto& l : lines) bytes += l.size();
  for (auto _ : state) {
    state.PauseTiming();
    auto tok = fp4z::load_tokenizer(qwen_dir());
    state.ResumeTiming();
    tokens = 0;
    for (const auto& l : lines) tokens += tok->encode(l).size();
    state.PauseTiming();
    tok.reset();
    state.ResumeTiming();
  }
  state.SetBytesProcessed(int64_t(bytes) * state.iterations());
  state.counters["tokens"] = double(tokens);
}
BENCHMARK(BM_EncodeWikiTextColdCache)->Unit(benchmark::kMillisecond)->Iterations(3);

// Steady state: the word cache already holds WikiText's words.
void BM_EncodeWikiTextWarmCache(benchmark::State& state) {
  auto lines = wikitext_lines();
  auto tok = fp4z::load_tokenizer(qwen_dir());
  size_t bytes = 0;
  for (const auto& l : lines) {
    bytes += l.size();
    tok->encode(l);
  }
  for (auto _ : state) {
    for (const auto& l : lines) benchmark::DoNotOptimize(tok->encode(l));
  }
  state.SetBytesProcessed(int64_t(bytes) * state.iterations());
}
BENCHMARK(BM_EncodeWikiTextWarmCache)->Unit(benchmark::kMillisecond);

void BM_DecodeWikiText(benchmark::State& state) {
  auto lines = wikitext_lines();
  auto tok = fp4z::load_tokenizer(qwen_dir());
  std::vector<std::vector<int32_t>> ids;
  size_t bytes = 0;
  for (const auto& l : lines) {
    bytes += l.size();
    ids.push_back(tok->encode(l));
  }
  for (auto _ : state) {
    for (const auto& v : ids) benchmark::DoNotOptimize(tok->decode(v));
  }
  state.SetBytesProcessed(int64_t(bytes) * state.iterations());
}
BENCHMARK(BM_DecodeWikiText)->Unit(benchmark::kMillisecond);

// llama2.c tok512 (score-greedy BPE with byte fallback) on TinyStories, converted in memory.
void BM_EncodeTinyStoriesLlama2c(benchmark::State& state) {
  std::string bin = read_file(fixtures_dir() + "/stories260K/tok512.bin");
  auto json = fp4z::llama2c_tokenizer_to_json(reinterpret_cast<const uint8_t*>(bin.data()), bin.size(), "tok512.bin");
  fs::path dir = fs::temp_directory_path() / ("fp4z_tokenizer_bench_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "tokenizer.json") << json.dump();
  auto tok = fp4z::load_tokenizer(dir.string());
  fs::remove_all(dir);
  std::string text = read_file(fixtures_dir() + "/eval/tinystories/tinystories_val.txt");
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  for (auto _ : state) {
    for (const auto& l : lines) benchmark::DoNotOptimize(tok->encode(l));
  }
  state.SetBytesProcessed(int64_t(text.size()) * state.iterations());
}
BENCHMARK(BM_EncodeTinyStoriesLlama2c)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
