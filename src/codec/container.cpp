// .fp4z container: directory walk, per-tensor segmentation, parallel chunk coding, index, and the
// validating reader/restorer.
#include "codec/container.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "common/error.h"
#include "common/parallel.h"
#include "common/printable.h"
#include "common/progress.h"
#include "common/staged_output.h"
#include "format/safetensors.h"

namespace fs = std::filesystem;

namespace fp4z::codec {

namespace {

constexpr uint8_t kTrailerMagic[8] = {'F', 'P', '4', 'Z', 'I', 'D', 'X', 0x1A};

// ---- little-endian writing and bounded reading ------------------------------------------------

void put_u16(std::vector<uint8_t>& o, uint16_t v) { o.push_back(uint8_t(v)), o.push_back(uint8_t(v >> 8)); }
void put_u32(std::vector<uint8_t>& o, uint32_t v) {
  for (int k = 0; k < 4; ++k) o.push_back(uint8_t(v >> (8 * k)));
}
void put_u64(std::vector<uint8_t>& o, uint64_t v) {
  for (int k = 0; k < 8; ++k) o.push_back(uint8_t(v >> (8 * k)));
}
void put_varint(std::vector<uint8_t>& o, uint64_t v) {
  while (v >= 0x80) o.push_back(uint8_t(v | 0x80)), v >>= 7;
  o.push_back(uint8_t(v));
}
void put_bytes(std::vector<uint8_t>& o, const std::string& s) {
  put_varint(o, s.size());
  o.insert(o.end(), s.begin(), s.end());
}
uint64_t get_u64_at(const uint8_t* p) {
  uint64_t v = 0;
  for (int k = 7; k >= 0; --k) v = (v << 8) | p[k];
  return v;
}

// Reads the index; every read is bounds-checked and failures name the field.
struct Reader {
  const uint8_t* p;
  size_t size;
  size_t pos = 0;
  std::string label;
  [[noreturn]] void fail(const std::string& what) const {
    fail_input(label + ": corrupt index at byte " + std::to_string(pos) + ": " + what);
  }
  size_t left() const { return size - pos; }
  uint8_t u8(const char* what) {
    if (pos >= size) fail(std::string("truncated ") + what);
    return p[pos++];
  }
  uint64_t u64(const char* what) {
    if (left() < 8) fail(std::string("truncated ") + what);
    uint64_t v = get_u64_at(p + pos);
    pos += 8;
    return v;
  }
  uint64_t varint(const char* what) {
    uint64_t r = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      uint8_t b = u8(what);
      if (shift == 63 && (b & 0x7E)) fail(std::string("overlong ") + what);
      r |= uint64_t(b & 0x7F) << shift;
      if (!(b & 0x80)) return r;
    }
    fail(std::string("overlong ") + what);
  }
  // A count of items each needing at least min_bytes: bounded by what is left, so that a hostile
  // count cannot make us allocate more than the index itself.
  uint64_t count(const char* what, size_t min_bytes) {
    uint64_t n = varint(what);
    if (n > left() / min_bytes) fail(std::string(what) + " " + std::to_string(n) + " exceeds what the index can hold");
    return n;
  }
  std::string bytes(const char* what, size_t max_len) {
    uint64_t n = varint(what);
    if (n > max_len) fail(std::string(what) + " too long");
    if (n > left()) fail(std::string("truncated ") + what);
    std::string s(reinterpret_cast<const char*>(p + pos), size_t(n));
    pos += size_t(n);
    return s;
  }
};

bool add_overflows(uint64_t a, uint64_t b, uint64_t* r) { return __builtin_add_overflow(a, b, r); }

// A relative path that can only name something inside the output directory.
std::string path_fault(const std::string& path) {
  if (path.empty()) return "empty path";
  if (path.size() > kMaxPath) return "path too long";
  if (path.find('\0') != std::string::npos) return "path contains NUL";
  if (path.front() == '/') return "absolute path";
  // docs/format.md §5: UTF-8 and printable, so that listing a container cannot forge output lines.
  if (!is_valid_utf8(path)) return "path is not valid UTF-8";
  for (size_t i = 0; i < path.size();) {
    char32_t cp;
    size_t n = utf8_sequence(path, i, &cp);
    if (is_control(cp)) return "path contains a control character";
    i += n;
  }
  size_t start = 0;
  while (true) {
    size_t slash = path.find('/', start);
    std::string comp = path.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
    if (comp.empty() || comp == "." || comp == "..") return "path component '" + comp + "' not allowed";
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  return "";
}

std::string chunk_label(const ContainerIndex& idx, size_t k) {
  const ChunkEntry& c = idx.chunks[k];
  std::string where = c.file < idx.files.size() ? idx.files[c.file].path : "?";
  return "chunk " + std::to_string(k) + " (" + where + " @ " + std::to_string(c.file_offset) + ", " +
         chunk_codec_name(c.codec) + ")";
}

// ---- segmentation of one input file -----------------------------------------------------------

struct Segment {
  uint64_t offset, size;
  ChunkCodec codec;
  Role role;
};

bool ends_with(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}

// Splits a file into segments; for a safetensors file that parses, one per tensor kind. Anything
// that does not parse is opaque (zstd). Segments cover [0, size) in order without gaps.
std::vector<Segment> plan_file(const uint8_t* data, uint64_t size, const std::string& rel, uint32_t file_idx,
                               const CompressOptions& opt, std::vector<TensorEntry>& tensors) {
  std::vector<Segment> raw_segs;
  bool parsed = false;
  if (ends_with(rel, ".safetensors") && size >= 8) {
    SafetensorsFile sf;
    try {
      parse_safetensors_header(data, size_t(size), rel, sf);
      parsed = true;
    } catch (const Error&) {
      parsed = false;
    }
    if (parsed) {
      uint64_t base = 8 + sf.header_len;
      raw_segs.push_back({0, base, ChunkCodec::kZstd, Role::kOther});
      for (size_t i : sf.by_offset) {
        const TensorInfo& t = sf.tensors[i];
        Role role = Role::kOther;
        ChunkCodec codec = ChunkCodec::kZstd;
        if (t.dtype == DType::U8 && opt.is_fp4_codes && opt.is_fp4_codes(sf, t)) {
          role = Role::kFp4Codes, codec = ChunkCodec::kBytes;
        } else if (t.dtype == DType::F8_E4M3) {
          role = Role::kFp8Scales, codec = ChunkCodec::kBytes;
        } else if (t.dtype == DType::BF16) {
          role = Role::kFloat, codec = ChunkCodec::kSplitBF16;
        } else if (t.dtype == DType::F16) {
          role = Role::kFloat, codec = ChunkCodec::kSplitF16;
        } else if (t.dtype == DType::F32) {
          role = Role::kFloat, codec = ChunkCodec::kSplitF32;
        }
        TensorEntry te;
        te.file = file_idx;
        te.name = t.name;
        te.dtype = dtype_name(t.dtype);
        for (int64_t d : t.shape) te.shape.push_back(uint64_t(d));
        te.offset = base + t.begin;
        te.size = t.nbytes();
        te.role = role;
        tensors.push_back(std::move(te));
        if (t.nbytes() < opt.min_coded_tensor) codec = ChunkCodec::kZstd;  // tables would cost more than they save
        raw_segs.push_back({base + t.begin, t.nbytes(), codec, codec == ChunkCodec::kZstd ? Role::kOther : role});
      }
    }
  }
  if (!parsed) raw_segs.push_back({0, size, ChunkCodec::kZstd, Role::kOther});
  // Merge neighbouring zstd segments (header + small tensors) and drop empty ones.
  std::vector<Segment> segs;
  for (const Segment& s : raw_segs) {
    if (s.size == 0) continue;
    if (!segs.empty() && segs.back().codec == ChunkCodec::kZstd && s.codec == ChunkCodec::kZstd &&
        segs.back().offset + segs.back().size == s.offset) {
      segs.back().size += s.size;
      continue;
    }
    segs.push_back(s);
  }
  return segs;
}

struct ChunkJob {
  uint64_t offset, size;
  ChunkCodec codec;
  Role role;
  int zstd_level;
};

std::vector<ChunkJob> chunk_jobs(const std::vector<Segment>& segs, const CompressOptions& opt) {
  std::vector<ChunkJob> jobs;
  for (const Segment& s : segs) {
    bool z = s.codec == ChunkCodec::kZstd;
    uint64_t step = z ? opt.zstd_chunk : opt.coded_chunk;
    unsigned es = chunk_codec_element_size(s.codec);
    step = std::max<uint64_t>(es, step - step % es);
    // zstd -19 runs at ~1.5 MB/s: on a real checkpoint's 11 MB tokenizer.json it took 8 s of a 22 s
    // compression for 0.3 MB (0.013% of the container) over level 12, so large opaque segments get a
    // faster level; small files (and therefore small models) keep the full level.
    int level = opt.zstd_level;
    if (z && s.size > (uint64_t(32) << 20)) level = std::min(level, 9);
    else if (z && s.size > kFullZstdLevelMaxSegment) level = std::min(level, 12);
    for (uint64_t at = 0; at < s.size; at += step) {
      uint64_t n = std::min(step, s.size - at);
      ChunkCodec c = s.codec;
      if (n % es) c = ChunkCodec::kZstd;  // a ragged tail (cannot happen for valid safetensors)
      jobs.push_back({s.offset + at, n, c, s.role, level});
    }
  }
  return jobs;
}

struct WalkEntry {
  std::string rel;
  bool is_dir;
  uint64_t size;
};

std::vector<WalkEntry> walk(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) fail_input(dir + ": not a directory");
  std::vector<WalkEntry> out;
  fs::recursive_directory_iterator it(dir, fs::directory_options::none, ec), end;
  if (ec) fail_input(dir + ": cannot read directory: " + ec.message());
  for (; it != end; it.increment(ec)) {
    if (ec) fail_input(dir + ": cannot read directory: " + ec.message());
    const fs::directory_entry& e = *it;
    std::string rel = fs::relative(e.path(), dir, ec).generic_string();
    fs::file_status st = e.symlink_status(ec);
    if (fs::is_symlink(st))
      fail_input(e.path().string() + ": symbolic link; fp4z cannot restore links exactly (replace it by the file)");
    if (fs::is_directory(st)) {
      out.push_back({rel, true, 0});
    } else if (fs::is_regular_file(st)) {
      out.push_back({rel, false, uint64_t(e.file_size(ec))});
    } else {
      fail_input(e.path().string() + ": not a regular file or directory; fp4z cannot restore it");
    }
    std::string fault = path_fault(rel);
    if (!fault.empty()) fail_input(e.path().string() + ": " + fault);
  }
  std::sort(out.begin(), out.end(), [](const WalkEntry& a, const WalkEntry& b) { return a.rel < b.rel; });
  return out;
}

void write_all(FILE* f, const void* p, size_t n, const std::string& path) {
  if (n && std::fwrite(p, 1, n, f) != n) fail_io(path + ": write failed: " + std::strerror(errno));
}

// Maps a batch's container pages in with one call instead of a page fault per 64 KiB (a few % of a
// decode); best effort: kernels before 5.14 lack MADV_POPULATE_READ and the faults then happen as before.
void populate_pages(const MappedFile& m, uint64_t lo, uint64_t hi) {
#ifndef MADV_POPULATE_READ
  constexpr int MADV_POPULATE_READ = 22;
#endif
  if (hi <= lo || !m.data) return;
  uintptr_t page = uintptr_t(sysconf(_SC_PAGESIZE));
  uintptr_t a = (uintptr_t(m.data) + lo) & ~(page - 1), b = uintptr_t(m.data) + hi;
  (void)madvise(reinterpret_cast<void*>(a), b - a, MADV_POPULATE_READ);
}

void pwrite_all(int fd, const uint8_t* p, size_t n, uint64_t off, const std::string& path) {
  while (n) {
    ssize_t w = ::pwrite(fd, p, n, off_t(off));
    if (w < 0) {
      if (errno == EINTR) continue;
      fail_io(path + ": write failed: " + std::strerror(errno));
    }
    p += w, n -= size_t(w), off += uint64_t(w);
  }
}

}  // namespace

