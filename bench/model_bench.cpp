// Inference benchmark: writes a full-size Qwen3-4B-shaped NVFP4 checkpoint (random codes/scales),
// measures prompt processing / generation tokens/s, resident memory, and DRAM read bandwidth.
//
//   model_bench make DIR CONFIG               ~2.8 GB compressed-tensors NVFP4 + BF16 tied embedding
//   model_bench run DIR [threads] [pp] [tg]   prompt of `pp` tokens, then `tg` generated tokens
//   model_bench kl DIR [threads] [pp]         KL(exact f32 || int8 activations) over a random prompt
//   model_bench bandwidth [threads]           streaming read of 2 GiB, best of 5
//   model_bench gemm N K T [threads] [reps]   one random NVFP4 Linear [N, K] (repacked), int8 prompt GEMM of
//                                             T tokens: CPU ms per call and G MAC per CPU-second (no file)
#include <immintrin.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <cerrno>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "common/error.h"
#include "format/checkpoint.h"
#include "format/safetensors.h"
#include "model/forward.h"
#include "model/model.h"

using namespace fp4z;

namespace {

double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

struct Rng {  // xorshift64*: fast enough to write GBs of random weights
  uint64_t s;
  uint64_t next() {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return s * 2685821657736338717ull;
  }
};

int make(const std::string& dir, const std::string& config_path) {
  const int64_t H = 2560, I = 9728, L = 36, nh = 32, nkv = 8, D = 128, V = 151936;
  std::vector<TensorSpec> specs;
  struct Lin { std::string name; int64_t n, k; };
  std::vector<Lin> lins;
  specs.push_back({"model.embed_tokens.weight", DType::BF16, {V, H}});
  specs.push_back({"model.norm.weight", DType::BF16, {H}});
  for (int64_t l = 0; l < L; ++l) {
    std::string p = "model.layers." + std::to_string(l) + ".";
    specs.push_back({p + "input_layernorm.weight", DType::BF16, {H}});
    specs.push_back({p + "post_attention_layernorm.weight", DType::BF16, {H}});
    specs.push_back({p + "self_attn.q_norm.weight", DType::BF16, {D}});
    specs.push_back({p + "self_attn.k_norm.weight", DType::BF16, {D}});
    lins.push_back({p + "self_attn.q_proj", nh * D, H});
    lins.push_back({p + "self_attn.k_proj", nkv * D, H});
    lins.push_back({p + "self_attn.v_proj", nkv * D, H});
    lins.push_back({p + "self_attn.o_proj", H, nh * D});
    lins.push_back({p + "mlp.gate_proj", I, H});
    lins.push_back({p + "mlp.up_proj", I, H});
    lins.push_back({p + "mlp.down_proj", H, I});
  }
  for (const auto& l : lins) {
    specs.push_back({l.name + ".weight_packed", DType::U8, {l.n, l.k / 2}});
    specs.push_back({l.name + ".weight_scale", DType::F8_E4M3, {l.n, l.k / 16}});
    specs.push_back({l.name + ".weight_global_scale", DType::F32, {1}});
  }
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    std::fprintf(stderr, "cannot create %s\n", dir.c_str());
    return 2;
  }
  {
    CheckpointWriter w(dir, specs, uint64_t(5) << 30);
    Rng rng{0x9E3779B97F4A7C15ull};
    std::vector<uint8_t> buf;
    auto norm = [&](const std::string& name, int64_t n) {
      std::vector<uint16_t> v(size_t(n), f32_to_bf16_rne(1.0f));
      w.write(name, v.data(), uint64_t(n) * 2);
    };
    {  // embedding: BF16 ~ N(0, 0.02)-ish uniform
      std::vector<uint16_t> e(size_t(V * H));
      for (auto& h : e) h = f32_to_bf16_rne((float(rng.next() >> 40) / float(1 << 24) - 0.5f) * 0.07f);
      w.write("model.embed_tokens.weight", e.data(), e.size() * 2);
    }
    norm("model.norm.weight", H);
    for (int64_t l = 0; l < L; ++l) {
      std::string p = "model.layers." + std::to_string(l) + ".";
      norm(p + "input_layernorm.weight", H);
      norm(p + "post_attention_layernorm.weight", H);
      norm(p + "self_attn.q_norm.weight", D);
      norm(p + "self_attn.k_norm.weight", D);
    }
    for (const auto& l : lins) {
      buf.resize(size_t(l.n * l.k / 2));
      for (size_t i = 0; i < buf.size(); i += 8) {
        uint64_t r = rng.next();
        std::memcpy(buf.data() + i, &r, std::min<size_t>(8, buf.size() - i));
      }
      w.write(l.name + ".weight_packed", buf.data(), buf.size());
      buf.resize(size_t(l.n * l.k / 16));
      for (auto& b : buf) b = uint8_t(0x30 + rng.next() % 16);  // 0.5 .. 1.875
      w.write(l.name + ".weight_scale", buf.data(), buf.size());
      float gs = 3.0f * std::sqrt(float(l.k));  // |w| ~ 1/sqrt(k)
      w.write(l.name + ".weight_global_scale", &gs, 4);
    }
    w.finish();
  }
  std::ifstream src(config_path);
  std::string cfg((std::istreambuf_iterator<char>(src)), {});
  if (cfg.empty()) {
    std::fprintf(stderr, "cannot read %s\n", config_path.c_str());
    return 2;
  }
  std::ofstream(dir + "/config.json") << cfg;
  std::printf("wrote %s\n", dir.c_str());
  return 0;
}

