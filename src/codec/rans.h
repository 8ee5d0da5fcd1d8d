// Static, table-based byte rANS coder with 32 or 64 interleaved states (header-only; ryg_rans "word" variant).
//
// Model: a byte alphabet (256 symbols) with frequencies normalised to a total of 2^kScaleBits.
// State: 32-bit x, kept in [kLower, 2^32) between symbols; renormalisation moves 16-bit words.
//
// Invariants (each one is relied on below; the decoder checks what a hostile stream could break):
//  I1  every symbol that occurs has 1 <= freq <= kTotal - 1; the freqs of a table sum to kTotal.
//      (A stream with a single distinct symbol never uses rANS: the container stores it as "const".)
//  I2  encoder: before coding symbol s, if x >= x_max(s) = freq(s) << (32 - kScaleBits) one word is
//      emitted (x >>= 16); afterwards x / freq < 2^(32-kScaleBits), so the coded x stays < 2^32.
//      Because x_max >= 2^20 > 2^16, one emission always suffices.
//  I3  decoder: x' = freq * (x >> kScaleBits) + (x & mask) - start. For x in [kLower, 2^32) this
//      is in [16, 2^32) (no overflow: freq*(q+1) <= 2^12 * 2^20); if x' < kLower exactly one word
//      is shifted in, which lands x back in [2^20, 2^32).
//  I4  with L lanes (kLanes = 32: stream mode 2; kWideLanes = 64: mode 3, whose twice as many
//      independent state chains let the SIMD decoder hide the gather latency), lane i % L codes
//      symbol i. The encoder runs backwards over the symbols and its word list is reversed, so the
//      decoder reads words in the order it needs them.
//  I5  every state starts at kLower in the encoder; hence after a correct decode every lane is back
//      at exactly kLower and every word has been consumed. The decoder checks both: this catches
//      most corruption even without the checksums.
//  I6  the decoder never reads outside [words, words + n_words): the fast loop runs only while
//      L words remain; the tail checks each read.
//  I7  a decoder may run any number of whole rounds (L symbols, lanes in order 0..L-1)
//      with a faster kernel (SIMD, src/codec/rans_avx512.cpp) and finish with decode_tail(): the
//      words a round consumes are, in order, those of the lanes that renormalise, in lane order.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

namespace fp4z::rans {

constexpr int kScaleBits = 12;
constexpr uint32_t kTotal = 1u << kScaleBits;
constexpr uint32_t kMask = kTotal - 1;
constexpr uint32_t kLower = 1u << 16;
constexpr int kLanes = 32;      // lanes of a format-1.0 rANS stream (mode 2)
constexpr int kWideLanes = 64;  // lanes of a wide rANS stream (mode 3, format 1.1)
constexpr int kMaxLanes = kWideLanes;
constexpr bool valid_lanes(int lanes) { return lanes == kLanes || lanes == kWideLanes; }

// Normalised frequencies of the 256 byte symbols (0 = symbol absent), summing to kTotal.
struct FreqTable {
  uint32_t freq[256];
  uint32_t start[257];
  void finish_starts() {
    start[0] = 0;
    for (int s = 0; s < 256; ++s) start[s + 1] = start[s] + freq[s];
  }
};

// Counts of each byte value in [p, p + n).
inline void histogram(const uint8_t* p, size_t n, uint64_t counts[256]) {
  // Four sub-histograms break the store-to-load dependency on repeated bytes.
  uint32_t h[4][256] = {};
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    ++h[0][p[i]];
    ++h[1][p[i + 1]];
    ++h[2][p[i + 2]];
    ++h[3][p[i + 3]];
  }
  for (; i < n; ++i) ++h[0][p[i]];
  for (int s = 0; s < 256; ++s) counts[s] = uint64_t(h[0][s]) + h[1][s] + h[2][s] + h[3][s];
}
// Same for a strided plane: bytes p[0], p[stride], p[2*stride], ... (n of them).
inline void histogram_strided(const uint8_t* p, size_t n, size_t stride, uint64_t counts[256]) {
  uint32_t h[2][256] = {};
  size_t i = 0;
  for (; i + 2 <= n; i += 2) {
    ++h[0][p[i * stride]];
    ++h[1][p[(i + 1) * stride]];
  }
  for (; i < n; ++i) ++h[0][p[i * stride]];
  for (int s = 0; s < 256; ++s) counts[s] = uint64_t(h[0][s]) + h[1][s];
}

