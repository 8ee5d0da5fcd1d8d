// Single-core throughput of the chunk codecs on synthetic NVFP4 codes, FP8 scales and BF16 weights,
// beside zstd decoding of the same bytes (Google Benchmark; bytes/s counts the decoded output).
#include <benchmark/benchmark.h>
#include <zstd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "codec/chunk_codec.h"
#include "nvfp4/codec.h"

using namespace fp4z;
using namespace fp4z::codec;

namespace {

constexpr size_t kChunk = 1 << 20;

// Absmax NVFP4 of i.i.d. Gaussian weights: packed codes (kChunk bytes) and their block scales.
struct Synthetic {
  std::vector<uint8_t> codes, scales, bf16;
  Synthetic() {
    std::mt19937 rng(1);
    std::normal_distribution<float> g(0.0f, 1.0f);
    size_t n = 2 * kChunk;
    std::vector<float> w(n);
    float amax_t = 0;
    for (auto& x : w) x = g(rng), amax_t = std::max(amax_t, std::fabs(x));
    float gs = 2688.0f / amax_t;
    std::vector<uint8_t> c(n);
    for (size_t b = 0; b < n / 16; ++b) {
      float amax = 0;
      for (int k = 0; k < 16; ++k) amax = std::max(amax, std::fabs(w[16 * b + k]));
      uint8_t s8 = e4m3_encode_rne(std::min(gs * (amax / 6.0f), 448.0f));
      if (s8 == 0) s8 = 0x20;
      scales.push_back(s8);
      float S = e4m3_decode(s8) / gs;
      for (int k = 0; k < 16; ++k) c[16 * b + k] = e2m1_encode(w[16 * b + k] / S);
    }
    codes.resize(n / 2);
    pack_nibbles(c.data(), n, codes.data());
    bf16.resize(kChunk);
    std::normal_distribution<float> e(0.0f, 0.02f);
    for (size_t i = 0; i < kChunk / 2; ++i) {
      float x = e(rng);
      uint32_t b;
      std::memcpy(&b, &x, 4);
      uint16_t h = uint16_t((b + 0x7FFF + ((b >> 16) & 1)) >> 16);
      std::memcpy(&bf16[2 * i], &h, 2);
    }
  }
};
const Synthetic& data() {
  static Synthetic s;
  return s;
}

const std::vector<uint8_t>& pick(int which) {
  return which == 0 ? data().codes : which == 1 ? data().scales : data().bf16;
}
ChunkCodec codec_of(int which) { return which == 2 ? ChunkCodec::kSplitBF16 : ChunkCodec::kBytes; }
const char* label_of(int which) { return which == 0 ? "fp4-codes" : which == 1 ? "fp8-scales" : "bf16"; }

void BM_Encode(benchmark::State& st) {
  int which = int(st.range(0));
  const auto& v = pick(which);
  CodecScratch s;
  std::vector<uint8_t> payload;
  for (auto _ : st) {
    encode_chunk(codec_of(which), v.data(), v.size(), 19, payload, s);
    benchmark::DoNotOptimize(payload.data());
  }
  st.SetBytesProcessed(int64_t(st.iterations()) * int64_t(v.size()));
  st.SetLabel(std::string(label_of(which)) + " ratio " + std::to_string(double(payload.size()) / double(v.size())));
}

void BM_Decode(benchmark::State& st) {
  int which = int(st.range(0));
  const auto& v = pick(which);
  CodecScratch s;
  std::vector<uint8_t> payload, out(v.size());
  ChunkCodec c = encode_chunk(codec_of(which), v.data(), v.size(), 19, payload, s);
  for (auto _ : st) {
    std::string err = decode_chunk(c, payload.data(), payload.size(), out.data(), out.size(), s);
    benchmark::DoNotOptimize(out.data());
    if (!err.empty()) st.SkipWithError(err.c_str());
  }
  st.SetBytesProcessed(int64_t(st.iterations()) * int64_t(v.size()));
  st.SetLabel(std::string(label_of(which)) + " " + chunk_codec_name(c));
}

void BM_ZstdDecode(benchmark::State& st) {
  int which = int(st.range(0));
  const auto& v = pick(which);
  std::vector<uint8_t> frame(ZSTD_compressBound(v.size())), out(v.size());
  size_t fs = ZSTD_compress(frame.data(), frame.size(), v.data(), v.size(), 19);
  ZSTD_DCtx* d = ZSTD_createDCtx();
  for (auto _ : st) {
    size_t r = ZSTD_decompressDCtx(d, out.data(), out.size(), frame.data(), fs);
    benchmark::DoNotOptimize(r);
  }
  ZSTD_freeDCtx(d);
  st.SetBytesProcessed(int64_t(st.iterations()) * int64_t(v.size()));
  st.SetLabel(std::string(label_of(which)) + " zstd-19 ratio " + std::to_string(double(fs) / double(v.size())));
}

}  // namespace

BENCHMARK(BM_Encode)->Arg(0)->Arg(1)->Arg(2);
BENCHMARK(BM_Decode)->Arg(0)->Arg(1)->Arg(2);
BENCHMARK(BM_ZstdDecode)->Arg(0)->Arg(1)->Arg(2);
BENCHMARK_MAIN();
