// Atomic publication of outputs via temporary names and rename(2) / renameat2(2).
#include "common/staged_output.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>

#include "common/error.h"
#include "common/mapped_file.h"
#include "common/signals.h"

namespace fs = std::filesystem;

namespace fp4z {
namespace {

// Staging names are ".<name>.<tag>-<pid>-<8 hex digits>" next to the target; the PID lets a later
// run tell the leftovers of a dead process from the work of a live one.
fs::path normal_target(const std::string& target) {
  fs::path t = fs::path(target).lexically_normal();
  if (t.filename().empty()) t = t.parent_path();
  return t;
}

std::string temp_sibling(const std::string& target, const char* tag) {
  fs::path t = normal_target(target);
  std::random_device rd;
  char suffix[48];
  std::snprintf(suffix, sizeof suffix, ".%s-%d-%08x", tag, int(getpid()), unsigned(rd()));
  fs::path parent = t.parent_path();
  std::string name = std::string(".").append(t.filename().string()).append(suffix);
  return parent.empty() ? name : (parent / name).string();
}

bool exists_no_follow(const std::string& path) {
  struct stat st{};
  return ::lstat(path.c_str(), &st) == 0;
}

// renameat2 without relying on a libc wrapper; returns -1 with errno set on failure (EINVAL or
// ENOSYS where the kernel or file system lacks the flag).
int rename_with_flags(const std::string& from, const std::string& to, unsigned flags) {
  return ::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), flags);
}

bool flag_unsupported(int e) { return e == EINVAL || e == ENOSYS || e == EOPNOTSUPP; }

[[noreturn]] void fail_appeared(const std::string& target) {
  fail_input(target + ": an output appeared there while this run was working; it was left untouched "
             "(use --force to replace it)");
}

// Places the finished staging directory at `target`. Without force only a missing target or an
// empty directory is replaced, decided by the kernel at the moment of the rename. With force the
// two are swapped atomically (RENAME_EXCHANGE), so the old output stays complete until the new one
// is in place, then the old one (now under the staging name) is removed.
void publish_dir(const std::string& temp, const std::string& target, bool force) {
  std::unique_lock<std::mutex> lock = lock_staging();
  if (!force) {
    if (::rename(temp.c_str(), target.c_str()) == 0) return;
    int e = errno;
    if (e == ENOTEMPTY || e == EEXIST || e == ENOTDIR || e == EISDIR) {
      // A symbolic link to an empty directory counts as free (as at start-up); it is replaced.
      std::error_code ec;
      bool empty_link_target = fs::is_symlink(fs::symlink_status(target, ec)) && fs::is_directory(target, ec) &&
                               fs::is_empty(target, ec);
      if (!empty_link_target) fail_appeared(target);
    } else {
      fail_io(target + ": cannot publish output: " + std::strerror(e));
    }
  }
  if (rename_with_flags(temp, target, RENAME_EXCHANGE) == 0) {
    lock.unlock();
    remove_tree(temp);  // the previous output, now under the staging name (still registered)
    return;
  }
  int e = errno;
  if (e == ENOENT && ::rename(temp.c_str(), target.c_str()) == 0) return;  // nothing there any more
  if (!flag_unsupported(e)) fail_io(target + ": cannot publish output: " + std::strerror(e));
  // Fallback where RENAME_EXCHANGE is unavailable (some network and FUSE file systems): move the old
  // output aside, move the new one in, put the old one back if that fails. A process killed between
  // the two renames leaves the old output under ".<name>.old-<pid>-..."; the next run to the same
  // target moves it back (remove_stale_staging).
  std::string old = temp_sibling(target, "old");
  if (::rename(target.c_str(), old.c_str()) != 0)
    fail_io(target + ": cannot move existing output aside: " + std::strerror(errno));
  if (::rename(temp.c_str(), target.c_str()) != 0) {
    int e2 = errno;
    ::rename(old.c_str(), target.c_str());
    fail_io(target + ": cannot publish output: " + std::strerror(e2));
  }
  lock.unlock();
  register_staging(old);
  remove_tree(old);
  unregister_staging(old);
}

// Places a finished staging file at `target`. Without force the kernel refuses if anything is there
// at that moment (RENAME_NOREPLACE, or link(2) where the flag is unsupported); with force a file or
// link at target is replaced atomically by rename(2), a directory never.
void publish_file(const std::string& temp, const std::string& target, bool force) {
  std::unique_lock<std::mutex> lock = lock_staging();
  if (force) {
    if (::rename(temp.c_str(), target.c_str()) == 0) return;
    int e = errno;
    if (e == EISDIR) fail_input(target + ": a directory appeared there while this run was working; left untouched");
    fail_io(target + ": cannot publish output: " + std::strerror(e));
  }
  if (rename_with_flags(temp, target, RENAME_NOREPLACE) == 0) return;
  int e = errno;
  if (e == EEXIST) fail_appeared(target);
  if (!flag_unsupported(e)) fail_io(target + ": cannot publish output: " + std::strerror(e));
  if (::link(temp.c_str(), target.c_str()) == 0) {
    ::unlink(temp.c_str());
    return;
  }
  e = errno;
  if (e == EEXIST) fail_appeared(target);
  // No hard links either (e.g. FAT, some FUSE): last check, then a plain rename (a small window).
  if (exists_no_follow(target)) fail_appeared(target);
  if (::rename(temp.c_str(), target.c_str()) != 0) fail_io(target + ": cannot publish output: " + std::strerror(errno));
}

