// `fp4z sweep`: quantizes one model with absmax, seed alphas and rd targets, measures every point with
// the engine (perplexity, KL against the source, top-1) and the coder, and writes JSON, CSV and SVG.
#include "pipeline/rd_sweep.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "pipeline/stats.h"
#include "common/error.h"
#include "common/file_text.h"
#include "common/parallel.h"
#include "common/staged_output.h"
#include "eval/ppl.h"
#include "format/checkpoint.h"
#include "model/forward.h"
#include "model/model.h"
#include "pipeline/quantize.h"
#include "text/tokenizer.h"

namespace fs = std::filesystem;

namespace fp4z {

namespace {

using Clock = std::chrono::steady_clock;

std::string num(double v, const char* f = "%.6g") {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

void write_text_file(const std::string& path, const std::string& text) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f || std::fwrite(text.data(), 1, text.size(), f) != text.size() || std::fclose(f) != 0) fail_io(path + ": write failed");
}

// Axis mapping, linear or logarithmic.
struct Axis {
  double lo, hi;
  bool log;
  double px0, px1;
  double map(double v) const {
    double a = log ? std::log10(v) : v, l = log ? std::log10(lo) : lo, h = log ? std::log10(hi) : hi;
    return px0 + (a - l) / (h - l) * (px1 - px0);
  }
};

std::vector<double> log_ticks(double lo, double hi) {
  std::vector<double> t;
  for (int e = int(std::floor(std::log10(lo))); e <= int(std::ceil(std::log10(hi))); ++e)
    for (double m : {1.0, 2.0, 5.0}) {
      double v = m * std::pow(10.0, e);
      if (v >= lo && v <= hi) t.push_back(v);
    }
  return t;
}

const char* series_color(const std::string& s) {
  if (s == "absmax") return "#d62728";
  if (s == "seed") return "#1f77b4";
  if (s == "rd") return "#2ca02c";
  return "#9467bd";
}

const char* series_name(const std::string& s) {
  if (s == "absmax") return "absmax (compressed-tensors)";
  if (s == "seed") return "seed, uniform alpha (fused global scale)";
  if (s == "rd") return "rd, calibrated (GPTQ feedback)";
  return "rd, no calibration";
}

void panel(std::string& svg, const std::vector<SweepPoint>& pts, double x0, double y0, double w, double h, bool kl) {
  auto yv = [&](const SweepPoint& p) { return kl ? p.kl_mean : p.weight_mse; };
  double bx0 = 1e9, bx1 = -1e9, ylo = 1e300, yhi = 0;
  for (const auto& p : pts) {
    if (!(yv(p) > 0)) continue;
    bx0 = std::min(bx0, p.ideal_bits);
    bx1 = std::max(bx1, p.ideal_bits);
    ylo = std::min(ylo, yv(p));
    yhi = std::max(yhi, yv(p));
  }
  if (bx1 < bx0) return;
  Axis ax{std::floor((bx0 - 0.05) * 10) / 10, std::ceil((bx1 + 0.05) * 10) / 10, false, x0 + 60, x0 + w - 10};
  Axis ay{ylo / 1.25, yhi * 1.25, true, y0 + h - 40, y0 + 30};
  svg += "<rect x='" + num(ax.px0) + "' y='" + num(ay.px1) + "' width='" + num(ax.px1 - ax.px0) + "' height='" + num(ay.px0 - ay.px1) +
         "' fill='white' stroke='#444'/>\n";
  for (double t = ax.lo; t <= ax.hi + 1e-9; t += 0.1) {
    double x = ax.map(t);
    svg += "<line x1='" + num(x) + "' y1='" + num(ay.px1) + "' x2='" + num(x) + "' y2='" + num(ay.px0) + "' stroke='#eee'/>\n";
    svg += "<text x='" + num(x) + "' y='" + num(ay.px0 + 16) + "' font-size='11' text-anchor='middle'>" + num(t, "%.1f") + "</text>\n";
  }
  for (double t : log_ticks(ay.lo, ay.hi)) {
    double y = ay.map(t);
    svg += "<line x1='" + num(ax.px0) + "' y1='" + num(y) + "' x2='" + num(ax.px1) + "' y2='" + num(y) + "' stroke='#eee'/>\n";
    svg += "<text x='" + num(ax.px0 - 4) + "' y='" + num(y + 4) + "' font-size='11' text-anchor='end'>" + num(t, "%g") + "</text>\n";
  }
  svg += "<text x='" + num((ax.px0 + ax.px1) / 2) + "' y='" + num(y0 + h - 6) +
         "' font-size='12' text-anchor='middle'>bits per weight (ideal order-0: codes + scales/16)</text>\n";
  svg += "<text x='" + num(x0 + 14) + "' y='" + num((ay.px0 + ay.px1) / 2) + "' font-size='12' text-anchor='middle' transform='rotate(-90 " +
         num(x0 + 14) + " " + num((ay.px0 + ay.px1) / 2) + ")'>" + (kl ? "KL divergence vs source (mean, log)" : "weight MSE (log)") +
         "</text>\n";
  std::map<std::string, std::vector<const SweepPoint*>> by;
  for (const auto& p : pts)
    if (yv(p) > 0) by[p.series].push_back(&p);
  for (auto& [s, v] : by) {
    std::sort(v.begin(), v.end(), [](auto* a, auto* b) { return a->ideal_bits < b->ideal_bits; });
    std::string path;
    for (const auto* p : v) path += (path.empty() ? "M" : " L") + num(ax.map(p->ideal_bits)) + "," + num(ay.map(yv(*p)));
    if (v.size() > 1) svg += "<path d='" + path + "' fill='none' stroke='" + series_color(s) + "' stroke-width='2'/>\n";
    for (const auto* p : v) {
      svg += "<circle cx='" + num(ax.map(p->ideal_bits)) + "' cy='" + num(ay.map(yv(*p))) + "' r='" + (s == "absmax" ? "6" : "3.5") +
             "' fill='" + series_color(s) + "'><title>" + p->label + ": " + num(p->ideal_bits, "%.3f") + " bits, " +
             num(yv(*p), "%.4g") + "</title></circle>\n";
      if (s == "seed")
        svg += "<text x='" + num(ax.map(p->ideal_bits) + 5) + "' y='" + num(ay.map(yv(*p)) - 6) + "' font-size='10' fill='" +
               series_color(s) + "'>a" + num(p->param, "%g") + "</text>\n";
    }
  }
}

}  // namespace

