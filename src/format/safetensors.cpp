// Strictly validated safetensors reader and streaming, sharding writer.
#include "format/safetensors.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <unordered_set>

#include "common/error.h"
#include "format/checkpoint.h"

namespace fp4z {

namespace {

bool mul_overflow(uint64_t a, uint64_t b, uint64_t* out) { return __builtin_mul_overflow(a, b, out); }

// Streams the header JSON straight into TensorInfo records (no DOM): the cost is linear in the
// header, which may hold a million entries within the 100 MB limit. Every rule of the format is
// checked as the events arrive; the first fault stops the parse with a message.
class HeaderReader {
 public:
  explicit HeaderReader(SafetensorsFile& out) : out_(out) {}
  const std::string& fault() const { return fault_; }

  bool null() { return scalar("null"); }
  bool boolean(bool) { return scalar("a boolean"); }
  bool number_integer(int64_t v) { return v < 0 ? scalar("a negative number") : number(uint64_t(v)); }
  bool number_unsigned(uint64_t v) { return number(v); }
  bool number_float(double, const std::string&) { return scalar("a float"); }
  bool binary(nlohmann::ordered_json::binary_t&) { return scalar("binary"); }

  bool string(std::string& v) {
    if (depth_ == 2 && in_metadata_) {
      out_.metadata.emplace_back(std::move(meta_key_), std::move(v));
      return true;
    }
    if (depth_ == 2 && field_ == Field::kDtype) {
      auto d = dtype_from_string(v);
      if (!d) return stop("tensor '" + cur_.name + "': unknown dtype '" + v + "'");
      cur_.dtype = *d;
      return true;
    }
    return scalar("a string");
  }

  bool start_object(size_t) {
    if (depth_ == 0) return ++depth_, true;
    if (depth_ == 1) {
      ++depth_;
      if (in_metadata_) return true;
      cur_ = TensorInfo();
      cur_.name = std::move(entry_);
      seen_ = 0;
      count_ = 1;
      return true;
    }
    return scalar("an object");
  }

  bool key(std::string& k) {
    if (depth_ == 1) {
      in_metadata_ = k == "__metadata__";
      if (in_metadata_ ? seen_metadata_ : out_.index.count(k) > 0) return stop("header: duplicate JSON key '" + k + "'");
      seen_metadata_ = seen_metadata_ || in_metadata_;
      entry_ = std::move(k);
      return true;
    }
    if (in_metadata_) {
      if (!meta_keys_.insert(k).second) return stop("header: duplicate JSON key '" + k + "' in __metadata__");
      meta_key_ = std::move(k);
      return true;
    }
    unsigned bit = k == "dtype" ? 1u : k == "shape" ? 2u : k == "data_offsets" ? 4u : 0u;
    if (!bit) return stop("tensor '" + cur_.name + "' has unexpected keys");
    if (seen_ & bit) return stop("header: duplicate JSON key '" + k + "' in tensor '" + cur_.name + "'");
    seen_ |= bit;
    field_ = bit == 1 ? Field::kDtype : bit == 2 ? Field::kShape : Field::kOffsets;
    return true;
  }

  bool start_array(size_t) {
    if (depth_ == 2 && !in_metadata_ && (field_ == Field::kShape || field_ == Field::kOffsets)) {
      ++depth_;
      n_offsets_ = 0;
      return true;
    }
    return scalar("an array");
  }

  bool end_array() {
    --depth_;
    if (field_ == Field::kOffsets && n_offsets_ != 2) return stop("tensor '" + cur_.name + "': data_offsets is not a pair");
    field_ = Field::kNone;
    return true;
  }

  bool end_object() {
    --depth_;
    if (depth_ != 1) return true;  // the root closed
    if (in_metadata_) {
      in_metadata_ = false;
      return true;
    }
    if (seen_ != 7) return stop("tensor '" + cur_.name + "' lacks dtype, shape or data_offsets");
    uint64_t bytes;
    if (mul_overflow(count_, dtype_size(cur_.dtype), &bytes)) return stop("tensor '" + cur_.name + "': byte size overflows");
    if (bytes != cur_.end - cur_.begin)
      return stop("tensor '" + cur_.name + "': shape x dtype is " + std::to_string(bytes) + " bytes but data_offsets span " +
                  std::to_string(cur_.end - cur_.begin));
    out_.index.emplace(cur_.name, out_.tensors.size());
    out_.tensors.push_back(std::move(cur_));
    return true;
  }