// Every file of a mapped input must have stayed readable: a truncated input was read as zeros
// (see mapped_file.h), so nothing built from it may be published.
void require_inputs_intact() {
  std::string fault = mapped_input_fault();
  if (!fault.empty()) fail_input(fault);
}

}  // namespace

void remove_tree(const std::string& path) {
  std::error_code ec;
  fs::remove_all(path, ec);
}

void remove_stale_staging(const std::string& target) {
  fs::path t = normal_target(target);
  std::string base = std::string(".").append(t.filename().string()).append(".");
  fs::path parent = t.parent_path();
  std::string dir = parent.empty() ? "." : parent.string();
  DIR* d = ::opendir(dir.c_str());
  if (!d) return;
  std::vector<std::pair<std::string, bool>> stale;  // name, is an ".old" copy
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name.compare(0, base.size(), base) != 0) continue;
    std::string rest = name.substr(base.size());
    bool old = rest.compare(0, 4, "old-") == 0;
    if (!old && rest.compare(0, 4, "tmp-") != 0) continue;
    char* end = nullptr;
    long pid = std::strtol(rest.c_str() + 4, &end, 10);
    if (pid <= 0 || !end || *end != '-' || std::strlen(end + 1) < 8) continue;  // "...-<hex>[.interrupted]"
    if (pid == long(getpid())) continue;
    if (::kill(pid_t(pid), 0) == 0 || errno != ESRCH) continue;  // alive (or not ours to judge)
    stale.emplace_back((parent.empty() ? fs::path(name) : parent / name).string(), old);
  }
  ::closedir(d);
  for (const auto& [path, old] : stale) {
    // An ".old" copy whose replacement never arrived is the only copy: it goes back into place.
    if (old && !exists_no_follow(t.string()) && ::rename(path.c_str(), t.c_str()) == 0) continue;
    remove_tree(path);
  }
}

void require_free_space(const std::string& target, uint64_t bytes) {
  fs::path parent = normal_target(target).parent_path();
  std::string dir = parent.empty() ? "." : parent.string();
  struct statvfs vfs{};
  if (::statvfs(dir.c_str(), &vfs) != 0) return;  // the parent's absence is reported when staging starts
  unsigned __int128 avail = (unsigned __int128)vfs.f_bavail * vfs.f_frsize;
  if (avail >= bytes) return;
  fail_io(target + ": the output needs " + std::to_string(bytes) + " bytes but the file system of " + dir + " has " +
          std::to_string(uint64_t(avail)) + " bytes free; nothing was written");
}

void require_output_dir_free(const std::string& dir, bool force) {
  std::error_code ec;
  // A dangling symbolic link is something at the target too (publishing would meet it at the end).
  if (!fs::exists(fs::symlink_status(dir, ec))) return;
  if (fs::is_directory(dir, ec) && fs::is_empty(dir, ec)) return;
  if (!force) fail_input(dir + ": output already exists and is not empty (use --force to replace it)");
}

StagedDir::StagedDir(const std::string& target_dir, bool force_overwrite) : target(target_dir), force(force_overwrite) {
  remove_stale_staging(target);
  require_output_dir_free(target, force);
  std::error_code ec;
  fs::path parent = fs::path(target).lexically_normal().parent_path();
  if (!parent.empty() && !fs::is_directory(parent, ec))
    fail_input(target + ": parent directory does not exist");
  temp = temp_sibling(target, "tmp");
  register_staging(temp);
  if (!fs::create_directory(temp, ec)) {
    unregister_staging(temp);
    fail_io(temp + ": cannot create temporary directory: " + ec.message());
  }
}

StagedDir::~StagedDir() {
  if (!committed) remove_tree(temp);
  unregister_staging(temp);
}

void StagedDir::commit() {
  require_inputs_intact();
  publish_dir(temp, normal_target(target).string(), force);
  committed = true;
}

StagedFile::StagedFile(const std::string& target_file, bool force_overwrite) : target(target_file), force(force_overwrite) {
  std::error_code ec;
  remove_stale_staging(target);
  if (fs::exists(fs::symlink_status(target, ec)) && !force)
    fail_input(target + ": output already exists (use --force to replace it)");
  if (fs::is_directory(target, ec)) fail_input(target + ": is a directory");
  temp = temp_sibling(target, "tmp");
  register_staging(temp);
}

StagedFile::~StagedFile() {
  if (!committed) {
    std::error_code ec;
    fs::remove(temp, ec);
  }
  unregister_staging(temp);
}

void StagedFile::commit() {
  require_inputs_intact();
  publish_file(temp, target, force);
  committed = true;
}

}  // namespace fp4z
