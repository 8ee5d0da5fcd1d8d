// Linear kernels (scalar / AVX2 / AVX-512, 1 and 2 threads) vs a double-precision reference built from
// the codec tables, on awkward shapes: row counts not multiple of 4, K tails, 1..13 tokens.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <tuple>
#include <vector>

#include "model/attention.h"
#include "model/linear.h"
#include "nvfp4/codec.h"
#include "test_util.h"

namespace fp4z {
namespace {

struct Matrix {
  Linear lin;
  std::vector<uint8_t> bytes, scales;
  std::vector<double> dense;  // reference values (without the global scale)
};

Matrix make_matrix(WeightKind kind, int64_t n, int64_t k, uint32_t seed) {
  std::mt19937 rng(seed);
  Matrix m;
  m.lin.kind = kind;
  m.lin.n = n;
  m.lin.k = k;
  m.lin.name = "test";
  m.dense.resize(size_t(n * k));
  if (kind == WeightKind::kNvfp4) {
    m.bytes.resize(size_t(n * k / 2));
    m.scales.resize(size_t(n * k / 16));
    for (auto& b : m.bytes) b = uint8_t(rng());
    // every finite non-negative E4M3 byte, subnormals and 448 included
    for (size_t i = 0; i < m.scales.size(); ++i) m.scales[i] = uint8_t(rng() % 127);
    for (int64_t r = 0; r < n; ++r)
      for (int64_t c = 0; c < k; ++c) {
        uint8_t code = (m.bytes[size_t(r * k / 2 + c / 2)] >> ((c & 1) * 4)) & 15;
        m.dense[size_t(r * k + c)] = double(kE2M1Value[code]) * double(kE4M3.v[m.scales[size_t(r * k / 16 + c / 16)]]);
      }
    m.lin.data = m.bytes.data();
    m.lin.scales = m.scales.data();
  } else if (kind == WeightKind::kBF16) {
    m.bytes.resize(size_t(n * k * 2));
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (int64_t i = 0; i < n * k; ++i) {
      uint16_t h = f32_to_bf16_rne(nd(rng));
      std::memcpy(m.bytes.data() + 2 * i, &h, 2);
      m.dense[size_t(i)] = bf16_to_f32(h);
    }
    m.lin.data = m.bytes.data();
  } else {
    m.bytes.resize(size_t(n * k * 4));
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (int64_t i = 0; i < n * k; ++i) {
      float f = nd(rng);
      std::memcpy(m.bytes.data() + 4 * i, &f, 4);
      m.dense[size_t(i)] = f;
    }
    m.lin.data = m.bytes.data();
  }
  return m;
}

void check(WeightKind kind, int64_t n, int64_t k, float global_div, float global_mul) {
  Matrix m = make_matrix(kind, n, k, uint32_t(n * 131 + k));
  m.lin.global_div = global_div;
  m.lin.global_mul = global_mul;
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (int64_t T : {1, 2, 5, 7, 13}) {
    std::vector<float> x(size_t(T * k));
    for (auto& v : x) v = nd(rng);
    for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512}) {
      if (int(isa) > int(kernel_isa())) continue;
      for (int threads : {1, 2}) {
        ThreadPool pool(threads);
        KernelOptions ko;
        ko.isa = isa;
        std::vector<float> y(size_t(T * n), NAN);
        linear_forward(m.lin, x.data(), T, y.data(), pool, ko);
        for (int64_t t = 0; t < T; ++t)
          for (int64_t r = 0; r < n; ++r) {
            double ref = 0, mag = 0;
            for (int64_t c = 0; c < k; ++c) {
              ref += m.dense[size_t(r * k + c)] * double(x[size_t(t * k + c)]);
              mag += std::fabs(m.dense[size_t(r * k + c)] * double(x[size_t(t * k + c)]));
            }
            double scale = kind == WeightKind::kNvfp4 ? double(global_mul) / double(global_div) : 1.0;
            ASSERT_NEAR(double(y[size_t(t * n + r)]), ref * scale, 1e-5 * mag * scale + 1e-30)
                << "kind " << int(kind) << " n " << n << " k " << k << " T " << T << " row " << r << " isa "
                << isa_name(isa) << " threads " << threads;
          }
      }
    }
  }
  FP4Z_SKIP_MISSING_ISA_LEVELS(CpuFeature::kAvx512);
}

