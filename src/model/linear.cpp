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

size_t kernel_scratch_floats(int64_t k) {
  return size_t(kernels::kPanelRows * kernels::kPanelK + k + 64);
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

}  // namespace kernels

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
  const bool bf16_path = opt.bf16_act && opt.isa == Isa::kAvx512 && T >= 2 && w.kind != WeightKind::kF32 &&
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
    if (bf16_path)
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
