// Unit tests of the byte rANS coder, entropy streams and chunk codecs (round trips, limits, hostile input).
#include <gtest/gtest.h>
#include <zstd.h>

#include <algorithm>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "codec/chunk_codec.h"
#include "codec/rans.h"
#include "test_util.h"

using namespace fp4z;
using namespace fp4z::codec;

namespace {

std::vector<uint8_t> skewed_bytes(size_t n, double spread, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> g(128.0, spread);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = uint8_t(std::clamp(std::lround(g(rng)), 0l, 255l));
  return v;
}

double order0_bits(const uint8_t* p, size_t n) {
  uint64_t c[256];
  rans::histogram(p, n, c);
  double h = 0;
  for (int s = 0; s < 256; ++s)
    if (c[s]) h -= double(c[s]) * std::log2(double(c[s]) / double(n));
  return h;
}

void round_trip_stream(const std::vector<uint8_t>& v) {
  CodecScratch s;
  std::vector<uint8_t> coded;
  encode_stream(v.data(), v.size(), coded, s);
  std::vector<uint8_t> back(v.size() + 1, 0xAB);
  size_t pos = 0;
  std::string err = decode_stream(coded.data(), coded.size(), &pos, back.data(), v.size(), s);
  ASSERT_EQ(err, "");
  EXPECT_EQ(pos, coded.size());
  EXPECT_TRUE(std::equal(v.begin(), v.end(), back.begin()));
  EXPECT_EQ(back[v.size()], 0xAB);  // nothing written past the end
}

}  // namespace

TEST(Rans, NormalizeSumsAndKeepsRareSymbols) {
  uint64_t counts[256] = {};
  counts[0] = 1000000000;
  counts[1] = 1;
  counts[200] = 3;
  for (int s = 10; s < 60; ++s) counts[s] = 1;
  rans::FreqTable t;
  rans::normalize(counts, t);
  uint32_t sum = 0;
  for (int s = 0; s < 256; ++s) {
    if (counts[s]) EXPECT_GE(t.freq[s], 1u);
    else EXPECT_EQ(t.freq[s], 0u);
    EXPECT_LE(t.freq[s], rans::kTotal - 1);
    sum += t.freq[s];
  }
  EXPECT_EQ(sum, rans::kTotal);
}

TEST(Rans, RoundTripManySizesAndShapes) {
  for (size_t n : {1, 2, 7, 8, 9, 15, 16, 17, 100, 4095, 65536, 100003}) {
    for (double spread : {0.3, 2.0, 20.0, 200.0}) {
      round_trip_stream(skewed_bytes(n, spread, uint32_t(n * 7 + spread)));
    }
  }
  // All 256 symbols, uniform: stored raw (coding cannot pay) but still exact.
  std::vector<uint8_t> u(1 << 16);
  std::mt19937 rng(5);
  for (auto& b : u) b = uint8_t(rng());
  round_trip_stream(u);
  // Constant stream.
  round_trip_stream(std::vector<uint8_t>(1000, 42));
  round_trip_stream({});
}

TEST(Rans, CodedSizeNearEntropy) {
  auto v = skewed_bytes(1 << 20, 6.0, 3);
  CodecScratch s;
  std::vector<uint8_t> coded;
  encode_stream(v.data(), v.size(), coded, s);
  double bound = order0_bits(v.data(), v.size()) / 8;
  EXPECT_LT(double(coded.size()), bound * 1.002 + 64) << "entropy bound " << bound;
  EXPECT_EQ(coded[0], uint8_t(StreamMode::kRansWide));  // a 1 MiB stream takes the 64-lane mode
  // Below kWideStreamSymbols the stream keeps the 32-lane mode of format 1.0 (fewer state bytes).
  auto small = skewed_bytes(kWideStreamSymbols - 1, 6.0, 4);
  coded.clear();
  encode_stream(small.data(), small.size(), coded, s);
  EXPECT_EQ(coded[0], uint8_t(StreamMode::kRans));
  EXPECT_LT(double(coded.size()), order0_bits(small.data(), small.size()) / 8 * 1.002 + 64 + 4 * rans::kLanes);
}

