// Global and block scale rules of the NVFP4 quantizers, and the seed report's entropy proxy.
#include "nvfp4/scales.h"

#include <cmath>
#include <algorithm>
#include <atomic>
#include <cstring>
#include <vector>

#include "common/half.h"
#include "common/parallel.h"
#include "nvfp4/codec.h"
#include "nvfp4/measure.h"

namespace fp4z {

float round_to_source(float x, SourceRounding r) {
  if (r == SourceRounding::kF32) return x;
  if (r == SourceRounding::kF16) return f16_to_f32(f32_to_f16_rne(x));
  uint32_t b;
  std::memcpy(&b, &x, 4);
  if ((b & 0x7FFFFFFFu) > 0x7F800000u) return x;
  b += 0x7FFFu + ((b >> 16) & 1u);
  b &= 0xFFFF0000u;
  float y;
  std::memcpy(&y, &b, 4);
  return y;
}

float absmax_global_scale(float amax, SourceRounding r) {
  if (!(amax > 0.0f)) return 1.0f;
  float inv = round_to_source(1.0f / amax, r);
  float gs = round_to_source(inv * 2688.0f, r);
  if (!std::isfinite(gs) || gs == 0.0f) return 1.0f;
  return gs;
}

uint8_t absmax_block_scale(float amax_b, float gs, SourceRounding r) {
  float q = round_to_source(amax_b / 6.0f, r);
  float s = gs * q;
  if (s > 448.0f) s = 448.0f;
  uint8_t b = e4m3_encode_rne(s);
  if ((b & 0x7F) == 0) b = 0x20;
  return b;
}

float seed_global_scale(float max_desired) {
  if (max_desired == 0.0f) return 1.0f;
  float inv = 1.0f / max_desired;
  return inv * 448.0f;
}

uint8_t seed_block_scale(float desired, float g) {
  float n = desired * g;
  // max(n, 0) then min(., 448), NaN-propagating like torch.clamp would; inputs are finite here.
  if (n < 0.0f) n = 0.0f;
  if (n > 448.0f) n = 448.0f;
  return e4m3_encode_rne(n);
}

namespace {

// Adds the counts of len bytes at p to even[256] / odd[256]; p[0] has parity `parity`. Eight tables
// (byte i % 8) keep repeated values apart (the increments of one table otherwise wait on each
// other); 16-bit counters keep them in 4 KiB, flushed before they could overflow.
void count_even_odd(const uint8_t* p, size_t len, size_t parity, uint32_t* even, uint32_t* odd) {
  uint32_t* to_even = parity ? odd : even;  // table j holds bytes of parity parity ^ (j & 1)
  uint32_t* to_odd = parity ? even : odd;
  constexpr size_t kFlush = 8 * 65535;  // bytes after which a 16-bit counter could overflow
  while (len > 0) {
    const size_t n = std::min(len, kFlush);
    uint16_t hist[8][256] = {};
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
      uint64_t v, u;
      std::memcpy(&v, p + i, 8);
      std::memcpy(&u, p + i + 8, 8);
      ++hist[0][v & 0xFF];
      ++hist[1][(v >> 8) & 0xFF];
      ++hist[2][(v >> 16) & 0xFF];
      ++hist[3][(v >> 24) & 0xFF];
      ++hist[4][(v >> 32) & 0xFF];
      ++hist[5][(v >> 40) & 0xFF];
      ++hist[6][(v >> 48) & 0xFF];
      ++hist[7][v >> 56];
      ++hist[0][u & 0xFF];
      ++hist[1][(u >> 8) & 0xFF];
      ++hist[2][(u >> 16) & 0xFF];
      ++hist[3][(u >> 24) & 0xFF];
      ++hist[4][(u >> 32) & 0xFF];
      ++hist[5][(u >> 40) & 0xFF];
      ++hist[6][(u >> 48) & 0xFF];
      ++hist[7][u >> 56];
    }
    for (; i < n; ++i) ++hist[i & 7][p[i]];
    for (int v = 0; v < 256; ++v) {
      to_even[v] += uint32_t(hist[0][v]) + hist[2][v] + hist[4][v] + hist[6][v];
      to_odd[v] += uint32_t(hist[1][v]) + hist[3][v] + hist[5][v] + hist[7][v];
    }
    p += n;
    len -= n;
  }
}

// pr * log2(pr) for pr = c / n, c = 0..n, with n the byte count of either half of a whole chunk:
// the terms of almost every chunk, computed once by the same expression (identical values).
constexpr size_t kHalfChunk = 16384;
const std::vector<double>& whole_chunk_terms() {
  static const std::vector<double> terms = [] {
    std::vector<double> t(kHalfChunk + 1, 0.0);
    for (size_t c = 1; c <= kHalfChunk; ++c) {
      double pr = double(c) / double(kHalfChunk);
      t[c] = pr * std::log2(pr);
    }
    return t;
  }();
  return terms;
}

// H_chunk from the counts of a chunk of `len` bytes.
double even_odd_entropy(const uint32_t* even, const uint32_t* odd, size_t len) {
  double h[2] = {0, 0};
  for (int half = 0; half < 2; ++half) {
    size_t cnt = half == 0 ? (len + 1) / 2 : len / 2;
    if (cnt == 0) continue;
    const uint32_t* c = half == 0 ? even : odd;
    if (cnt == kHalfChunk) {
      const double* term = whole_chunk_terms().data();
      for (int v = 0; v < 256; ++v)
        if (c[v]) h[half] -= term[c[v]];
      continue;
    }
    for (int v = 0; v < 256; ++v) {
      if (!c[v]) continue;
      double pr = double(c[v]) / double(cnt);
      h[half] -= pr * std::log2(pr);
    }
  }
  return (h[0] + h[1]) / 2;
}

EntropyProxy proxy_of_chunks(const std::vector<double>& hs) {
  EntropyProxy out;
  out.n_chunks = hs.size();
  if (hs.empty()) return out;
  double sum = 0;
  for (double h : hs) sum += h;
  out.mean_bits = sum / double(out.n_chunks);
  double ss = 0;
  for (double h : hs) ss += (h - out.mean_bits) * (h - out.mean_bits);
  out.std_bits = std::sqrt(ss / double(out.n_chunks));
  return out;
}

}  // namespace

