// Bulk reads of a mapped input through its file descriptor (pread, copy_file_range), without page faults.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/mapped_file.h"

namespace fp4z {

// An input file opened for reading, the same file (device and inode) as a MappedFile of it.
// Streaming jobs read whole tensors with a few large pread calls instead of faulting the mapping in
// page by page (and releasing it again). Move-only; closes its descriptor.
struct InputFile {
  std::string path;
  int fd = -1;

  InputFile() = default;
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;
  InputFile(InputFile&& o) noexcept;
  InputFile& operator=(InputFile&& o) noexcept;
  ~InputFile();
};

// Opens the file that `m` maps. Throws fp4z::Error (exit 2) if it cannot be opened or if another
// file has taken its name since it was mapped.
InputFile open_input(const MappedFile& m);

// Reads exactly `len` bytes at `offset`. A short read means the file shrank while it was read:
// throws fp4z::Error (exit 2) "PATH: input file was truncated while it was being read".
void read_input(const InputFile& f, uint64_t offset, void* dst, size_t len);

// Asks the kernel to read [offset, offset + len) ahead in the background (a hint; never fails).
void prefetch_input(const InputFile& f, uint64_t offset, uint64_t len);

}  // namespace fp4z