// A 1.0 reader's 32-lane streams stay readable: a stream written in mode 2 by the 32-lane encoder
// decodes through decode_stream, and the same symbols in mode 3 too; a mode-3 stream whose state
// block is cut to 32 lanes is refused.
TEST(Rans, BothLaneCountsDecodeThroughTheStreamReader) {
  auto v = skewed_bytes(200003, 4.0, 8);
  uint64_t counts[256];
  rans::histogram(v.data(), v.size(), counts);
  rans::FreqTable t;
  rans::normalize(counts, t);
  for (int lanes : {rans::kLanes, rans::kWideLanes}) {
    uint32_t states[rans::kMaxLanes];
    std::vector<uint16_t> words;
    rans::encode(v.data(), v.size(), t, lanes, states, words);
    // Serialise by hand as docs/format.md §4.1 describes.
    std::vector<uint8_t> coded = {uint8_t(lanes == rans::kLanes ? StreamMode::kRans : StreamMode::kRansWide)};
    coded.resize(33, 0);
    for (int s = 0; s < 256; ++s)
      if (t.freq[s]) coded[1 + (s >> 3)] |= uint8_t(1u << (s & 7));
    for (int s = 0; s < 256; ++s) {
      if (!t.freq[s]) continue;
      uint32_t f = t.freq[s] - 1;
      while (f >= 0x80) coded.push_back(uint8_t(f | 0x80)), f >>= 7;
      coded.push_back(uint8_t(f));
    }
    for (int l = 0; l < lanes; ++l)
      for (int k = 0; k < 4; ++k) coded.push_back(uint8_t(states[l] >> (8 * k)));
    uint64_t nw = words.size();
    while (nw >= 0x80) coded.push_back(uint8_t(nw | 0x80)), nw >>= 7;
    coded.push_back(uint8_t(nw));
    for (uint16_t w : words) coded.push_back(uint8_t(w)), coded.push_back(uint8_t(w >> 8));
    CodecScratch s;
    std::vector<uint8_t> back(v.size());
    size_t pos = 0;
    EXPECT_EQ(decode_stream(coded.data(), coded.size(), &pos, back.data(), v.size(), s), "") << lanes;
    EXPECT_EQ(pos, coded.size());
    EXPECT_EQ(back, v) << lanes;
    // The other mode byte reads the states with the wrong lane count: refused, never a crash.
    coded[0] = uint8_t(lanes == rans::kLanes ? StreamMode::kRansWide : StreamMode::kRans);
    pos = 0;
    EXPECT_NE(decode_stream(coded.data(), coded.size(), &pos, back.data(), v.size(), s), "") << lanes;
  }
}

TEST(Rans, NibbleCodesWithNegativeZero) {
  // Packed FP4 codes, every code including 8 (negative zero) present.
  std::mt19937 rng(11);
  std::vector<uint8_t> codes(1 << 18);
  for (auto& b : codes) b = uint8_t((rng() % 16) | ((rng() % 9) << 4));
  codes[5] = 0x88;
  CodecScratch s;
  std::vector<uint8_t> payload, back(codes.size());
  ChunkCodec c = encode_chunk(ChunkCodec::kBytes, codes.data(), codes.size(), 3, payload, s);
  EXPECT_EQ(c, ChunkCodec::kBytes);
  EXPECT_EQ(decode_chunk(c, payload.data(), payload.size(), back.data(), back.size(), s), "");
  EXPECT_EQ(codes, back);
}

