// Atomic publication of outputs: write under a temporary name next to the target, rename when done.
#pragma once
#include <string>

namespace fp4z {

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

// Removes a file or directory tree; ignores errors (best-effort cleanup).
void remove_tree(const std::string& path);

}  // namespace fp4z
