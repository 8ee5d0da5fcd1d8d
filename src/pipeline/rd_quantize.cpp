// The checkpoint job of `fp4z quantize --method rd`: sequential calibration through fp4z's own engine,
// per-layer sensitivities, the λ bisection for --target-bits, and layer-by-layer encodings.
#include "pipeline/rd_quantize.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <regex>
#include <set>

#include "common/error.h"
#include "common/file_text.h"
#include "common/mapped_file.h"
#include "common/parallel.h"
#include "format/dtype.h"
#include "model/forward.h"
#include "model/linear.h"
#include "model/model.h"
#include "nvfp4/kernels.h"
#include "nvfp4/scales.h"
#include "pipeline/dense_f32.h"
#include "pipeline/fused_groups.h"
#include "pipeline/rd_plain.h"
#include "text/tokenizer.h"

namespace fp4z {

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::string fmt(double v) {
  char b[64];
  std::snprintf(b, sizeof b, "%.6g", v);
  return b;
}

// Decoder layer index of a module name ("model.layers.12.mlp.up_proj" -> 12), or -1.
int64_t decoder_layer_of(const std::string& module) {
  static const std::regex re(R"((^|\.)layers\.(\d+)\.)");
  std::smatch m;
  if (!std::regex_search(module, m, re)) return -1;
  return std::stoll(m[2].str());
}

// H's upper triangle, summed over the calibration tokens, becomes their mean, mirrored into the lower one.
void mean_and_mirror(std::vector<float>& h, int64_t K, double tokens) {
  const float inv = float(1.0 / tokens);
  for (int64_t i = 0; i < K; ++i)
    for (int64_t j = i; j < K; ++j) {
      const float v = h[size_t(i * K + j)] * inv;
      h[size_t(i * K + j)] = v;
      h[size_t(j * K + i)] = v;
    }
}

// Drops decoder layer `layer`'s mapped source pages from the resident set (they are read again later).
void release_decoder_layer(const Checkpoint& ck, int64_t layer) {
  for (const auto& n : ck.names)
    if (decoder_layer_of(n) == layer) ck.get(n).release();
}

// Columns of a [T, K] row block as contiguous rows (the left operand of the moment products).
std::vector<float> transposed(const float* x, int64_t T, int64_t K) {
  std::vector<float> xt(static_cast<size_t>(K * T));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t k = 0; k < K; ++k) xt[size_t(k * T + t)] = x[t * K + k];
  return xt;
}

// H[i, j] += Σ_t x[t, i]·x[t, j] for j >= i (upper triangle) and, with `src` (the source model's rows
// paired with x, input correction), C[i, j] += Σ_t src[t, i]·x[t, j] for every j; x and src are [T, K].
// f32 matrix products (Xᵀ·X, Sᵀ·X) in blocks of rows of H and C: see RdHessian for why f32 suffices.
void accumulate_moments(const float* x, const float* src, int64_t T, int64_t K, std::vector<float>& H, std::vector<float>* C,
                        int threads) {
  const std::vector<float> xt = transposed(x, T, K), st = src ? transposed(src, T, K) : std::vector<float>();
  constexpr int64_t kRows = 96;
  const int64_t blocks = (K + kRows - 1) / kRows;
  parallel_for(size_t(blocks), threads, 1, [&](size_t b, size_t e) {
    for (size_t blk = b; blk < e; ++blk) {
      const int64_t i0 = int64_t(blk) * kRows, i1 = std::min(K, i0 + kRows);
      gemm_nn_acc(i1 - i0, K - i0, T, xt.data() + i0 * T, T, x + i0, K, H.data() + i0 * K + i0, K, 1.0f, 1);
      if (C) gemm_nn_acc(i1 - i0, K, T, st.data() + i0 * T, T, x, K, C->data() + i0 * K, K, 1.0f, 1);
    }
  });
}

// Whether a Linear of a layer pass reads the same input rows as the one observed before it (q/k/v and
// gate/up share one input: the engine hands them the same pointer back to back).
struct SharedInput {
  const float* prev_x = nullptr;
  std::string prev_module;
  void reset() {
    prev_x = nullptr;
    prev_module.clear();
  }
  // Records this call; true if it reads the previous call's rows. *prev = the previous call's module.
  bool next(const Linear& w, const float* x, std::string* prev) {
    const bool same = x == prev_x;
    *prev = prev_module;
    prev_x = x;
    prev_module = w.name;
    return same;
  }
};

// Thrown by the calibration observer to end a layer pass early (everything after the stage's input is unused).
struct StopLayer {};

Linear nvfp4_linear(const Linear& like, const uint8_t* packed, const uint8_t* scales, float gs) {
  Linear q = like;
  q.kind = WeightKind::kNvfp4;
  q.data = packed;
  q.scales = scales;
  q.global_div = gs;
  q.global_mul = 1.0f;
  q.input_global_scale = 0.0f;
  return q;
}

}  // namespace

int rd_auto_calibration_seqs(double decoder_weights, int64_t ctx) {
  const double seqs = kRdCalibrationWork / (std::max(decoder_weights, 1.0) * double(std::max<int64_t>(ctx, 1)));
  return int(std::clamp(std::floor(seqs), 4.0, 64.0));
}

RdJob::~RdJob() = default;