TEST(ModelKernels, Nvfp4FusedGemvShapes) {  // K % 128 == 0: the AVX-512 one-token kernel
  check(WeightKind::kNvfp4, 37, 512, 448.0f, 1.0f);
  check(WeightKind::kNvfp4, 1, 256, 1.0f, 0.25f);
  check(WeightKind::kNvfp4, 5, 384, 2.0f, 1.0f);  // K % 256 == 128: a lone trailing group
}

TEST(ModelKernels, Nvfp4PanelShapes) {  // K tails of 16 and 32 columns, K > one panel
  check(WeightKind::kNvfp4, 33, 48, 3.0f, 1.0f);
  check(WeightKind::kNvfp4, 6, 1040, 1.0f, 1.0f);
  check(WeightKind::kNvfp4, 70, 544, 1.0f, 0.5f);
}

TEST(ModelKernels, Bf16AndF32) {
  check(WeightKind::kBF16, 37, 100, 1.0f, 1.0f);
  check(WeightKind::kBF16, 9, 1030, 1.0f, 1.0f);
  check(WeightKind::kF32, 11, 37, 1.0f, 1.0f);
  check(WeightKind::kF32, 5, 172, 1.0f, 1.0f);
}

TEST(ModelKernels, Bf16ActivationPromptPath) {
  if (kernel_isa() != Isa::kAvx512 || !kernels::cpu_has_avx512_bf16()) GTEST_SKIP() << "no AVX512_BF16";
  for (auto [kind, n, k] : {std::tuple{WeightKind::kNvfp4, int64_t(37), int64_t(1040)},
                            std::tuple{WeightKind::kNvfp4, int64_t(9), int64_t(48)},
                            std::tuple{WeightKind::kBF16, int64_t(13), int64_t(100)}}) {
    Matrix m = make_matrix(kind, n, k, 99);
    std::mt19937 rng(3);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    const int64_t T = 7;
    std::vector<float> x(size_t(T * k));
    for (auto& v : x) v = nd(rng);
    ThreadPool pool(2);
    KernelOptions ko;
    ko.isa = Isa::kAvx512;
    ko.bf16_act = true;
    std::vector<float> y(size_t(T * n));
    linear_forward(m.lin, x.data(), T, y.data(), pool, ko);
    for (int64_t t = 0; t < T; ++t)
      for (int64_t r = 0; r < n; ++r) {
        double ref = 0, mag = 0;  // exact reference on BF16-rounded activations
        for (int64_t c = 0; c < k; ++c) {
          double xv = bf16_to_f32(f32_to_bf16_rne(x[size_t(t * k + c)]));
          ref += m.dense[size_t(r * k + c)] * xv;
          mag += std::fabs(m.dense[size_t(r * k + c)] * xv);
        }
        ASSERT_NEAR(double(y[size_t(t * n + r)]), ref, 1e-5 * mag) << "kind " << int(kind) << " t " << t << " r " << r;
      }
  }
}

