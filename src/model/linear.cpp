// Linear-layer dispatch (ISA, threads, global scale), the scalar reference kernel and W4A4 emulation.
#include "model/linear.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/error.h"
#include "nvfp4/codec.h"

namespace fp4z {

uint64_t Linear::stored_bytes() const {
  switch (kind) {
    case WeightKind::kF32: return uint64_t(n * k * 4);
    case WeightKind::kBF16: return uint64_t(n * k * 2);
    case WeightKind::kNvfp4: return uint64_t(n * k / 2 + n * k / 16);
  }
  return 0;
}

Isa kernel_isa() { return detect_isa(); }

namespace kernels {
bool cpu_has_avx512_vnni() { return cpu_features().has(CpuFeature::kAvx512Vnni); }
bool cpu_has_avx512_bf16() { return cpu_features().has(CpuFeature::kAvx512Bf16); }
}  // namespace kernels

size_t kernel_scratch_floats(int64_t k) {
  const size_t int8_panel = size_t(kernels::kPanelRows * kernels::kInt8ChunkGroups * (256 / 4 + 16));
  return std::max(size_t(kernels::kPanelRows * kernels::kPanelK + k + 64), int8_panel);
}

namespace kernels {

namespace {
// Dequantizes row r, columns [c0, c0+len) of W to f32 (exact: E2M1·E4M3 and BF16 fit in f32).
void dequant_scalar(const Linear& w, int64_t r, int64_t c0, int64_t len, float* out) {
  switch (w.kind) {
    case WeightKind::kF32: std::memcpy(out, w.data + (r * w.k + c0) * 4, size_t(len) * 4); break;
    case WeightKind::kBF16:
      for (int64_t i = 0; i < len; ++i) out[i] = load_float(w.data, DType::BF16, size_t(r * w.k + c0 + i));
      break;
    case WeightKind::kNvfp4: {
      const uint8_t* p = w.data + r * (w.k / 2);
      const uint8_t* s = w.scales + r * (w.k / 16);
      for (int64_t i = 0; i < len; ++i) {
        int64_t c = c0 + i;
        uint8_t code = (p[c / 2] >> ((c & 1) * 4)) & 0xF;
        out[i] = kE2M1Value[code] * kE4M3.v[s[c / 16]];
      }
      break;
    }
  }
}
}  // namespace

float dot_scalar(const float* a, const float* b, int64_t n) {
  float s[4] = {0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 4 <= n; i += 4)
    for (int q = 0; q < 4; ++q) s[q] += a[i + q] * b[i + q];
  for (; i < n; ++i) s[0] += a[i] * b[i];
  return (s[0] + s[1]) + (s[2] + s[3]);
}

void axpy_scalar(float a, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

void rows_scalar(const Linear& w, const float* x, int64_t T, int64_t r0, int64_t r1, float* y, float* scratch) {
  const int64_t K = w.k, N = w.n;
  for (int64_t t = 0; t < T; ++t)
    for (int64_t r = r0; r < r1; ++r) y[t * N + r] = 0.0f;
  for (int64_t rb = r0; rb < r1; rb += kPanelRows) {
    int64_t rows = std::min(kPanelRows, r1 - rb);
    for (int64_t c0 = 0; c0 < K; c0 += kPanelK) {
      int64_t len = std::min(kPanelK, K - c0);
      for (int64_t i = 0; i < rows; ++i) dequant_scalar(w, rb + i, c0, len, scratch + i * kPanelK);
      for (int64_t t = 0; t < T; ++t) {
        const float* xt = x + t * K + c0;
        for (int64_t i = 0; i < rows; ++i) {
          const float* wr = scratch + i * kPanelK;
          // Four partial sums, like the SIMD kernels' independent accumulators.
          float a[4] = {0, 0, 0, 0};
          int64_t j = 0;
          for (; j + 4 <= len; j += 4)
            for (int q = 0; q < 4; ++q) a[q] += wr[j + q] * xt[j + q];
          for (; j < len; ++j) a[0] += wr[j] * xt[j];
          y[t * N + rb + i] += (a[0] + a[1]) + (a[2] + a[3]);
        }
      }
    }
  }
}

namespace {
// 2·E2M1 + 12 for codes 0..15: unsigned bytes for vpdpbusd (the +12 is removed by Int8Activations::corr).
constexpr uint8_t kE2M1x2Plus12[16] = {12, 13, 14, 15, 16, 18, 20, 24, 12, 11, 10, 9, 8, 6, 4, 0};
// Byte slot within a dword of feature j%4 (the AVX-512 unpack yields nibbles 0, 2, 1, 3).
constexpr int kSlot[4] = {0, 2, 1, 3};
constexpr int64_t kInt8GroupsPerChunk = kInt8ChunkGroups;
constexpr int64_t kInt8Ld = kInt8ChunkGroups * 256;  // panel row stride (bytes)
}  // namespace

void unpack_int8_scalar(const Linear& w, int64_t r, int64_t g0, int64_t ng, uint8_t* wp, float* ws) {
  const uint8_t* p = w.data + r * (w.k / 2);
  const uint8_t* sc = w.scales + r * (w.k / 16);
  const int64_t blocks = w.k / 16;
  for (int64_t g = 0; g < ng; ++g)
    for (int64_t b = 0; b < 16; ++b) {
      int64_t blk = (g0 + g) * 16 + b;
      uint8_t* o = wp + g * 256 + b * 4;
      if (blk >= blocks) {
        for (int s = 0; s < 4; ++s)
          for (int j = 0; j < 4; ++j) o[s * 64 + j] = 0;
        ws[g * 16 + b] = 0.0f;
        continue;
      }
      for (int s = 0; s < 4; ++s)
        for (int j = 0; j < 4; ++j) {
          int64_t c = blk * 16 + 4 * s + j;
          o[s * 64 + kSlot[j]] = kE2M1x2Plus12[(p[c / 2] >> ((c & 1) * 4)) & 0xF];
        }
      ws[g * 16 + b] = kE4M3.v[sc[blk]] * 0.5f;
    }
}

float hsum16_tree(const float* v) {
  float s[8], q[4];
  for (int i = 0; i < 8; ++i) s[i] = v[i] + v[i + 8];
  for (int i = 0; i < 4; ++i) q[i] = s[i] + s[i + 4];
  float a = q[0] + q[2], b = q[1] + q[3];
  return a + b;
}

void rows_int8_scalar(const Linear& w, const Int8Activations& xa, int64_t r0, int64_t r1, float* y, float* scratch) {
  const int64_t N = w.n, T = xa.T, G = xa.groups, ldx = G * 256, lds = G * 16;
  for (int64_t t = 0; t < T; ++t)
    for (int64_t r = r0; r < r1; ++r) y[t * N + r] = 0.0f;
  uint8_t* wp = reinterpret_cast<uint8_t*>(scratch);
  float* ws = scratch + kPanelRows * kInt8Ld / 4;
  for (int64_t rb = r0; rb < r1; rb += kPanelRows) {
    int64_t rows = std::min(kPanelRows, r1 - rb);
    for (int64_t g0 = 0; g0 < G; g0 += kInt8GroupsPerChunk) {
      int64_t ng = std::min(kInt8GroupsPerChunk, G - g0);
      for (int64_t i = 0; i < rows; ++i) unpack_int8_scalar(w, rb + i, g0, ng, wp + i * kInt8Ld, ws + i * (kInt8Ld / 16));
      for (int64_t t = 0; t < T; ++t)
        for (int64_t i = 0; i < rows; ++i) {
          float f[16] = {};
          for (int64_t g = 0; g < ng; ++g) {
            const uint8_t* wg = wp + i * kInt8Ld + g * 256;
            const int8_t* xg = xa.q.data() + t * ldx + (g0 + g) * 256;
            const float* wsg = ws + i * (kInt8Ld / 16) + g * 16;
            const float* xsg = xa.scale.data() + t * lds + (g0 + g) * 16;
            const int32_t* cg = xa.corr.data() + t * lds + (g0 + g) * 16;
            for (int b = 0; b < 16; ++b) {
              int32_t acc = cg[b];
              for (int s = 0; s < 4; ++s)
                for (int j = 0; j < 4; ++j) acc += int32_t(wg[s * 64 + b * 4 + j]) * int32_t(xg[s * 64 + b * 4 + j]);
              float prod = wsg[b] * xsg[b];
              f[b] = std::fma(float(acc), prod, f[b]);
            }
          }
          y[t * N + rb + i] += hsum16_tree(f);
        }
    }
  }
}

}  // namespace kernels

namespace kernels {
void quantize_int8_row_scalar(const float* x, int64_t k, Int8Activations& out, int64_t t) {
  const int64_t G = out.groups;
  int8_t* q = out.q.data() + t * G * 256;
  for (int64_t blk = 0; blk * 16 < k; ++blk) {
    const float* xb = x + blk * 16;
    const int n = int(std::min<int64_t>(16, k - blk * 16));
    float amax = 0.0f;
    for (int j = 0; j < n; ++j) amax = std::max(amax, std::fabs(xb[j]));
    if (!(amax > 0.0f) || !std::isfinite(amax)) continue;  // zero block (non-finite input: left as zero)
    const float inv = 127.0f / amax;
    const int64_t g = blk / 16, b = blk % 16;
    int32_t sum = 0;
    for (int j = 0; j < n; ++j) {
      int v = int(std::nearbyint(xb[j] * inv));
      v = std::clamp(v, -127, 127);
      q[g * 256 + (j / 4) * 64 + b * 4 + kSlot[j % 4]] = int8_t(v);
      sum += v;
    }
    out.scale[size_t(t * G * 16 + blk)] = amax / 127.0f;
    out.corr[size_t(t * G * 16 + blk)] = -12 * sum;
  }
}
}  // namespace kernels

void quantize_activations_int8(const float* x, int64_t T, int64_t k, Int8Activations& out, ThreadPool& pool, Isa isa) {
  const int64_t G = (k + 255) / 256;
  out.T = T;
  out.k = k;
  out.groups = G;
  out.q.assign(size_t(T * G * 256), 0);
  out.scale.assign(size_t(T * G * 16), 0.0f);
  out.corr.assign(size_t(T * G * 16), 0);
  const bool simd = isa == Isa::kAvx512 && k % 16 == 0;
  pool.run(T, [&](int64_t t, int) {
    if (simd)
      kernels::quantize_int8_row_avx512(x + t * k, k, out, t);
    else
      kernels::quantize_int8_row_scalar(x + t * k, k, out, t);
  });
}

void fake_quantize_activations(float* x, int64_t T, int64_t k, float gs) {
  for (int64_t t = 0; t < T; ++t) {
    float* row = x + t * k;
    for (int64_t i = 0; i < k; ++i) row[i] = bf16_to_f32(f32_to_bf16_rne(row[i]));
    for (int64_t b = 0; b + 16 <= k; b += 16) {
      float amax = 0.0f;
      for (int i = 0; i < 16; ++i) amax = std::max(amax, std::fabs(row[b + i]));
      float q = bf16_to_f32(f32_to_bf16_rne(amax / 6.0f));
      float s = std::min(gs * q, 448.0f);
      uint8_t s8 = e4m3_encode_rne(s);
      if (kE4M3.v[s8] == 0.0f) s8 = 0x20;  // 0.125, as compressed-tensors stores for zero scales
      float S = kE4M3.v[s8] / gs;
      for (int i = 0; i < 16; ++i) {
        float X = std::clamp(row[b + i] / S, -6.0f, 6.0f);
        uint8_t code = e2m1_encode(X);
        row[b + i] = bf16_to_f32(f32_to_bf16_rne(kE2M1Value[code] * S));
      }
    }
  }
}

void linear_forward(const Linear& w, const float* x, int64_t T, float* y, ThreadPool& pool, const KernelOptions& opt) {
  if (T <= 0) return;
  std::vector<float> xq;
  if (opt.act_quant && w.kind == WeightKind::kNvfp4 && w.input_global_scale > 0.0f) {
    xq.assign(x, x + T * w.k);
    fake_quantize_activations(xq.data(), T, w.k, w.input_global_scale);
    x = xq.data();
  }
  const bool int8_path = opt.int8_act && T >= 2 && w.kind == WeightKind::kNvfp4;
  Int8Activations xa;
  if (int8_path) quantize_activations_int8(x, T, w.k, xa, pool, opt.isa);
  const bool vnni = int8_path && opt.isa == Isa::kAvx512 && kernels::cpu_has_avx512_vnni();
  const bool bf16_path = !int8_path && opt.bf16_act && opt.isa == Isa::kAvx512 && T >= 2 && w.kind != WeightKind::kF32 &&
                         kernels::cpu_has_avx512_bf16();
  std::vector<uint16_t> xb;
  if (bf16_path) {
    xb.resize(size_t(T * w.k));
    for (size_t i = 0; i < xb.size(); ++i) xb[i] = f32_to_bf16_rne(x[i]);
  }
  auto kernel = kernels::rows_scalar;
  if (opt.isa == Isa::kAvx512) kernel = kernels::rows_avx512;
  else if (opt.isa == Isa::kAvx2) kernel = kernels::rows_avx2;
  // Generation: many small row tasks balance the two threads; prompts: one panel per task.
  int64_t chunk = kernels::kPanelRows;
  if (T == 1) chunk = std::max<int64_t>(16, (w.n / (int64_t(pool.size()) * 16) + 15) / 16 * 16);
  int64_t tasks = (w.n + chunk - 1) / chunk;
  size_t scratch_floats = kernel_scratch_floats(w.k);
  const bool nvfp4 = w.kind == WeightKind::kNvfp4;
  pool.run(tasks, [&](int64_t task, int thread) {
    int64_t r0 = task * chunk, r1 = std::min(w.n, r0 + chunk);
    if (int8_path && vnni)
      kernels::rows_int8_avx512(w, xa, r0, r1, y, pool.scratch(thread, scratch_floats));
    else if (int8_path)
      kernels::rows_int8_scalar(w, xa, r0, r1, y, pool.scratch(thread, scratch_floats));
    else if (bf16_path)
      kernels::rows_avx512_bf16(w, xb.data(), T, r0, r1, y, pool.scratch(thread, scratch_floats));
    else
      kernel(w, x, T, r0, r1, y, pool.scratch(thread, scratch_floats));
    if (nvfp4 && (w.global_mul != 1.0f || w.global_div != 1.0f)) {
      for (int64_t t = 0; t < T; ++t) {
        float* yt = y + t * w.n;
        if (w.global_div != 1.0f)
          for (int64_t r = r0; r < r1; ++r) yt[r] /= w.global_div;
        else
          for (int64_t r = r0; r < r1; ++r) yt[r] *= w.global_mul;
      }
    }
  });
}

}  // namespace fp4z