RdJob::RdJob(const QuantizeOptions& o, const Checkpoint& src, const std::vector<std::string>& modules) : o_(o), src_(src) {
  threads_ = resolve_threads(o.threads);
  const bool has_lambda = o.lambda >= 0, has_target = o.target_bits != 0;
  if (has_lambda == has_target) fail_input("--method rd needs exactly one of --lambda L (>= 0) or --target-bits B");
  if (has_lambda && !std::isfinite(o.lambda)) fail_input("--lambda must be a finite number >= 0");
  if (has_target && !(o.target_bits > 0 && o.target_bits <= 4.5))
    fail_input("--target-bits " + fmt(o.target_bits) + " is unreachable (NVFP4 with rd ranges over (0, 4.5] bits per weight)");
  if (o.rd_tables != "pooled" && o.rd_tables != "tensor") fail_input("--rd-tables must be pooled or tensor");
  if (o.rd_weighting != "auto" && o.rd_weighting != "sensitivity" && o.rd_weighting != "uniform")
    fail_input("--rd-weighting must be auto, sensitivity or uniform");
  if (!(o.damp > 0 && o.damp < 1)) fail_input("--damp must be in (0, 1)");
  if (o.calibration.empty() && (o.calibration_seqs != 0 || o.calibration_ctx != 512))
    fail_input("--calibration-seqs and --calibration-ctx need --calibration TEXT");

  // Units in decoder order (calibration is sequential over decoder layers).
  std::map<int64_t, Unit> by_layer;
  for (const auto& m : modules) {
    int64_t l = decoder_layer_of(m);
    Unit& u = by_layer[l < 0 ? INT64_MAX : l];
    u.layer = l;
    u.modules.push_back(m);
  }
  for (auto& [k, u] : by_layer) units_.push_back(std::move(u));

  // Global scales: one per fused group, from the group's amax, with room for inflated block scales.
  for (const auto& g : group_fused(modules)) {
    float amax = 0;
    SourceRounding rnd = SourceRounding::kF32;
    for (const auto& m : g) {
      const TensorRef& r = src.get(m + ".weight");
      bool finite = true;
      amax = std::max(amax, weight_amax(WeightView{r.data(), r.info->dtype, r.info->shape[0], r.info->shape[1]}, threads_, &finite));
      if (!finite) fail_input(r.file->path() + ": tensor '" + m + ".weight' holds NaN or Inf (rd refuses non-finite weights)");
      r.release();  // read again tensor by tensor later: the resident set must not grow to the whole model
      rnd = r.info->dtype == DType::BF16 ? SourceRounding::kBF16 : SourceRounding::kF32;
    }
    float gs = amax > 0 ? 2688.0f / (amax * kRdGlobalRoom) : 1.0f;
    if (!std::isfinite(gs) || !(gs > 0)) gs = 1.0f;
    for (const auto& m : g) {
      gs_[m] = gs;
      absmax_gs_[m] = absmax_global_scale(amax, rnd);
      sensitivity_[m] = 1.0;
    }
  }

  if (o.rd_inputs != "source" && o.rd_inputs != "quantized") fail_input("--rd-inputs must be source or quantized");
  if (o.rd_stages != "group" && o.rd_stages != "layer") fail_input("--rd-stages must be group or layer");
  if (o.rd_refine < 0 || o.rd_refine > 100) fail_input("--rd-refine must be in 0..100");
  input_correction_ = !o.calibration.empty() && o.rd_inputs == "source";
  staged_calibration_ = o.rd_stages == "group";
  if (!o.calibration.empty()) setup_calibration();
  // Row stride of the search runs' subsample (used without calibration, and by the proxy runs below).
  uint64_t total_weights = 0;
  for (const auto& m : modules) total_weights += uint64_t(src.get(m + ".weight").info->numel());
  sample_stride_ = int64_t(std::max<uint64_t>(1, total_weights / std::max(kRdSampleMinWeights, total_weights / kRdSampleFraction)));
  if (!model_) sampling_ = sample_stride_ > 1;

  // Rate tables. "pooled": one model-wide table pair, from the pooled histogram of a whole-model
  // run, refined a fixed number of times (the estimate does not converge); the figure that
  // --target-bits aims at is the pooled order-0 size, so this is the rate it measures. "tensor":
  // each tensor's own tables, iterated inside rd_quantize_layer.
  auto t0 = Clock::now();
  pooled_tables_ = o.rd_tables == "pooled";
  double d0 = 0;
  Nvfp4Histogram h;
  if (model_) {
    // The cache holds every layer's H and corrected weight (f32); only small models fit (kRdCacheBytes).
    uint64_t bytes = 0;
    for (const auto& u : units_)
      for (const auto& m : u.modules) {
        const TensorInfo& t = *src.get(m + ".weight").info;
        bytes += uint64_t(t.shape[1]) * uint64_t(t.shape[1] + t.shape[0]) * 4;
      }
    // FP4Z_RD_CACHE_BYTES (environment) replaces the limit; benches set 0 to run a small model the
    // full-size way (docs/rd-sweep.md).
    uint64_t cache_limit = kRdCacheBytes;
    if (const char* e = std::getenv("FP4Z_RD_CACHE_BYTES")) cache_limit = std::strtoull(e, nullptr, 10);
    fill_h_cache_ = bytes <= cache_limit;
    // Otherwise every search and table run (the λ = 0 one included) is a proxy: a row subsample of each
    // Linear without feedback, each column's error weighted by GPTQ's per-element distortion 1/U_jj²
    // from the source model's H (one forward statistics pass, collect_column_weights): an estimate of
    // the rate (and of the pooled tables) at a small fraction of a sequential run's cost.
    search_path_ = fill_h_cache_ ? "cache" : "proxy";
    if (!fill_h_cache_) {
      collect_column_weights();
      proxy_search_ = true;
      sampling_ = sample_stride_ > 1;
    }
  }
  const double b0 = run_bits(0.0, &d0, &h);
  use_h_cache_ = fill_h_cache_;
  fill_h_cache_ = false;
  tables_ = rd_costs_from_histogram(h);
  if (has_lambda) {
    for (int pass = 0; pooled_tables_ && pass < kRdRatePasses - 1; ++pass) {
      run_bits(o.lambda, nullptr, &h);
      tables_ = rd_costs_from_histogram(h);
    }
    lambda_ = o.lambda;
  } else {
    const double target = o.target_bits;
    if (target >= b0)
      fail_input("--target-bits " + fmt(target) + " is unreachable: rd's highest rate on this model is " + fmt(b0) +
                 " bits/weight (λ = 0); ask for less, or use --lambda 0");
    lambda_ = search_lambda(b0, d0);
    for (int pass = 0; pooled_tables_ && pass < kRdRatePasses - 1; ++pass) {
      run_bits(lambda_, nullptr, &h);
      tables_ = rd_costs_from_histogram(h);
      lambda_ = search_lambda(b0, d0, lambda_);
    }
    // The search runs reuse the λ = 0 run's H and targets; the written run recomputes them behind this
    // λ's quantized layers, which moves the rate a little. A sequential run checks the rate the output
    // will have; above the target, aim lower (then, if that is not enough, raise λ step by step).
    double aim = target;
    for (int i = 0; i < 6 && use_h_cache_; ++i) {
      use_h_cache_ = false;
      const double b = run_bits(lambda_);
      use_h_cache_ = true;
      if (b <= target) break;
      if (i < 3) {
        aim -= b - target + 0.0005;
        lambda_ = search_lambda(b0, d0, lambda_, aim);
      } else {
        lambda_ *= 1.15;
      }
    }
  }
  search_seconds_ = since(t0);
  sampling_ = false;
  sample_cache_.clear();
  use_h_cache_ = false;  // the written run is fully sequential again
  proxy_search_ = false;
  col_weight_cache_.clear();
  h_cache_.clear();
  target_cache_.clear();
  owner_cache_.clear();
}

