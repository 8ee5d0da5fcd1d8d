// Atomic publication of outputs: write under a temporary name next to the target, rename when done.
#pragma once
#include <cstdint>
#include <string>

namespace fp4z {

// Both kinds register their staging path with common/signals.h, so an interruption removes it, and
// commit() refuses (exit 2) when a mapped input was truncated while it was read. Replacement is
// atomic: see docs/guarantees.md.
// A directory that becomes `target` only when commit() is called. If the object is destroyed
// without commit (error, exception), the temporary directory and everything in it is removed,
// so a failed run never leaves a partial output behind.
struct StagedDir {
  std::string target;
  std::string temp;  // the directory to write into
  bool force = false;
  bool committed = false;

  StagedDir(const std::string& target_dir, bool force_overwrite);
  StagedDir(const StagedDir&) = delete;
  StagedDir& operator=(const StagedDir&) = delete;
  ~StagedDir();
  std::string path(const std::string& name) const { return temp + "/" + name; }
  void commit();
};

// Same contract for a single output file.
struct StagedFile {
  std::string target;
  std::string temp;
  bool force = false;
  bool committed = false;

  StagedFile(const std::string& target_file, bool force_overwrite);
  StagedFile(const StagedFile&) = delete;
  StagedFile& operator=(const StagedFile&) = delete;
  ~StagedFile();
  void commit();
};

// Throws (exit 2) if `dir` exists and is a non-empty directory (or a file) and !force.
void require_output_dir_free(const std::string& dir, bool force);

// Throws Error (exit 3, one line, nothing created) when the file system that will hold `target`
// has fewer than `bytes` bytes available to this user (statvfs f_bavail). The old output, if any,
// stays until the new one is complete, so its space does not count as free.
void require_free_space(const std::string& target, uint64_t bytes);

// Removes the staging leftovers of dead processes next to `target` (".<name>.tmp-<pid>-*"; an
// ".old-<pid>-*" copy goes back to `target` when nothing is there). Called by both constructors.
void remove_stale_staging(const std::string& target);

// Removes a file or directory tree; ignores errors (best-effort cleanup).
void remove_tree(const std::string& path);

}  // namespace fp4z
