// `fp4z check`: argument parsing and report printing for the NVFP4 checkpoint validator.
#include <cstdio>
#include <string>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "pipeline/check.h"

namespace fp4z::cli {

int cmd_check(int argc, char** argv) {
  CLI::App app{"Validate an NVFP4 checkpoint (compressed-tensors nvfp4-pack-quantized or ModelOpt) against what "
               "transformers and vLLM require. Exit 0: clean; 1: problems found; 2: unreadable input."};
  app.name("fp4z check");
  std::string dir;
  bool as_json = false;
  CheckOptions opt;
  app.add_option("dir", dir, "checkpoint directory")->required();
  app.add_flag("--json", as_json, "machine-readable report on stdout");
  app.add_option("--threads", opt.threads, "threads for the scale scans (0 = all cores)")->check(CLI::NonNegativeNumber);
  bool quiet = false;
  app.add_flag("-q,--quiet", quiet, "no progress line on stderr");
  FP4Z_PARSE_OR_RETURN(app, argc, argv);
  opt.quiet = quiet;
  CheckReport r = check_checkpoint(dir, opt);
  if (as_json) std::printf("%s\n", check_report_json(r).dump(2).c_str());
  else std::fputs(check_report_text(r).c_str(), stdout);
  return r.exit_code();
}

}  // namespace fp4z::cli