// The largest rate not above the target: λ bracketed by factors of 10 from the λ = 0 run's mean
// distortion per weight, then regula falsi on log λ.
double RdJob::search_lambda(double b0, double d0, double hint, double aim) {
  const double target = aim > 0 ? aim : o_.target_bits;
  double lo = 0, blo = b0, hi = -1, bhi = 0;
  // Runs λ and narrows the bracket [lo, hi] (rate above / not above the target) with it.
  auto probe = [&](double lam) {
    const double b = run_bits(lam);
    if (b <= target) {
      hi = lam;
      bhi = b;
    } else {
      lo = lam;
      blo = b;
    }
  };
  double lam = hint > 0 ? hint / 1.5 : d0 > 0 ? d0 : 1e-12;
  const double step = hint > 0 ? 1.5 : 10;  // a hint (the previous round's λ) is close
  for (int i = 0; i < 80 && hi < 0; ++i, lam *= step) probe(lam);
  if (hi < 0) fail_input("--target-bits " + fmt(target) + " is unreachable: no λ up to " + fmt(lam) + " gets the rate that low");
  for (int i = 0; i < 80 && lo == 0 && hi > 1e-30; ++i) probe(hi / step);
  for (int i = 0; i < 10 && lo > 0 && target - bhi > 0.002; ++i) {
    double f = std::clamp((blo - target) / (blo - bhi), 0.1, 0.9);
    probe(std::exp(std::log(lo) + f * (std::log(hi) - std::log(lo))));
  }
  return hi;
}

void RdJob::setup_calibration() {
  auto t0 = Clock::now();
  std::unique_ptr<Tokenizer> tok;
  try {
    tok = load_tokenizer(o_.source);
  } catch (const Error& e) {
    fail_input(o_.source + ": no tokenizer for --calibration (" + e.what() + ")");
  }
  std::string text = read_whole_file(o_.calibration);
  std::vector<int32_t> ids = tok->encode(text);
  model_ = load_model(o_.source);
  ctx_ = o_.calibration_ctx;
  if (model_->cfg.max_positions > 0) ctx_ = std::min(ctx_, model_->cfg.max_positions);
  if (ctx_ < 16) fail_input("--calibration-ctx must be at least 16");
  if (o_.calibration_seqs < 0) fail_input("--calibration-seqs must be at least 1");
  if (o_.calibration_seqs == 0) {  // automatic: see kRdCalibrationWork
    double weights = 0;
    for (const auto& u : units_)
      for (const auto& m : u.modules)
        if (u.layer >= 0) weights += double(src_.get(m + ".weight").info->numel());
    o_.calibration_seqs = rd_auto_calibration_seqs(weights, ctx_);
  }
  const int64_t need = int64_t(o_.calibration_seqs) * ctx_;
  if (int64_t(ids.size()) < need)
    fail_input(o_.calibration + ": the calibration text has " + std::to_string(ids.size()) + " tokens; " +
               std::to_string(o_.calibration_seqs) + " sequences of " + std::to_string(ctx_) + " need " + std::to_string(need));
  const int32_t bos = tok->bos_id();
  for (int s = 0; s < o_.calibration_seqs; ++s) {
    std::vector<int32_t> seq(ids.begin() + s * ctx_, ids.begin() + (s + 1) * ctx_);
    if (bos >= 0) seq[0] = bos;  // as the perplexity protocol does: each sequence starts at BOS
    seqs_.push_back(std::move(seq));
  }
  for (const auto& u : units_)
    for (const auto& m : u.modules) {
      Linear* l = u.layer >= 0 ? model_linear(u.layer, m) : nullptr;
      if (l) source_linear_[m] = *l;
    }
  EngineOptions eo;
  eo.threads = threads_;
  eo.isa = kernel_isa();
  eo.max_batch = ctx_;
  // BF16 source Linears: the prompt kernels with BF16 activations (vdpbf16ps, ≈ 1.7× the f32 kernels'
  // speed, docs/inference.md) for the calibration forwards. The observer still sees every Linear's f32
  // input, so H and C are unchanged; only the products that carry the streams to the next Linear round
  // their input to BF16, the precision the BF16 model itself was trained and is run in. F32 sources
  // (stories260K) keep the f32 kernels.
  bool bf16_source = !source_linear_.empty();
  for (const auto& [m, l] : source_linear_) bf16_source = bf16_source && l.kind == WeightKind::kBF16;
  eo.bf16_act = bf16_source;
  session_ = std::make_unique<Session>(*model_, eo);
  calib_seconds_ += since(t0);
  if (o_.rd_weighting == "auto") {
    // One whole-model forward (n_sens sequences, head included) per Linear: affordable below kRdSensitivityWork.
    const double V = double(model_->cfg.vocab), n = double(std::max<int64_t>(1, std::min<int64_t>(o_.sensitivity_seqs, int64_t(seqs_.size()))));
    const double sens_seqs = std::max(1.0, std::min(n, std::floor(double(int64_t(64) << 20) / (double(ctx_) * V))));
    double weights = 0, linears = 0;
    for (const auto& [m, l] : source_linear_) {
      weights += double(l.n) * double(l.k);
      ++linears;
    }
    const double work = (linears + 1) * sens_seqs * double(ctx_) * (weights + V * double(model_->cfg.hidden));
    o_.rd_weighting = work <= kRdSensitivityWork ? "sensitivity" : "uniform";
  }
  if (o_.rd_weighting == "sensitivity") measure_sensitivities();
}

