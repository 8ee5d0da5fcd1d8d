// `fp4z eval ppl` (perplexity, KL divergence vs a base), `fp4z eval mmlu` and `fp4z eval logits`: options and reports.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "common/parallel.h"
#include "common/path_guard.h"
#include "common/progress.h"
#include "eval/mmlu.h"
#include "eval/ppl.h"
#include "model/forward.h"
#include "model/model.h"
#include "text/tokenizer.h"
#include "common/file_text.h"
#include "format/npy.h"

namespace fp4z::cli {
namespace {


// What the model's linears are stored as, for reports.
std::string weight_description(const Model& m) {
  if (m.quant_format != "none") return "nvfp4 (" + m.quant_format + ")";
  const Linear& l = m.layers.empty() ? m.lm_head : m.layers[0].q;
  return l.kind == WeightKind::kBF16 ? "bf16" : "f32";
}

std::unique_ptr<Tokenizer> tokenizer_for(const std::string& model_dir, const std::string& base_dir) {
  try {
    return load_tokenizer(model_dir);
  } catch (const Error&) {
    if (base_dir.empty()) throw;
    return load_tokenizer(base_dir);
  }
}

struct CommonOptions {
  std::string model;
  int threads = 0;
  bool act_quant = false, json = false, quiet = false, kv16 = false, bf16_act = false, int8_act = false, exact = false;
};

void add_common(CLI::App* sub, CommonOptions& o) {
  sub->add_option("--model", o.model, "checkpoint directory")->required();
  sub->add_option("--threads", o.threads, "worker threads (0 = all cores)")->check(CLI::Range(0, 1024));
  sub->add_flag("--act-quant", o.act_quant, "W4A4 emulation on the model (needs input_global_scale)");
  sub->add_flag("--kv16", o.kv16, "keep the KV cache in BF16 (half the memory; not bit-faithful to f32)");
  sub->add_flag("--exact", o.exact, "f32 activations in every kernel (the reference); default: NVFP4 linears take int8 activations per 16 features");
  sub->add_flag("--bf16-act", o.bf16_act, "with --exact: BF16 activations in the AVX-512 prompt kernels (not exact f32)");
  sub->add_flag("--int8-act", o.int8_act, "int8 activations in the NVFP4 linears (the default; kept for scripts)");
  sub->add_flag("--json", o.json, "print one JSON object");
  sub->add_flag("-q,--quiet", o.quiet, "no progress line");
}

// Also repacks the model's NVFP4 weights when the int8 path is on.
EngineOptions engine_options(const CommonOptions& o, Model& m) {
  if (o.act_quant && !m.has_input_global_scale)
    fail_input(o.model + ": --act-quant needs input_global_scale (or input_scale) on every NVFP4 linear");
  EngineOptions e;
  e.threads = resolve_threads(o.threads);
  e.isa = kernel_isa();
  e.act_quant = o.act_quant;
  e.kv_bf16 = o.kv16;
  e.bf16_act = o.bf16_act;
  if (o.exact && o.int8_act) fail_input("give either --exact or --int8-act, not both");
  e.int8_act = !o.exact && !o.bf16_act;
  if (e.int8_act) prepare_int8_weights(m, e.threads);
  return e;
}

int run_ppl(const CommonOptions& co, const std::string& text_path, int64_t ctx, const std::string& base_dir, int64_t max_chunks,
            bool all_positions) {
  auto model = load_model(co.model);
  std::unique_ptr<Model> base_model;
  if (!base_dir.empty()) base_model = load_model(base_dir);
  auto tok = tokenizer_for(co.model, base_dir);
  std::string raw = read_whole_file(text_path), text;
  text.reserve(raw.size());
  int64_t crlf = 0;
  for (size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] == '\r' && i + 1 < raw.size() && raw[i + 1] == '\n') {
      ++crlf;
      continue;
    }
    text += raw[i];
  }
  std::vector<int32_t> tokens;
  PplOptions po;
  po.ctx = ctx;
  po.bos = tok->bos_id();
  po.all_positions = all_positions;
  if (po.bos >= 0) tokens.push_back(po.bos);
  auto enc = tok->encode(text);
  tokens.insert(tokens.end(), enc.begin(), enc.end());
  const int64_t text_tokens = int64_t(tokens.size());
  if (max_chunks > 0 && int64_t(tokens.size()) > max_chunks * ctx && max_chunks >= 2)
    tokens.resize(size_t(max_chunks * ctx));
  else if (max_chunks == 1)
    fail_input("--chunks must be 0 (all) or at least 2");
  EngineOptions eo = engine_options(co, *model);
  Session s(*model, eo);
  std::unique_ptr<Session> bs;
  if (base_model) {
    EngineOptions be = eo;
    be.act_quant = false;
    be.bf16_act = false;
    be.int8_act = false;  // the base is the reference
    bs = std::make_unique<Session>(*base_model, be);
  }
  int64_t chunks = int64_t(tokens.size()) / ctx;
  Progress prog("eval ppl", uint64_t(chunks), uint64_t(chunks * (ctx - 1) * (bs ? 2 : 1)), co.quiet || co.json);
  prog.unit = "tok";
  PplResult r = run_perplexity(s, bs.get(), tokens, po, [&](int64_t t) { prog.advance(1, uint64_t(t)); });
  prog.finish();