TEST(ChunkCodec, FloatSplitsRoundTripAndPay) {
  std::mt19937 rng(9);
  std::normal_distribution<float> g(0.0f, 0.02f);
  const size_t m = 300001;  // odd element count: not a multiple of the lane count
  std::vector<uint8_t> bf16(2 * m), f16(2 * m), f32(4 * m);
  for (size_t i = 0; i < m; ++i) {
    float x = g(rng);
    uint32_t b;
    std::memcpy(&b, &x, 4);
    uint16_t hb = uint16_t(b >> 16);
    std::memcpy(&bf16[2 * i], &hb, 2);
    std::memcpy(&f32[4 * i], &x, 4);
    // crude f16: keep it simple, exactness of the transform is what matters
    uint16_t h = uint16_t(((b >> 16) & 0x8000) | ((((b >> 23) & 0xFF) - 112) & 0x1F) << 10 | ((b >> 13) & 0x3FF));
    std::memcpy(&f16[2 * i], &h, 2);
  }
  f32[7] = 0xFF;  // odd bit patterns survive
  struct Case { ChunkCodec c; std::vector<uint8_t>* v; double max_ratio; };
  for (Case k : {Case{ChunkCodec::kSplitBF16, &bf16, 0.75}, Case{ChunkCodec::kSplitF16, &f16, 0.95},
                 Case{ChunkCodec::kSplitF32, &f32, 0.95}}) {
    CodecScratch s;
    std::vector<uint8_t> payload, back(k.v->size());
    ChunkCodec c = encode_chunk(k.c, k.v->data(), k.v->size(), 3, payload, s);
    EXPECT_EQ(c, k.c);
    EXPECT_LT(double(payload.size()) / double(k.v->size()), k.max_ratio) << chunk_codec_name(k.c);
    EXPECT_EQ(decode_chunk(c, payload.data(), payload.size(), back.data(), back.size(), s), "");
    EXPECT_EQ(*k.v, back) << chunk_codec_name(k.c);
  }
}

TEST(ChunkCodec, RawFallbackWhenNothingPays) {
  std::mt19937 rng(1);
  std::vector<uint8_t> v(100000);
  for (auto& b : v) b = uint8_t(rng());
  CodecScratch s;
  std::vector<uint8_t> payload;
  for (ChunkCodec want : {ChunkCodec::kZstd, ChunkCodec::kBytes, ChunkCodec::kSplitBF16}) {
    ChunkCodec c = encode_chunk(want, v.data(), v.size(), 3, payload, s);
    EXPECT_EQ(c, ChunkCodec::kRaw);
    EXPECT_EQ(payload, v);
  }
}

// A small entropy-coded chunk pays a frequency table that zstd's adaptive coding does not: it is
// never stored larger than zstd at level 19 (the stories260K block scales were 80% vs zstd's 60%),
// while a large chunk keeps its rANS stream.
TEST(ChunkCodec, SmallChunksNeverLargerThanZstd19) {
  CodecScratch s;
  std::vector<uint8_t> payload, zstd19, back;
  for (size_t n : {size_t(256), size_t(688), size_t(4096), kSmallChunkBytes}) {
    auto v = skewed_bytes(n, 3.0, uint32_t(n));
    for (size_t i = 0; i + 1 < n; i += 7) v[i + 1] = v[i];  // repeats: zstd's strength
    ChunkCodec c = encode_chunk(ChunkCodec::kBytes, v.data(), n, 3, payload, s);
    zstd19.resize(ZSTD_compressBound(n));
    zstd19.resize(ZSTD_compress(zstd19.data(), zstd19.size(), v.data(), n, kSmallChunkZstdLevel));
    EXPECT_LE(payload.size(), zstd19.size()) << n;
    back.assign(n, 0);
    EXPECT_EQ(decode_chunk(c, payload.data(), payload.size(), back.data(), n, s), "") << n;
    EXPECT_EQ(back, v) << n;
  }
  auto big = skewed_bytes(kSmallChunkBytes + 1, 3.0, 5);
  EXPECT_EQ(encode_chunk(ChunkCodec::kBytes, big.data(), big.size(), 3, payload, s), ChunkCodec::kBytes);
}