Linear* RdJob::model_linear(int64_t layer, const std::string& module) {
  if (!model_ || layer < 0 || layer >= int64_t(model_->layers.size())) return nullptr;
  LayerWeights& L = model_->layers[size_t(layer)];
  for (Linear* l : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down})
    if (l->name == module) return l;
  return nullptr;
}

std::vector<float> RdJob::load_weight(const std::string& module) const {
  const TensorRef& r = src_.get(module + ".weight");
  std::vector<float> w(size_t(r.info->numel()));
  convert_to_f32(r.data(), r.info->dtype, w.size(), w.data());
  return w;
}

const std::vector<float>& RdJob::sample_weight(const std::string& module, int64_t* rows) {
  const TensorRef& r = src_.get(module + ".weight");
  const int64_t N = r.info->shape[0], K = r.info->shape[1];
  *rows = (N + sample_stride_ - 1) / sample_stride_;
  auto it = sample_cache_.find(module);
  if (it != sample_cache_.end()) return it->second;
  std::vector<float>& w = sample_cache_[module];
  w.resize(size_t(*rows * K));
  const size_t row_bytes = size_t(K) * dtype_size(r.info->dtype);
  for (int64_t i = 0; i < *rows; ++i) convert_to_f32(r.data() + size_t(i * sample_stride_) * row_bytes, r.info->dtype, size_t(K), w.data() + i * K);
  return w;
}

// s_m = (KL of the model with only m absmax-quantized, per token) / (mean output error ||ΔW x||²
// per token), on the first sensitivity_seqs calibration sequences: the exchange rate between the
// layer's own distortion measure and the model's KL. Floored at 1% of the median.
void RdJob::measure_sensitivities() {
  auto t0 = Clock::now();
  const int64_t V = model_->cfg.vocab;
  int64_t n = std::min<int64_t>(o_.sensitivity_seqs, int64_t(seqs_.size()));
  n = std::max<int64_t>(1, std::min<int64_t>(n, (int64_t(64) << 20) / (ctx_ * V)));  // base log-probs stay <= 256 MiB
  std::vector<float> base(static_cast<size_t>(n * ctx_ * V)), logits;
  auto log_softmax = [&](const float* l, float* out) {
    double mx = -INFINITY, sum = 0;
    for (int64_t v = 0; v < V; ++v) mx = std::max(mx, double(l[v]));
    for (int64_t v = 0; v < V; ++v) sum += std::exp(double(l[v]) - mx);
    const double lse = mx + std::log(sum);
    for (int64_t v = 0; v < V; ++v) out[v] = float(double(l[v]) - lse);
  };
  for (int64_t s = 0; s < n; ++s) {
    session_->truncate(0);
    session_->forward(seqs_[size_t(s)].data(), ctx_, ctx_, logits);
    for (int64_t t = 0; t < ctx_; ++t) log_softmax(logits.data() + t * V, base.data() + (s * ctx_ + t) * V);
  }
  KernelOptions kopt;
  kopt.isa = kernel_isa();
  const NvKernels& K = nv_kernels(detect_isa());
  std::vector<double> values;
  std::vector<float> lq(static_cast<size_t>(V));
  for (const auto& u : units_)
    for (const auto& m : u.modules) {
      Linear* ml = model_linear(u.layer, m);
      if (!ml) continue;
      std::vector<float> W = load_weight(m);
      LayerEncoding enc;
      absmax_encode(WeightView{reinterpret_cast<const uint8_t*>(W.data()), DType::F32, ml->n, ml->k}, absmax_gs_[m], true, threads_, K, enc);
      const Linear q = nvfp4_linear(*ml, enc.packed.data(), enc.scales.data(), absmax_gs_[m]);
      const Linear orig = source_linear_[m];
      *ml = q;
      double out_err = 0, kl = 0;
      std::vector<float> y0, y1;
      session_->set_linear_observer([&](int64_t, const Linear& w, const float* x, int64_t T) {
        if (w.name != m) return;
        y0.resize(size_t(T * w.n));
        y1.resize(size_t(T * w.n));
        linear_forward(orig, x, T, y0.data(), session_->pool(), kopt);
        linear_forward(q, x, T, y1.data(), session_->pool(), kopt);
        for (size_t i = 0; i < y0.size(); ++i) out_err += double(y1[i] - y0[i]) * double(y1[i] - y0[i]);
      });
      for (int64_t s = 0; s < n; ++s) {
        session_->truncate(0);
        session_->forward(seqs_[size_t(s)].data(), ctx_, ctx_, logits);
        for (int64_t t = 0; t < ctx_; ++t) {
          log_softmax(logits.data() + t * V, lq.data());
          const float* lb = base.data() + (s * ctx_ + t) * V;
          for (int64_t v = 0; v < V; ++v) kl += std::exp(double(lb[v])) * (double(lb[v]) - double(lq[v]));
        }
      }
      session_->set_linear_observer(nullptr);
      *ml = orig;
      const double tokens = double(n * ctx_);
      sensitivity_[m] = out_err > 0 ? std::max(0.0, kl / tokens) / (out_err / tokens) : -1;
      if (sensitivity_[m] > 0) values.push_back(sensitivity_[m]);
    }
  std::sort(values.begin(), values.end());
  const double median = values.empty() ? 1.0 : values[values.size() / 2];
  for (auto& [m, s] : sensitivity_)
    if (model_linear(decoder_layer_of(m), m)) s = s < 0 ? median : std::max(s, 0.01 * median);
  sens_seconds_ = since(t0);
}