// int8 activations: vs the exact double reference within the proven bound of the activation
// quantization (|x - 127·scale·q| <= scale/2 per feature, so |Δy| <= Σ |w|·scale/2) plus f32
// accumulation rounding; and bit-identical across ISAs, thread counts, repacked or not, and between
// one token (the generation GEMV) and the same token inside a prompt (exact int32 block sums, same
// f32 operation order).
TEST(ModelKernels, Int8ActivationPath) {
  for (auto [n, k, gdiv] : {std::tuple{int64_t(37), int64_t(1040), 448.0f}, std::tuple{int64_t(9), int64_t(48), 1.0f},
                            std::tuple{int64_t(70), int64_t(2560), 3.0f}, std::tuple{int64_t(5), int64_t(256), 1.0f},
                            std::tuple{int64_t(3), int64_t(4368), 1.0f}}) {  // > one 4096-column chunk, padded
    Matrix m = make_matrix(WeightKind::kNvfp4, n, k, uint32_t(n + k));
    m.lin.global_div = gdiv;
    std::mt19937 rng(5);
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<uint8_t> packed(int8_layout::bytes(n, k));
    pack_int8_rows(m.lin, 0, n, packed.data());
    for (int64_t T : {1, 2, 4, 7}) {
      std::vector<float> x(size_t(T * k));
      for (auto& v : x) v = nd(rng);
      x[3] = 40.0f;  // an outlier feature, as real activations have
      if (T > 1)
        for (int64_t c = 0; c < 16 && c < k; ++c) x[size_t(k + c)] = 0.0f;  // an all-zero block
      std::vector<float> first;
      for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512}) {
        if (int(isa) > int(kernel_isa())) continue;
        for (int threads : {1, 2}) {
          ThreadPool pool(threads);
          KernelOptions ko;
          ko.isa = isa;
          ko.int8_act = true;
          Linear lin = m.lin;
          if (threads == 2) lin.int8 = packed.data();  // repacked at "load" (1 thread: on the fly)
          std::vector<float> y(size_t(T * n), NAN);
          linear_forward(lin, x.data(), T, y.data(), pool, ko);
          if (T > 1 && threads == 1) {  // each token alone (the generation kernel) gives the same bits
            std::vector<float> single(static_cast<size_t>(n));
            for (int64_t t = 0; t < T; ++t) {
              linear_forward(lin, x.data() + t * k, 1, single.data(), pool, ko);
              ASSERT_EQ(0, std::memcmp(single.data(), y.data() + t * n, size_t(n) * sizeof(float)))
                  << "n " << n << " k " << k << " T " << T << " token " << t << " isa " << isa_name(isa);
            }
          }
          if (first.empty()) {
            first = y;
            for (int64_t t = 0; t < T; ++t)
              for (int64_t r = 0; r < n; ++r) {
                double ref = 0, mag = 0, bound = 0;
                for (int64_t b = 0; b < k / 16; ++b) {
                  double amax = 0;
                  for (int64_t c = b * 16; c < b * 16 + 16; ++c) amax = std::max(amax, std::fabs(double(x[size_t(t * k + c)])));
                  for (int64_t c = b * 16; c < b * 16 + 16; ++c) {
                    double wv = m.dense[size_t(r * k + c)], xv = x[size_t(t * k + c)];
                    ref += wv * xv;
                    mag += std::fabs(wv * xv);
                    bound += std::fabs(wv) * amax / 127.0 / 2.0;
                  }
                }
                ASSERT_NEAR(double(y[size_t(t * n + r)]), ref / gdiv, (bound * 1.0001 + 1e-5 * (mag + bound)) / gdiv + 1e-30)
                    << "n " << n << " k " << k << " T " << T << " row " << r;
              }
          } else {
            ASSERT_EQ(0, std::memcmp(first.data(), y.data(), y.size() * sizeof(float)))
                << "n " << n << " k " << k << " T " << T << " isa " << isa_name(isa) << " threads " << threads;
          }
        }
      }
    }
  }
  // Isa::kAvx512 runs the VNNI kernel where the CPU has it, the AVX2 one otherwise.
  FP4Z_SKIP_MISSING_ISA_LEVELS(CpuFeature::kAvx512Vnni);
}

TEST(ModelKernels, Int8QuantizerIsaAgree) {
  if (kernel_isa() != Isa::kAvx512) GTEST_SKIP() << "no AVX-512";
  const int64_t T = 3, k = 784;  // 3 full groups + a partial one
  std::vector<float> x(size_t(T * k));
  std::mt19937 rng(11);
  std::normal_distribution<float> nd(0.0f, 3.0f);
  for (auto& v : x) v = nd(rng);
  for (int c = 0; c < 16; ++c) x[size_t(32 + c)] = 0.0f;
  x[100] = 1e-30f;  // tiny block maximum
  for (int c = 0; c < 16; ++c) x[size_t(k + 160 + c)] = c % 2 ? 0.5f : -0.5f;  // ties at ±127
  ThreadPool pool(1);
  Int8Activations a, b;
  quantize_activations_int8(x.data(), T, k, a, pool, Isa::kScalar);
  quantize_activations_int8(x.data(), T, k, b, pool, Isa::kAvx512);
  EXPECT_EQ(a.q, b.q);
  EXPECT_EQ(a.corr, b.corr);
  // The kernels' 64-byte loads of these rows must not split cache lines: the buffers are 64-byte aligned.
  for (const void* p : {static_cast<const void*>(b.q.data()), static_cast<const void*>(b.scale.data()),
                        static_cast<const void*>(b.corr.data()), static_cast<const void*>(pool.scratch(0, 1000))})
    EXPECT_EQ(0u, reinterpret_cast<uintptr_t>(p) % 64);
  ASSERT_EQ(a.scale.size(), b.scale.size());
  EXPECT_EQ(0, std::memcmp(a.scale.data(), b.scale.data(), a.scale.size() * sizeof(float)));
}

