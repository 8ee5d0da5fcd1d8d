// Interruption handling: a watcher thread takes SIGINT/SIGTERM/SIGHUP and cleans up staging outputs.
#include "common/signals.h"

#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <set>
#include <thread>

namespace fp4z {
namespace {

std::mutex& staging_mutex() {
  static std::mutex mu;
  return mu;
}

std::set<std::string>& staging_paths() {
  static std::set<std::string> paths;
  return paths;
}

// Removes a staging tree even while workers are still writing into it: the tree is first renamed
// away (so workers that open new files under the old name fail instead of recreating it), then
// deleted. Both names are checked again until neither exists: a path that reappears (a worker's
// create_directories) is removed again, and so is the renamed tree when a file was created in it
// while it was being deleted (an open(O_CREAT) whose path was resolved just before the rename),
// which makes remove_all fail with ENOTEMPTY.
void remove_staging_now(const std::string& path) {
  namespace fs = std::filesystem;
  const std::string doomed = path + ".interrupted";
  for (int attempt = 0; attempt < 8; ++attempt) {
    std::error_code ec;
    bool at_path = fs::exists(fs::symlink_status(path, ec));
    bool at_doomed = fs::exists(fs::symlink_status(doomed, ec));
    if (!at_path && !at_doomed) return;
    if (at_path) {
      fs::rename(path, doomed, ec);
      if (ec) {  // e.g. the renamed tree of an earlier attempt is still there: delete in place
        fs::remove_all(path, ec);
        continue;
      }
    }
    fs::remove_all(doomed, ec);
  }
}

void watch_signals(std::string command, sigset_t set) {
  int sig = 0;
  while (sigwait(&set, &sig) != 0) {
  }
  std::unique_lock<std::mutex> lock(staging_mutex());
  size_t removed = 0;
  for (const std::string& p : staging_paths()) {
    remove_staging_now(p);
    ++removed;
  }
  const char* name = sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : sig == SIGHUP ? "SIGHUP" : "a signal";
  std::fprintf(stderr, "fp4z %s: interrupted by %s%s\n", command.c_str(), name,
               removed ? "; the unfinished output was removed" : "");
  std::fflush(stderr);
  _exit(128 + sig);
}

}  // namespace

void install_interrupt_handler(const std::string& command) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::thread(watch_signals, command, set).detach();
}

void register_staging(const std::string& path) {
  std::lock_guard<std::mutex> lock(staging_mutex());
  staging_paths().insert(path);
}

void unregister_staging(const std::string& path) {
  std::lock_guard<std::mutex> lock(staging_mutex());
  staging_paths().erase(path);
}

std::unique_lock<std::mutex> lock_staging() { return std::unique_lock<std::mutex>(staging_mutex()); }

}  // namespace fp4z