// The proxy runs' column weights: one pass of the source model over the calibration sequences, layer
// by layer, taking each input's H = mean x xᵀ (the first module that reads an input owns it, as in
// process_unit) and from it 1/U_jj² (rd_column_weights: the Cholesky factor only). One source layer
// pass per layer and the moments without C: a fraction of a sequential calibrated run, which also needs
// the staged quantized passes, the input correction, the full factor and the quantization of every row.
void RdJob::collect_column_weights() {
  const auto t0 = Clock::now();
  const double layer_work_before = factor_seconds_;
  begin_run(0.0);
  const int64_t Hd = model_->cfg.hidden;
  const double tokens = double(int64_t(seqs_.size()) * ctx_);
  for (const Unit& u : units_) {
    if (u.layer < 0 || !model_linear(u.layer, u.modules[0])) continue;
    const std::set<std::string> wanted(u.modules.begin(), u.modules.end());
    std::map<std::string, std::vector<float>> H;  // per owner, upper triangle
    std::map<std::string, int64_t> width;
    SharedInput shared;
    session_->set_linear_observer([&](int64_t layer, const Linear& w, const float* x, int64_t T) {
      if (layer != u.layer) return;
      std::string prev;
      const bool same_input = shared.next(w, x, &prev);
      if (!wanted.count(w.name)) return;
      if (!owner_cache_.count(w.name)) owner_cache_[w.name] = same_input && owner_cache_.count(prev) ? owner_cache_[prev] : w.name;
      if (owner_cache_[w.name] != w.name) return;
      std::vector<float>& h = H[w.name];
      if (h.empty()) h.assign(size_t(w.k * w.k), 0.0f);
      width[w.name] = w.k;
      const auto tm = Clock::now();
      accumulate_moments(x, nullptr, T, w.k, h, nullptr, threads_);
      moments_seconds_ += since(tm);
    });
    for (size_t s = 0; s < seqs_.size(); ++s) {
      shared.reset();
      session_->run_layers(hidden_.data() + int64_t(s) * ctx_ * Hd, ctx_, u.layer, u.layer + 1);
    }
    session_->set_linear_observer(nullptr);
    for (const auto& m : u.modules)
      if (!owner_cache_.count(m)) fail_input("rd: calibration never reached '" + m + "'");
    for (auto& [own, h] : H) {
      const int64_t K = width[own];
      mean_and_mirror(h, K, tokens);
      const auto tf = Clock::now();
      col_weight_cache_[own] = rd_column_weights(std::move(h), K, o_.damp, threads_);
      factor_seconds_ += since(tf);
      h = {};
    }
    release_decoder_layer(*model_->ckpt, u.layer);
  }
  calib_seconds_ += since(t0) - (factor_seconds_ - layer_work_before);
}

void RdJob::begin_run(double lambda) {
  lambda_ = lambda;
  next_unit_ = 0;
  if (!model_) return;
  for (const auto& [m, l] : source_linear_) *model_linear(decoder_layer_of(m), m) = l;
  const int64_t Hd = model_->cfg.hidden;
  hidden_.assign(size_t(int64_t(seqs_.size()) * ctx_ * Hd), 0.0f);
  for (size_t s = 0; s < seqs_.size(); ++s)
    for (int64_t t = 0; t < ctx_; ++t) model_->embed.row(seqs_[s][size_t(t)], hidden_.data() + (int64_t(s) * ctx_ + t) * Hd);
  if (input_correction_) hidden_fp_ = hidden_;
}

