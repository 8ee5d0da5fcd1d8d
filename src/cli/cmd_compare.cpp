// `fp4z compare`: prints a per-layer and total table comparing NVFP4 checkpoints of one model.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "common/printable.h"
#include "pipeline/compare.h"

namespace fp4z::cli {

namespace {

std::string short_name(const std::string& s, size_t n) { return s.size() <= n ? s : "…" + s.substr(s.size() - (n - 1)); }

void print_cell(const CompareCell& c) {
  if (!c.quantized) {
    std::printf(" | %-29s", ("kept " + printable(c.kept_dtype)).c_str());
    return;
  }
  std::printf(" | %6.2f%% %9.3e %5.1f%% %5.1f%%", 100 * c.proxy, c.mse, 100 * c.zero_fraction, 100 * c.top_fraction);
}

}  // namespace

int cmd_compare(int argc, char** argv) {
  CLI::App app{"Compare NVFP4 checkpoints of one model layer by layer against the source weights:\n"
               "compression proxy (seed definition), weight MSE, zero-code and top-magnitude (|4|,|6|) fractions."};
  app.name("fp4z compare");
  std::string reference;
  std::vector<std::string> dirs;
  bool as_json = false;
  int threads = 0;
  app.add_option("--reference", reference, "source (unquantized) checkpoint")->required();
  app.add_option("checkpoints", dirs, "NVFP4 checkpoint directories")->required();
  app.add_flag("--json", as_json, "machine-readable output");
  app.add_option("--threads", threads, "worker threads (default: all cores)");
  FP4Z_PARSE_OR_RETURN(app, argc, argv);
  CompareResult r = compare_checkpoints(reference, dirs, threads);

  if (as_json) {
    auto cell_json = [](const CompareCell& c) {
      nlohmann::ordered_json j;
      j["quantized"] = c.quantized;
      if (!c.quantized) {
        j["kept_dtype"] = c.kept_dtype;
        return j;
      }
      j["proxy"] = c.proxy;
      j["mse"] = c.mse;
      j["zero_fraction"] = c.zero_fraction;
      j["top_magnitude_fraction"] = c.top_fraction;
      j["negative_zero_fraction"] = c.neg_zero_fraction;
      j["code_histogram"] = std::vector<uint64_t>(c.hist, c.hist + 16);
      return j;
    };
    nlohmann::ordered_json out;
    out["reference"] = reference;
    out["checkpoints"] = r.checkpoints;
    out["layers"] = nlohmann::ordered_json::array();
    for (const auto& row : r.rows) {
      nlohmann::ordered_json l{{"layer", row.layer}, {"shape", {row.rows, row.cols}}, {"results", nlohmann::ordered_json::array()}};
      for (const auto& c : row.cells) l["results"].push_back(cell_json(c));
      out["layers"].push_back(l);
    }
    out["total"] = nlohmann::ordered_json::array();
    for (const auto& c : r.totals) out["total"].push_back(cell_json(c));
    std::printf("%s\n", out.dump(2).c_str());
    return 0;
  }

  std::printf("%-36s %9s", "layer", "shape");
  for (const auto& d : r.checkpoints) std::printf(" | %-29s", short_name(d, 29).c_str());
  std::printf("\n%-36s %9s", "", "");
  for (size_t k = 0; k < r.checkpoints.size(); ++k) std::printf(" | %7s %9s %6s %6s", "proxy", "mse", "zeros", "|4,6|");
  std::printf("\n");
  for (const auto& row : r.rows) {
    char shape[32];
    std::snprintf(shape, sizeof shape, "%lldx%lld", (long long)row.rows, (long long)row.cols);
    std::printf("%-36s %9s", short_name(printable(row.layer), 36).c_str(), shape);
    for (const auto& c : row.cells) print_cell(c);
    std::printf("\n");
  }
  std::printf("%-36s %9s", "TOTAL (quantized layers, weighted)", "");
  for (const auto& c : r.totals) print_cell(c);
  std::printf("\n");
  for (size_t k = 0; k < r.checkpoints.size(); ++k) {
    const CompareCell& t = r.totals[k];
    if (!t.quantized) continue;
    uint64_t n = 0;
    for (uint64_t h : t.hist) n += h;
    std::printf("codes %-29s", short_name(r.checkpoints[k], 29).c_str());
    const char* mags[8] = {"0", ".5", "1", "1.5", "2", "3", "4", "6"};
    for (int m = 0; m < 8; ++m) std::printf(" %s:%4.1f%%", mags[m], 100.0 * double(t.hist[m] + t.hist[m + 8]) / double(n));
    std::printf("  (-0: %.1f%%)\n", 100 * t.neg_zero_fraction);
  }
  return 0;
}

}  // namespace fp4z::cli