// Flash attention (key tiles, online softmax) vs a double-precision softmax over the whole causal
// context, per ISA and thread count: cached prefix (pos0 > 0), token counts across the 16-token task
// tiles, contexts across the 32-key tiles, GQA groups, F32 and BF16 caches.
TEST(ModelKernels, FlashAttentionMatchesSoftmax) {
  for (auto [T, pos0, heads, kv, D] : {std::tuple{int64_t(1), int64_t(0), int64_t(4), int64_t(2), int64_t(8)},
                                       std::tuple{int64_t(37), int64_t(0), int64_t(8), int64_t(2), int64_t(64)},
                                       std::tuple{int64_t(5), int64_t(70), int64_t(6), int64_t(6), int64_t(16)},
                                       std::tuple{int64_t(1), int64_t(100), int64_t(32), int64_t(8), int64_t(128)},
                                       // 3 heads per kv head: row blocks of 4 end short; D = 192: 128 values in
                                       // registers, then 16 at a time
                                       std::tuple{int64_t(19), int64_t(40), int64_t(12), int64_t(4), int64_t(192)}}) {
    const int64_t P = pos0 + T, qd = heads * D, kvd = kv * D;
    std::mt19937 rng(uint32_t(T * 131 + pos0));
    std::normal_distribution<float> nd(0.0f, 2.0f);
    std::vector<float> q(size_t(T * qd)), k(size_t(P * kvd)), v(size_t(P * kvd));
    for (auto* vec : {&q, &k, &v})
      for (auto& x : *vec) x = nd(rng);
    std::vector<uint16_t> k16(k.size()), v16(v.size());
    for (size_t i = 0; i < k.size(); ++i) {
      k16[i] = f32_to_bf16_rne(k[i]);
      v16[i] = f32_to_bf16_rne(v[i]);
    }
    for (bool half : {false, true}) {
      std::vector<double> ref(size_t(T * qd), 0.0);
      const float scale = float(1.0 / std::sqrt(double(D)));
      for (int64_t t = 0; t < T; ++t)
        for (int64_t h = 0; h < heads; ++h) {
          const int64_t g = h / (heads / kv), n = pos0 + t + 1;
          auto kvv = [&](const std::vector<float>& f, const std::vector<uint16_t>& b, int64_t i) {
            return half ? double(bf16_to_f32(b[size_t(i)])) : double(f[size_t(i)]);
          };
          std::vector<double> sc(static_cast<size_t>(n));
          double mx = -1e300, sum = 0;
          for (int64_t p = 0; p < n; ++p) {
            double d = 0;
            for (int64_t i = 0; i < D; ++i) d += double(q[size_t(t * qd + h * D + i)]) * kvv(k, k16, p * kvd + g * D + i);
            sc[size_t(p)] = d * scale;
            mx = std::max(mx, sc[size_t(p)]);
          }
          for (auto& x : sc) sum += x = std::exp(x - mx);
          for (int64_t p = 0; p < n; ++p)
            for (int64_t i = 0; i < D; ++i) ref[size_t(t * qd + h * D + i)] += sc[size_t(p)] / sum * kvv(v, v16, p * kvd + g * D + i);
        }
      for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512}) {
        if (int(isa) > int(kernel_isa())) continue;
        for (int threads : {1, 2}) {
          ThreadPool pool(threads);
          std::vector<float> out(size_t(T * qd), NAN);
          AttentionArgs a;
          a.q = q.data();
          a.T = T;
          a.heads = heads;
          a.kv_heads = kv;
          a.D = D;
          a.pos0 = pos0;
          if (half) {
            a.k16 = k16.data();
            a.v16 = v16.data();
          } else {
            a.k = k.data();
            a.v = v.data();
          }
          a.kv_stride = kvd;
          a.scale = scale;
          a.out = out.data();
          attention_forward(a, pool, isa);
          for (size_t i = 0; i < out.size(); ++i)
            ASSERT_NEAR(double(out[i]), ref[i], 2e-5 * (1.0 + std::fabs(ref[i])))
                << "T " << T << " pos0 " << pos0 << " D " << D << " bf16 " << half << " isa " << isa_name(isa) << " i " << i;
        }
      }
    }
  }
  FP4Z_SKIP_MISSING_ISA_LEVELS(CpuFeature::kAvx512);
}

