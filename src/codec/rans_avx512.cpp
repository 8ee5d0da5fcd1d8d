// AVX-512 whole-round rANS kernels. Decoder: 32 or 64 lanes as 2 or 4 16-lane vectors, table gathers,
// renormalisation words distributed with a masked expand; produces exactly what decode_rounds_scalar
// produces (invariant I7). Encoder: the same lanes, words gathered with a masked compress, the
// division by freq done as an exact double multiply (EncodeTable); emits exactly encode_rounds_scalar's words.
#include <immintrin.h>

#include "codec/rans_simd.h"

namespace fp4z::rans {

static_assert(kLanes % 16 == 0 && kWideLanes % 16 == 0, "lanes come in whole 16-lane vectors");

namespace {

// G vectors of 16 lanes. Each lane's state chain is serial (gather, multiply, renormalise: ~40 cycles
// of latency); the G chains of a round are independent, so more vectors keep more gathers in flight.
template <int G>
size_t decode_rounds_vectors(const DecodeTable& d, uint32_t* x, const uint8_t** pp, const uint8_t* end, uint8_t* out,
                             size_t n) {
  constexpr size_t L = 16 * G;
  const uint8_t* p = *pp;
  size_t i = 0;
  const __m512i mask = _mm512_set1_epi32(int(kMask));
  const __m512i lower = _mm512_set1_epi32(int(kLower));
  const int* table = reinterpret_cast<const int*>(d.slot);
  __m512i xv[G];
  for (int g = 0; g < G; ++g) xv[g] = _mm512_loadu_si512(x + 16 * g);
  while (i + L <= n && size_t(end - p) >= 2 * L) {
    // All G gathers of the round first (their ~25-cycle latencies overlap), then each vector's
    // arithmetic; 15-20% faster at 64 lanes in isolation than issuing them one step at a time.
    __m512i ev[G];
#pragma GCC unroll 8
    for (int g = 0; g < G; ++g) ev[g] = _mm512_i32gather_epi32(_mm512_and_si512(xv[g], mask), table, 4);
#pragma GCC unroll 8
    for (int g = 0; g < G; ++g) {
      const __m512i xs = xv[g], e = ev[g];
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i + 16 * g), _mm512_cvtepi32_epi8(e));
      // freq * (x >> 12) < 2^32 as two 32x32->64 multiplies (even lanes, then odd lanes shifted down)
      // recombined by a masked dword swap: 5 cycles of latency on the state chain where vpmulld has
      // 10, which measured faster than vpmulld on an Intel Xeon (Emerald Rapids) guest. The odd
      // lanes' x >> 12 comes straight from x (qword shift by 44), off the even lanes' shift.
      __m512i even = _mm512_mul_epu32(_mm512_srli_epi32(e, 20), _mm512_srli_epi32(xs, kScaleBits));
      __m512i odd = _mm512_mul_epu32(_mm512_srli_epi64(e, 52), _mm512_srli_epi64(xs, 32 + kScaleBits));
      __m512i prod = _mm512_mask_shuffle_epi32(even, 0xAAAA, odd, _MM_PERM_CDAB);
      __m512i bias = _mm512_and_si512(_mm512_srli_epi32(e, 8), mask);
      __m512i v = _mm512_add_epi32(prod, bias);
      __mmask16 need = _mm512_cmplt_epu32_mask(v, lower);
      // 16 words starting at p (32 bytes, in bounds: a round reads at most L words), zero-extended,
      // then spread so that the k-th renormalising lane of this vector gets word k.
      __m512i words = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
      __m512i spread = _mm512_maskz_expand_epi32(need, words);
      p += 2 * _mm_popcnt_u32(need);
      // (v << 16 in the renormalising lanes) | spread: a masked shift and a plain or (one uop fewer
      // than shifting every lane and or-ing under the mask; +20% at 64 lanes in isolation).
      xv[g] = _mm512_or_si512(_mm512_mask_slli_epi32(v, need, v, 16), spread);
    }
    i += L;
  }
  for (int g = 0; g < G; ++g) _mm512_storeu_si512(x + 16 * g, xv[g]);
  *pp = p;
  return i;
}