TEST(ChunkCodec, HostilePayloadsFailCleanly) {
  auto v = skewed_bytes(50000, 5.0, 2);
  CodecScratch s;
  std::vector<uint8_t> payload;
  ASSERT_EQ(encode_chunk(ChunkCodec::kBytes, v.data(), v.size(), 3, payload, s), ChunkCodec::kBytes);
  std::vector<uint8_t> out(v.size());
  // Every truncation fails; no crash (ASan builds check the bounds).
  for (size_t cut = 0; cut < payload.size(); cut += 97)
    EXPECT_NE(decode_chunk(ChunkCodec::kBytes, payload.data(), cut, out.data(), out.size(), s), "") << cut;
  // Bit flips in the table and states region are nearly always detected by the coder itself.
  int detected = 0, tried = 0;
  for (size_t at = 1; at < 80 && at < payload.size(); ++at) {
    auto bad = payload;
    bad[at] ^= 0x10;
    ++tried;
    std::string err = decode_chunk(ChunkCodec::kBytes, bad.data(), bad.size(), out.data(), out.size(), s);
    if (!err.empty() || out != v) ++detected;
  }
  EXPECT_EQ(detected, tried);
  // Wrong sizes for the other codecs.
  EXPECT_NE(decode_chunk(ChunkCodec::kRaw, v.data(), 10, out.data(), 11, s), "");
  EXPECT_NE(decode_chunk(ChunkCodec::kZstd, v.data(), v.size(), out.data(), out.size(), s), "");
  EXPECT_NE(decode_chunk(ChunkCodec(77), v.data(), v.size(), out.data(), out.size(), s), "");
  EXPECT_NE(decode_chunk(ChunkCodec::kSplitBF16, v.data(), v.size(), out.data(), 3, s), "");
}

TEST(Dispatch, EveryKernelGivesTheSameBytes) {
  // Streams of several shapes decoded with the scalar and the SIMD round kernels must agree exactly,
  // and so must the BF16 plane transforms.
  std::vector<rans::DecodeRoundsFn> kernels = {rans::decode_rounds_scalar};
  if (detect_isa() == Isa::kAvx512) kernels.push_back(rans::decode_rounds_avx512);
  for (int lanes : {rans::kLanes, rans::kWideLanes})
  for (double spread : {0.5, 3.0, 40.0}) {
    for (size_t n : {31, 32, 33, 63, 64, 65, 1000, 65536 + 17}) {
      auto v = skewed_bytes(n, spread, uint32_t(n + spread * 10));
      uint64_t counts[256];
      rans::histogram(v.data(), n, counts);
      if (rans::distinct_symbols(counts) < 2) continue;
      rans::FreqTable t;
      rans::normalize(counts, t);
      uint32_t states[rans::kMaxLanes];
      std::vector<uint16_t> words;
      rans::encode(v.data(), n, t, lanes, states, words);
      std::vector<uint8_t> wb(2 * words.size());
      if (!wb.empty()) std::memcpy(wb.data(), words.data(), wb.size());  // no null pointers into memcpy (UBSan)
      rans::DecodeTable d;
      rans::build_decode_table(t, d);
      for (auto k : kernels) {
        std::vector<uint8_t> out(n);
        ASSERT_TRUE(rans::decode(d, lanes, states, wb.data(), words.size(), out.data(), n, k));
        EXPECT_EQ(out, v) << lanes << " " << n;
      }
    }
  }
  std::mt19937 rng(4);
  std::vector<uint8_t> raw(2 * 1001);
  for (auto& b : raw) b = uint8_t(rng());
  std::vector<uint8_t> e1(1001), s1(1001), e2(1001), s2(1001), m1(raw.size()), m2(raw.size());
  split_bf16_scalar(raw.data(), 1001, e1.data(), s1.data());
  codec_kernels(detect_isa()).split_bf16(raw.data(), 1001, e2.data(), s2.data());
  EXPECT_EQ(e1, e2);
  EXPECT_EQ(s1, s2);
  merge_bf16_scalar(e1.data(), s1.data(), 1001, m1.data());
  codec_kernels(detect_isa()).merge_bf16(e1.data(), s1.data(), 1001, m2.data());
  EXPECT_EQ(m1, raw);
  EXPECT_EQ(m2, raw);
  FP4Z_SKIP_MISSING_ISA_LEVELS(CpuFeature::kAvx512);
}