const char* role_name(Role r) {
  switch (r) {
    case Role::kOther: return "other";
    case Role::kFp4Codes: return "fp4-codes";
    case Role::kFp8Scales: return "fp8-scales";
    case Role::kFloat: return "float";
  }
  return "?";
}

// ---- reading ----------------------------------------------------------------------------------

ContainerIndex parse_container(const uint8_t* data, size_t size, const std::string& label, bool verify_index_hash) {
  ContainerIndex idx;
  if (size < kHeaderSize + kTrailerSize)
    fail_input(label + ": not an fp4z container (" + std::to_string(size) + " bytes, too short)");
  if (std::memcmp(data, kMagic, 8) != 0) fail_input(label + ": not an fp4z container (bad magic)");
  idx.version_major = uint16_t(data[8] | data[9] << 8);
  idx.version_minor = uint16_t(data[10] | data[11] << 8);
  if (idx.version_major != kVersionMajor)
    fail_input(label + ": unsupported fp4z format version " + std::to_string(idx.version_major) + "." +
               std::to_string(idx.version_minor) + " (this build reads " + std::to_string(kVersionMajor) + ".x)");
  uint32_t flags = uint32_t(data[12]) | uint32_t(data[13]) << 8 | uint32_t(data[14]) << 16 | uint32_t(data[15]) << 24;
  if (flags != 0) fail_input(label + ": unknown header flags " + std::to_string(flags));
  const uint8_t* tr = data + size - kTrailerSize;
  if (std::memcmp(tr + 32, kTrailerMagic, 8) != 0)
    fail_input(label + ": trailer missing (file truncated or not a complete fp4z container)");
  uint64_t index_offset = get_u64_at(tr), index_size = get_u64_at(tr + 8), index_hash = get_u64_at(tr + 16),
           total = get_u64_at(tr + 24);
  if (total != size)
    fail_input(label + ": container is " + std::to_string(size) + " bytes but its trailer records " +
               std::to_string(total) + " (truncated or extended)");
  uint64_t index_end;
  if (index_offset < kHeaderSize || add_overflows(index_offset, index_size, &index_end) ||
      index_end != size - kTrailerSize)
    fail_input(label + ": trailer: index location out of range");
  const uint8_t* ip = data + index_offset;
  // The index checksum is seeded with the header's, so it covers the version and flags too.
  if (verify_index_hash && XXH3_64bits_withSeed(ip, size_t(index_size), XXH3_64bits(data, kHeaderSize)) != index_hash)
    fail_input(label + ": header/index checksum mismatch (corrupt header or index)");

  Reader r{ip, size_t(index_size), 0, label};
  uint64_t n_entries = r.count("entry count", 2);
  idx.files.resize(size_t(n_entries));
  std::vector<uint64_t> chunk_counts(size_t(n_entries), 0);
  for (uint64_t i = 0; i < n_entries; ++i) {
    FileEntry& f = idx.files[size_t(i)];
    uint8_t kind = r.u8("entry kind");
    if (kind > 1) r.fail("unknown entry kind " + std::to_string(kind));
    f.is_dir = kind == 1;
    f.path = r.bytes("path", kMaxPath);
    std::string fault = path_fault(f.path);
    if (!fault.empty()) r.fail("entry " + std::to_string(i) + ": " + fault);
    if (i > 0 && !(idx.files[size_t(i - 1)].path < f.path))
      r.fail("entry " + std::to_string(i) + ": " +
             (idx.files[size_t(i - 1)].path == f.path ? "duplicate path" : "entries are not sorted by path"));
    if (!f.is_dir) {
      f.size = r.varint("file size");
      chunk_counts[size_t(i)] = r.varint("file chunk count");
    }
  }
  uint64_t n_chunks = r.count("chunk count", 18);
  idx.chunks.resize(size_t(n_chunks));
  uint64_t offset = kHeaderSize;
  for (uint64_t k = 0; k < n_chunks; ++k) {
    ChunkEntry& c = idx.chunks[size_t(k)];
    uint8_t codec = r.u8("chunk codec");
    if (codec >= kChunkCodecCount) r.fail("chunk " + std::to_string(k) + ": unknown codec " + std::to_string(codec));
    c.codec = ChunkCodec(codec);
    uint8_t role = r.u8("chunk role");
    if (role > 3) r.fail("chunk " + std::to_string(k) + ": unknown role " + std::to_string(role));
    c.role = Role(role);
    c.payload_size = r.varint("payload size");
    c.raw_size = r.varint("raw size");
    c.payload_hash = r.u64("payload checksum");
    c.raw_hash = r.u64("raw checksum");
    if (c.raw_size == 0 || c.raw_size > kMaxChunkRaw)
      r.fail("chunk " + std::to_string(k) + ": raw size " + std::to_string(c.raw_size) + " out of range");
    if (c.payload_size > c.raw_size) r.fail("chunk " + std::to_string(k) + ": payload larger than its raw size");
    if (c.raw_size % chunk_codec_element_size(c.codec))
      r.fail("chunk " + std::to_string(k) + ": raw size not a multiple of the element size");
    c.offset = offset;
    if (add_overflows(offset, c.payload_size, &offset) || offset > index_offset)
      r.fail("chunk " + std::to_string(k) + ": payload runs into the index");
  }
  if (offset != index_offset) r.fail("chunk payloads do not end where the index starts");
  // Assign chunks to files in order; their raw sizes must add up to each file's size.
  uint64_t next = 0;
  for (size_t i = 0; i < idx.files.size(); ++i) {
    FileEntry& f = idx.files[i];
    f.first_chunk = next;
    f.n_chunks = chunk_counts[i];
    if (f.n_chunks > n_chunks - next) r.fail("entry " + std::to_string(i) + ": more chunks than the index holds");
    uint64_t pos = 0;
    for (uint64_t k = next; k < next + f.n_chunks; ++k) {
      ChunkEntry& c = idx.chunks[size_t(k)];
      c.file = uint32_t(i);
      c.file_offset = pos;
      if (add_overflows(pos, c.raw_size, &pos)) r.fail("entry " + std::to_string(i) + ": size overflow");
    }
    if (pos != f.size) r.fail("entry " + std::to_string(i) + " (" + f.path + "): chunks do not add up to the file size");
    next += f.n_chunks;
  }
  if (next != n_chunks) r.fail("chunks not owned by any file");
  uint64_t n_tensors = r.count("tensor count", 7);
  idx.tensors.resize(size_t(n_tensors));
  for (uint64_t t = 0; t < n_tensors; ++t) {
    TensorEntry& e = idx.tensors[size_t(t)];
    uint64_t file = r.varint("tensor file");
    if (file >= idx.files.size() || idx.files[size_t(file)].is_dir) r.fail("tensor " + std::to_string(t) + ": bad file");
    e.file = uint32_t(file);
    e.name = r.bytes("tensor name", 65536);
    e.dtype = r.bytes("tensor dtype", 32);
    if (!is_valid_utf8(e.name) || !is_valid_utf8(e.dtype)) r.fail("tensor " + std::to_string(t) + ": name or dtype is not valid UTF-8");
    uint64_t rank = r.varint("tensor rank");
    if (rank > 16) r.fail("tensor " + std::to_string(t) + ": rank too large");
    for (uint64_t d = 0; d < rank; ++d) e.shape.push_back(r.varint("tensor dim"));
    e.offset = r.varint("tensor offset");
    e.size = r.varint("tensor size");
    uint8_t role = r.u8("tensor role");
    if (role > 3) r.fail("tensor " + std::to_string(t) + ": unknown role");
    e.role = Role(role);
    uint64_t end;
    if (add_overflows(e.offset, e.size, &end) || end > idx.files[e.file].size)
      r.fail("tensor " + std::to_string(t) + ": range outside its file");
  }
  if (r.pos != r.size) r.fail("trailing bytes in the index");
  // No duplicate paths, and no file may be the parent of another entry.
  std::unordered_set<std::string> names, file_names;
  for (const FileEntry& f : idx.files) {
    if (!names.insert(f.path).second) fail_input(label + ": corrupt index: duplicate path '" + f.path + "'");
    if (!f.is_dir) file_names.insert(f.path);
  }
  for (const FileEntry& f : idx.files) {
    for (size_t s = f.path.find('/'); s != std::string::npos; s = f.path.find('/', s + 1))
      if (file_names.count(f.path.substr(0, s)))
        fail_input(label + ": corrupt index: '" + f.path + "' lies under a file");
  }
  return idx;
}

