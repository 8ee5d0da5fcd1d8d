// Perplexity / KL divergence: chunking, scoring in double precision, summary statistics.
#include "eval/ppl.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "common/error.h"

namespace fp4z {

Distribution describe(std::vector<double> v) {
  Distribution d;
  if (v.empty()) return d;
  const double n = double(v.size());
  double s = 0, s2 = 0;
  for (double x : v) {
    s += x;
    s2 += x * x;
  }
  d.mean = s / n;
  d.stderr_mean = v.size() > 1 ? std::sqrt(std::max(0.0, s2 / n - d.mean * d.mean) / (n - 1)) : 0;
  std::sort(v.begin(), v.end());
  d.min = v.front();
  d.max = v.back();
  for (double p : {99.9, 99.0, 95.0, 90.0, 50.0, 10.0, 5.0, 1.0, 0.1}) {
    double at = p / 100.0 * (n - 1);
    size_t lo = size_t(std::floor(at));
    size_t hi = std::min(v.size() - 1, lo + 1);
    double f = at - double(lo);
    d.percentiles.push_back({p, v[lo] + (v[hi] - v[lo]) * f});
  }
  return d;
}

namespace {

// log-softmax of one row in double: out[v] = l[v] − max − log Σ exp(l − max).
void log_softmax(const float* l, int64_t n, std::vector<double>& out) {
  out.resize(size_t(n));
  double mx = -INFINITY;
  for (int64_t i = 0; i < n; ++i) mx = std::max(mx, double(l[i]));
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(double(l[i]) - mx);
  double lse = mx + std::log(sum);
  for (int64_t i = 0; i < n; ++i) out[size_t(i)] = double(l[i]) - lse;
}

int64_t argmax(const float* l, int64_t n) { return int64_t(std::max_element(l, l + n) - l); }

}  // namespace

PplResult run_perplexity(Session& model, Session* base, const std::vector<int32_t>& tokens, const PplOptions& opt,
                         const std::function<void(int64_t)>& progress) {
  PplResult r;
  r.ctx = opt.ctx;
  r.tokens = int64_t(tokens.size());
  if (opt.ctx < 4) fail_input("--ctx must be at least 4");
  if (r.tokens < 2 * opt.ctx)
    fail_input("the text has " + std::to_string(r.tokens) + " tokens; at least 2·ctx = " + std::to_string(2 * opt.ctx) +
               " are needed");
  const int64_t V = model.model().cfg.vocab;
  if (base && base->model().cfg.vocab != V)
    fail_input("the base model's vocab_size (" + std::to_string(base->model().cfg.vocab) + ") differs from the model's (" +
               std::to_string(V) + ")");
  r.chunks = r.tokens / opt.ctx;
  r.first = opt.all_positions ? 0 : opt.ctx / 2;
  r.has_base = base != nullptr;
  const int64_t count = opt.ctx - 1 - r.first;
  std::vector<double> nll, nll_base, kl, dp;
  int64_t same = 0;
  std::vector<float> lq, lb;
  std::vector<double> lsq, lsb;
  auto t0 = std::chrono::steady_clock::now();
  int64_t forwarded = 0;
  for (int64_t c = 0; c < r.chunks; ++c) {
    std::vector<int32_t> chunk(tokens.begin() + c * opt.ctx, tokens.begin() + (c + 1) * opt.ctx);
    if (opt.bos >= 0) chunk[0] = opt.bos;
    // Positions 0 … ctx−2 are forwarded; the last token is only a target.
    model.truncate(0);
    model.forward(chunk.data(), opt.ctx - 1, count, lq);
    forwarded += opt.ctx - 1;
    if (base) {
      base->truncate(0);
      base->forward(chunk.data(), opt.ctx - 1, count, lb);
      forwarded += opt.ctx - 1;
    }
    for (int64_t i = 0; i < count; ++i) {
      const int32_t next = chunk[size_t(r.first + i + 1)];
      log_softmax(lq.data() + i * V, V, lsq);
      nll.push_back(-lsq[size_t(next)]);
      if (!base) continue;
      log_softmax(lb.data() + i * V, V, lsb);
      nll_base.push_back(-lsb[size_t(next)]);
      double k = 0;
      for (int64_t v = 0; v < V; ++v) {
        double pb = std::exp(lsb[size_t(v)]);
        if (pb > 0) k += pb * (lsb[size_t(v)] - lsq[size_t(v)]);
      }
      kl.push_back(k);
      if (argmax(lq.data() + i * V, V) == argmax(lb.data() + i * V, V)) ++same;
      dp.push_back(std::exp(lsq[size_t(next)]) - std::exp(lsb[size_t(next)]));
    }
    if (progress) progress(base ? 2 * (opt.ctx - 1) : opt.ctx - 1);
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.tokens_per_s = r.seconds > 0 ? double(forwarded) / r.seconds : 0;
  r.scored = int64_t(nll.size());
  auto ppl_of = [&](const std::vector<double>& v, double& mean, double& ppl, double& err) {
    Distribution d = describe(v);
    mean = d.mean;
    ppl = std::exp(mean);
    err = ppl * d.stderr_mean;
  };
  ppl_of(nll, r.mean_nll, r.ppl, r.ppl_err);
  if (base) {
    ppl_of(nll_base, r.base_mean_nll, r.base_ppl, r.base_ppl_err);
    r.kl = describe(kl);
    r.same_top = double(same) / double(r.scored);
    double s = 0, s2 = 0;
    for (double x : dp) {
      s += x;
      s2 += x * x;
    }
    r.dp_mean = s / double(dp.size());
    r.dp_rms = std::sqrt(s2 / double(dp.size()));
    std::vector<double> diff(nll.size());
    for (size_t i = 0; i < nll.size(); ++i) diff[i] = nll[i] - nll_base[i];
    Distribution dd = describe(diff);
    r.ln_ratio = dd.mean;
    r.ln_ratio_err = dd.stderr_mean;
    r.ppl_ratio = std::exp(dd.mean);
  }
  return r;
}

}  // namespace fp4z