EntropyProxyCounts::EntropyProxyCounts(size_t nbytes) : n_(nbytes), counts_((nbytes + kChunk - 1) / kChunk * 512, 0) {}

void EntropyProxyCounts::add(const uint8_t* p, size_t offset, size_t len) {
  const size_t end = offset + len;
  while (offset < end) {
    const size_t c = offset / kChunk, chunk_end = std::min(n_, (c + 1) * kChunk), piece_end = std::min(end, chunk_end);
    uint32_t* even = &counts_[c * 512];
    if (offset == c * kChunk && piece_end == chunk_end) {
      count_even_odd(p, piece_end - offset, 0, even, even + 256);  // the whole chunk: no other caller touches it
    } else {
      // Part of a chunk whose other parts other threads may be counting.
      uint32_t local[512] = {};
      count_even_odd(p, piece_end - offset, offset & 1, local, local + 256);
      for (int v = 0; v < 512; ++v)
        if (local[v]) std::atomic_ref<uint32_t>(even[v]).fetch_add(local[v], std::memory_order_relaxed);
    }
    p += piece_end - offset;
    offset = piece_end;
  }
}

EntropyProxy EntropyProxyCounts::proxy(int threads) const {
  std::vector<double> hs((n_ + kChunk - 1) / kChunk);
  parallel_for(hs.size(), threads, 16, [&](size_t b, size_t e) {
    for (size_t c = b; c < e; ++c) hs[c] = even_odd_entropy(&counts_[c * 512], &counts_[c * 512 + 256], std::min(kChunk, n_ - c * kChunk));
  });
  return proxy_of_chunks(hs);
}

void EntropyProxyCounts::code_counts(uint64_t hist[16]) const {
  uint64_t bytes[256] = {};
  for (size_t i = 0; i < counts_.size(); ++i) bytes[i & 255] += counts_[i];
  add_code_counts(bytes, hist);
}

EntropyProxy entropy_proxy_parallel(const uint8_t* bytes, size_t n, int threads) {
  if (n == 0) return EntropyProxy{};
  // Whole chunks per work item: each is counted by one thread, without atomics.
  const size_t chunk = EntropyProxyCounts::kChunk;
  EntropyProxyCounts counts(n);
  parallel_for((n + chunk - 1) / chunk, threads, 16, [&](size_t b, size_t e) {
    counts.add(bytes + b * chunk, b * chunk, std::min(n, e * chunk) - b * chunk);
  });
  return counts.proxy(threads);
}

EntropyProxy entropy_proxy(const uint8_t* bytes, size_t n) { return entropy_proxy_parallel(bytes, n, 1); }

}  // namespace fp4z