  bool parse_error(size_t, const std::string&, const nlohmann::detail::exception& e) {
    std::string msg = e.what();
    for (char& c : msg)
      if (c == '\n' || c == '\r') c = ' ';
    return stop("header: malformed JSON: " + msg);
  }

 private:
  enum class Field { kNone, kDtype, kShape, kOffsets };

  bool number(uint64_t v) {
    if (depth_ == 3 && field_ == Field::kShape) {
      if (v > uint64_t(INT64_MAX)) return stop("tensor '" + cur_.name + "': shape entries must be non-negative integers");
      if (mul_overflow(count_, v, &count_)) return stop("tensor '" + cur_.name + "': shape product overflows");
      cur_.shape.push_back(int64_t(v));
      return true;
    }
    if (depth_ == 3 && field_ == Field::kOffsets) {
      if (n_offsets_ == 0) cur_.begin = v;
      else if (n_offsets_ == 1) cur_.end = v;
      ++n_offsets_;
      if (n_offsets_ == 2 && cur_.end < cur_.begin) return stop("tensor '" + cur_.name + "': data_offsets end < begin");
      return true;
    }
    return scalar("a number");
  }

  // A value where the format wants something else; the message says what was expected there.
  bool scalar(const char* what) {
    if (depth_ == 0) return stop("header is not a JSON object");
    if (depth_ == 1) {
      if (in_metadata_) return stop("__metadata__ is not an object");
      return stop("entry '" + entry_ + "' is not an object");
    }
    if (in_metadata_) return stop("__metadata__ value of '" + meta_key_ + "' is not a string");
    switch (field_) {
      case Field::kDtype: return stop("tensor '" + cur_.name + "': dtype is not a string");
      case Field::kShape:
        if (depth_ == 2) return stop("tensor '" + cur_.name + "': shape is not an array");
        return stop("tensor '" + cur_.name + "': shape entries must be non-negative integers");
      case Field::kOffsets:
        if (depth_ == 2) return stop("tensor '" + cur_.name + "': data_offsets is not a pair");
        return stop("tensor '" + cur_.name + "': data_offsets must be non-negative integers");
      case Field::kNone: break;
    }
    return stop(std::string("unexpected ") + what + " in the header");
  }

  bool stop(const std::string& why) {
    if (fault_.empty()) fault_ = why;
    return false;
  }

