// `fp4z compress`: argument parsing and the summary line for lossless .fp4z compression of a directory.
#include <cstdio>
#include <string>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "common/path_guard.h"
#include "codec/container.h"
#include "format/nvfp4_tensors.h"
#include "format/safetensors.h"

namespace fp4z::cli {

int cmd_compress(int argc, char** argv) {
  CLI::App app{"Losslessly compress a checkpoint directory (every file, recursively) into one .fp4z file. "
               "FP4 codes and FP8 scales are rANS-coded, BF16/F16/F32 tensors split into entropy-coded "
               "exponents and raw mantissas, everything else goes through zstd; see docs/format.md."};
  app.name("fp4z compress");
  std::string dir, out, chunk = "1MiB";
  codec::CompressOptions opt;
  opt.is_fp4_codes = is_packed_codes_tensor;
  app.add_option("dir", dir, "directory to compress")->required();
  app.add_option("-o,--output", out, "output .fp4z file")->required();
  app.add_option("--threads", opt.threads, "threads (0 = all cores)")->check(CLI::NonNegativeNumber);
  app.add_option("--zstd-level", opt.zstd_level, "zstd level for headers and other files (1-22)")->check(CLI::Range(1, 22));
  app.add_option("--chunk-size", chunk, "chunk size of coded tensors (64KiB..16MiB)");
  app.add_flag("--no-verify", [&](int64_t) { opt.verify = false; }, "skip decoding each coded chunk again before writing it");
  app.add_flag("--force", opt.force, "replace an existing output file");
  app.add_flag("-q,--quiet", opt.quiet, "no progress and no summary");
  FP4Z_PARSE_OR_RETURN(app, argc, argv);
  opt.coded_chunk = parse_size(chunk);
  if (opt.coded_chunk < (64u << 10) || opt.coded_chunk > (16u << 20)) fail_input("--chunk-size must be within 64KiB..16MiB");
  require_output_apart(out, {dir}, "-o");
  codec::CompressSummary s = codec::compress_directory(dir, out, opt);
  if (!opt.quiet) {
    std::printf("%s: %llu files, %llu -> %llu bytes (%.2f%%), %llu chunks, %.1f s (%.0f MB/s)\n", out.c_str(),
                (unsigned long long)s.files, (unsigned long long)s.input_bytes, (unsigned long long)s.container_bytes,
                s.input_bytes ? 100.0 * double(s.container_bytes) / double(s.input_bytes) : 0.0,
                (unsigned long long)s.chunks, s.seconds, s.seconds > 0 ? double(s.input_bytes) / s.seconds / 1e6 : 0.0);
    for (int r = 0; r < 4; ++r) {
      if (!s.raw[r]) continue;
      std::printf("  %-10s %14llu -> %14llu bytes (%.2f%%)\n", codec::role_name(codec::Role(r)),
                  (unsigned long long)s.raw[r], (unsigned long long)s.stored[r], 100.0 * double(s.stored[r]) / double(s.raw[r]));
    }
  }
  return 0;
}

}  // namespace fp4z::cli
