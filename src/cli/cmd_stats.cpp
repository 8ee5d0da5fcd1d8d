// `fp4z stats`: argument parsing and printing of per-layer entropies, coded sizes and bits per weight.
#include <cstdio>
#include <string>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "pipeline/stats.h"

namespace fp4z::cli {

int cmd_stats(int argc, char** argv) {
  CLI::App app{"Per quantized layer and in total: the seed's compression proxy, order-0 entropies of the FP4 codes "
               "and FP8 scales, fp4z coded sizes, zstd -19 sizes, bits per weight, code histogram, and with "
               "--reference the MSE against the source weights."};
  app.name("fp4z stats");
  std::string dir;
  bool as_json = false;
  StatsOptions opt;
  app.add_option("dir", dir, "NVFP4 checkpoint directory")->required();
  app.add_option("--reference", opt.reference, "source checkpoint (F32/F16/BF16 weights) for the MSE column");
  app.add_flag("--json", as_json, "machine-readable report on stdout");
  app.add_flag("--no-zstd", [&](int64_t) { opt.zstd = false; }, "skip the (slow) zstd -19 comparison");
  app.add_option("--threads", opt.threads, "threads (0 = all cores)")->check(CLI::NonNegativeNumber);
  FP4Z_PARSE_OR_RETURN(app, argc, argv);
  StatsReport r = compute_stats(dir, opt);
  if (as_json) std::printf("%s\n", stats_json(r).dump(2).c_str());
  else std::fputs(stats_text(r).c_str(), stdout);
  return 0;
}

}  // namespace fp4z::cli
