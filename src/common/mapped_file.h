// Read-only memory mapping of an input file; inputs are never written through it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace fp4z {

// Owns a read-only mapping (or nothing, for an empty file). Move-only.
struct MappedFile {
  std::string path;
  const uint8_t* data = nullptr;
  size_t size = 0;
  uint64_t device = 0, inode = 0;  // identity of the mapped file (InputFile checks it is the same)

  MappedFile() = default;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  MappedFile(MappedFile&& o) noexcept;
  MappedFile& operator=(MappedFile&& o) noexcept;
  ~MappedFile();
};

// Maps `path` read-only; throws fp4z::Error (exit 2) naming the file if it cannot be opened.
MappedFile map_file(const std::string& path);

// Mapped inputs survive truncation. Reading a page of a mapping beyond the end of a file that
// shrank after map_file raises SIGBUS; the first map_file installs a handler that, for an address
// inside a live mapping, maps a zero page there (the read goes on and sees zeros) and records the
// file. Nothing built from such zeros may be trusted: mapped_input_fault() returns a one-line
// message naming the file ("" if no mapped input was truncated), StagedDir/StagedFile::commit refuse
// to publish, and main turns it into exit 2. SIGBUS outside any mapping keeps its default action.
std::string mapped_input_fault();

// The one-line message for an input that shrank while it was read: "PATH: input file was truncated
// while it was being read" (mapped reads, writes from a mapping, and pread all report it so).
std::string truncated_input_message(const std::string& path);

// Path of the live mapping that holds `addr`, or "" if none. A write(2) from a mapped input that
// shrank fails with EFAULT instead of raising SIGBUS; writers use this to name the input.
std::string mapped_file_at(const void* addr);

// Hints the kernel that [offset, offset+len) will not be needed again (keeps RSS bounded).
void release_pages(const MappedFile& f, size_t offset, size_t len);

}  // namespace fp4z
