// Global and block scale rules of the NVFP4 quantizers, and the seed report's entropy proxy.
#include "nvfp4/scales.h"

#include <cmath>
#include <algorithm>
#include <cstring>
#include <vector>

#include "common/half.h"
#include "common/parallel.h"
#include "nvfp4/codec.h"

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

double chunk_even_odd_entropy(const uint8_t* p, size_t len) {
  // Four histograms (two per parity) break the store-to-load dependency of repeated bytes.
  uint32_t hist[4][256] = {};
  size_t i = 0;
  for (; i + 4 <= len; i += 4) {
    ++hist[0][p[i]];
    ++hist[1][p[i + 1]];
    ++hist[2][p[i + 2]];
    ++hist[3][p[i + 3]];
  }
  for (; i < len; ++i) ++hist[i & 1][p[i]];
  double h[2] = {0, 0};
  for (int half = 0; half < 2; ++half) {
    size_t cnt = half == 0 ? (len + 1) / 2 : len / 2;
    if (cnt == 0) continue;
    for (int v = 0; v < 256; ++v) {
      uint32_t c = hist[half][v] + hist[half + 2][v];
      if (!c) continue;
      double pr = double(c) / double(cnt);
      h[half] -= pr * std::log2(pr);
    }
  }
  return (h[0] + h[1]) / 2;
}

EntropyProxy entropy_proxy_parallel(const uint8_t* bytes, size_t n, int threads) {
  EntropyProxy out;
  if (n == 0) return out;
  const size_t chunk = 32768;
  out.n_chunks = (n + chunk - 1) / chunk;
  std::vector<double> hs(out.n_chunks);
  parallel_for(out.n_chunks, threads, 16, [&](size_t b, size_t e) {
    for (size_t c = b; c < e; ++c) hs[c] = chunk_even_odd_entropy(bytes + c * chunk, std::min(chunk, n - c * chunk));
  });
  double sum = 0;
  for (double h : hs) sum += h;
  out.mean_bits = sum / double(out.n_chunks);
  double ss = 0;
  for (double h : hs) ss += (h - out.mean_bits) * (h - out.mean_bits);
  out.std_bits = std::sqrt(ss / double(out.n_chunks));
  return out;
}

EntropyProxy entropy_proxy(const uint8_t* bytes, size_t n) { return entropy_proxy_parallel(bytes, n, 1); }

}  // namespace fp4z
