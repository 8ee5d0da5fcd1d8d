// Linear-layer dispatch (ISA, threads, global scale), the scalar reference kernel and W4A4 emulation.
#include "model/linear.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/error.h"
#include "common/half.h"
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

// y += a·x with one rounding per element (fused multiply-add), as the SIMD twins' vfmadd: rd's
// refinement accumulates through it, and its decisions must not depend on the ISA.
void axpy_scalar(float a, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = std::fma(a, x[i], y[i]);
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
}  // namespace

float int8_block_scale(uint8_t s) { return f16_to_f32(uint16_t((s & 0x7F) << 7)) * 128.0f; }

float hsum16_tree(const float* v) {
  float s[8], q[4];
  for (int i = 0; i < 8; ++i) s[i] = v[i] + v[i + 8];
  for (int i = 0; i < 4; ++i) q[i] = s[i] + s[i + 4];
  float a = q[0] + q[2], b = q[1] + q[3];
  return a + b;
}

void rows_int8_scalar(const Linear& w, const uint8_t* packed, const Int8Activations& xa, int64_t r0, int64_t r1, float* y,
                      float*) {
  const int64_t N = w.n, T = xa.T, G = xa.groups, ldx = G * 256, lds = G * 16;
  const uint8_t* scales = int8_layout::scales(packed, N, w.k);
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* pr = packed + r * G * 128;
    const uint8_t* sr = scales + r * G * 16;
    for (int64_t t = 0; t < T; ++t) {
      float acc_y = 0.0f;
      for (int64_t g0 = 0; g0 < G; g0 += kInt8ChunkGroups) {
        float f[16] = {};
        for (int64_t g = g0; g < std::min(G, g0 + kInt8ChunkGroups); ++g) {
          const uint8_t* pg = pr + g * 128;
          const int8_t* xg = xa.q.data() + t * ldx + g * 256;
          for (int b = 0; b < 16; ++b) {
            int32_t acc = xa.corr[size_t(t * lds + g * 16 + b)];
            for (int u = 0; u < 2; ++u)
              for (int j = 0; j < 4; ++j) {
                uint8_t byte = pg[64 * u + 4 * b + j];
                acc += int32_t(kE2M1x2Plus12[byte & 15]) * int32_t(xg[64 * (2 * u) + 4 * b + j]);
                acc += int32_t(kE2M1x2Plus12[byte >> 4]) * int32_t(xg[64 * (2 * u + 1) + 4 * b + j]);
              }
            float prod = int8_block_scale(sr[g * 16 + b]) * xa.scale[size_t(t * lds + g * 16 + b)];
            f[b] = std::fma(float(acc), prod, f[b]);
          }
        }
        acc_y += hsum16_tree(f);
      }
      y[t * N + r] = acc_y;
    }
  }
}

}  // namespace kernels