  SafetensorsFile& out_;
  std::string fault_;
  int depth_ = 0;
  bool in_metadata_ = false, seen_metadata_ = false;
  std::string entry_, meta_key_;
  std::unordered_set<std::string> meta_keys_;
  TensorInfo cur_;
  unsigned seen_ = 0;  // bits: dtype, shape, data_offsets
  Field field_ = Field::kNone;
  uint64_t count_ = 1;
  int n_offsets_ = 0;
};

}  // namespace

uint64_t TensorInfo::numel() const {
  uint64_t n = 1;
  for (int64_t d : shape) n *= uint64_t(d);
  return n;
}

uint64_t TensorSpec::nbytes() const {
  uint64_t n = dtype_size(dtype);
  for (int64_t d : shape) n *= uint64_t(d);
  return n;
}

const TensorInfo* SafetensorsFile::find(const std::string& name) const {
  auto it = index.find(name);
  return it == index.end() ? nullptr : &tensors[it->second];
}

void parse_safetensors_header(const uint8_t* data, size_t size, const std::string& label, SafetensorsFile& out) {
  auto fail = [&](const std::string& why) -> void { fail_input(label + ": invalid safetensors: " + why); };
  if (size < 8) fail("file is " + std::to_string(size) + " bytes, shorter than the 8-byte header length");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | data[i];
  if (n > kMaxSafetensorsHeader) fail("header length " + std::to_string(n) + " exceeds the 100,000,000-byte limit");
  if (n > size - 8) fail("header length " + std::to_string(n) + " runs past the end of the file (" + std::to_string(size) + " bytes)");
  out.header_len = n;
  out.header_json.assign(reinterpret_cast<const char*>(data + 8), size_t(n));
  size_t first = out.header_json.find_first_not_of(' ');
  if (first == std::string::npos || out.header_json[first] != '{') fail("header is not a JSON object (must start with '{')");

  out.tensors.clear();
  out.metadata.clear();
  out.index.clear();
  // Every entry takes at least 48 header bytes, so this bound never over-reserves past the input.
  out.index.reserve(size_t(n / 48));
  out.tensors.reserve(size_t(n / 48));
  HeaderReader reader(out);
  bool parsed = false;
  try {
    parsed = nlohmann::ordered_json::sax_parse(out.header_json.begin(), out.header_json.end(), &reader);
  } catch (const nlohmann::json::exception& e) {
    fail(std::string("header: malformed JSON: ") + e.what());
  }
  if (!parsed) fail(reader.fault().empty() ? std::string("header: malformed JSON") : reader.fault());
  std::vector<size_t> order(out.tensors.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const auto& x = out.tensors[a];
    const auto& y = out.tensors[b];
    return x.begin != y.begin ? x.begin < y.begin : x.end < y.end;
  });
  uint64_t pos = 0;
  for (size_t i : order) {
    const auto& t = out.tensors[i];
    if (t.begin != pos) {
      if (t.begin < pos) fail("tensor '" + t.name + "' overlaps the previous tensor's data");
      fail("hole in the data buffer before tensor '" + t.name + "' (offset " + std::to_string(t.begin) + ", expected " + std::to_string(pos) + ")");
    }
    pos = t.end;
  }
  out.by_offset = std::move(order);
  uint64_t data_len = size - 8 - n;
  if (pos != data_len) {
    if (pos > data_len) fail("data runs past the end of the file (truncated: need " + std::to_string(pos) + " data bytes, have " + std::to_string(data_len) + ")");
    fail(std::to_string(data_len - pos) + " trailing bytes after the last tensor");
  }
}

std::unique_ptr<SafetensorsFile> open_safetensors(const std::string& path) {
  auto f = std::make_unique<SafetensorsFile>();
  f->map = map_file(path);
  parse_safetensors_header(f->map.data, f->map.size, path, *f);
  return f;
}

uint64_t parse_size(const std::string& s) {
  size_t i = 0;
  while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.')) ++i;
  if (i == 0) fail_input("invalid size '" + s + "' (expected e.g. 5GB, 500MB, 2GiB or a byte count)");
  double v = std::strtod(s.substr(0, i).c_str(), nullptr);
  std::string unit = s.substr(i);
  for (auto& c : unit) c = char(std::toupper(static_cast<unsigned char>(c)));
  double mul;
  if (unit.empty() || unit == "B") mul = 1;
  else if (unit == "KB") mul = 1e3;
  else if (unit == "MB") mul = 1e6;
  else if (unit == "GB") mul = 1e9;
  else if (unit == "TB") mul = 1e12;
  else if (unit == "KIB") mul = 1024.0;
  else if (unit == "MIB") mul = 1048576.0;
  else if (unit == "GIB") mul = 1073741824.0;
  else if (unit == "TIB") mul = 1099511627776.0;
  else fail_input("invalid size unit in '" + s + "'");
  double r = v * mul;
  if (!(r >= 1) || r > 1.8e19) fail_input("size '" + s + "' out of range");
  return uint64_t(r);
}

// ---------------------------------------------------------------------------------------------
// Writer

namespace {

void pwrite_all(int fd, const void* data, uint64_t n, uint64_t off, const std::string& path) {
  const uint8_t* p = static_cast<const uint8_t*>(data);
  while (n > 0) {
    ssize_t w = ::pwrite(fd, p, size_t(std::min<uint64_t>(n, 1u << 30)), off_t(off));
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EFAULT) {
        std::string input = mapped_file_at(p);
        if (!input.empty()) fail_input(truncated_input_message(input));
      }
      fail_io(path + ": write failed: " + std::strerror(errno));
    }
    p += w;
    n -= uint64_t(w);
    off += uint64_t(w);
  }
}

}  // namespace