// The encoders divide by freq through a rounded-up double reciprocal (EncodeTable); the quotient must
// be exact for every frequency at the worst states: multiples of freq, one below them, and the top.
TEST(Rans, ReciprocalDivisionIsExact) {
  rans::FreqTable t{};
  rans::EncodeTable e;
  for (uint32_t f = 1; f < rans::kTotal; ++f) {
    t.freq[0] = f;
    t.finish_starts();
    rans::build_encode_table(t, e);
    const double r = e.rcp[0];
    auto check = [&](uint64_t x) {
      if (x > UINT32_MAX) return;
      ASSERT_EQ(uint64_t(double(x) * r), x / f) << "freq " << f << " x " << x;
    };
    for (uint64_t q : {uint64_t(1), uint64_t(2), uint64_t(rans::kLower) / f + 1, uint64_t(UINT32_MAX) / f,
                       uint64_t(UINT32_MAX) / f - 1, uint64_t(1) << 20, (uint64_t(1) << 32) / (3 * f)}) {
      check(q * f);
      check(q * f - 1);
      check(q * f + f - 1);
    }
    check(UINT32_MAX);
  }
}

// Whole-round encode kernels (scalar division, AVX-512 reciprocal with compressed word stores) must
// emit the same words and final states, so containers do not depend on the machine that wrote them.
TEST(Dispatch, EveryEncodeKernelGivesTheSameWords) {
  std::vector<rans::EncodeRoundsFn> kernels = {rans::encode_rounds_scalar};
  if (detect_isa() == Isa::kAvx512) kernels.push_back(rans::encode_rounds_avx512);
  for (int lanes : {rans::kLanes, rans::kWideLanes})
  for (double spread : {0.3, 3.0, 40.0, 400.0}) {
    for (size_t n : {size_t(1), size_t(31), size_t(32), size_t(33), size_t(64), size_t(65), size_t(1000),
                     size_t(65536 + 17), size_t(1) << 20}) {
      auto v = skewed_bytes(n, spread, uint32_t(n * 7 + spread));
      uint64_t counts[256];
      rans::histogram(v.data(), n, counts);
      if (rans::distinct_symbols(counts) < 2) continue;
      rans::FreqTable t;
      rans::normalize(counts, t);
      uint32_t ref_states[rans::kMaxLanes];
      std::vector<uint16_t> ref_words;
      rans::encode(v.data(), n, t, lanes, ref_states, ref_words, kernels[0]);
      for (auto k : kernels) {
        uint32_t states[rans::kMaxLanes];
        std::vector<uint16_t> words;
        rans::encode(v.data(), n, t, lanes, states, words, k);
        EXPECT_EQ(words, ref_words) << lanes << " " << n << " " << spread;
        EXPECT_TRUE(std::equal(states, states + lanes, ref_states)) << lanes << " " << n << " " << spread;
      }
      // And the words decode back (the scalar decoder as the reference).
      std::vector<uint8_t> wb(2 * ref_words.size()), out(n);
      if (!wb.empty()) std::memcpy(wb.data(), ref_words.data(), wb.size());
      rans::DecodeTable d;
      rans::build_decode_table(t, d);
      ASSERT_TRUE(rans::decode(d, lanes, ref_states, wb.data(), ref_words.size(), out.data(), n));
      EXPECT_EQ(out, v);
    }
  }
  FP4Z_SKIP_MISSING_ISA_LEVELS(CpuFeature::kAvx512);
}

// The chunk checksums (XXH3-64) agree between the system library and the AVX-512 build, on every
// length class xxhash distinguishes (0-16, 17-128, 129-240, long inputs, stripe and block tails).
TEST(Dispatch, EveryHashKernelGivesTheSameValue) {
  std::mt19937 rng(9);
  std::vector<uint8_t> buf((size_t(1) << 20) + 333);
  for (auto& b : buf) b = uint8_t(rng());
  const HashFn simd = codec_kernels(detect_isa()).hash;
  for (size_t n : {size_t(0), size_t(1), size_t(3), size_t(16), size_t(17), size_t(128), size_t(129), size_t(240),
                   size_t(241), size_t(1023), size_t(1024), size_t(1025), size_t(65536 + 7), buf.size()}) {
    EXPECT_EQ(simd(buf.data() + 1, n - (n == buf.size())), xxh3_64_scalar(buf.data() + 1, n - (n == buf.size())))
        << n;
  }
  FP4Z_SKIP_MISSING_ISA_LEVELS(CpuFeature::kAvx512);
}