void pack_int8_rows(const Linear& w, int64_t r0, int64_t r1, uint8_t* out) {
  const int64_t K = w.k, G = int8_layout::groups(K), blocks = K / 16;
  uint8_t* scales = out + size_t(w.n) * size_t(G) * 128;
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* p = w.data + r * (K / 2);
    const uint8_t* sc = w.scales + r * blocks;
    uint8_t* o = out + r * G * 128;
    uint8_t* os = scales + r * G * 16;
    auto code = [&](int64_t c) -> uint8_t { return c < K ? uint8_t((p[c / 2] >> ((c & 1) * 4)) & 15) : uint8_t(0); };
    for (int64_t g = 0; g < G; ++g)
      for (int64_t b = 0; b < 16; ++b) {
        const int64_t blk = g * 16 + b, c0 = blk * 16;
        os[blk] = blk < blocks ? sc[blk] : uint8_t(0);
        if (c0 + 16 <= K) {
          // The 16 nibbles of the block as one word; per 8-nibble half, nibble order 0..7 becomes
          // 0 4 1 5 2 6 3 7 (swap the middle bytes, then the middle nibbles of each 16 bits).
          uint64_t x;
          std::memcpy(&x, p + c0 / 2, 8);
          uint64_t t = ((x >> 8) ^ x) & 0x0000FF000000FF00ull;
          x ^= t ^ (t << 8);
          t = ((x >> 4) ^ x) & 0x00F000F000F000F0ull;
          x ^= t ^ (t << 4);
          const uint32_t lo = uint32_t(x), hi = uint32_t(x >> 32);
          std::memcpy(o + g * 128 + 4 * b, &lo, 4);
          std::memcpy(o + g * 128 + 64 + 4 * b, &hi, 4);
          continue;
        }
        for (int u = 0; u < 2; ++u)
          for (int j = 0; j < 4; ++j)
            o[g * 128 + 64 * u + 4 * b + j] = uint8_t(code(c0 + 8 * u + j) | code(c0 + 8 * u + 4 + j) << 4);
      }
  }
}

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
      q[g * 256 + (j / 4) * 64 + b * 4 + j % 4] = int8_t(v);
      sum += v;
    }
    out.scale[size_t(t * G * 16 + blk)] = amax / 127.0f;
    out.corr[size_t(t * G * 16 + blk)] = -12 * sum;
  }
}

}  // namespace kernels

namespace kernels {
const LinearKernels& linear_kernels(Isa isa) {
  static const LinearKernels scalar{rows_scalar, axpy_scalar}, avx2{rows_avx2, axpy_avx2}, avx512{rows_avx512, axpy_avx512};
  const Isa best = detect_isa();
  if (int(isa) > int(best)) isa = best;
  return isa == Isa::kAvx512 ? avx512 : isa == Isa::kAvx2 ? avx2 : scalar;
}
}  // namespace kernels

namespace {
// The one place that maps an ISA level (and CPU features) to the int8 kernels.
struct Int8Kernels {
  void (*quantize_row)(const float* x, int64_t k, Int8Activations& out, int64_t t);
  void (*rows)(const Linear& w, const uint8_t* packed, const Int8Activations& xa, int64_t r0, int64_t r1, float* y, float* scratch);
};
Int8Kernels int8_kernels(Isa isa) {
  Int8Kernels k{kernels::quantize_int8_row_scalar, kernels::rows_int8_scalar};
  if (isa == Isa::kAvx512) k.quantize_row = kernels::quantize_int8_row_avx512;
  if (isa == Isa::kAvx512 && kernels::cpu_has_avx512_vnni()) k.rows = kernels::rows_int8_avx512vnni;
  else if (isa >= Isa::kAvx2) k.rows = kernels::rows_int8_avx2;
  return k;
}
}  // namespace