// Number of distinct symbols with a non-zero count.
inline int distinct_symbols(const uint64_t counts[256]) {
  int k = 0;
  for (int s = 0; s < 256; ++s) k += counts[s] != 0;
  return k;
}

// Turns counts into frequencies summing to kTotal, every present symbol >= 1 (I1). Needs >= 2
// distinct symbols. Starts from rounded proportional shares, then moves single units where they
// cost the fewest bits (sum of count * log2 change), which lands on or next to the optimum.
inline void normalize(const uint64_t counts[256], FreqTable& t) {
  uint64_t n = 0;
  for (int s = 0; s < 256; ++s) n += counts[s];
  int64_t sum = 0;
  for (int s = 0; s < 256; ++s) {
    if (counts[s] == 0) {
      t.freq[s] = 0;
      continue;
    }
    // Rounded share, computed in 128-bit-free form: counts < 2^40 in practice, kTotal = 2^12.
    uint64_t f = (counts[s] * kTotal + n / 2) / n;
    if (f < 1) f = 1;
    if (f > kTotal - 1) f = kTotal - 1;
    t.freq[s] = uint32_t(f);
    sum += int64_t(f);
  }
  // Marginal cost (in bits * count) of moving one unit, approximated by count / freq, which is
  // proportional to the derivative of count * log2(freq). Linear scans: the alphabet is small.
  while (sum != int64_t(kTotal)) {
    int best = -1;
    double best_score = 0;
    if (sum < int64_t(kTotal)) {
      // Give a unit to the symbol that gains most: count * log2((f+1)/f) ~ count / (f + 0.5).
      for (int s = 0; s < 256; ++s) {
        if (counts[s] == 0 || t.freq[s] >= kTotal - 1) continue;
        double score = double(counts[s]) / (t.freq[s] + 0.5);
        if (best < 0 || score > best_score) best = s, best_score = score;
      }
      ++t.freq[best];
      ++sum;
    } else {
      // Take a unit from the symbol that loses least: count * log2(f/(f-1)) ~ count / (f - 0.5).
      for (int s = 0; s < 256; ++s) {
        if (t.freq[s] <= 1) continue;
        double score = double(counts[s]) / (t.freq[s] - 0.5);
        if (best < 0 || score < best_score) best = s, best_score = score;
      }
      --t.freq[best];
      --sum;
    }
  }
  t.finish_starts();
}

// Upper bound of the coded size in bytes of n symbols (words + a few spare), for buffer sizing.
inline size_t max_words(size_t n) { return n + kMaxLanes + 16; }

// Encoder symbol table: per symbol its frequency and start (absent symbols get freq 1, never used),
// and 1/freq as a double rounded up, so that floor(x * rcp) == x / freq exactly for every 32-bit x:
// the product is >= x / freq and exceeds it by at most x * 2^-51 < 2^-19, while a non-integer
// quotient lies at least 1/freq >= 2^-12 below the next integer.
struct EncodeTable {
  uint32_t freq[256];
  uint32_t start[256];
  double rcp[256];
};
inline void build_encode_table(const FreqTable& t, EncodeTable& e) {
  for (int s = 0; s < 256; ++s) {
    uint32_t f = t.freq[s] ? t.freq[s] : 1;
    e.freq[s] = f;
    e.start[s] = t.start[s];
    double r = 1.0 / double(f);
    e.rcp[s] = (f & (f - 1)) == 0 ? r : std::nextafter(r, 2.0);
  }
}

