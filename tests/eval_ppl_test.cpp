// Perplexity / KL divergence: scored positions and statistics recomputed independently from full
// per-chunk logits, KL of a model with itself, percentile interpolation, and the CLI on stories260K.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/error.h"
#include "eval/ppl.h"
#include "model/forward.h"
#include "model/model.h"
#include "test_util.h"

namespace fp4z {
namespace {

using fp4z::testing::kFixtures;
using fp4z::testing::TempDir;
const std::string kSrc = fp4z::testing::kSourceDir;
const std::string kOracle = "/usr/bin/python3 " + kSrc + "/tests/oracle_forward.py";


TEST(Ppl, PercentilesInterpolateLinearly) {
  std::vector<double> v;
  for (int i = 0; i <= 100; ++i) v.push_back(double(100 - i));  // 0..100, unsorted
  Distribution d = describe(v);
  EXPECT_DOUBLE_EQ(d.mean, 50.0);
  EXPECT_DOUBLE_EQ(d.min, 0.0);
  EXPECT_DOUBLE_EQ(d.max, 100.0);
  ASSERT_EQ(d.percentiles.size(), 9u);
  EXPECT_DOUBLE_EQ(d.percentiles[0].first, 99.9);
  EXPECT_NEAR(d.percentiles[0].second, 99.9, 1e-12);
  EXPECT_NEAR(d.percentiles[4].second, 50.0, 1e-12);
  EXPECT_NEAR(d.percentiles[8].second, 0.1, 1e-12);
  // stderr = sqrt(var/(n-1)) with the population variance
  double var = 0;
  for (double x : v) var += (x - 50) * (x - 50);
  var /= 101;
  EXPECT_NEAR(d.stderr_mean, std::sqrt(var / 100), 1e-12);
}

TEST(Ppl, MatchesDirectComputationAndKlAgainstBase) {
  TempDir tmp;
  ASSERT_EQ(std::system((kOracle + " make --arch llama --weights bf16 --out " + tmp.path + "/base").c_str()), 0);
  ASSERT_EQ(std::system((kOracle + " make --arch llama --weights ct --out " + tmp.path + "/q").c_str()), 0);
  auto base = load_model(tmp.path + "/base");
  auto q = load_model(tmp.path + "/q");
  const int64_t V = q->cfg.vocab, ctx = 16;
  std::vector<int32_t> tokens;
  uint32_t x = 12345;
  for (int i = 0; i < 3 * ctx + 5; ++i) {  // 3 chunks, remainder dropped
    x = x * 1103515245u + 12345u;
    tokens.push_back(int32_t((x >> 8) % uint32_t(V)));
  }
  EngineOptions eo;
  eo.isa = kernel_isa();
  eo.threads = 2;
  Session sq(*q, eo), sb(*base, eo);
  PplOptions po;
  po.ctx = ctx;
  po.bos = 1;
  PplResult r = run_perplexity(sq, &sb, tokens, po, nullptr);
  EXPECT_EQ(r.chunks, 3);
  EXPECT_EQ(r.first, 8);
  EXPECT_EQ(r.scored, 3 * (ctx - 1 - 8));
  // Independent recomputation: full logits of each chunk from fresh sessions.
  double sum = 0, klsum = 0;
  int n = 0, same = 0;
  for (int c = 0; c < 3; ++c) {
    std::vector<int32_t> chunk(tokens.begin() + c * ctx, tokens.begin() + (c + 1) * ctx);
    chunk[0] = 1;
    Session a(*q, eo), b(*base, eo);
    std::vector<float> la, lb;
    a.forward(chunk.data(), ctx, ctx, la);
    b.forward(chunk.data(), ctx, ctx, lb);
    for (int64_t pos = 8; pos <= ctx - 2; ++pos) {
      const float* pa = la.data() + pos * V;
      const float* pb = lb.data() + pos * V;
      double ma = *std::max_element(pa, pa + V), mb = *std::max_element(pb, pb + V), za = 0, zb = 0;
      for (int64_t v = 0; v < V; ++v) {
        za += std::exp(double(pa[v]) - ma);
        zb += std::exp(double(pb[v]) - mb);
      }
      int32_t next = chunk[size_t(pos + 1)];
      sum += -(double(pa[next]) - ma - std::log(za));
      double kl = 0;
      for (int64_t v = 0; v < V; ++v) {
        double lpa = double(pa[v]) - ma - std::log(za), lpb = double(pb[v]) - mb - std::log(zb);
        kl += std::exp(lpb) * (lpb - lpa);
      }
      klsum += kl;
      same += (std::max_element(pa, pa + V) - pa) == (std::max_element(pb, pb + V) - pb);
      ++n;
    }
  }
  EXPECT_NEAR(r.mean_nll, sum / n, 1e-4 * std::fabs(sum / n));
  EXPECT_NEAR(r.ppl, std::exp(sum / n), 1e-3 * std::exp(sum / n));
  EXPECT_NEAR(r.kl.mean, klsum / n, 1e-3 * klsum / n + 1e-9);
  EXPECT_GT(r.kl.mean, 0.0);
  EXPECT_NEAR(r.same_top, double(same) / n, 1e-12);
  EXPECT_NEAR(r.ppl_ratio, r.ppl / r.base_ppl, 1e-9 * r.ppl_ratio);
  // A model against itself: KL 0, same top 100 %.
  Session s1(*q, eo), s2(*q, eo);
  PplResult self = run_perplexity(s1, &s2, tokens, po, nullptr);
  EXPECT_NEAR(self.kl.mean, 0.0, 1e-9);
  EXPECT_DOUBLE_EQ(self.same_top, 1.0);
  // Too short a text is refused.
  std::vector<int32_t> short_text(tokens.begin(), tokens.begin() + 2 * ctx - 1);
  EXPECT_THROW(run_perplexity(sq, nullptr, short_text, po, nullptr), Error);
}

TEST(Ppl, CliOnStories260K) {
  TempDir tmp;
  std::string dir = tmp.path + "/stories";
  std::string cmd = std::string(FP4Z_BINARY) + " import-llama2c " + kFixtures + "/stories260K/stories260K.bin --tokenizer " +
                    kFixtures + "/stories260K/tok512.bin --out " + dir + " -q > /dev/null 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  fp4z::testing::CommandResult r = fp4z::testing::run_command(std::string(FP4Z_BINARY) + " eval ppl --model " + dir + " --text " +
                                                              kFixtures + "/eval/tinystories/tinystories_val.txt --chunks 4 --threads 2 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string& out = r.out;
  auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["chunks"], 4);
  EXPECT_EQ(j["scored"], 4 * 255);
  EXPECT_EQ(j["bos"], 1);
  double ppl = j["ppl"];
  EXPECT_GT(ppl, 2.5);  // training val loss 1.2968 -> 3.66 (all positions, different protocol)
  EXPECT_LT(ppl, 6.0);
}

}  // namespace
}  // namespace fp4z