const uint8_t* decode_container_chunk_view(const uint8_t* data, size_t size, const ContainerIndex& idx, size_t k,
                                           uint8_t* buf, CodecScratch& scratch, const std::string& label,
                                           bool verify) {
  const ChunkEntry& c = idx.chunks[k];
  const uint8_t* payload = data + c.offset;  // in range: checked by parse_container
  if (c.codec == ChunkCodec::kRaw) {
    // The payload is the decoded chunk: one hash checks both checksums, in the order of §6.
    const uint64_t h = verify ? scratch.kernels->hash(payload, size_t(c.payload_size)) : 0;
    if (verify && h != c.payload_hash)
      fail_input(label + ": " + chunk_label(idx, k) + ": payload checksum mismatch (corrupt data)");
    if (c.payload_size != c.raw_size)
      fail_input(label + ": " + chunk_label(idx, k) + ": raw payload size differs from the chunk size");
    if (verify && h != c.raw_hash)
      fail_input(label + ": " + chunk_label(idx, k) + ": decoded data checksum mismatch");
    return payload;
  }
  decode_container_chunk(data, size, idx, k, buf, scratch, label, verify);
  return buf;
}

void decode_container_chunk(const uint8_t* data, size_t size, const ContainerIndex& idx, size_t k, uint8_t* out,
                            CodecScratch& scratch, const std::string& label, bool verify) {
  const ChunkEntry& c = idx.chunks[k];
  const uint8_t* payload = data + c.offset;  // in range: checked by parse_container
  // Decode first, then hash the payload while it is still in cache (hashing it cold, from memory,
  // cost ~10% of a whole decode): the decoders are safe on any input, and the faults reported are
  // those of the order in docs/format.md §6 (payload checksum, codec, decoded checksum).
  std::string err = decode_chunk(c.codec, payload, size_t(c.payload_size), out, size_t(c.raw_size), scratch);
  if (verify && scratch.kernels->hash(payload, size_t(c.payload_size)) != c.payload_hash)
    fail_input(label + ": " + chunk_label(idx, k) + ": payload checksum mismatch (corrupt data)");
  if (!err.empty()) fail_input(label + ": " + chunk_label(idx, k) + ": " + err);
  if (verify && scratch.kernels->hash(out, size_t(c.raw_size)) != c.raw_hash)
    fail_input(label + ": " + chunk_label(idx, k) + ": decoded data checksum mismatch");
}

