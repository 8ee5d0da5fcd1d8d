// LD_PRELOAD shim for tests: renameat2 fails with EINVAL, as on file systems without RENAME_EXCHANGE/NOREPLACE.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

// Each refused call appends one line to $RENAME_SHIM_LOG (when set), so a test can show the
// fallback was taken rather than the shim silently not loaded.
extern "C" int renameat2(int, const char*, int, const char*, unsigned) {
  if (const char* log = std::getenv("RENAME_SHIM_LOG")) {
    int fd = ::open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd >= 0) {
      ssize_t ignored = ::write(fd, "renameat2\n", 10);
      (void)ignored;
      ::close(fd);
    }
  }
  errno = EINVAL;
  return -1;
}