void quantize_activations_int8(const float* x, int64_t T, int64_t k, Int8Activations& out, ThreadPool& pool, Isa isa) {
  const int64_t G = (k + 255) / 256;
  out.T = T;
  out.k = k;
  out.groups = G;
  out.source = nullptr;
  out.q.assign(size_t(T * G * 256), 0);
  out.scale.assign(size_t(T * G * 16), 0.0f);
  out.corr.assign(size_t(T * G * 16), 0);
  auto quantize_row = k % 16 == 0 ? int8_kernels(isa).quantize_row : kernels::quantize_int8_row_scalar;
  if (T == 1) {
    quantize_row(x, k, out, 0);
    return;
  }
  pool.run(T, [&](int64_t t, int) { quantize_row(x + t * k, k, out, t); });
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

namespace {
// Divides or multiplies y[t, r0..r1) by the NVFP4 global scale.
void apply_global_scale(const Linear& w, int64_t T, int64_t r0, int64_t r1, float* y) {
  if (w.kind != WeightKind::kNvfp4 || (w.global_mul == 1.0f && w.global_div == 1.0f)) return;
  for (int64_t t = 0; t < T; ++t) {
    float* yt = y + t * w.n;
    if (w.global_div != 1.0f)
      for (int64_t r = r0; r < r1; ++r) yt[r] /= w.global_div;
    else
      for (int64_t r = r0; r < r1; ++r) yt[r] *= w.global_mul;
  }
}

// Rows per task: generation balances the two threads with many small row tasks (multiples of 16);
// prompts take one panel per task.
int64_t rows_per_task(const Linear& w, int64_t T, const ThreadPool& pool) {
  if (T == 1) return std::max<int64_t>(16, (w.n / (int64_t(pool.size()) * 16) + 15) / 16 * 16);
  return kernels::kPanelRows;
}

void linear_forward_int8(const Linear& w, const float* x, int64_t T, float* y, ThreadPool& pool, Isa isa,
                         Int8Activations* shared_input) {
  const Int8Kernels kern = int8_kernels(isa);
  Int8Activations local;
  Int8Activations& xa = shared_input ? *shared_input : local;
  if (xa.source != x || xa.T != T || xa.k != w.k) {
    quantize_activations_int8(x, T, w.k, xa, pool, isa);
    xa.source = x;
  }
  std::vector<uint8_t> packed_here;  // weights not repacked at load (tests, tools)
  const uint8_t* packed = w.int8;
  if (!packed) {
    packed_here.resize(int8_layout::bytes(w.n, w.k));
    pack_int8_rows(w, 0, w.n, packed_here.data());
    packed = packed_here.data();
  }
  const int64_t chunk = rows_per_task(w, T, pool), tasks = (w.n + chunk - 1) / chunk;
  const size_t scratch_floats = kernel_scratch_floats(w.k);
  pool.run(tasks, [&](int64_t task, int thread) {
    int64_t r0 = task * chunk, r1 = std::min(w.n, r0 + chunk);
    kern.rows(w, packed, xa, r0, r1, y, pool.scratch(thread, scratch_floats));
    apply_global_scale(w, T, r0, r1, y);
  });
}
}  // namespace

void linear_forward(const Linear& w, const float* x, int64_t T, float* y, ThreadPool& pool, const KernelOptions& opt,
                    Int8Activations* shared_input) {
  if (T <= 0) return;
  std::vector<float> xq;
  const bool fake_quant = opt.act_quant && w.kind == WeightKind::kNvfp4 && w.input_global_scale > 0.0f;
  if (fake_quant) {  // W4A4 emulation is a reference measurement: f32 kernels only
    xq.assign(x, x + T * w.k);
    fake_quantize_activations(xq.data(), T, w.k, w.input_global_scale);
    x = xq.data();
  }
  if (opt.int8_act && !fake_quant && w.kind == WeightKind::kNvfp4) {
    linear_forward_int8(w, x, T, y, pool, opt.isa, shared_input);
    return;
  }
  const bool bf16_path = opt.bf16_act && opt.isa == Isa::kAvx512 && T >= 2 && w.kind != WeightKind::kF32 &&
                         kernels::cpu_has_avx512_bf16();
  std::vector<uint16_t> xb;
  if (bf16_path) {
    xb.resize(size_t(T * w.k));
    for (size_t i = 0; i < xb.size(); ++i) xb[i] = f32_to_bf16_rne(x[i]);
  }
  const auto kernel = kernels::linear_kernels(opt.isa).rows;
  const int64_t chunk = rows_per_task(w, T, pool), tasks = (w.n + chunk - 1) / chunk;
  const size_t scratch_floats = kernel_scratch_floats(w.k);
  pool.run(tasks, [&](int64_t task, int thread) {
    int64_t r0 = task * chunk, r1 = std::min(w.n, r0 + chunk);
    if (bf16_path)
      kernels::rows_avx512bf16(w, xb.data(), T, r0, r1, y, pool.scratch(thread, scratch_floats));
    else
      kernel(w, x, T, r0, r1, y, pool.scratch(thread, scratch_floats));
    apply_global_scale(w, T, r0, r1, y);
  });
}

}  // namespace fp4z