Container open_container(const std::string& path) {
  Container c;
  c.map = map_file(path);
  c.index = parse_container(c.map.data, c.map.size, path);
  return c;
}

uint64_t declared_size(const ContainerIndex& idx) {
  uint64_t total = 0;
  for (const FileEntry& f : idx.files)
    if (add_overflows(total, f.size, &total)) return UINT64_MAX;
  return total;
}

void decompress_to_dir(const Container& c, const std::string& out_dir, int threads, bool force, bool quiet) {
  const ContainerIndex& idx = c.index;
  threads = resolve_threads(threads);
  uint64_t total = declared_size(idx);
  require_output_dir_free(out_dir, force);
  require_free_space(out_dir, total);
  StagedDir staged(out_dir, force);
  Progress progress("decompress", idx.chunks.size(), total, quiet);
  for (const FileEntry& f : idx.files) {
    std::error_code ec;
    std::string target = staged.path(f.path);
    if (f.is_dir) {
      fs::create_directories(target, ec);
      if (ec) fail_io(target + ": cannot create directory: " + ec.message());
      continue;
    }
    fs::path parent = fs::path(target).parent_path();
    fs::create_directories(parent, ec);
    if (ec) fail_io(parent.string() + ": cannot create directory: " + ec.message());
    int fd = ::open(target.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) fail_io(target + ": cannot create: " + std::strerror(errno));
    struct FdCloser {
      int fd;
      ~FdCloser() { ::close(fd); }
    } closer{fd};
    // Batches of chunks, so that the container pages already decoded can be dropped (bounded RSS).
    size_t batch = size_t(threads) * 8;
    for (size_t b0 = 0; b0 < f.n_chunks; b0 += batch) {
      size_t b1 = std::min<size_t>(size_t(f.n_chunks), b0 + batch);
      const ChunkEntry& first_in = idx.chunks[size_t(f.first_chunk + b0)];
      const ChunkEntry& last_in = idx.chunks[size_t(f.first_chunk + b1 - 1)];
      populate_pages(c.map, first_in.offset, last_in.offset + last_in.payload_size);
      parallel_for(b1 - b0, threads, 1, [&](size_t b, size_t e) {
        thread_local CodecScratch scratch;
        thread_local std::vector<uint8_t> buf;
        for (size_t k = b; k < e; ++k) {
          size_t ci = size_t(f.first_chunk + b0 + k);
          const ChunkEntry& ch = idx.chunks[ci];
          buf.resize(size_t(ch.raw_size));
          const uint8_t* bytes = decode_container_chunk_view(c.map.data, c.map.size, idx, ci, buf.data(), scratch,
                                                             c.path());
          pwrite_all(fd, bytes, size_t(ch.raw_size), ch.file_offset, target);
          progress.advance(1, ch.raw_size, f.path);
        }
      });
      const ChunkEntry& first = idx.chunks[size_t(f.first_chunk + b0)];
      const ChunkEntry& last = idx.chunks[size_t(f.first_chunk + b1 - 1)];
      release_pages(c.map, size_t(first.offset), size_t(last.offset + last.payload_size - first.offset));
    }
  }
  progress.finish();
  staged.commit();
}