std::string sweep_svg(const std::vector<SweepPoint>& pts, const std::string& title) {
  const double W = 1100, H = 470;
  std::string svg = "<?xml version='1.0' encoding='UTF-8'?>\n<svg xmlns='http://www.w3.org/2000/svg' width='" + num(W) + "' height='" +
                    num(H) + "' viewBox='0 0 " + num(W) + " " + num(H) + "' font-family='sans-serif'>\n";
  svg += "<rect width='100%' height='100%' fill='#fafafa'/>\n";
  svg += "<text x='" + num(W / 2) + "' y='20' font-size='15' text-anchor='middle'>" + title + "</text>\n";
  panel(svg, pts, 0, 20, W / 2, H - 70, true);
  panel(svg, pts, W / 2, 20, W / 2, H - 70, false);
  std::vector<std::string> seen;
  for (const auto& p : pts)
    if (std::find(seen.begin(), seen.end(), p.series) == seen.end()) seen.push_back(p.series);
  double x = 70;
  for (const auto& s : seen) {
    svg += "<circle cx='" + num(x) + "' cy='" + num(H - 18) + "' r='5' fill='" + series_color(s) + "'/>";
    svg += "<text x='" + num(x + 10) + "' y='" + num(H - 14) + "' font-size='12'>" + series_name(s) + "</text>\n";
    x += 40 + 6.6 * double(std::string(series_name(s)).size());
  }
  svg += "</svg>\n";
  return svg;
}