// Codes one symbol into state xs (I2), emitting at most one word below *pp.
inline void encode_put(const EncodeTable& e, uint32_t& xs, uint8_t s, uint16_t*& p) {
  uint32_t f = e.freq[s];
  if (xs >= f << (32 - kScaleBits)) {
    *--p = uint16_t(xs);
    xs >>= 16;
  }
  xs = ((xs / f) << kScaleBits) + (xs % f) + e.start[s];
}

// Scalar whole rounds, backwards: codes the rounds sym[r*L .. r*L + L) for r = n_rounds-1 down
// to 0, lanes L-1 down to 0, writing words below *pp (moved down).
template <int L>
void encode_rounds_scalar_lanes(const EncodeTable& e, const uint8_t* sym, size_t n_rounds, uint32_t* x, uint16_t** pp) {
  uint16_t* p = *pp;
  for (size_t r = n_rounds; r-- > 0;) {
    const uint8_t* g = sym + r * L;
    for (int l = L - 1; l >= 0; --l) encode_put(e, x[l], g[l], p);
  }
  *pp = p;
}
inline void encode_rounds_scalar(const EncodeTable& e, int lanes, const uint8_t* sym, size_t n_rounds, uint32_t* x,
                                 uint16_t** pp) {
  if (lanes == kWideLanes) encode_rounds_scalar_lanes<kWideLanes>(e, sym, n_rounds, x, pp);
  else encode_rounds_scalar_lanes<kLanes>(e, sym, n_rounds, x, pp);
}

// Signature of a whole-round encode kernel (scalar above, SIMD elsewhere) for `lanes` (valid_lanes)
// states; all give identical words.
using EncodeRoundsFn = void (*)(const EncodeTable&, int lanes, const uint8_t*, size_t, uint32_t*, uint16_t**);

// Encodes sym[0..n) with table t in `lanes` (valid_lanes) states. Writes the final states to
// states[0..lanes) and the 16-bit words, in decoder order, to words (resized). The table must give
// every symbol of sym a non-zero freq.
inline void encode(const uint8_t* sym, size_t n, const FreqTable& t, int lanes, uint32_t* states,
                   std::vector<uint16_t>& words, EncodeRoundsFn rounds = encode_rounds_scalar) {
  words.resize(max_words(n));
  // Words are written backwards from the end of the buffer, then moved to the front (I4).
  uint16_t* end = words.data() + words.size();
  uint16_t* p = end;
  uint32_t x[kMaxLanes];
  for (int l = 0; l < lanes; ++l) x[l] = kLower;
  EncodeTable e;
  build_encode_table(t, e);
  size_t i = n;
  // Tail first (symbols beyond the last full group of lanes), then whole groups backwards.
  while (i % size_t(lanes)) {
    --i;
    encode_put(e, x[i % size_t(lanes)], sym[i], p);
  }
  rounds(e, lanes, sym, i / size_t(lanes), x, &p);
  size_t used = size_t(end - p);
  std::memmove(words.data(), p, used * sizeof(uint16_t));
  words.resize(used);
  for (int l = 0; l < lanes; ++l) states[l] = x[l];
}

// Decoder table: one 32-bit entry per slot: symbol (bits 0-7), slot - start (bits 8-19),
// freq (bits 20-31). freq <= kTotal - 1 fits in 12 bits by I1.
struct DecodeTable {
  uint32_t slot[kTotal];
};

inline void build_decode_table(const FreqTable& t, DecodeTable& d) {
  for (int s = 0; s < 256; ++s) {
    for (uint32_t k = 0; k < t.freq[s]; ++k) {
      d.slot[t.start[s] + k] = uint32_t(s) | (k << 8) | (t.freq[s] << 20);
    }
  }
}