void verify_container(const Container& c, int threads) {
  const ContainerIndex& idx = c.index;
  threads = resolve_threads(threads);
  const size_t batch = size_t(threads) * 8;
  for (size_t b0 = 0; b0 < idx.chunks.size(); b0 += batch) {
    size_t b1 = std::min(idx.chunks.size(), b0 + batch);
    populate_pages(c.map, idx.chunks[b0].offset, idx.chunks[b1 - 1].offset + idx.chunks[b1 - 1].payload_size);
    parallel_for(b1 - b0, threads, 1, [&](size_t b, size_t e) {
      thread_local CodecScratch scratch;
      thread_local std::vector<uint8_t> buf;
      for (size_t k = b0 + b; k < b0 + e; ++k) {
        buf.resize(size_t(idx.chunks[k].raw_size));
        decode_container_chunk_view(c.map.data, c.map.size, idx, k, buf.data(), scratch, c.path());
      }
    });
    uint64_t lo = UINT64_MAX, hi = 0;
    for (size_t k = b0; k < b1; ++k) {
      lo = std::min(lo, idx.chunks[k].offset);
      hi = std::max(hi, idx.chunks[k].offset + idx.chunks[k].payload_size);
    }
    if (hi > lo) release_pages(c.map, size_t(lo), size_t(hi - lo));
  }
}