double cpu_s() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

long rss_kb(const char* key) {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(key, 0) == 0) return std::atol(line.c_str() + std::strlen(key));
  return -1;
}

int run(const std::string& dir, int threads, int64_t pp, int64_t tg, const std::string& mode) {
  const bool bf16_act = mode == "bf16", int8_act = mode == "int8";
  auto m = load_model(dir);
  if (int8_act) prepare_int8_weights(*m, threads);
  EngineOptions eo;
  eo.threads = threads;
  eo.isa = kernel_isa();
  eo.bf16_act = bf16_act;
  eo.int8_act = int8_act;
  Session s(*m, eo);
  std::vector<int32_t> prompt;
  Rng rng{42};
  for (int64_t i = 0; i < pp; ++i) prompt.push_back(int32_t(rng.next() % 151643));
  std::vector<float> logits;
  // warm the page cache and the mapping with one token
  s.forward(prompt.data(), 1, 1, logits);
  s.truncate(0);
  double c0 = cpu_s(), t0 = now_s();
  s.forward(prompt.data(), pp, 1, logits);
  double t1 = now_s(), c1 = cpu_s();
  int32_t tok = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
  double t2 = now_s();
  for (int64_t i = 0; i < tg; ++i) {
    s.forward(&tok, 1, 1, logits);
    tok = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
  }
  double t3 = now_s(), c3 = cpu_s();
  double pp_rate = double(pp) / (t1 - t0), tg_rate = double(tg) / (t3 - t2);
  double gb_per_token = double(m->weight_bytes()) / 1e9;  // every weight byte is read once per token
  std::printf(
      "{\"threads\": %d, \"isa\": \"%s\", \"act\": \"%s\", \"pp_tokens\": %lld, \"pp_tok_per_s\": %.2f, \"tg_tokens\": %lld, "
      "\"tg_tok_per_s\": %.3f, \"weight_gb_per_token\": %.3f, \"tg_effective_gb_per_s\": %.2f, \"rss_mb\": %.0f, "
      "\"peak_rss_mb\": %.0f, \"pp_cpu_s\": %.2f, \"pp_wall_s\": %.2f, \"tg_cpu_s\": %.2f, \"tg_wall_s\": %.2f}\n",
      threads, isa_name(eo.isa), mode.empty() ? "f32" : mode.c_str(), (long long)pp, pp_rate, (long long)tg, tg_rate, gb_per_token, tg_rate * gb_per_token,
      double(rss_kb("VmRSS:")) / 1024, double(rss_kb("VmHWM:")) / 1024, c1 - c0, t1 - t0, c3 - c1, t3 - t1);
  return 0;
}