TEST(ModelKernels, AttentionHelpers) {
  std::vector<float> a(67), b(67), y(67, 1.0f);
  for (int i = 0; i < 67; ++i) {
    a[size_t(i)] = float(i % 7) - 3.0f;
    b[size_t(i)] = float(i % 5) * 0.5f;
  }
  for (int64_t n : {1, 8, 16, 17, 67}) {
    double ref = 0;
    for (int64_t i = 0; i < n; ++i) ref += double(a[size_t(i)]) * double(b[size_t(i)]);
    EXPECT_FLOAT_EQ(kernels::dot_scalar(a.data(), b.data(), n), float(ref));
    if (int(kernel_isa()) >= int(Isa::kAvx2)) {
      EXPECT_FLOAT_EQ(kernels::dot_avx2(a.data(), b.data(), n), float(ref));
    }
    if (int(kernel_isa()) >= int(Isa::kAvx512)) {
      EXPECT_FLOAT_EQ(kernels::dot_avx512(a.data(), b.data(), n), float(ref));
    }
  }
  // axpy: every path rounds once per element (fused), so random operands, where a separate multiply and
  // add would round differently, give identical bits on every ISA (rd's refinement relies on it).
  std::mt19937 rng(11);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(67), y0(67);
  for (int i = 0; i < 67; ++i) x[size_t(i)] = nd(rng), y0[size_t(i)] = nd(rng);
  for (int64_t n : {1, 7, 16, 17, 67}) {
    const float alpha = 0.37f * nd(rng);
    auto ys = y0, y2 = y0, y3 = y0;
    kernels::axpy_scalar(alpha, x.data(), ys.data(), n);
    for (int64_t i = 0; i < 67; ++i)
      ASSERT_EQ(ys[size_t(i)], i < n ? std::fma(alpha, x[size_t(i)], y0[size_t(i)]) : y0[size_t(i)]) << "n " << n << " i " << i;
    if (int(kernel_isa()) >= int(Isa::kAvx2)) {
      kernels::axpy_avx2(alpha, x.data(), y2.data(), n);
      EXPECT_EQ(ys, y2) << "n " << n;
    }
    if (int(kernel_isa()) >= int(Isa::kAvx512)) {
      kernels::axpy_avx512(alpha, x.data(), y3.data(), n);
      EXPECT_EQ(ys, y3) << "n " << n;
    }
  }
  FP4Z_SKIP_MISSING_ISA_LEVELS(CpuFeature::kAvx512);
}

TEST(ModelKernels, ActivationFakeQuantization) {
  // One block: amax 6 with gs 448 -> q = 1, s = 448 -> FP8 448, S = 1: the values are the E2M1 grid.
  std::vector<float> x = {6.0f, 0.3f, -0.76f, 1.25f, 2.6f, -5.1f, 0.0f, 0.24f, 1.74f, 3.4f, -4.0f, 0.5f, 1.0f, 1.5f, -2.0f, 3.0f};
  fake_quantize_activations(x.data(), 1, 16, 448.0f);
  const std::vector<float> want = {6.0f, 0.5f, -1.0f, 1.0f, 3.0f, -6.0f, 0.0f, 0.0f, 1.5f, 3.0f, -4.0f, 0.5f, 1.0f, 1.5f, -2.0f, 3.0f};
  EXPECT_EQ(x, want);
  std::vector<float> z(32, 0.0f);
  fake_quantize_activations(z.data(), 2, 16, 100.0f);
  for (float v : z) EXPECT_EQ(v, 0.0f);
}

}  // namespace
}  // namespace fp4z
