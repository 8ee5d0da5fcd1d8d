// Bulk reads of a mapped input through its file descriptor, checked for truncation and replacement.
#include "common/input_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "common/error.h"

namespace fp4z {

InputFile::InputFile(InputFile&& o) noexcept : path(std::move(o.path)), fd(std::exchange(o.fd, -1)) {}

InputFile& InputFile::operator=(InputFile&& o) noexcept {
  if (this != &o) {
    if (fd >= 0) ::close(fd);
    path = std::move(o.path);
    fd = std::exchange(o.fd, -1);
  }
  return *this;
}

InputFile::~InputFile() {
  if (fd >= 0) ::close(fd);
}

InputFile open_input(const MappedFile& m) {
  InputFile f;
  f.path = m.path;
  f.fd = ::open(m.path.c_str(), O_RDONLY | O_CLOEXEC);
  if (f.fd < 0) fail_input(m.path + ": cannot open: " + std::strerror(errno));
  struct stat st{};
  if (fstat(f.fd, &st) != 0) fail_input(m.path + ": cannot stat: " + std::strerror(errno));
  if (uint64_t(st.st_dev) != m.device || uint64_t(st.st_ino) != m.inode)
    fail_input(m.path + ": input file was replaced while it was being read");
  // The kernel's read-ahead window grows with this hint (tensors are read front to back).
  posix_fadvise(f.fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  return f;
}

void read_input(const InputFile& f, uint64_t offset, void* dst, size_t len) {
  uint8_t* p = static_cast<uint8_t*>(dst);
  while (len > 0) {
    ssize_t n = ::pread(f.fd, p, std::min<size_t>(len, size_t(1) << 30), off_t(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      fail_input(f.path + ": read failed: " + std::strerror(errno));
    }
    if (n == 0) fail_input(truncated_input_message(f.path));
    p += n;
    len -= size_t(n);
    offset += uint64_t(n);
  }
}

void prefetch_input(const InputFile& f, uint64_t offset, uint64_t len) {
  if (len > 0) posix_fadvise(f.fd, off_t(offset), off_t(len), POSIX_FADV_WILLNEED);
}

}  // namespace fp4z