// Accuracy cost of the int8 activations on this checkpoint: the same random prompt through the exact
// f32 kernels and the int8 path; mean and max KL(exact || int8) over all positions, and top-1 agreement.
int kl(const std::string& dir, int threads, int64_t pp) {
  auto m = load_model(dir);
  std::vector<int32_t> prompt;
  Rng rng{7};
  for (int64_t i = 0; i < pp; ++i) prompt.push_back(int32_t(rng.next() % uint64_t(std::min<int64_t>(m->cfg.vocab, 151643))));
  EngineOptions eo;
  eo.threads = threads;
  eo.isa = kernel_isa();
  std::vector<float> exact, fast;
  {
    Session s(*m, eo);
    s.forward(prompt.data(), pp, pp, exact);
  }
  prepare_int8_weights(*m, threads);
  eo.int8_act = true;
  {
    Session s(*m, eo);
    s.forward(prompt.data(), pp, pp, fast);
  }
  const int64_t V = m->cfg.vocab;
  double sum = 0, worst = 0;
  int64_t same = 0;
  for (int64_t t = 0; t < pp; ++t) {
    const float* a = exact.data() + t * V;
    const float* b = fast.data() + t * V;
    double ma = *std::max_element(a, a + V), mb = *std::max_element(b, b + V), za = 0, zb = 0;
    for (int64_t v = 0; v < V; ++v) {
      za += std::exp(double(a[v]) - ma);
      zb += std::exp(double(b[v]) - mb);
    }
    double k = 0;
    for (int64_t v = 0; v < V; ++v) {
      double la = double(a[v]) - ma - std::log(za), lb = double(b[v]) - mb - std::log(zb);
      k += std::exp(la) * (la - lb);
    }
    sum += k;
    worst = std::max(worst, k);
    same += (std::max_element(a, a + V) - a) == (std::max_element(b, b + V) - b);
  }
  std::printf("{\"positions\": %lld, \"mean_kl\": %.3g, \"max_kl\": %.3g, \"top1_agree\": %.4f}\n", (long long)pp, sum / double(pp),
              worst, double(same) / double(pp));
  return 0;
}

// Kernel throughput on Qwen3-4B k_proj (cache-resident), down_proj/gate_proj NVFP4 and the BF16
// head, per ISA: wall time and process CPU time (the machine may be shared).
int kernels_bench(const std::string& dir, int threads) {
  auto m = load_model(dir);
  prepare_int8_weights(*m, threads);
  ThreadPool pool(threads);
  // k_proj (1.5 MB) stays in L2/L3 between repetitions: its rate is the kernel's compute bound.
  for (const Linear* w : {&m->layers[0].k, &m->layers[0].down, &m->layers[0].gate, &m->lm_head}) {
    for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512}) {
      if (int(isa) > int(kernel_isa())) continue;
      KernelOptions ko;
      ko.isa = isa;
      for (int64_t T : {int64_t(1), int64_t(64), int64_t(-1), int64_t(-64)}) {  // negative: int8 activations
        ko.int8_act = T < 0;
        T = std::abs(T);
        if (isa == Isa::kScalar && T > 1) continue;
        if (ko.int8_act && w->kind != WeightKind::kNvfp4) continue;
        std::vector<float> x(size_t(T * w->k), 0.01f), y(size_t(T * w->n));
        linear_forward(*w, x.data(), T, y.data(), pool, ko);  // warm
        int reps = T == 1 ? (w->n * w->k < 10000000 ? 200 : 5) : 1;
        double t0 = now_s(), c0 = cpu_s();
        for (int r = 0; r < reps; ++r) linear_forward(*w, x.data(), T, y.data(), pool, ko);
        double wall = (now_s() - t0) / reps, cpu = (cpu_s() - c0) / reps;
        double macs = double(w->n) * double(w->k) * double(T);
        std::printf("{\"tensor\": \"%s\", \"isa\": \"%s%s\", \"T\": %lld, \"threads\": %d, \"wall_ms\": %.2f, \"cpu_ms\": %.2f, "
                    "\"gmac_per_s_wall\": %.2f, \"gb_per_s_wall\": %.2f}\n",
                    w->name.c_str(), isa_name(isa), ko.int8_act ? "+int8" : "", (long long)T, threads, wall * 1e3, cpu * 1e3, macs / wall / 1e9,
                    double(w->stored_bytes()) / wall / 1e9);
      }
    }
  }
  return 0;
}