  const std::string scored_desc = std::string(all_positions ? "ALL-POSITIONS MODE (not the llama-perplexity protocol): " : "") +
                                  "positions " + std::to_string(r.first) + ".." + std::to_string(ctx - 2) +
                                  " of each chunk predict the next token (" + std::to_string(ctx - 1 - r.first) +
                                  " per chunk); chunks start from an empty cache" +
                                  (po.bos >= 0 ? ", first token replaced by BOS" : "");
  if (co.json) {
    nlohmann::ordered_json j;
    j["model"] = co.model;
    j["weights"] = weight_description(*model);
    j["text"] = text_path;
    j["normalisation"] = "CRLF -> LF (" + std::to_string(crlf) + " line ends)";
    j["text_tokens"] = text_tokens;
    j["tokens"] = r.tokens;
    j["ctx"] = r.ctx;
    j["chunks"] = r.chunks;
    j["scored"] = r.scored;
    j["scored_positions"] = scored_desc;
    j["all_positions"] = all_positions;
    j["bos"] = po.bos;
    j["act_quant"] = co.act_quant;
    j["ppl"] = r.ppl;
    j["ppl_stderr"] = r.ppl_err;
    j["mean_nll"] = r.mean_nll;
    if (r.has_base) {
      j["base"] = base_dir;
      j["base_weights"] = weight_description(*base_model);
      j["base_ppl"] = r.base_ppl;
      j["base_ppl_stderr"] = r.base_ppl_err;
      nlohmann::ordered_json kl;
      kl["mean"] = r.kl.mean;
      kl["mean_stderr"] = r.kl.stderr_mean;
      kl["max"] = r.kl.max;
      for (auto& [p, v] : r.kl.percentiles) {
        char key[16];
        std::snprintf(key, sizeof key, "p%g", p);
        kl[key] = v;
      }
      kl["median"] = r.kl.percentiles[4].second;
      kl["min"] = r.kl.min;
      kl["note"] = "KL(base || model) per scored position over the full vocabulary, double precision, no floor";
      j["kl_divergence"] = kl;
      j["same_top_p"] = r.same_top;
      j["delta_p_mean"] = r.dp_mean;
      j["delta_p_rms"] = r.dp_rms;
      j["ln_ppl_ratio"] = r.ln_ratio;
      j["ln_ppl_ratio_stderr"] = r.ln_ratio_err;
      j["ppl_ratio"] = r.ppl_ratio;
    }
    j["seconds"] = r.seconds;
    j["tokens_per_s"] = r.tokens_per_s;
    j["threads"] = eo.threads;
    j["isa"] = isa_name(eo.isa);
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  std::printf("model %s (%s %s), text %s (CRLF -> LF: %lld line ends), %lld tokens, %lld used\n", co.model.c_str(),
              model->cfg.architecture.c_str(), weight_description(*model).c_str(), text_path.c_str(), (long long)crlf,
              (long long)text_tokens, (long long)r.tokens);
  std::printf("ctx %lld, %lld chunks, %lld scored tokens: %s\n", (long long)ctx, (long long)r.chunks, (long long)r.scored,
              scored_desc.c_str());
  std::printf("PPL = %.4f +/- %.4f\n", r.ppl, r.ppl_err);
  if (r.has_base) {
    std::printf("base %s (%s): PPL = %.4f +/- %.4f\n", base_dir.c_str(), weight_description(*base_model).c_str(), r.base_ppl,
                r.base_ppl_err);
    std::printf("ln(PPL/PPL_base) = %.6f +/- %.6f, PPL ratio %.5f\n", r.ln_ratio, r.ln_ratio_err, r.ppl_ratio);
    std::printf("KL(base||model): mean %.6f +/- %.6f, max %.6f", r.kl.mean, r.kl.stderr_mean, r.kl.max);
    for (auto& [p, v] : r.kl.percentiles) std::printf(", p%g %.6f", p, v);
    std::printf(", min %.6f\n", r.kl.min);
    std::printf("same top p: %.3f %%, delta p: mean %.5f, rms %.5f\n", 100.0 * r.same_top, r.dp_mean, r.dp_rms);
    std::printf("(both models in one process, chunk by chunk, double precision, no log-prob floor)\n");
  }
  std::printf("%.1f s, %.1f tok/s forwarded (%d threads, %s)\n", r.seconds, r.tokens_per_s, eo.threads, isa_name(eo.isa));
  return 0;
}

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::string cur;
  for (size_t i = 0; i <= s.size(); ++i) {
    if (i == s.size() || s[i] == ',') {
      if (!cur.empty()) out.push_back(cur);
      cur.clear();
    } else if (s[i] != ' ') {
      cur += s[i];
    }
  }
  return out;
}