void RdJob::process_unit(size_t ui, const Sink& sink) {
  const Unit& u = units_[ui];
  std::vector<std::pair<std::string, RdLayerResult>> done;
  const bool calibrated = model_ && u.layer >= 0 && model_linear(u.layer, u.modules[0]);
  std::map<std::string, std::vector<float>> H;  // per input owner module (mean x̃ x̃ᵀ), until it is prepared
  std::map<std::string, std::vector<float>> C;  // per input owner: E[x x̃ᵀ] (input correction), then C − H̃
  std::map<std::string, RdHessian> prepared;     // per input owner: H_d and its factor, while a module needs it
  std::map<std::string, std::string> owner;       // module -> the module whose H it shares
  std::map<std::string, int> uses;                // owner -> modules of this unit not yet quantized
  std::set<std::string> accumulated;              // owners whose H was taken (this unit)
  auto quantize_module = [&](const std::string& m, bool cached) {
    const TensorInfo& t = *src_.get(m + ".weight").info;
    if (sampling_ && !calibrated) {
      int64_t rows = 0;
      const std::vector<float>& Ws = sample_weight(m, &rows);
      done.emplace_back(m, rd_quantize_layer(Ws.data(), rows, t.shape[1], nullptr, gs_.at(m), lambda_ / sensitivity_.at(m), o_.damp,
                                             threads_, pooled_tables_ ? &tables_ : nullptr));
      return;
    }
    const TensorRef& ref = src_.get(m + ".weight");
    if (!calibrated && pooled_tables_) {  // straight from the source rows: no whole-tensor f32 copy
      done.emplace_back(m, rd_plain_layer(ref.data(), ref.info->dtype, t.shape[0], t.shape[1], gs_.at(m), lambda_ / sensitivity_.at(m),
                                          threads_, tables_));
      ref.release();
      return;
    }
    // One f32 buffer reused across tensors: a fresh 100 MB vector per tensor costs its page faults again.
    std::vector<float>& W = weight_buf_;
    W.resize(size_t(ref.info->numel()));
    convert_to_f32(ref.data(), ref.info->dtype, W.size(), W.data());
    ref.release();  // the f32 copy is what the layer work reads
    const RdHessian* h = nullptr;
    if (calibrated) {
      auto it = owner.find(m);
      if (it == owner.end() || (!H.count(it->second) && !prepared.count(it->second))) fail_input("rd: calibration never reached '" + m + "'");
      const std::string& own = it->second;
      if (!prepared.count(own)) {
        const auto tf = Clock::now();
        const int64_t K = t.shape[1];
        prepared[own] = rd_prepare_hessian(std::move(H[own]), K, o_.damp, threads_);
        H.erase(own);
        if (C.count(own)) {  // C − H̃ = C − (H_d − added), in place
          const RdHessian& p = prepared[own];
          std::vector<float>& c = C[own];
          for (size_t i = 0; i < c.size(); ++i) c[i] -= p.Hd[i];
          for (int64_t j = 0; j < K; ++j) c[size_t(j * K + j)] += p.added[size_t(j)];
        }
        factor_seconds_ += since(tf);
      }
      h = &prepared[own];
      if (cached && target_cache_.count(m)) {
        W = target_cache_[m];
      } else if (C.count(own)) {
        const auto tc = Clock::now();
        rd_correct_weight(W.data(), t.shape[0], t.shape[1], C[own].data(), *h, threads_);
        correct_seconds_ += since(tc);
        if (fill_h_cache_) target_cache_[m] = W;
      }
    }
    done.emplace_back(m, rd_quantize_layer(W.data(), t.shape[0], t.shape[1], h, gs_.at(m), lambda_ / sensitivity_.at(m), threads_,
                                           pooled_tables_ ? &tables_ : nullptr, o_.rd_refine, nullptr));
    quant_seconds_ += done.back().second.seconds;
    if (calibrated && --uses[owner.at(m)] == 0) {  // the owner's last module: free its matrices now
      prepared.erase(owner.at(m));
      C.erase(owner.at(m));
    }
  };
  auto release_layer_pages = [&] {
    if (model_ && u.layer >= 0) release_decoder_layer(*model_->ckpt, u.layer);
  };
  auto release_unit = [&] {
    // This unit's source pages are not needed again in this run: let the resident set shrink.
    for (const auto& m : u.modules) src_.get(m + ".weight").release();
    release_layer_pages();
  };
  if (calibrated && proxy_search_) {
    for (const auto& m : u.modules) {
      const TensorInfo& t = *src_.get(m + ".weight").info;
      int64_t rows = 0;
      const std::vector<float>& Ws = sample_weight(m, &rows);  // stride 1 when not sampling
      const std::vector<float>& cw = col_weight_cache_.at(owner_cache_.at(m));
      done.emplace_back(m, rd_quantize_layer(Ws.data(), rows, t.shape[1], nullptr, gs_.at(m), lambda_ / sensitivity_.at(m), threads_,
                                             pooled_tables_ ? &tables_ : nullptr, 0, cw.data()));
    }
    release_unit();
    for (auto& [m, res] : done) sink(m, res);
    return;
  }
  bool cached = calibrated && use_h_cache_;
  for (const auto& m : u.modules) cached = cached && owner_cache_.count(m);
  if (!calibrated || cached) {
    for (const auto& m : u.modules)
      if (cached) {
        owner[m] = owner_cache_[m];
        ++uses[owner[m]];
        if (!H.count(owner[m]) && !prepared.count(owner[m])) H[owner[m]] = h_cache_.at(owner[m]);
      }
    for (const auto& m : u.modules) quantize_module(m, cached);
    release_unit();
    for (auto& [m, res] : done) sink(m, res);
    return;
  }

  // Stages in forward order, one per input group (q/k/v, o, gate/up, down): each stage's H is taken
  // with the layer's earlier stages already quantized, so o_proj sees the quantized attention inputs.
  auto t0 = Clock::now();
  const double layer_work_before = factor_seconds_ + correct_seconds_ + quant_seconds_;
  const int64_t Hd = model_->cfg.hidden;
  const size_t n_seqs = seqs_.size();
  std::set<std::string> wanted(u.modules.begin(), u.modules.end()), pending = wanted;
  auto use_source = [&] {
    for (auto& [m, res] : done) *model_linear(u.layer, m) = source_linear_[m];
  };
  auto use_quantized = [&] {
    for (auto& [m, res] : done) *model_linear(u.layer, m) = nvfp4_linear(source_linear_[m], res.packed.data(), res.scales.data(), gs_.at(m));
  };
  // Input correction: the source layer does not change, so one forward per sequence gives the source
  // inputs of every stage (kept per sequence and input) and advances the source stream at once.
  std::vector<std::map<std::string, std::vector<float>>> source_x(input_correction_ ? n_seqs : 0);
  size_t cur_seq = 0;
  bool capture_source_inputs = false, stage_taken = false;
  SharedInput shared;
  std::string stage;
  // The last stage's inputs and the residual rows beside them, per sequence: the quantized layer's
  // output is then that residual plus one product, instead of another pass over the whole layer.
  std::vector<std::vector<float>> last_input(n_seqs), last_residual(n_seqs);
  session_->set_linear_observer([&](int64_t layer, const Linear& w, const float* x, int64_t T) {
    if (layer != u.layer) return;
    std::string prev;
    const bool same_input = shared.next(w, x, &prev);
    if (!wanted.count(w.name)) return;
    if (capture_source_inputs) {  // keyed like owners below: the first module that reads an input
      if (!same_input || !wanted.count(prev)) source_x[cur_seq][w.name].assign(x, x + T * w.k);
      return;
    }
    // Staged: once this sequence's stage input is taken, the rest of the layer is not needed (the
    // modules that share the input come right after it, so they are registered by then: on the
    // stage's first sequence the pass runs on to the next input).
    if (staged_calibration_ && stage_taken && !same_input) throw StopLayer{};
    if (!owner.count(w.name)) {
      owner[w.name] = same_input && owner.count(prev) ? owner[prev] : w.name;
      ++uses[owner[w.name]];
    }
    const std::string& own = owner[w.name];
    if (own != w.name || !pending.count(w.name)) return;  // q/k/v and gate/up read the same rows: one H
    if (stage.empty()) stage = own;
    if (staged_calibration_ && own != stage) return;
    auto& h = H[own];
    if (h.empty()) h.assign(size_t(w.k * w.k), 0.0f);
    accumulated.insert(own);
    stage_taken = true;
    std::vector<float>* c = nullptr;
    if (input_correction_) {
      c = &C[own];
      if (c->empty()) c->assign(size_t(w.k * w.k), 0.0f);
    }
    if (session_->is_last_linear(layer, w)) {  // what the advance below needs of this sequence
      last_input[cur_seq].assign(x, x + T * w.k);
      const float* res = session_->residual_before_last_linear();
      last_residual[cur_seq].assign(res, res + T * Hd);
    }
    const auto tm = Clock::now();
    accumulate_moments(x, input_correction_ ? source_x[cur_seq].at(own).data() : nullptr, T, w.k, h, c, threads_);
    moments_seconds_ += since(tm);
    // After the stage's first sequence every module that shares this input is registered: later
    // sequences stop right here, before the stage's own products and the rest of the layer run.
    if (staged_calibration_ && cur_seq > 0) throw StopLayer{};
  });
  if (input_correction_) {
    use_source();
    capture_source_inputs = true;
    for (size_t s = 0; s < n_seqs; ++s) {
      cur_seq = s;
      shared.reset();
      session_->run_layers(hidden_fp_.data() + int64_t(s) * ctx_ * Hd, ctx_, u.layer, u.layer + 1);
    }
    capture_source_inputs = false;
  }
  std::vector<float> scratch(static_cast<size_t>(ctx_ * Hd));
  const double tokens = double(int64_t(n_seqs) * ctx_);
  while (!pending.empty()) {
    stage.clear();
    const std::set<std::string> owners_before = accumulated;
    for (size_t s = 0; s < n_seqs; ++s) {
      cur_seq = s;
      shared.reset();
      std::copy_n(hidden_.data() + int64_t(s) * ctx_ * Hd, ctx_ * Hd, scratch.data());
      stage_taken = false;
      try {
        session_->run_layers(scratch.data(), ctx_, u.layer, u.layer + 1);
      } catch (const StopLayer&) {
        // the stage's moments are complete for this sequence; the session is reset by its next run_layers
      }
    }
    if (stage.empty()) fail_input("rd: calibration never reached '" + *pending.begin() + "'");
    for (auto& [o, h] : H) {
      if (owners_before.count(o)) continue;
      const int64_t K = int64_t(std::llround(std::sqrt(double(h.size()))));
      mean_and_mirror(h, K, tokens);
      const float inv = float(1.0 / tokens);
      if (C.count(o))
        for (float& v : C[o]) v *= inv;
      if (fill_h_cache_) h_cache_[o] = h;
      for (auto& sx : source_x) sx.erase(o);  // this input's source rows are in C now
    }
    // The layer's source pages are not read again until the next pass: off the resident set while the
    // stage's matrices (up to 3·K² floats) are alive.
    release_layer_pages();
    for (const std::string& m : u.modules) {
      if (!pending.count(m) || !owner.count(m) || !accumulated.count(owner[m]) || owners_before.count(owner[m])) continue;
      if (fill_h_cache_) owner_cache_[m] = owner[m];
      quantize_module(m, false);
      pending.erase(m);
    }
    use_quantized();
  }
  session_->set_linear_observer(nullptr);
  // Later layers see this layer quantized (GPTQ order): advance the hidden states, from the last
  // stage's captures when the layer's last Linear was quantized here (staged: its input was taken with
  // every earlier Linear quantized; every sequence captured).
  bool finish_from_last = staged_calibration_;
  for (const auto& li : last_input) finish_from_last = finish_from_last && !li.empty();
  for (size_t s = 0; s < n_seqs; ++s) {
    float* hs = hidden_.data() + int64_t(s) * ctx_ * Hd;
    if (finish_from_last) {
      session_->finish_layer(u.layer, last_residual[s].data(), last_input[s].data(), ctx_, hs);
      last_input[s] = {};
      last_residual[s] = {};
    } else {
      session_->run_layers(hs, ctx_, u.layer, u.layer + 1);
    }
  }
  calib_seconds_ += since(t0) - (factor_seconds_ + correct_seconds_ + quant_seconds_ - layer_work_before);
  release_unit();
  for (auto& [m, res] : done) sink(m, res);
}

