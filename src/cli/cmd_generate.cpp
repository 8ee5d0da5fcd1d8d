// `fp4z generate`: greedy (or temperature) sampling from a checkpoint, streaming the decoded text.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <random>
#include <string>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "common/parallel.h"
#include "model/forward.h"
#include "model/model.h"
#include "text/tokenizer.h"

namespace fp4z::cli {
namespace {


bool ends_incomplete(const std::string& s) {  // decode() writes U+FFFD for a cut UTF-8 sequence
  return s.size() >= 3 && s.compare(s.size() - 3, 3, "\xEF\xBF\xBD") == 0;
}

}  // namespace

int cmd_generate(int argc, char** argv) {
  CLI::App app{"Generate text with a checkpoint (greedy by default; stops at EOS)", "fp4z generate"};
  std::string model_dir, prompt, prompt_ids;
  int64_t n = 256;
  double temperature = 0.0;
  uint64_t seed = 0;
  int threads = 0;
  bool act_quant = false, as_json = false, quiet = false, kv16 = false, bf16_act = false, int8_act = false, exact = false;
  app.add_option("--model", model_dir, "checkpoint directory (config.json, safetensors, tokenizer.json)")->required();
  app.add_option("--prompt", prompt, "prompt text (BOS is prepended when the tokenizer uses one)");
  app.add_option("--prompt-ids", prompt_ids, "prompt as comma-separated token ids instead of text");
  app.add_option("-n,--tokens", n, "maximum number of tokens to generate")->check(CLI::Range(int64_t(0), int64_t(1) << 30));
  app.add_option("--temperature", temperature, "0 = greedy (first maximum on ties); > 0 samples softmax(logits/T)")
      ->check(CLI::Range(0.0, 100.0));
  app.add_option("--seed", seed, "random seed for sampling");
  app.add_option("--threads", threads, "worker threads (0 = all cores)")->check(CLI::Range(0, 1024));
  app.add_flag("--act-quant", act_quant, "W4A4 emulation: fake-quantize NVFP4 layer inputs (needs input_global_scale)");
  app.add_flag("--kv16", kv16, "keep the KV cache in BF16 (half the memory; not bit-faithful to f32)");
  app.add_flag("--exact", exact, "f32 activations in every kernel (the reference); default: NVFP4 linears take int8 activations per 16 features");
  app.add_flag("--bf16-act", bf16_act, "with --exact: BF16 activations in the AVX-512 prompt kernels (not exact f32)");
  app.add_flag("--int8-act", int8_act, "int8 activations in the NVFP4 linears (the default; kept for scripts)");
  app.add_flag("--json", as_json, "print one JSON object instead of streaming text");
  app.add_flag("-q,--quiet", quiet, "no statistics on stderr");
  FP4Z_PARSE_OR_RETURN(app, argc, argv);
  if (!prompt.empty() && !prompt_ids.empty()) fail_input("give either --prompt or --prompt-ids, not both");

  auto model = load_model(model_dir);
  if (act_quant && !model->has_input_global_scale)
    fail_input(model_dir + ": --act-quant needs input_global_scale (or input_scale) on every NVFP4 linear");
  std::unique_ptr<Tokenizer> tok;
  try {
    tok = load_tokenizer(model_dir);
  } catch (const Error&) {
    if (prompt_ids.empty()) throw;  // ids in, ids out works without a tokenizer
  }
  std::vector<int32_t> ids;
  int32_t bos = tok ? tok->bos_id() : -1;
  if (!prompt_ids.empty()) {
    ids = parse_token_ids(prompt_ids, "--prompt-ids");
  } else {
    if (bos >= 0) ids.push_back(bos);
    auto enc = tok->encode(prompt);
    ids.insert(ids.end(), enc.begin(), enc.end());
  }
  if (ids.empty()) fail_input("the prompt is empty and the tokenizer adds no BOS: give some prompt text");
  std::vector<int32_t> eos = model->cfg.eos;
  if (tok)
    for (int32_t e : tok->eos_ids()) eos.push_back(e);

  EngineOptions eo;
  eo.threads = resolve_threads(threads);
  eo.isa = kernel_isa();
  eo.act_quant = act_quant;
  eo.kv_bf16 = kv16;
  eo.bf16_act = bf16_act;
  if (exact && int8_act) fail_input("give either --exact or --int8-act, not both");
  eo.int8_act = !exact && !bf16_act;
  if (eo.int8_act) prepare_int8_weights(*model, eo.threads);
  Session s(*model, eo);
  std::vector<float> logits;
  auto t0 = std::chrono::steady_clock::now();
  s.forward(ids.data(), int64_t(ids.size()), 1, logits);
  auto t1 = std::chrono::steady_clock::now();
  std::mt19937_64 rng(seed);
  const int64_t V = model->cfg.vocab;
  std::vector<int32_t> out;
  std::string printed, stop = "length";
  for (int64_t i = 0; i < n; ++i) {
    int32_t next = 0;
    if (temperature <= 0.0) {
      next = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
    } else {
      double mx = *std::max_element(logits.begin(), logits.end());
      std::vector<double> p(static_cast<size_t>(V));
      double sum = 0;
      for (int64_t v = 0; v < V; ++v) sum += p[size_t(v)] = std::exp((double(logits[size_t(v)]) - mx) / temperature);
      double u = std::uniform_real_distribution<double>(0.0, sum)(rng), acc = 0;
      next = int32_t(V - 1);
      for (int64_t v = 0; v < V; ++v)
        if ((acc += p[size_t(v)]) > u) {
          next = int32_t(v);
          break;
        }
    }
    // run.c stops on BOS for llama2.c models; Hugging Face models stop on EOS.
    if (std::find(eos.begin(), eos.end(), next) != eos.end() || (bos >= 0 && next == bos)) {
      stop = "eos";
      break;
    }
    out.push_back(next);
    if (!as_json && tok) {
      std::string text = tok->decode(out);
      if (!ends_incomplete(text) && text.size() > printed.size() && text.compare(0, printed.size(), printed) == 0) {
        std::fwrite(text.data() + printed.size(), 1, text.size() - printed.size(), stdout);
        std::fflush(stdout);
        printed = text;
      }
    }
    if (i + 1 == n) break;
    s.forward(&next, 1, 1, logits);
  }
  auto t2 = std::chrono::steady_clock::now();
  double pp_s = std::chrono::duration<double>(t1 - t0).count();
  double tg_s = std::chrono::duration<double>(t2 - t1).count();
  double pp_rate = pp_s > 0 ? double(ids.size()) / pp_s : 0;
  double tg_rate = tg_s > 0 && !out.empty() ? double(out.size()) / tg_s : 0;
  std::string text = tok ? tok->decode(out) : "";
  if (as_json) {
    nlohmann::ordered_json j;
    j["model"] = model_dir;
    j["prompt_ids"] = ids;
    j["ids"] = out;
    if (tok) j["text"] = text;
    j["stop"] = stop;
    j["prompt_tokens"] = ids.size();
    j["generated_tokens"] = out.size();
    j["prompt_tokens_per_s"] = pp_rate;
    j["generation_tokens_per_s"] = tg_rate;
    j["threads"] = eo.threads;
    j["isa"] = isa_name(eo.isa);
    std::printf("%s\n", j.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace).c_str());
    return 0;
  }
  if (tok) {
    if (text.size() > printed.size() && text.compare(0, printed.size(), printed) == 0)
      std::fwrite(text.data() + printed.size(), 1, text.size() - printed.size(), stdout);
    else if (text != printed)
      std::fwrite(text.data(), 1, text.size(), stdout);  // decode was not prefix-stable: print it whole
    std::printf("\n");
  } else {
    for (size_t i = 0; i < out.size(); ++i) std::printf("%s%d", i ? " " : "", out[i]);
    std::printf("\n");
  }
  if (!quiet)
    std::fprintf(stderr, "[%zu prompt tokens %.1f tok/s, %zu generated %.2f tok/s, stop: %s, %d threads, %s]\n", ids.size(),
                 pp_rate, out.size(), tg_rate, stop.c_str(), eo.threads, isa_name(eo.isa));
  return 0;
}

}  // namespace fp4z::cli