CheckpointWriter::CheckpointWriter(const std::string& out_dir, std::vector<TensorSpec> tensor_specs, uint64_t max_shard_bytes,
                                   const std::vector<std::pair<std::string, std::string>>& metadata)
    : dir(out_dir), specs(std::move(tensor_specs)) {
  // Plan shards greedily in declaration order.
  std::vector<int> shard_of(specs.size());
  std::vector<uint64_t> shard_bytes;
  std::unordered_set<std::string> seen;
  for (size_t i = 0; i < specs.size(); ++i) {
    if (!seen.insert(specs[i].name).second) fail_io("internal: tensor '" + specs[i].name + "' declared twice");
    uint64_t b = specs[i].nbytes();
    total_size += b;
    if (shard_bytes.empty() || (shard_bytes.back() > 0 && shard_bytes.back() + b > max_shard_bytes)) shard_bytes.push_back(0);
    shard_of[i] = int(shard_bytes.size()) - 1;
    shard_bytes.back() += b;
  }
  if (shard_bytes.empty()) shard_bytes.push_back(0);
  int n = int(shard_bytes.size());
  unflushed = std::make_unique<std::atomic<uint64_t>[]>(size_t(n));
  for (int s = 0; s < n; ++s) {
    if (n == 1) {
      shard_names.push_back("model.safetensors");
    } else {
      char buf[64];
      std::snprintf(buf, sizeof buf, "model-%05d-of-%05d.safetensors", s + 1, n);
      shard_names.push_back(buf);
    }
  }
  for (int s = 0; s < n; ++s) {
    nlohmann::ordered_json hdr = nlohmann::ordered_json::object();
    nlohmann::ordered_json meta = nlohmann::ordered_json::object();
    meta["format"] = "pt";
    for (const auto& [k, v] : metadata)
      if (k != "format") meta[k] = v;
    hdr["__metadata__"] = meta;
    uint64_t pos = 0;
    std::vector<size_t> members;
    for (size_t i = 0; i < specs.size(); ++i) {
      if (shard_of[i] != s) continue;
      uint64_t b = specs[i].nbytes();
      hdr[specs[i].name] = {{"dtype", dtype_name(specs[i].dtype)}, {"shape", specs[i].shape}, {"data_offsets", {pos, pos + b}}};
      members.push_back(i);
      pos += b;
    }
    std::string text = hdr.dump();
    while (text.size() % 8) text.push_back(' ');
    if (text.size() > kMaxSafetensorsHeader) fail_io("safetensors header would exceed 100,000,000 bytes");
    std::string path = dir + "/" + shard_names[s];
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) fail_io(path + ": cannot create: " + std::strerror(errno));
    fds.push_back(fd);
    uint8_t len[8];
    uint64_t hl = text.size();
    for (int i = 0; i < 8; ++i) len[i] = uint8_t(hl >> (8 * i));
    pwrite_all(fd, len, 8, 0, path);
    pwrite_all(fd, text.data(), text.size(), 8, path);
    uint64_t base = 8 + hl;
    if (::ftruncate(fd, off_t(base + pos)) != 0) fail_io(path + ": cannot size file: " + std::strerror(errno));
    uint64_t at = 0;
    for (size_t i : members) {
      uint64_t b = specs[i].nbytes();
      slots[specs[i].name] = Slot{s, base + at, b, false};
      at += b;
    }
  }
}

CheckpointWriter::~CheckpointWriter() {
  for (int fd : fds)
    if (fd >= 0) ::close(fd);
}

namespace {

// Dirty output pages are handed to the disk every kWritebackBytes per shard instead of all at once
// by finish()'s fsync: the disk works while the job computes, the page cache holds little, and the
// fsync before publication has little left to wait for (even for a one-layer output of 14 MB).
constexpr uint64_t kWritebackBytes = 4ull << 20;

void start_writeback(int fd, std::atomic<uint64_t>& unflushed, uint64_t nbytes) {
  uint64_t before = unflushed.fetch_add(nbytes, std::memory_order_relaxed);
  if (before + nbytes < kWritebackBytes) return;
  unflushed.store(0, std::memory_order_relaxed);
  ::sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);  // starts write-back; finish() still fsyncs
}

}  // namespace