// Reads a little-endian 16-bit word.
inline uint32_t load_word(const uint8_t* p) { return uint32_t(p[0]) | uint32_t(p[1]) << 8; }

// Scalar whole rounds of L lanes: decodes while a full round of symbols and L words remain.
// Returns the number of symbols decoded; x and *pp are advanced.
template <int L>
size_t decode_rounds_scalar_lanes(const DecodeTable& d, uint32_t* x, const uint8_t** pp, const uint8_t* end,
                                  uint8_t* out, size_t n) {
  const uint8_t* p = *pp;
  size_t i = 0;
  // A round reads at most L words (I3), so no bounds checks inside.
  while (i + L <= n && size_t(end - p) >= 2 * size_t(L)) {
#pragma GCC unroll 32
    for (int l = 0; l < L; ++l) {
      uint32_t e = d.slot[x[l] & kMask];
      out[i + l] = uint8_t(e);
      uint32_t v = (e >> 20) * (x[l] >> kScaleBits) + ((e >> 8) & kMask);
      uint32_t need = v < kLower;
      uint32_t w = load_word(p);
      // Branch-free select: renormalisation is a coin flip for near-uniform data.
      x[l] = (v << (need << 4)) | (w & (0u - need));
      p += need << 1;
    }
    i += L;
  }
  *pp = p;
  return i;
}
inline size_t decode_rounds_scalar(const DecodeTable& d, int lanes, uint32_t* x, const uint8_t** pp,
                                   const uint8_t* end, uint8_t* out, size_t n) {
  return lanes == kWideLanes ? decode_rounds_scalar_lanes<kWideLanes>(d, x, pp, end, out, n)
                             : decode_rounds_scalar_lanes<kLanes>(d, x, pp, end, out, n);
}

// Finishes a decode from symbol i (a multiple of lanes) with bounds-checked reads, then checks I5.
inline bool decode_tail(const DecodeTable& d, int lanes, uint32_t* x, const uint8_t* p, const uint8_t* end,
                        uint8_t* out, size_t i, size_t n) {
  for (; i < n; ++i) {
    uint32_t& xs = x[i % size_t(lanes)];
    uint32_t e = d.slot[xs & kMask];
    out[i] = uint8_t(e);
    uint32_t v = (e >> 20) * (xs >> kScaleBits) + ((e >> 8) & kMask);
    if (v < kLower) {
      if (end - p < 2) return false;
      v = (v << 16) | load_word(p);
      p += 2;
    }
    xs = v;
  }
  if (p != end) return false;
  for (int l = 0; l < lanes; ++l)
    if (x[l] != kLower) return false;
  return true;
}

// Signature of a whole-round kernel (scalar above, SIMD ones elsewhere) for `lanes` (valid_lanes)
// states; all give identical results.
using DecodeRoundsFn = size_t (*)(const DecodeTable&, int lanes, uint32_t*, const uint8_t**, const uint8_t*, uint8_t*,
                                  size_t);

// Decodes n symbols into out. words points at n_words little-endian 16-bit words. Returns false
// if the stream is inconsistent (a read past the words, states not back at kLower, words left
// over, or a state out of range at the start). Never reads or writes out of bounds (I6).
// states_in holds `lanes` (valid_lanes) states.
inline bool decode(const DecodeTable& d, int lanes, const uint32_t* states_in, const uint8_t* words, size_t n_words,
                   uint8_t* out, size_t n, DecodeRoundsFn rounds = decode_rounds_scalar) {
  if (!valid_lanes(lanes)) return false;
  uint32_t x[kMaxLanes];
  for (int l = 0; l < lanes; ++l) {
    if (states_in[l] < kLower) return false;
    x[l] = states_in[l];
  }
  const uint8_t* p = words;
  const uint8_t* const end = words + 2 * n_words;
  size_t i = rounds(d, lanes, x, &p, end, out, n);
  return decode_tail(d, lanes, x, p, end, out, i, n);
}

}  // namespace fp4z::rans