// The int8 prompt GEMM alone on a synthetic NVFP4 Linear (random codes, scales 0.5..1.875), min over reps.
int gemm_bench(int64_t n, int64_t k, int64_t T, int threads, int reps) {
  Rng rng{7};
  std::vector<uint8_t> codes(size_t(n * k / 2)), scales(size_t(n * k / 16));
  for (auto& b : codes) b = uint8_t(rng.next());
  for (auto& b : scales) b = uint8_t(0x30 + rng.next() % 16);
  Linear w;
  w.name = "synthetic";
  w.kind = WeightKind::kNvfp4;
  w.n = n;
  w.k = k;
  w.data = codes.data();
  w.scales = scales.data();
  std::vector<uint8_t> packed(int8_layout::bytes(n, k));
  pack_int8_rows(w, 0, n, packed.data());
  w.int8 = packed.data();
  ThreadPool pool(threads);
  KernelOptions ko;
  ko.isa = kernel_isa();
  ko.int8_act = true;
  std::vector<float> x(size_t(T * k)), y(size_t(T * n));
  for (auto& v : x) v = float(int64_t(rng.next() % 2001) - 1000) * 1e-3f;
  linear_forward(w, x.data(), T, y.data(), pool, ko);  // warm
  double best_cpu = 1e30, best_wall = 1e30;
  for (int r = 0; r < reps; ++r) {
    double t0 = now_s(), c0 = cpu_s();
    linear_forward(w, x.data(), T, y.data(), pool, ko);
    best_wall = std::min(best_wall, now_s() - t0);
    best_cpu = std::min(best_cpu, cpu_s() - c0);
  }
  const double macs = double(n) * double(k) * double(T);
  std::printf("{\"n\": %lld, \"k\": %lld, \"T\": %lld, \"threads\": %d, \"isa\": \"%s\", \"cpu_ms\": %.2f, \"wall_ms\": %.2f, "
              "\"gmac_per_cpu_s\": %.1f}\n",
              (long long)n, (long long)k, (long long)T, threads, isa_name(ko.isa), best_cpu * 1e3, best_wall * 1e3, macs / best_cpu / 1e9);
  return 0;
}

__attribute__((target("avx512f"))) double sum_stream(const float* p, size_t n) {
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i + 64 <= n; i += 64) {
    a0 = _mm512_add_ps(a0, _mm512_load_ps(p + i));
    a1 = _mm512_add_ps(a1, _mm512_load_ps(p + i + 16));
    a2 = _mm512_add_ps(a2, _mm512_load_ps(p + i + 32));
    a3 = _mm512_add_ps(a3, _mm512_load_ps(p + i + 48));
  }
  float tmp[16];
  _mm512_storeu_ps(tmp, _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
  double s = 0;
  for (float f : tmp) s += f;
  return s;
}

int bandwidth(int threads) {
  const size_t bytes = size_t(2) << 30, n = bytes / 4;
  float* p = static_cast<float*>(std::aligned_alloc(64, bytes));
  std::memset(p, 1, bytes);
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {
    std::vector<double> sums(static_cast<size_t>(threads));
    double t0 = now_s();
    std::vector<std::thread> th;
    for (int t = 0; t < threads; ++t)
      th.emplace_back([&, t] {
        size_t b = n / size_t(threads) * size_t(t), e = t + 1 == threads ? n : n / size_t(threads) * size_t(t + 1);
        sums[size_t(t)] = sum_stream(p + b, e - b);
      });
    for (auto& x : th) x.join();
    double t1 = now_s();
    best = std::max(best, double(bytes) / (t1 - t0) / 1e9);
  }
  std::printf("{\"threads\": %d, \"read_gb_per_s\": %.2f}\n", threads, best);
  std::free(p);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    std::string mode = argc > 1 ? argv[1] : "";
    if (mode == "make" && argc == 4) return make(argv[2], argv[3]);
    if (mode == "run" && argc >= 3)
      return run(argv[2], argc > 3 ? std::atoi(argv[3]) : 1, argc > 4 ? std::atoll(argv[4]) : 64,
                 argc > 5 ? std::atoll(argv[5]) : 16, argc > 6 ? std::string(argv[6]) : std::string());
    if (mode == "kl" && argc >= 3) return kl(argv[2], argc > 3 ? std::atoi(argv[3]) : 1, argc > 4 ? std::atoll(argv[4]) : 64);
    if (mode == "kernels" && argc >= 3) return kernels_bench(argv[2], argc > 3 ? std::atoi(argv[3]) : 1);
    if (mode == "gemm" && argc >= 5)
      return gemm_bench(std::atoll(argv[2]), std::atoll(argv[3]), std::atoll(argv[4]), argc > 5 ? std::atoi(argv[5]) : 1,
                        argc > 6 ? std::atoi(argv[6]) : 5);
    if (mode == "bandwidth") return bandwidth(argc > 2 ? std::atoi(argv[2]) : 1);
  } catch (const Error& e) {
    std::fprintf(stderr, "model_bench: %s\n", e.what());
    return e.code;
  }
  std::fprintf(stderr, "usage: model_bench make DIR QWEN3_4B_CONFIG_JSON | run DIR [threads] [pp] [tg] [bf16|int8] | kernels DIR [threads] | kl DIR [threads] [pp] | bandwidth [threads] | gemm N K T [threads] [reps]\n");
  return 2;
}
