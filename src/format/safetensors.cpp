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

// Reads a JSON integer as a non-negative uint64 (rejects floats, negatives, bools).
bool as_u64(const nlohmann::ordered_json& v, uint64_t* out) {
  if (v.is_number_unsigned()) {
    *out = v.get<uint64_t>();
    return true;
  }
  if (v.is_number_integer()) {
    int64_t s = v.get<int64_t>();
    if (s < 0) return false;
    *out = uint64_t(s);
    return true;
  }
  return false;
}

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

  nlohmann::ordered_json hdr;
  try {
    hdr = parse_json_strict(out.header_json, label + " header");
  } catch (const Error& e) {
    fail(std::string("header: ") + e.what());
  }
  if (!hdr.is_object()) fail("header is not a JSON object");

  out.tensors.clear();
  out.metadata.clear();
  out.index.clear();
  for (auto it = hdr.begin(); it != hdr.end(); ++it) {
    const std::string& key = it.key();
    const auto& v = it.value();
    if (key == "__metadata__") {
      if (!v.is_object()) fail("__metadata__ is not an object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) fail("__metadata__ value of '" + m.key() + "' is not a string");
        out.metadata.emplace_back(m.key(), m.value().get<std::string>());
      }
      continue;
    }
    if (!v.is_object()) fail("entry '" + key + "' is not an object");
    TensorInfo t;
    t.name = key;
    auto dt = v.find("dtype");
    auto sh = v.find("shape");
    auto off = v.find("data_offsets");
    if (dt == v.end() || sh == v.end() || off == v.end()) fail("tensor '" + key + "' lacks dtype, shape or data_offsets");
    if (v.size() != 3) fail("tensor '" + key + "' has unexpected keys");
    if (!dt->is_string()) fail("tensor '" + key + "': dtype is not a string");
    auto d = dtype_from_string(dt->get<std::string>());
    if (!d) fail("tensor '" + key + "': unknown dtype '" + dt->get<std::string>() + "'");
    t.dtype = *d;
    if (!sh->is_array()) fail("tensor '" + key + "': shape is not an array");
    uint64_t count = 1;
    for (const auto& e : *sh) {
      uint64_t x;
      if (!as_u64(e, &x) || x > uint64_t(INT64_MAX)) fail("tensor '" + key + "': shape entries must be non-negative integers");
      if (mul_overflow(count, x, &count)) fail("tensor '" + key + "': shape product overflows");
      t.shape.push_back(int64_t(x));
    }
    if (!off->is_array() || off->size() != 2) fail("tensor '" + key + "': data_offsets is not a pair");
    if (!as_u64((*off)[0], &t.begin) || !as_u64((*off)[1], &t.end)) fail("tensor '" + key + "': data_offsets must be non-negative integers");
    if (t.end < t.begin) fail("tensor '" + key + "': data_offsets end < begin");
    uint64_t bytes;
    if (mul_overflow(count, dtype_size(t.dtype), &bytes)) fail("tensor '" + key + "': byte size overflows");
    if (bytes != t.end - t.begin)
      fail("tensor '" + key + "': shape x dtype is " + std::to_string(bytes) + " bytes but data_offsets span " + std::to_string(t.end - t.begin));
    out.index.emplace(key, out.tensors.size());
    out.tensors.push_back(std::move(t));
  }
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

void CheckpointWriter::write_part(const std::string& name, uint64_t at, const void* data, uint64_t nbytes) {
  auto it = slots.find(name);
  if (it == slots.end()) fail_io("internal: tensor '" + name + "' was not declared");
  const Slot& s = it->second;
  if (at > s.nbytes || nbytes > s.nbytes - at) fail_io("internal: write past the end of tensor '" + name + "'");
  pwrite_all(fds[s.shard], data, nbytes, s.file_offset + at, dir + "/" + shard_names[s.shard]);
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