size_t find_tensor(const ContainerIndex& idx, const std::string& name) {
  std::vector<size_t> hits;
  for (size_t t = 0; t < idx.tensors.size(); ++t) {
    const TensorEntry& e = idx.tensors[t];
    if (e.name == name || idx.files[e.file].path + ":" + e.name == name) hits.push_back(t);
  }
  if (hits.empty()) fail_input("tensor '" + name + "' is not in the container (see --list)");
  if (hits.size() > 1) fail_input("tensor '" + name + "' occurs in several files; use FILE:NAME");
  return hits[0];
}

void extract_tensor(const Container& c, const std::string& name, const std::string& out_file, int threads,
                    bool force) {
  const ContainerIndex& idx = c.index;
  const TensorEntry& t = idx.tensors[find_tensor(idx, name)];
  const FileEntry& f = idx.files[t.file];
  require_free_space(out_file, t.size);
  StagedFile staged(out_file, force);
  int fd = ::open(staged.temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail_io(staged.temp + ": cannot create: " + std::strerror(errno));
  struct FdCloser {
    int fd;
    ~FdCloser() { ::close(fd); }
  } closer{fd};
  if (::ftruncate(fd, off_t(t.size)) != 0) fail_io(out_file + ": cannot size: " + std::strerror(errno));
  std::vector<size_t> wanted;
  for (uint64_t k = f.first_chunk; k < f.first_chunk + f.n_chunks; ++k) {
    const ChunkEntry& ch = idx.chunks[size_t(k)];
    if (ch.file_offset < t.offset + t.size && ch.file_offset + ch.raw_size > t.offset) wanted.push_back(size_t(k));
  }
  parallel_for(wanted.size(), resolve_threads(threads), 1, [&](size_t b, size_t e) {
    thread_local CodecScratch scratch;
    thread_local std::vector<uint8_t> buf;
    for (size_t i = b; i < e; ++i) {
      const ChunkEntry& ch = idx.chunks[wanted[i]];
      buf.resize(size_t(ch.raw_size));
      const uint8_t* bytes =
          decode_container_chunk_view(c.map.data, c.map.size, idx, wanted[i], buf.data(), scratch, c.path());
      uint64_t lo = std::max(ch.file_offset, t.offset), hi = std::min(ch.file_offset + ch.raw_size, t.offset + t.size);
      pwrite_all(fd, bytes + (lo - ch.file_offset), size_t(hi - lo), lo - t.offset, out_file);
    }
  });
  staged.commit();
}

// ---- writing ----------------------------------------------------------------------------------

CompressSummary compress_directory(const std::string& dir, const std::string& out_file, const CompressOptions& opt) {
  CompressSummary sum;
  int threads = resolve_threads(opt.threads);
  std::vector<WalkEntry> entries = walk(dir);
  // Never read the output (or its temporary) as input: list first, then create the output.
  std::error_code ec;
  fs::path out_abs = fs::weakly_canonical(out_file, ec);
  fs::path dir_abs = fs::weakly_canonical(dir, ec);
  for (const WalkEntry& e : entries)
    if (fs::weakly_canonical(dir_abs / e.rel, ec) == out_abs)
      fail_input(out_file + ": output would overwrite a file of the input directory");
  uint64_t total = 0;
  for (const WalkEntry& e : entries) total += e.size;
  sum.input_bytes = total;

  StagedFile staged(out_file, opt.force);
  FILE* out = std::fopen(staged.temp.c_str(), "wb");
  if (!out) fail_io(staged.temp + ": cannot create: " + std::strerror(errno));
  struct FileCloser {
    FILE*& f;
    ~FileCloser() {
      if (f) std::fclose(f);
    }
  } closer{out};
  std::vector<uint8_t> header(kMagic, kMagic + 8);
  put_u16(header, kVersionMajor);
  put_u16(header, kVersionMinor);
  put_u32(header, 0);
  write_all(out, header.data(), header.size(), out_file);
  uint64_t written = header.size();

  ContainerIndex idx;
  Progress progress("compress", entries.size(), total, opt.quiet);
  auto start = std::chrono::steady_clock::now();
  for (size_t fi = 0; fi < entries.size(); ++fi) {
    const WalkEntry& e = entries[fi];
    FileEntry fe;
    fe.path = e.rel;
    fe.is_dir = e.is_dir;
    fe.first_chunk = idx.chunks.size();
    if (e.is_dir) {
      idx.files.push_back(fe);
      continue;
    }
    std::string full = (fs::path(dir) / e.rel).string();
    struct stat before{};
    if (::stat(full.c_str(), &before) != 0) fail_input(full + ": cannot stat: " + std::strerror(errno));
    MappedFile m = map_file(full);
    fe.size = m.size;
    std::vector<Segment> segs = plan_file(m.data, m.size, e.rel, uint32_t(fi), opt, idx.tensors);
    std::vector<ChunkJob> jobs = chunk_jobs(segs, opt);
    // Code a batch of chunks in parallel, then append them in order (bounded memory).
    size_t batch = size_t(std::max(1, threads) * 4);
    for (size_t b0 = 0; b0 < jobs.size(); b0 += batch) {
      size_t b1 = std::min(jobs.size(), b0 + batch);
      std::vector<std::vector<uint8_t>> payloads(b1 - b0);
      std::vector<ChunkEntry> entries_out(b1 - b0);
      parallel_for(b1 - b0, threads, 1, [&](size_t lo, size_t hi) {
        thread_local CodecScratch scratch;
        for (size_t j = lo; j < hi; ++j) {
          const ChunkJob& job = jobs[b0 + j];
          const uint8_t* raw = m.data + job.offset;
          ChunkEntry& ce = entries_out[j];
          ce.codec = encode_chunk(job.codec, raw, size_t(job.size), job.zstd_level, payloads[j], scratch);
          ce.role = job.role;
          ce.raw_size = job.size;
          ce.payload_size = payloads[j].size();
          ce.raw_hash = scratch.kernels->hash(raw, size_t(job.size));
          ce.payload_hash = scratch.kernels->hash(payloads[j].data(), payloads[j].size());
          if (opt.verify && ce.codec != ChunkCodec::kRaw) {
            scratch.check.resize(size_t(job.size));
            std::vector<uint8_t>& chk = scratch.check;
            std::string err = decode_chunk(ce.codec, payloads[j].data(), payloads[j].size(), chk.data(), chk.size(), scratch);
            if (!err.empty() || std::memcmp(chk.data(), raw, chk.size()) != 0)
              fail_io(full + ": internal error: " + chunk_codec_name(ce.codec) + " chunk at offset " +
                      std::to_string(job.offset) + " does not decode to its input (" + err + ")");
          }
        }
      });
      for (size_t j = 0; j < payloads.size(); ++j) {
        ChunkEntry& ce = entries_out[j];
        ce.offset = written;
        write_all(out, payloads[j].data(), payloads[j].size(), out_file);
        written += payloads[j].size();
        int r = int(ce.role);
        sum.raw[r] += ce.raw_size;
        sum.stored[r] += ce.payload_size;
        idx.chunks.push_back(ce);
        progress.advance(0, ce.raw_size, e.rel);
      }
      const ChunkJob& last = jobs[b1 - 1];
      release_pages(m, 0, size_t(last.offset + last.size));
    }
    progress.advance(1, 0, e.rel);
    struct stat after{};
    if (::stat(full.c_str(), &after) != 0 || after.st_size != before.st_size ||
        after.st_mtim.tv_sec != before.st_mtim.tv_sec || after.st_mtim.tv_nsec != before.st_mtim.tv_nsec)
      fail_input(full + ": file changed while it was being compressed");
    fe.n_chunks = idx.chunks.size() - fe.first_chunk;
    idx.files.push_back(fe);
    ++sum.files;
  }
  progress.finish();

  // Index (docs/format.md §5).
  std::vector<uint8_t> ib;
  put_varint(ib, idx.files.size());
  for (const FileEntry& f : idx.files) {
    ib.push_back(f.is_dir ? 1 : 0);
    put_bytes(ib, f.path);
    if (!f.is_dir) {
      put_varint(ib, f.size);
      put_varint(ib, f.n_chunks);
    }
  }
  put_varint(ib, idx.chunks.size());
  for (const ChunkEntry& c : idx.chunks) {
    ib.push_back(uint8_t(c.codec));
    ib.push_back(uint8_t(c.role));
    put_varint(ib, c.payload_size);
    put_varint(ib, c.raw_size);
    put_u64(ib, c.payload_hash);
    put_u64(ib, c.raw_hash);
  }
  put_varint(ib, idx.tensors.size());
  for (const TensorEntry& t : idx.tensors) {
    put_varint(ib, t.file);
    put_bytes(ib, t.name);
    put_bytes(ib, t.dtype);
    put_varint(ib, t.shape.size());
    for (uint64_t d : t.shape) put_varint(ib, d);
    put_varint(ib, t.offset);
    put_varint(ib, t.size);
    ib.push_back(uint8_t(t.role));
  }
  uint64_t index_offset = written;
  write_all(out, ib.data(), ib.size(), out_file);
  written += ib.size();
  std::vector<uint8_t> tr;
  put_u64(tr, index_offset);
  put_u64(tr, ib.size());
  put_u64(tr, XXH3_64bits_withSeed(ib.data(), ib.size(), XXH3_64bits(header.data(), kHeaderSize)));
  put_u64(tr, written + kTrailerSize);
  tr.insert(tr.end(), kTrailerMagic, kTrailerMagic + 8);
  write_all(out, tr.data(), tr.size(), out_file);
  written += tr.size();
  if (std::fflush(out) != 0 || ::fsync(fileno(out)) != 0) fail_io(out_file + ": write failed: " + std::strerror(errno));
  std::fclose(out);
  out = nullptr;
  staged.commit();
  sum.chunks = idx.chunks.size();
  sum.container_bytes = written;
  sum.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return sum;
}

}  // namespace fp4z::codec
