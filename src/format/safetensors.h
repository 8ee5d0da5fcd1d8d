// Strictly validated, zero-copy safetensors reader and a streaming, sharding checkpoint writer.
#pragma once
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/input_file.h"
#include "common/mapped_file.h"
#include "format/dtype.h"

namespace fp4z {

constexpr uint64_t kMaxSafetensorsHeader = 100000000;

struct TensorInfo {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // offsets relative to the data buffer
  uint64_t end = 0;
  uint64_t numel() const;
  uint64_t nbytes() const { return end - begin; }
};

// One validated safetensors file, mapped read-only. `tensors` is in header (JSON) order;
// `by_offset` lists indices sorted by data offset (the physical order).
struct SafetensorsFile {
  MappedFile map;
  uint64_t header_len = 0;
  std::string header_json;                                 // the raw header bytes (padding included)
  std::vector<TensorInfo> tensors;
  std::vector<size_t> by_offset;
  std::vector<std::pair<std::string, std::string>> metadata;  // __metadata__, in header order
  std::unordered_map<std::string, size_t> index;
  const std::string& path() const { return map.path; }
  const uint8_t* data_of(const TensorInfo& t) const { return map.data + 8 + header_len + t.begin; }
  const TensorInfo* find(const std::string& name) const;
};

// Parses and validates (rules in docs/safetensors.md); throws Error(exit 2)
// naming the file and the fault.
std::unique_ptr<SafetensorsFile> open_safetensors(const std::string& path);
// Same validation over an in-memory buffer (used by the fuzzer and the container); `label`
// names it in errors. Fills everything except `map`.
void parse_safetensors_header(const uint8_t* data, size_t size, const std::string& label, SafetensorsFile& out);

// A tensor to be written: its name, dtype and shape (the data is supplied later).
struct TensorSpec {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  uint64_t nbytes() const;
};

// Streaming writer for a checkpoint directory. All tensor specs are declared up front, so the
// headers (and the shard plan) are final before any data is written; data for each tensor is
// then supplied in any order, from any thread, with pwrite at its final offset. Nothing is held
// in memory beyond the headers.
// Layout: one `model.safetensors`, or `model-0000i-of-0000n.safetensors` + index when the total
// exceeds max_shard_bytes (a tensor larger than the limit gets a shard of its own).
struct CheckpointWriter {
  struct Slot { int shard; uint64_t file_offset; uint64_t nbytes; bool written; };
  std::string dir;
  std::vector<std::string> shard_names;
  std::vector<int> fds;
  std::unordered_map<std::string, Slot> slots;
  std::vector<TensorSpec> specs;
  uint64_t total_size = 0;
  // Bytes written to each shard since its write-back was last started (see write_part).
  std::unique_ptr<std::atomic<uint64_t>[]> unflushed;

  // metadata: extra __metadata__ entries; "format":"pt" is always written first.
  CheckpointWriter(const std::string& out_dir, std::vector<TensorSpec> specs, uint64_t max_shard_bytes,
                   const std::vector<std::pair<std::string, std::string>>& metadata = {});
  CheckpointWriter(const CheckpointWriter&) = delete;
  CheckpointWriter& operator=(const CheckpointWriter&) = delete;
  ~CheckpointWriter();
  // Writes the full bytes of one tensor (size must equal its spec). Thread-safe for distinct names.
  void write(const std::string& name, const void* data, uint64_t nbytes);
  // Writes a part of a tensor at byte offset `at` within it. Thread-safe.
  void write_part(const std::string& name, uint64_t at, const void* data, uint64_t nbytes);
  void mark_written(const std::string& name);
  // Writes one whole tensor straight from an input file (copy_file_range: the bytes never pass
  // through user memory). A source that ends early fails with the truncation message (exit 2).
  void copy_from(const std::string& name, const InputFile& in, uint64_t in_offset);
  // Checks every tensor was written, closes files, writes the index when sharded.
  void finish();
};

// "5GB" -> 5e9, "500MB", "2GiB", plain integers = bytes. Throws Error(exit 2) on garbage.
uint64_t parse_size(const std::string& s);

}  // namespace fp4z
