// Perplexity over non-overlapping windows and KL divergence against a base model (llama-perplexity rules).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/forward.h"

namespace fp4z {

struct PplOptions {
  int64_t ctx = 512;
  int32_t bos = -1;  // replaces each chunk's first token when >= 0
  bool all_positions = false;  // score positions 0..ctx-2 instead of ctx/2..ctx-2 (labelled mode)
};

// Summary statistics of a set of per-position values.
struct Distribution {
  double mean = 0, stderr_mean = 0, min = 0, max = 0;
  // 99.9, 99, 95, 90, 50, 10, 5, 1, 0.1 (linear interpolation at p·(n−1) in the sorted values)
  std::vector<std::pair<double, double>> percentiles;
};
Distribution describe(std::vector<double> v);

struct PplResult {
  int64_t tokens = 0, chunks = 0, scored = 0, ctx = 0, first = 0;
  double mean_nll = 0, ppl = 0, ppl_err = 0;
  bool has_base = false;
  double base_mean_nll = 0, base_ppl = 0, base_ppl_err = 0;
  Distribution kl;
  double same_top = 0;  // fraction of positions with equal argmax
  double dp_mean = 0, dp_rms = 0;  // p_Q(correct) − p_base(correct)
  double ln_ratio = 0, ln_ratio_err = 0, ppl_ratio = 0;
  double seconds = 0, tokens_per_s = 0;  // forward throughput (tokens of every model run)
};

// `tokens` is the whole tokenized text (with a leading BOS when the tokenizer adds one).
// Chunk i = tokens[i·ctx, (i+1)·ctx); each starts from an empty KV cache; the logits at positions
// first = ctx/2 … ctx−2 are scored against the next token (ctx−1−first per chunk). `progress`
// is called after each chunk with the number of tokens forwarded.
PplResult run_perplexity(Session& model, Session* base, const std::vector<int32_t>& tokens, const PplOptions& opt,
                         const std::function<void(int64_t)>& progress);

}  // namespace fp4z
