// The .fp4z container: compress a directory into independent checksummed chunks, restore it exactly
// (docs/format.md is the normative description of the bytes).
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "codec/chunk_codec.h"
#include "common/mapped_file.h"
#include "format/safetensors.h"

namespace fp4z::codec {

constexpr uint8_t kMagic[8] = {0x89, 'F', 'P', '4', 'Z', '\r', '\n', 0x1A};
constexpr uint16_t kVersionMajor = 1;
constexpr uint16_t kVersionMinor = 1;
constexpr size_t kHeaderSize = 16;
constexpr size_t kTrailerSize = 40;
constexpr uint64_t kMaxChunkRaw = uint64_t(64) << 20;  // decoders refuse larger chunks
constexpr size_t kMaxPath = 4096;
// Opaque (zstd) segments above this size are coded at most at level 12 (CompressOptions::zstd_level).
constexpr uint64_t kFullZstdLevelMaxSegment = uint64_t(1) << 20;

// What a byte range of a file is; decides the codec and the report rows. Part of the format.
enum class Role : uint8_t { kOther = 0, kFp4Codes = 1, kFp8Scales = 2, kFloat = 3 };
const char* role_name(Role r);

struct ChunkEntry {
  uint64_t offset = 0;        // of the payload, from the start of the container file
  uint64_t payload_size = 0;
  uint64_t raw_size = 0;
  ChunkCodec codec = ChunkCodec::kRaw;
  Role role = Role::kOther;
  uint64_t payload_hash = 0;  // XXH3-64 of the payload bytes
  uint64_t raw_hash = 0;      // XXH3-64 of the decoded bytes
  uint32_t file = 0;          // owning entry
  uint64_t file_offset = 0;   // where the decoded bytes go in that file
};

struct FileEntry {
  std::string path;  // relative, '/'-separated
  bool is_dir = false;
  uint64_t size = 0;
  uint64_t first_chunk = 0;
  uint64_t n_chunks = 0;
};

struct TensorEntry {
  uint32_t file = 0;
  std::string name;
  std::string dtype;
  std::vector<uint64_t> shape;
  uint64_t offset = 0;  // within the file
  uint64_t size = 0;
  Role role = Role::kOther;
};

struct ContainerIndex {
  uint16_t version_major = 0, version_minor = 0;
  std::vector<FileEntry> files;
  std::vector<ChunkEntry> chunks;
  std::vector<TensorEntry> tensors;
};

// Parses and validates header, trailer and index of a container held in memory (every offset,
// size, count and path is checked; see docs/format.md §6). Throws fp4z::Error (exit 2) with one line
// naming `label` and the fault. Does not decode chunks. verify_index_hash = false is for the fuzzer
// only (so that mutated indexes reach the parser); every other check still runs.
ContainerIndex parse_container(const uint8_t* data, size_t size, const std::string& label, bool verify_index_hash = true);

// Decodes chunk k of a parsed container into out (exactly chunks[k].raw_size bytes). With
// verify, both checksums are checked. Throws Error (exit 2) naming the chunk on any fault.
void decode_container_chunk(const uint8_t* data, size_t size, const ContainerIndex& idx, size_t k, uint8_t* out,
                            CodecScratch& scratch, const std::string& label, bool verify = true);
// Same, but returns where the decoded bytes are: buf (chunks[k].raw_size bytes), or for a raw chunk
// the payload inside data itself, which is then neither copied nor hashed twice (its two checksums
// are of the same bytes).
const uint8_t* decode_container_chunk_view(const uint8_t* data, size_t size, const ContainerIndex& idx, size_t k,
                                           uint8_t* buf, CodecScratch& scratch, const std::string& label,
                                           bool verify = true);

struct CompressOptions {
  int threads = 0;
  uint64_t coded_chunk = 1 << 20;  // chunk size of FP4/FP8/float tensors
  uint64_t zstd_chunk = 4 << 20;   // chunk size of everything else
  int zstd_level = 19;             // for zstd segments up to 1 MiB; up to 32 MiB min(level, 12), larger min(level, 9)
  uint64_t min_coded_tensor = 4096;  // smaller tensors go into the zstd stream with the header
  bool verify = true;              // decode every coded chunk again and compare before writing
  bool quiet = false;
  bool force = false;
  // Whether a tensor of a parsed safetensors file holds packed FP4 codes (rANS-coded as bytes). The
  // caller supplies the naming convention (format/nvfp4_tensors.h: is_packed_codes_tensor), so the
  // codec knows no quantization format; unset, no tensor is treated as FP4 codes.
  bool (*is_fp4_codes)(const SafetensorsFile& file, const TensorInfo& t) = nullptr;
};

// Byte totals per role, for the summary line and the benchmarks.
struct CompressSummary {
  uint64_t raw[4] = {}, stored[4] = {};
  uint64_t files = 0, chunks = 0, container_bytes = 0, input_bytes = 0;
  double seconds = 0;
};

// Compresses every file under `dir` (recursively) into `out_file`, published atomically.
// Refuses (exit 2) symbolic links, special files, and files that change while being read.
CompressSummary compress_directory(const std::string& dir, const std::string& out_file, const CompressOptions& opt);

// A container opened for reading (mapped, index parsed and validated).
struct Container {
  MappedFile map;
  ContainerIndex index;
  const std::string& path() const { return map.path; }
};
Container open_container(const std::string& path);

// Bytes that restoring the whole container writes: the sum of its files' declared sizes
// (saturating; a hostile index may declare far more than the container holds).
uint64_t declared_size(const ContainerIndex& idx);

// Restores every file into out_dir (published only when every chunk decoded and verified).
// Decodes and checks every chunk without writing anything (`fp4z decompress --test`); releases the
// container's pages batch by batch so resident memory stays bounded. Throws on the first bad chunk.
void verify_container(const Container& c, int threads);

// Refuses (exit 3, nothing written) when the target file system lacks declared_size() bytes.
void decompress_to_dir(const Container& c, const std::string& out_dir, int threads, bool force, bool quiet);

// Writes the raw bytes of one tensor (name, or "FILE:name" when the name occurs in several files).
void extract_tensor(const Container& c, const std::string& name, const std::string& out_file, int threads, bool force);

// Index of the tensor matching `name` ("FILE:name" allowed); throws Error (exit 2) if absent/ambiguous.
size_t find_tensor(const ContainerIndex& idx, const std::string& name);

}  // namespace fp4z::codec