double RdJob::run_bits(double lambda, double* distortion_per_weight, Nvfp4Histogram* hist) {
  begin_run(lambda);
  Nvfp4Histogram h;
  double dist = 0;
  for (size_t u = 0; u < units_.size(); ++u)
    process_unit(u, [&](const std::string& m, RdLayerResult& r) {
      h.merge(r.hist);
      const double n = double(r.packed.size()) * 2;
      dist += sensitivity_.at(m) * (r.h_error >= 0 ? r.h_error : r.mse * n);
    });
  ++search_runs_;
  if (distortion_per_weight) *distortion_per_weight = h.weights() ? dist / double(h.weights()) : 0;
  if (hist) *hist = h;
  return h.ideal_bits_per_weight();
}

std::vector<std::string> RdJob::write_order(const std::vector<std::string>& names) const {
  std::set<std::string> quantized;
  for (const auto& u : units_)
    for (const auto& m : u.modules) quantized.insert(m + ".weight");
  std::vector<std::string> order;
  for (const auto& n : names)
    if (!quantized.count(n)) order.push_back(n);
  for (const auto& u : units_)
    for (const auto& m : u.modules) order.push_back(m + ".weight");
  return order;
}

void RdJob::encode(const std::string& module, LayerEncoding& enc) {
  if (!started_) {
    begin_run(lambda_);
    started_ = true;
  }
  while (!ready_.count(module)) {
    if (next_unit_ >= units_.size()) throw Error(kExitInternal, "rd: module '" + module + "' requested out of order");
    process_unit(next_unit_++, [&](const std::string& m, RdLayerResult& r) { ready_[m] = std::move(r); });
  }
  RdLayerResult res = std::move(ready_[module]);
  ready_.erase(module);
  const TensorInfo& t = *src_.get(module + ".weight").info;
  LayerRecord rec;
  rec.name = module;
  rec.rows = t.shape[0];
  rec.cols = t.shape[1];
  rec.sensitivity = sensitivity_.at(module);
  rec.lambda = lambda_ / rec.sensitivity;
  rec.bits = res.hist.ideal_bits_per_weight();
  rec.mse = res.mse;
  rec.h_error = res.h_error;
  rec.seconds = res.seconds;
  records_.push_back(rec);
  pooled_.merge(res.hist);

  const float gs = gs_.at(module);
  enc.packed = std::move(res.packed);
  enc.scales = std::move(res.scales);
  enc.global_scale = gs;
  LayerMetrics& mt = enc.metrics;
  mt = LayerMetrics{};
  EntropyProxy ep = entropy_proxy_parallel(enc.packed.data(), enc.packed.size(), threads_);
  const double numel = double(rec.rows) * double(rec.cols);
  mt.mean_entropy_bits = ep.mean_bits;
  mt.std_entropy_bits = ep.std_bits;
  mt.compression_rate = 1.0 - ep.mean_bits / 8.0;
  mt.compressed_size_ratio = ep.mean_bits / 8.0;
  mt.effective_bits_per_weight = 4.0 + 8.0 / 16.0 + 32.0 / numel;
  mt.n_chunks = ep.n_chunks;
  mt.mse = double(float(res.mse));
  mt.global_scale = gs;
  mt.zero_fraction = double(res.hist.code[0]) / numel;
  mt.small_code_fraction = double(res.hist.code[0] + res.hist.code[1] + res.hist.code[2] + res.hist.code[9] + res.hist.code[10]) / numel;
}

