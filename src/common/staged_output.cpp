// Atomic publication of outputs via temporary names and rename(2).
#include "common/staged_output.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <random>

#include "common/error.h"

namespace fs = std::filesystem;

namespace fp4z {
namespace {

std::string temp_sibling(const std::string& target, const char* tag) {
  fs::path t = fs::path(target).lexically_normal();
  if (t.filename().empty()) t = t.parent_path();
  std::random_device rd;
  char suffix[32];
  std::snprintf(suffix, sizeof suffix, ".%s-%d-%08x", tag, int(getpid()), unsigned(rd()));
  fs::path parent = t.parent_path();
  std::string name = "." + t.filename().string() + suffix;
  return parent.empty() ? name : (parent / name).string();
}

}  // namespace

void remove_tree(const std::string& path) {
  std::error_code ec;
  fs::remove_all(path, ec);
}

void require_output_dir_free(const std::string& dir, bool force) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) return;
  if (fs::is_directory(dir, ec) && fs::is_empty(dir, ec)) return;
  if (!force) fail_input(dir + ": output already exists and is not empty (use --force to replace it)");
}

StagedDir::StagedDir(const std::string& target_dir, bool force_overwrite) : target(target_dir), force(force_overwrite) {
  require_output_dir_free(target, force);
  std::error_code ec;
  fs::path parent = fs::path(target).lexically_normal().parent_path();
  if (!parent.empty() && !fs::is_directory(parent, ec))
    fail_input(target + ": parent directory does not exist");
  temp = temp_sibling(target, "tmp");
  if (!fs::create_directory(temp, ec)) fail_io(temp + ": cannot create temporary directory: " + ec.message());
}

StagedDir::~StagedDir() {
  if (!committed) remove_tree(temp);
}

void StagedDir::commit() {
  std::error_code ec;
  std::string old;
  if (fs::exists(target, ec)) {
    // Empty dirs are replaced silently; non-empty ones only with force (checked at construction).
    old = temp_sibling(target, "old");
    fs::rename(target, old, ec);
    if (ec) fail_io(target + ": cannot move existing output aside: " + ec.message());
  }
  fs::rename(temp, target, ec);
  if (ec) fail_io(target + ": cannot publish output: " + ec.message());
  committed = true;
  if (!old.empty()) remove_tree(old);
}

StagedFile::StagedFile(const std::string& target_file, bool force_overwrite) : target(target_file), force(force_overwrite) {
  std::error_code ec;
  if (fs::exists(target, ec) && !force) fail_input(target + ": output already exists (use --force to replace it)");
  if (fs::is_directory(target, ec)) fail_input(target + ": is a directory");
  temp = temp_sibling(target, "tmp");
}

StagedFile::~StagedFile() {
  if (!committed) {
    std::error_code ec;
    fs::remove(temp, ec);
  }
}

void StagedFile::commit() {
  std::error_code ec;
  fs::rename(temp, target, ec);
  if (ec) fail_io(target + ": cannot publish output: " + ec.message());
  committed = true;
}

}  // namespace fp4z