std::vector<SweepPoint> run_sweep(const SweepOptions& o) {
  for (double a : o.alphas)
    if (!(a > 0)) fail_input("--alphas: every alpha must be > 0");
  for (double t : o.rd_targets)
    if (!(t > 0 && t <= 4.5)) fail_input("--rd-targets: every target must be in (0, 4.5] bits per weight");
  if (o.ctx < 16) fail_input("--ctx must be at least 16");
  std::unique_ptr<Tokenizer> tok;
  try {
    tok = load_tokenizer(o.source);
  } catch (const Error& e) {
    fail_input(o.source + ": no tokenizer for the evaluation text (" + e.what() + ")");
  }
  std::string text = read_whole_file(o.eval_text);
  if (!o.calibration.empty()) (void)read_whole_file(o.calibration);  // fail early on a missing file
  std::vector<int32_t> tokens;
  const int32_t bos = tok->bos_id();
  if (bos >= 0) tokens.push_back(bos);
  auto enc = tok->encode(text);
  tokens.insert(tokens.end(), enc.begin(), enc.end());
  if (o.eval_chunks > 0 && int64_t(tokens.size()) > o.eval_chunks * o.ctx) tokens.resize(size_t(o.eval_chunks * o.ctx));
  if (int64_t(tokens.size()) < 2 * o.ctx)
    fail_input(o.eval_text + ": the evaluation text has " + std::to_string(tokens.size()) + " tokens, at least 2 x ctx = " +
               std::to_string(2 * o.ctx) + " are needed");

  StagedDir out(o.out, o.force);
  const std::string work = out.path("ckpt");
  fs::create_directories(work);
  auto base = load_model(o.source);
  EngineOptions eo;
  eo.threads = resolve_threads(o.threads);
  eo.isa = kernel_isa();
  Session base_session(*base, eo);
  PplOptions po;
  po.ctx = o.ctx;
  po.bos = bos;

  struct Plan {
    SweepPoint p;
    QuantizeOptions q;
  };
  std::vector<Plan> plan;
  auto add = [&](const std::string& series, const std::string& label, double param) {
    Plan pl;
    pl.p.series = series;
    pl.p.label = label;
    pl.p.param = param;
    pl.q.source = o.source;
    pl.q.out = work + "/" + label;
    pl.q.force = true;
    pl.q.quiet = true;
    pl.q.threads = o.threads;
    plan.push_back(pl);
    return &plan.back().q;
  };
  add("absmax", "absmax", 0);
  for (double a : o.alphas) {
    QuantizeOptions* q = add("seed", "seed-a" + num(a, "%g"), a);
    q->method = "seed";
    q->template_dir = work + "/absmax";
    q->alpha = float(a);
    q->fused_global_scale = true;
  }
  for (int cal = 1; cal >= (o.rd_uncalibrated ? 0 : 1); --cal) {
    if (cal && o.calibration.empty()) continue;
    for (double t : o.rd_targets) {
      QuantizeOptions* q = add(cal ? "rd" : "rd-nocal", std::string(cal ? "rd" : "rd-nocal") + "-" + num(t, "%g"), t);
      q->method = "rd";
      q->target_bits = t;
      if (cal) {
        q->calibration = o.calibration;
        q->calibration_seqs = o.calibration_seqs;
        q->calibration_ctx = o.ctx;
        q->sensitivity_seqs = o.sensitivity_seqs;
      }
    }
  }

  std::vector<SweepPoint> pts;
  auto t_all = Clock::now();
  for (size_t i = 0; i < plan.size(); ++i) {
    SweepPoint p = plan[i].p;
    auto t0 = Clock::now();
    QuantizeResult qr = quantize_checkpoint(plan[i].q);
    p.seconds_quantize = std::chrono::duration<double>(Clock::now() - t0).count();
    if (p.series.rfind("rd", 0) == 0) p.lambda = qr.rd_lambda;
    StatsOptions so;
    so.reference = o.source;
    so.zstd = false;
    so.threads = o.threads;
    StatsReport st = compute_stats(plan[i].q.out, so);
    p.ideal_bits = st.ideal_bits_per_weight;
    p.coded_bits = st.total.bits_per_weight;
    p.weight_mse = st.total.mse;
    {
      auto model = load_model(plan[i].q.out);
      Session s(*model, eo);
      PplResult r = run_perplexity(s, &base_session, tokens, po, {});
      p.ppl = r.ppl;
      p.kl_mean = r.kl.mean;
      for (const auto& [pc, v] : r.kl.percentiles)
        if (pc == 99.0) p.kl_p99 = v;
      p.top1 = r.same_top;
    }
    if (!o.keep_checkpoints && p.series != "absmax") fs::remove_all(plan[i].q.out);
    if (!o.quiet)
      std::fprintf(stderr, "[%2zu/%zu] %-14s %6.3f bits/weight (coded %6.3f)  KL %.4f  p99 %.3f  top-1 %.4f  ppl %.3f  mse %.3e  (%.1f s)\n",
                   i + 1, plan.size(), p.label.c_str(), p.ideal_bits, p.coded_bits, p.kl_mean, p.kl_p99, p.top1, p.ppl, p.weight_mse,
                   std::chrono::duration<double>(Clock::now() - t0).count());
    pts.push_back(p);
  }
  if (!o.keep_checkpoints) fs::remove_all(work);

  nlohmann::ordered_json j;
  j["source"] = o.source;
  j["calibration"] = o.calibration;
  j["eval_text"] = o.eval_text;
  j["eval_tokens"] = tokens.size();
  j["ctx"] = o.ctx;
  j["calibration_seqs"] = o.calibration_seqs;
  j["bits_per_weight"] = "ideal order-0: H(pooled FP4 codes, -0 as +0) + H(pooled FP8 scales)/16; coded = fp4z container coder, 1 MiB chunks";
  j["seconds"] = std::chrono::duration<double>(Clock::now() - t_all).count();
  std::string csv = "series,label,param,ideal_bits,coded_bits,weight_mse,ppl,kl_mean,kl_p99,top1,lambda,seconds_quantize\n";
  for (const auto& p : pts) {
    j["points"].push_back({{"series", p.series}, {"label", p.label}, {"param", p.param}, {"ideal_bits", p.ideal_bits},
                           {"coded_bits", p.coded_bits}, {"weight_mse", p.weight_mse}, {"ppl", p.ppl}, {"kl_mean", p.kl_mean},
                           {"kl_p99", p.kl_p99}, {"top1", p.top1}, {"lambda", p.lambda}, {"seconds_quantize", p.seconds_quantize}});
    csv += p.series + "," + p.label + "," + num(p.param) + "," + num(p.ideal_bits, "%.6f") + "," + num(p.coded_bits, "%.6f") + "," +
           num(p.weight_mse, "%.6e") + "," + num(p.ppl, "%.6f") + "," + num(p.kl_mean, "%.6f") + "," + num(p.kl_p99, "%.6f") + "," +
           num(p.top1, "%.6f") + "," + num(p.lambda, "%.6g") + "," + num(p.seconds_quantize, "%.3f") + "\n";
  }
  write_text_file(out.path("sweep.json"), j.dump(2) + "\n");
  write_text_file(out.path("sweep.csv"), csv);
  std::string title = "NVFP4 rate vs accuracy: " + fs::path(o.source).filename().string() + " (" + std::to_string(tokens.size()) +
                      " evaluation tokens)";
  write_text_file(out.path("sweep.svg"), sweep_svg(pts, title));
  out.commit();
  return pts;
}

void replot_sweep(const std::string& dir) {
  const std::string path = dir + "/sweep.json";
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_whole_file(path));
  } catch (const nlohmann::json::exception& e) {
    fail_input(path + ": not a sweep JSON (" + e.what() + ")");
  }
  if (!j.contains("points") || !j["points"].is_array()) fail_input(path + ": no 'points' array");
  std::vector<SweepPoint> pts;
  try {
    for (const auto& q : j["points"]) {
      SweepPoint p;
      p.series = q.at("series");
      p.label = q.at("label");
      p.param = q.at("param");
      p.ideal_bits = q.at("ideal_bits");
      p.kl_mean = q.at("kl_mean");
      p.weight_mse = q.at("weight_mse");
      pts.push_back(p);
    }
  } catch (const nlohmann::json::exception& e) {
    fail_input(path + ": malformed point (" + e.what() + ")");
  }
  std::string title = "NVFP4 rate vs accuracy: " + fs::path(j.value("source", std::string("model"))).filename().string() + " (" +
                      std::to_string(j.value("eval_tokens", 0)) + " evaluation tokens)";
  StagedFile f(dir + "/sweep.svg", true);
  write_text_file(f.temp, sweep_svg(pts, title));
  f.commit();
}

}  // namespace fp4z