double RdJob::bits_per_weight() const { return pooled_.ideal_bits_per_weight(); }

nlohmann::ordered_json RdJob::report() const {
  using json = nlohmann::ordered_json;
  json layers = json::array();
  double sw = 0, mse = 0;
  for (const auto& r : records_) {
    json l = {{"layer", r.name}, {"shape", {r.rows, r.cols}}, {"num_weights", r.rows * r.cols}, {"lambda", r.lambda},
              {"sensitivity", r.sensitivity}, {"bits_per_weight", r.bits}, {"weight_mse", r.mse}};
    l["h_weighted_error"] = r.h_error >= 0 ? json(r.h_error) : json(nullptr);
    l["seconds"] = r.seconds;
    layers.push_back(l);
    sw += double(r.rows * r.cols);
    mse += double(r.rows * r.cols) * r.mse;
  }
  json j;
  j["method"] = "rd";
  j["source"] = o_.source;
  j["output_dir"] = o_.out;
  j["lambda"] = lambda_;
  j["target_bits"] = o_.target_bits > 0 ? json(o_.target_bits) : json(nullptr);
  j["bits_per_weight"] = pooled_.ideal_bits_per_weight();
  j["bits_per_weight_definition"] = "ideal order-0: H(pooled FP4 codes, -0 as +0) + H(pooled FP8 scales) / 16";
  j["weight_mse"] = sw > 0 ? mse / sw : 0.0;
  j["calibration"] = o_.calibration.empty() ? json(nullptr) : json(o_.calibration);
  j["calibration_sequences"] = seqs_.size();
  j["calibration_ctx"] = ctx_;
  j["distortion"] = model_ ? "output error: sum over rows of dW H dW^T, H = mean x x^T (GPTQ error feedback)" : "weight squared error";
  j["weighting"] = model_ ? o_.rd_weighting : "uniform";
  j["damp"] = o_.damp;
  j["inputs"] = model_ ? json(o_.rd_inputs) : json(nullptr);
  j["stages"] = model_ ? json(o_.rd_stages) : json(nullptr);
  j["refine_sweeps"] = model_ ? o_.rd_refine : 0;
  j["rate_tables"] = o_.rd_tables;
  j["rate_passes"] = kRdRatePasses;
  j["global_room"] = kRdGlobalRoom;
  j["search_runs"] = search_runs_;
  // "cache": the search reused every layer's H (rate checked by a sequential run); "proxy": column weights
  // from one source statistics pass and row-subsample proxy runs (docs/quantize.md, "Search at full size").
  j["search"] = search_path_.empty() ? json(nullptr) : json(search_path_);
  j["seconds"] = {{"calibration_forward", calib_seconds_}, {"sensitivity", sens_seconds_}, {"lambda_search", search_seconds_},
                  {"moments", moments_seconds_}, {"hessian_factor", factor_seconds_}, {"input_correction", correct_seconds_}, {"layer_quantization", quant_seconds_}};
  j["layers"] = layers;
  return j;
}

}  // namespace fp4z