// One --log-samples line: lm-eval's per-document record (doc, prompt, the four choices' logits, prediction, gold).
nlohmann::ordered_json sample_json(const MmluSample& x) {
  nlohmann::ordered_json j;
  j["subject"] = x.subject;
  j["doc_id"] = x.index;
  j["shots"] = x.prompt->shots;
  j["prompt"] = x.prompt->text;
  j["prompt_ids"] = x.prompt->ids;
  j["choices"] = {"A", "B", "C", "D"};
  j["choice_logits"] = x.choice_logits;
  j["prediction"] = x.prediction;
  j["gold"] = x.gold;
  j["acc"] = x.prediction == x.gold ? 1.0 : 0.0;
  return j;
}

int run_mmlu_cmd(const CommonOptions& co, const std::string& data, const std::string& subjects, int64_t limit, bool limit_given,
                 int shots, int64_t max_seq_len, bool hendrycks, const std::string& log_samples, bool force) {
  if (!log_samples.empty()) require_output_apart(log_samples, {co.model, data}, "--log-samples");
  auto model = load_model(co.model);
  auto tok = load_tokenizer(co.model);
  MmluOptions mo;
  mo.shots = shots;
  mo.max_seq_len = max_seq_len;
  mo.hendrycks_spacing = hendrycks;
  // No list and no limit: the published sample (8 subjects x 5). A limit without a list runs every
  // subject alphabetically, like the reference script.
  if (subjects.empty()) {
    mo.subjects = limit_given ? mmlu_all_subjects(data) : mmlu_default_subjects();
    mo.limit_per_subject = limit_given ? limit : 5;
  } else {
    mo.subjects = subjects == "all" ? mmlu_all_subjects(data) : split_list(subjects);
    mo.limit_per_subject = limit_given ? limit : 5;
  }
  EngineOptions eo = engine_options(co, *model);
  Session s(*model, eo);
  std::unique_ptr<Progress> prog;
  std::string samples;  // JSON lines, published atomically when the run completes
  if (!log_samples.empty() && !force && std::filesystem::exists(std::filesystem::symlink_status(log_samples)))
    fail_input(log_samples + ": output already exists (use --force to replace it)");
  MmluResult r = run_mmlu(
      s, *tok, data, mo,
      [&](int64_t questions, int64_t tokens) {
        prog = std::make_unique<Progress>("eval mmlu", uint64_t(questions), uint64_t(tokens), co.quiet || co.json);
        prog->unit = "tok";
      },
      [&](int64_t q, int64_t t) { prog->advance(uint64_t(q), uint64_t(t)); },
      [&](const MmluSample& x) {
        if (!log_samples.empty())
          samples += sample_json(x).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
      });
  if (prog) prog->finish();
  if (!log_samples.empty()) write_whole_file(log_samples, samples, force);
  if (co.json) {
    nlohmann::ordered_json j;
    j["model_path"] = co.model;
    j["accuracy"] = r.accuracy;
    j["accuracy_stderr"] = r.stderr_acc;
    j["correct"] = r.correct;
    j["num_subjects"] = r.per_subject.size();
    j["num_examples"] = r.total;
    j["batch_size"] = 1;
    j["dtype"] = weight_description(*model);
    j["act_quant"] = co.act_quant;
    j["ntrain"] = shots;
    j["max_seq_len"] = max_seq_len;
    j["limit_per_subject"] = mo.limit_per_subject;
    j["max_subjects"] = nullptr;
    j["subject_spacing"] = hendrycks ? "hendrycks" : "single";
    j["subjects"] = mo.subjects;
    nlohmann::ordered_json per = nlohmann::ordered_json::object();
    for (const auto& p : r.per_subject)
      per[p.subject] = {{"correct", p.correct}, {"total", p.total},
                        {"accuracy", p.total ? double(p.correct) / double(p.total) : 0.0}};
    j["per_subject"] = per;
    j["predictions"] = r.predictions;
    j["tokens_forwarded"] = r.tokens_forwarded;
    j["tokens_reused"] = r.tokens_reused;
    j["seconds"] = r.seconds;
    j["tokens_per_s"] = r.seconds > 0 ? double(r.tokens_forwarded) / r.seconds : 0;
    j["threads"] = eo.threads;
    j["isa"] = isa_name(eo.isa);
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  for (const auto& p : r.per_subject)
    std::printf("%-40s %3lld/%-4lld %.3f\n", p.subject.c_str(), (long long)p.correct, (long long)p.total,
                p.total ? double(p.correct) / double(p.total) : 0.0);
  std::printf("accuracy %lld/%lld = %.4f +/- %.4f (%d-shot, %zu subjects, %s)\n", (long long)r.correct, (long long)r.total,
              r.accuracy, r.stderr_acc, shots, r.per_subject.size(), weight_description(*model).c_str());
  std::printf("%.1f s, %lld tokens forwarded (%lld reused from the cache), %.1f tok/s\n", r.seconds,
              (long long)r.tokens_forwarded, (long long)r.tokens_reused,
              r.seconds > 0 ? double(r.tokens_forwarded) / r.seconds : 0.0);
  return 0;
}

// Logits of every position of one token sequence, as a float32 .npy [tokens, vocab].
int run_logits_cmd(const CommonOptions& co, const std::string& ids_text, const std::string& out, bool force) {
  require_output_apart(out, {co.model}, "-o");
  auto model = load_model(co.model);
  std::vector<int32_t> ids = parse_token_ids(ids_text, "--ids");
  if (ids.empty()) fail_input("--ids: no token ids");
  const int64_t V = model->cfg.vocab;
  for (int32_t id : ids)
    if (id < 0 || id >= V) fail_input("--ids: token id " + std::to_string(id) + " is outside the vocabulary (" + std::to_string(V) + ")");
  EngineOptions eo = engine_options(co, *model);
  Session s(*model, eo);
  std::vector<float> logits;
  s.forward(ids.data(), int64_t(ids.size()), int64_t(ids.size()), logits);
  write_whole_file(out, npy_f32({int64_t(ids.size()), V}, logits.data()), force);
  if (!co.quiet)
    std::fprintf(stderr, "fp4z eval logits: %zu positions x %lld logits -> %s\n", ids.size(), (long long)V, out.c_str());
  return 0;
}

}  // namespace

