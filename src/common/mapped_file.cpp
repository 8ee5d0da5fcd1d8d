// Read-only memory mapping of an input file.
#include "common/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "common/error.h"

namespace fp4z {

MappedFile::MappedFile(MappedFile&& o) noexcept
    : path(std::move(o.path)), data(std::exchange(o.data, nullptr)), size(std::exchange(o.size, 0)) {}

MappedFile& MappedFile::operator=(MappedFile&& o) noexcept {
  if (this != &o) {
    if (data) munmap(const_cast<uint8_t*>(data), size);
    path = std::move(o.path);
    data = std::exchange(o.data, nullptr);
    size = std::exchange(o.size, 0);
  }
  return *this;
}

MappedFile::~MappedFile() {
  if (data) munmap(const_cast<uint8_t*>(data), size);
}

MappedFile map_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail_input(path + ": cannot open: " + std::strerror(errno));
  struct stat st{};
  if (fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    fail_input(path + ": cannot stat: " + std::strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail_input(path + ": not a regular file");
  }
  MappedFile m;
  m.path = path;
  m.size = static_cast<size_t>(st.st_size);
  if (m.size > 0) {
    void* p = mmap(nullptr, m.size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int e = errno;
      ::close(fd);
      fail_input(path + ": cannot map: " + std::strerror(e));
    }
    m.data = static_cast<const uint8_t*>(p);
  }
  ::close(fd);
  return m;
}

void release_pages(const MappedFile& f, size_t offset, size_t len) {
  if (!f.data || len == 0 || offset >= f.size) return;
  long page = sysconf(_SC_PAGESIZE);
  size_t start = (offset + page - 1) / page * page;
  size_t end = std::min(f.size, offset + len) / page * page;
  if (end > start) madvise(const_cast<uint8_t*>(f.data) + start, end - start, MADV_DONTNEED);
}

}  // namespace fp4z