template <int G>
void encode_rounds_vectors(const EncodeTable& e, const uint8_t* sym, size_t n_rounds, uint32_t* x, uint16_t** pp) {
  constexpr size_t L = 16 * G;
  uint16_t* p = *pp;
  // freq | start << 16 per symbol: one gather gives both (each < 2^12).
  alignas(64) uint32_t packed[256];
  for (int s = 0; s < 256; ++s) packed[s] = e.freq[s] | e.start[s] << 16;
  const __m512i low16 = _mm512_set1_epi32(0xFFFF);
  const __m512i total = _mm512_set1_epi32(int(kTotal));
  __m512i xv[G];
  for (int g = 0; g < G; ++g) xv[g] = _mm512_loadu_si512(x + 16 * g);
  for (size_t r = n_rounds; r-- > 0;) {
    // The top vector's lanes first, as the scalar loop codes lanes from the top (I4: a lower
    // group's words land below an upper group's).
#pragma GCC unroll 8
    for (int g = G - 1; g >= 0; --g) {
      __m512i xs = xv[g];
      __m512i s = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(sym + r * L + 16 * g)));
      __m512i ent = _mm512_i32gather_epi32(s, reinterpret_cast<const int*>(packed), 4);
      __m512i freq = _mm512_and_si512(ent, low16);
      __m512i start = _mm512_srli_epi32(ent, 16);
      __mmask16 emit = _mm512_cmpge_epu32_mask(xs, _mm512_slli_epi32(freq, 32 - kScaleBits));
      // The emitting lanes' low halves, in lane order, end just below p.
      int k = _mm_popcnt_u32(emit);
      __m256i w = _mm512_cvtepi32_epi16(_mm512_maskz_compress_epi32(emit, xs));
      p -= k;
      _mm256_mask_storeu_epi16(p, __mmask16((1u << k) - 1), w);
      xs = _mm512_mask_srli_epi32(xs, emit, xs, 16);
      // q = x / freq via the rounded-up reciprocal, 8 lanes per double vector.
      __m256i s_lo = _mm512_castsi512_si256(s), s_hi = _mm512_extracti64x4_epi64(s, 1);
      __m512d q_lo = _mm512_mul_pd(_mm512_cvtepu32_pd(_mm512_castsi512_si256(xs)), _mm512_i32gather_pd(s_lo, e.rcp, 8));
      __m512d q_hi =
          _mm512_mul_pd(_mm512_cvtepu32_pd(_mm512_extracti64x4_epi64(xs, 1)), _mm512_i32gather_pd(s_hi, e.rcp, 8));
      __m512i q = _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvttpd_epu32(q_lo)), _mm512_cvttpd_epu32(q_hi), 1);
      // (q << 12) + (x - q*freq) + start == x + q*(4096 - freq) + start.
      xv[g] = _mm512_add_epi32(_mm512_add_epi32(xs, start), _mm512_mullo_epi32(q, _mm512_sub_epi32(total, freq)));
    }
  }
  for (int g = 0; g < G; ++g) _mm512_storeu_si512(x + 16 * g, xv[g]);
  *pp = p;
}

}  // namespace

size_t decode_rounds_avx512(const DecodeTable& d, int lanes, uint32_t* x, const uint8_t** pp, const uint8_t* end,
                            uint8_t* out, size_t n) {
  return lanes == kWideLanes ? decode_rounds_vectors<kWideLanes / 16>(d, x, pp, end, out, n)
                             : decode_rounds_vectors<kLanes / 16>(d, x, pp, end, out, n);
}

void encode_rounds_avx512(const EncodeTable& e, int lanes, const uint8_t* sym, size_t n_rounds, uint32_t* x,
                          uint16_t** pp) {
  if (lanes == kWideLanes) encode_rounds_vectors<kWideLanes / 16>(e, sym, n_rounds, x, pp);
  else encode_rounds_vectors<kLanes / 16>(e, sym, n_rounds, x, pp);
}

}  // namespace fp4z::rans