int cmd_eval(int argc, char** argv) {
  CLI::App app{"Evaluate a checkpoint: perplexity / KL divergence (ppl) or MMLU (mmlu)", "fp4z eval"};
  app.require_subcommand(1);
  CommonOptions ppl_o, mmlu_o, logits_o;
  auto* ppl = app.add_subcommand("ppl", "perplexity over non-overlapping windows; with --base also KL(base||model)");
  add_common(ppl, ppl_o);
  std::string text, base;
  int64_t ctx = 512, chunks = 0;
  bool all_positions = false;
  ppl->add_option("--text", text, "text file (CRLF is converted to LF)")->required();
  ppl->add_option("--ctx", ctx, "window length in tokens")->check(CLI::Range(int64_t(4), int64_t(1) << 20));
  ppl->add_option("--base", base, "base checkpoint for KL divergence, run in the same process");
  ppl->add_option("--chunks", chunks, "use only the first N windows (0 = all)")->check(CLI::Range(int64_t(0), int64_t(1) << 40));
  ppl->add_flag("--all-positions", all_positions,
                 "score every position 0..ctx-2 of each chunk (labelled; default scores the second half)");
  auto* mmlu = app.add_subcommand("mmlu", "MMLU accuracy with the published 5-shot protocol");
  add_common(mmlu, mmlu_o);
  std::string data, subjects;
  int64_t limit = 5;
  int shots = 5;
  int64_t max_seq_len = 4096;
  bool hendrycks = false;
  mmlu->add_option("--data", data, "MMLU directory with dev/ and test/ CSV files")->required();
  mmlu->add_option("--subjects", subjects, "comma-separated subjects, or 'all' (default: the published 8-subject sample)");
  auto* lim = mmlu->add_option("--limit-per-subject", limit, "first N test questions per subject (0 = all)")
                  ->check(CLI::Range(int64_t(0), int64_t(1) << 40));
  mmlu->add_option("--shots", shots, "few-shot examples (first dev rows)")->check(CLI::Range(0, 5));
  mmlu->add_option("--max-seq-len", max_seq_len, "drop shots while the prompt is longer")->check(CLI::Range(int64_t(1), int64_t(1) << 30));
  mmlu->add_flag("--hendrycks-spacing", hendrycks, "original script's header spacing (\"about  abstract algebra.\")");
  std::string log_samples;
  bool force = false;
  mmlu->add_option("--log-samples", log_samples,
                   "write one JSON line per question (subject, doc_id, prompt, prompt_ids, choice_logits, prediction, gold)");
  mmlu->add_flag("--force", force, "replace an existing --log-samples file");
  auto* logits = app.add_subcommand("logits", "logits of every position of one token sequence, as a float32 .npy [tokens, vocab]");
  add_common(logits, logits_o);
  std::string ids_text, logits_out;
  logits->add_option("--ids", ids_text, "token ids, e.g. 1,403,407")->required();
  logits->add_option("-o,--out", logits_out, "output .npy file")->required();
  logits->add_flag("--force", force, "replace an existing output");
  FP4Z_PARSE_OR_RETURN(app, argc, argv);
  if (ppl->parsed()) return run_ppl(ppl_o, text, ctx, base, chunks, all_positions);
  if (logits->parsed()) return run_logits_cmd(logits_o, ids_text, logits_out, force);
  return run_mmlu_cmd(mmlu_o, data, subjects, limit, lim->count() > 0, shots, max_seq_len, hendrycks, log_samples, force);
}

}  // namespace fp4z::cli
