// Read-only memory mapping of an input file.
#include "common/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <signal.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <utility>

#include "common/error.h"

namespace fp4z {

namespace {

// Live mappings, readable from the SIGBUS handler without locks: a slot is claimed with `used`,
// filled, then published by storing `begin` (release); the handler reads `begin` (acquire) first.
struct MappingSlot {
  std::atomic<bool> used{false};
  std::atomic<const uint8_t*> begin{nullptr};
  std::atomic<size_t> size{0};
  char path[1024] = {};
};
constexpr size_t kMappingSlots = 4096;
MappingSlot g_slots[kMappingSlots];

// The first truncation seen: its file name, copied by the handler (async-signal-safe memcpy).
std::atomic<bool> g_fault_claimed{false};
std::atomic<bool> g_fault_ready{false};
char g_fault_path[1024] = {};

void on_sigbus(int sig, siginfo_t* info, void*) {
  const uint8_t* addr = static_cast<const uint8_t*>(info->si_addr);
  for (size_t i = 0; i < kMappingSlots; ++i) {
    const uint8_t* b = g_slots[i].begin.load(std::memory_order_acquire);
    if (!b || addr < b || addr >= b + g_slots[i].size.load(std::memory_order_relaxed)) continue;
    uintptr_t page = uintptr_t(sysconf(_SC_PAGESIZE));
    void* at = reinterpret_cast<void*>(uintptr_t(addr) & ~(page - 1));
    if (mmap(at, page, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED) break;
    if (!g_fault_claimed.exchange(true)) {
      std::memcpy(g_fault_path, g_slots[i].path, sizeof g_fault_path);
      g_fault_ready.store(true, std::memory_order_release);
    }
    return;  // the faulting read is retried and now sees zeros
  }
  signal(sig, SIG_DFL);  // not one of ours: a real fault, die of it
  raise(sig);
}

void install_sigbus_handler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa{};
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, nullptr);
  });
}

void track_mapping(const MappedFile& m) {
  if (!m.data) return;
  for (size_t i = 0; i < kMappingSlots; ++i) {
    if (g_slots[i].used.exchange(true)) continue;
    std::strncpy(g_slots[i].path, m.path.c_str(), sizeof g_slots[i].path - 1);
    g_slots[i].size.store(m.size, std::memory_order_relaxed);
    g_slots[i].begin.store(m.data, std::memory_order_release);
    return;
  }
}

void untrack_mapping(const uint8_t* data) {
  if (!data) return;
  for (size_t i = 0; i < kMappingSlots; ++i) {
    if (g_slots[i].begin.load(std::memory_order_relaxed) != data) continue;
    g_slots[i].begin.store(nullptr, std::memory_order_release);
    g_slots[i].used.store(false, std::memory_order_release);
    return;
  }
}

void unmap(const uint8_t* data, size_t size) {
  if (!data) return;
  untrack_mapping(data);
  munmap(const_cast<uint8_t*>(data), size);
}

}  // namespace

std::string mapped_input_fault() {
  if (!g_fault_ready.load(std::memory_order_acquire)) return "";
  return truncated_input_message(g_fault_path);
}

std::string truncated_input_message(const std::string& path) {
  return path + ": input file was truncated while it was being read";
}

std::string mapped_file_at(const void* addr) {
  const uint8_t* a = static_cast<const uint8_t*>(addr);
  for (size_t i = 0; i < kMappingSlots; ++i) {
    const uint8_t* b = g_slots[i].begin.load(std::memory_order_acquire);
    if (b && a >= b && a < b + g_slots[i].size.load(std::memory_order_relaxed)) return g_slots[i].path;
  }
  return "";
}

MappedFile::MappedFile(MappedFile&& o) noexcept
    : path(std::move(o.path)),
      data(std::exchange(o.data, nullptr)),
      size(std::exchange(o.size, 0)),
      device(o.device),
      inode(o.inode) {}

MappedFile& MappedFile::operator=(MappedFile&& o) noexcept {
  if (this != &o) {
    unmap(data, size);
    path = std::move(o.path);
    data = std::exchange(o.data, nullptr);
    size = std::exchange(o.size, 0);
    device = o.device;
    inode = o.inode;
  }
  return *this;
}

MappedFile::~MappedFile() { unmap(data, size); }

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
  m.device = uint64_t(st.st_dev);
  m.inode = uint64_t(st.st_ino);
  if (m.size > 0) {
    void* p = mmap(nullptr, m.size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int e = errno;
      ::close(fd);
      fail_input(path + ": cannot map: " + std::strerror(e));
    }
    m.data = static_cast<const uint8_t*>(p);
    install_sigbus_handler();
    track_mapping(m);
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
