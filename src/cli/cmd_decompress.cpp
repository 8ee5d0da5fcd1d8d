// `fp4z decompress`: argument parsing and listing for restoring a directory or one tensor from .fp4z.
#include <cstdio>
#include <string>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "common/path_guard.h"
#include "common/printable.h"
#include "codec/container.h"
#include "common/parallel.h"

namespace fp4z::cli {

namespace {

std::string shape_text(const std::vector<uint64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? "," : "") + std::to_string(s[i]);
  return r + "]";
}

void print_list(const codec::Container& c) {
  const codec::ContainerIndex& idx = c.index;
  std::printf("fp4z format %u.%u, %zu entries, %zu chunks, %zu tensors\n", idx.version_major, idx.version_minor,
              idx.files.size(), idx.chunks.size(), idx.tensors.size());
  std::printf("%14s %14s %8s  %s\n", "bytes", "stored", "ratio", "path");
  for (const codec::FileEntry& f : idx.files) {
    if (f.is_dir) {
      std::printf("%14s %14s %8s  %s/\n", "-", "-", "-", printable(f.path).c_str());
      continue;
    }
    uint64_t stored = 0;
    for (uint64_t k = f.first_chunk; k < f.first_chunk + f.n_chunks; ++k) stored += idx.chunks[size_t(k)].payload_size;
    std::printf("%14llu %14llu %7.2f%%  %s\n", (unsigned long long)f.size, (unsigned long long)stored,
                f.size ? 100.0 * double(stored) / double(f.size) : 100.0, printable(f.path).c_str());
  }
  if (!idx.tensors.empty()) std::printf("\n%-10s %-8s %-20s %14s  %s\n", "role", "dtype", "shape", "bytes", "tensor");
  for (const codec::TensorEntry& t : idx.tensors)
    std::printf("%-10s %-8s %-20s %14llu  %s:%s\n", codec::role_name(t.role), printable(t.dtype).c_str(),
                shape_text(t.shape).c_str(), (unsigned long long)t.size, printable(idx.files[t.file].path).c_str(),
                printable(t.name).c_str());
}

}  // namespace

int cmd_decompress(int argc, char** argv) {
  CLI::App app{"Restore a directory from a .fp4z file byte for byte (every chunk checksummed before the output "
               "is published), extract one tensor's raw bytes (--tensor), list the contents (--list), or just "
               "verify every chunk (--test)."};
  app.name("fp4z decompress");
  std::string in, out, tensor;
  bool list = false, test = false, force = false, quiet = false;
  int threads = 0;
  app.add_option("file", in, ".fp4z file")->required();
  app.add_option("-o,--output", out, "output directory (or file with --tensor)");
  app.add_option("--tensor", tensor, "extract only this tensor (NAME or FILE:NAME) as raw bytes");
  app.add_flag("--list", list, "list files and tensors; write nothing");
  app.add_flag("--test", test, "decode and verify every chunk; write nothing");
  app.add_option("--threads", threads, "threads (0 = all cores)")->check(CLI::NonNegativeNumber);
  app.add_flag("--force", force, "replace an existing output");
  app.add_flag("-q,--quiet", quiet, "no progress");
  FP4Z_PARSE_OR_RETURN(app, argc, argv);
  codec::Container c = codec::open_container(in);
  if (list) {
    print_list(c);
    return 0;
  }
  if (test) {
    // The declared size first: what a restore would need, before the (long) verification.
    if (!quiet)
      std::printf("%s: declares %zu entries, %llu bytes\n", printable(in).c_str(), c.index.files.size(),
                  (unsigned long long)codec::declared_size(c.index));
    std::fflush(stdout);
    codec::verify_container(c, threads);
    if (!quiet) std::printf("%s: %zu chunks OK\n", in.c_str(), c.index.chunks.size());
    return 0;
  }
  if (out.empty()) fail_input("-o is required (or use --list / --test)");
  require_output_apart(out, {in}, "-o");
  if (!tensor.empty()) codec::extract_tensor(c, tensor, out, threads, force);
  else codec::decompress_to_dir(c, out, threads, force, quiet);
  return 0;
}

}  // namespace fp4z::cli