void CheckpointWriter::write_part(const std::string& name, uint64_t at, const void* data, uint64_t nbytes) {
  auto it = slots.find(name);
  if (it == slots.end()) fail_io("internal: tensor '" + name + "' was not declared");
  const Slot& s = it->second;
  if (at > s.nbytes || nbytes > s.nbytes - at) fail_io("internal: write past the end of tensor '" + name + "'");
  pwrite_all(fds[s.shard], data, nbytes, s.file_offset + at, dir + "/" + shard_names[s.shard]);
  start_writeback(fds[s.shard], unflushed[s.shard], nbytes);
}

void CheckpointWriter::copy_from(const std::string& name, const InputFile& in, uint64_t in_offset) {
  auto it = slots.find(name);
  if (it == slots.end()) fail_io("internal: tensor '" + name + "' was not declared");
  Slot& s = it->second;
  const std::string out_path = dir + "/" + shard_names[s.shard];
  uint64_t done = 0;
  while (done < s.nbytes) {
    loff_t from = loff_t(in_offset + done), to = loff_t(s.file_offset + done);
    ssize_t n = ::copy_file_range(in.fd, &from, fds[s.shard], &to, size_t(std::min<uint64_t>(s.nbytes - done, 1ull << 30)), 0);
    if (n > 0) {
      done += uint64_t(n);
      continue;
    }
    if (n == 0) fail_input(truncated_input_message(in.path));
    if (errno == EINTR) continue;
    if (errno != EXDEV && errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP && errno != EBADF)
      fail_io(out_path + ": copy from " + in.path + " failed: " + std::strerror(errno));
    // No in-kernel copy between these files (another file system, old kernel): read and write.
    std::vector<uint8_t> buf(size_t(std::min<uint64_t>(s.nbytes - done, 16ull << 20)));
    while (done < s.nbytes) {
      size_t len = size_t(std::min<uint64_t>(s.nbytes - done, buf.size()));
      read_input(in, in_offset + done, buf.data(), len);
      pwrite_all(fds[s.shard], buf.data(), len, s.file_offset + done, out_path);
      done += len;
    }
  }
  start_writeback(fds[s.shard], unflushed[s.shard], s.nbytes);
  s.written = true;
}

void CheckpointWriter::mark_written(const std::string& name) {
  auto it = slots.find(name);
  if (it == slots.end()) fail_io("internal: tensor '" + name + "' was not declared");
  it->second.written = true;
}

void CheckpointWriter::write(const std::string& name, const void* data, uint64_t nbytes) {
  auto it = slots.find(name);
  if (it == slots.end()) fail_io("internal: tensor '" + name + "' was not declared");
  if (nbytes != it->second.nbytes) fail_io("internal: tensor '" + name + "' size mismatch");
  write_part(name, 0, data, nbytes);
  it->second.written = true;
}

void CheckpointWriter::finish() {
  for (const auto& sp : specs)
    if (!slots[sp.name].written) fail_io("internal: tensor '" + sp.name + "' was never written");
  for (size_t s = 0; s < fds.size(); ++s) {
    if (::fsync(fds[s]) != 0 && errno != EINVAL) fail_io(dir + "/" + shard_names[s] + ": fsync failed");
    if (::close(fds[s]) != 0) fail_io(dir + "/" + shard_names[s] + ": close failed");
    fds[s] = -1;
  }
  if (shard_names.size() > 1) {
    nlohmann::ordered_json idx;
    idx["metadata"] = {{"total_size", total_size}};
    std::vector<std::string> names;
    for (const auto& sp : specs) names.push_back(sp.name);
    std::sort(names.begin(), names.end());
    nlohmann::ordered_json wm = nlohmann::ordered_json::object();
    for (const auto& nm : names) wm[nm] = shard_names[slots[nm].shard];
    idx["weight_map"] = wm;
    write_json_file(dir + "/model.safetensors.index.json", idx);
  }
}

}  // namespace fp4z
