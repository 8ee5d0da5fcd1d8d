// GGUF v3 writer: little-endian header, typed key/values, tensor infos, aligned data section.
#include "format/gguf.h"

#include <cstring>

#include "common/error.h"

namespace fp4z {

namespace {
// GGUF metadata value types (gguf.md).
enum : uint32_t { kGgufU32 = 4, kGgufI32 = 5, kGgufF32 = 6, kGgufBool = 7, kGgufString = 8, kGgufArray = 9 };
constexpr uint32_t kGgufVersion = 3;
}  // namespace

const char* ggml_type_name(GgmlType t) {
  switch (t) {
    case GgmlType::kF32: return "F32";
    case GgmlType::kF16: return "F16";
    case GgmlType::kQ4_0: return "Q4_0";
    case GgmlType::kBF16: return "BF16";
    case GgmlType::kNvfp4: return "NVFP4";
  }
  return "?";
}

int64_t ggml_block_elems(GgmlType t) {
  switch (t) {
    case GgmlType::kQ4_0: return 32;
    case GgmlType::kNvfp4: return 64;
    default: return 1;
  }
}

int64_t ggml_block_bytes(GgmlType t) {
  switch (t) {
    case GgmlType::kF32: return 4;
    case GgmlType::kF16:
    case GgmlType::kBF16: return 2;
    case GgmlType::kQ4_0: return 18;   // f16 scale + 16 bytes of nibbles
    case GgmlType::kNvfp4: return 36;  // 4 UE4M3 scales + 32 bytes of nibbles
  }
  return 0;
}

uint64_t ggml_row_bytes(GgmlType t, int64_t cols) {
  int64_t be = ggml_block_elems(t);
  if (cols <= 0 || cols % be)
    fail_io(std::string("GGUF: a row of ") + std::to_string(cols) + " elements is not a whole number of " +
            ggml_type_name(t) + " blocks");
  return uint64_t(cols / be) * uint64_t(ggml_block_bytes(t));
}

GgufWriter::GgufWriter(uint32_t alignment) : alignment_(alignment) {}

GgufWriter::~GgufWriter() {
  if (file_) std::fclose(file_);
}

template <typename T>
void GgufWriter::put(std::vector<uint8_t>& buf, T v) {
  uint8_t b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));  // the project targets little-endian x86-64, as GGUF requires
  buf.insert(buf.end(), b, b + sizeof(T));
}

void GgufWriter::put_string(std::vector<uint8_t>& buf, const std::string& s) {
  put<uint64_t>(buf, s.size());
  buf.insert(buf.end(), s.begin(), s.end());
}

void GgufWriter::key_header(const std::string& key, uint32_t type) {
  for (const auto& k : keys_)
    if (k == key) fail_io("GGUF: metadata key " + key + " declared twice");
  keys_.push_back(key);
  put_string(kv_, key);
  put<uint32_t>(kv_, type);
  ++n_kv_;
}

void GgufWriter::add_u32(const std::string& key, uint32_t v) { key_header(key, kGgufU32); put(kv_, v); }
void GgufWriter::add_i32(const std::string& key, int32_t v) { key_header(key, kGgufI32); put(kv_, v); }
void GgufWriter::add_f32(const std::string& key, float v) { key_header(key, kGgufF32); put(kv_, v); }
void GgufWriter::add_bool(const std::string& key, bool v) { key_header(key, kGgufBool); put<uint8_t>(kv_, v ? 1 : 0); }
void GgufWriter::add_string(const std::string& key, const std::string& v) { key_header(key, kGgufString); put_string(kv_, v); }

void GgufWriter::add_string_array(const std::string& key, const std::vector<std::string>& v) {
  key_header(key, kGgufArray);
  put<uint32_t>(kv_, kGgufString);
  put<uint64_t>(kv_, v.size());
  for (const auto& s : v) put_string(kv_, s);
}

void GgufWriter::add_f32_array(const std::string& key, const std::vector<float>& v) {
  key_header(key, kGgufArray);
  put<uint32_t>(kv_, kGgufF32);
  put<uint64_t>(kv_, v.size());
  for (float x : v) put(kv_, x);
}

void GgufWriter::add_i32_array(const std::string& key, const std::vector<int32_t>& v) {
  key_header(key, kGgufArray);
  put<uint32_t>(kv_, kGgufI32);
  put<uint64_t>(kv_, v.size());
  for (int32_t x : v) put(kv_, x);
}

void GgufWriter::add_bool_array(const std::string& key, const std::vector<bool>& v) {
  key_header(key, kGgufArray);
  put<uint32_t>(kv_, kGgufBool);
  put<uint64_t>(kv_, v.size());
  for (bool x : v) put<uint8_t>(kv_, x ? 1 : 0);
}

size_t GgufWriter::add_tensor(const std::string& name, GgmlType type, const std::vector<int64_t>& shape) {
  if (file_) fail_io("GGUF: tensor " + name + " declared after the header was written");
  if (shape.empty()) fail_io("GGUF: tensor " + name + " has no dimensions");
  for (const auto& t : tensors_)
    if (t.name == name) fail_io("GGUF: tensor " + name + " declared twice");
  uint64_t rows = 1;
  for (size_t i = 0; i + 1 < shape.size(); ++i) {
    if (shape[i] <= 0) fail_io("GGUF: tensor " + name + " has a non-positive dimension");
    rows *= uint64_t(shape[i]);
  }
  TensorDecl d{name, type, shape, rows * ggml_row_bytes(type, shape.back()), 0};
  data_size_ = (data_size_ + alignment_ - 1) / alignment_ * alignment_;
  d.offset = data_size_;
  data_size_ += d.nbytes;
  tensors_.push_back(std::move(d));
  return tensors_.size() - 1;
}

void GgufWriter::write_raw(const void* data, uint64_t n) {
  if (n && std::fwrite(data, 1, n, file_) != n) fail_io(path_ + ": write failed");
}

void GgufWriter::write_header(const std::string& path) {
  path_ = path;
  file_ = std::fopen(path.c_str(), "wb");
  if (!file_) fail_io(path + ": cannot create file");
  file_buffer_.resize(8u << 20);
  std::setvbuf(file_, file_buffer_.data(), _IOFBF, file_buffer_.size());
  std::vector<uint8_t> head;
  head.insert(head.end(), {'G', 'G', 'U', 'F'});
  put<uint32_t>(head, kGgufVersion);
  put<uint64_t>(head, tensors_.size());
  put<uint64_t>(head, n_kv_);
  head.insert(head.end(), kv_.begin(), kv_.end());
  for (const auto& t : tensors_) {
    put_string(head, t.name);
    put<uint32_t>(head, uint32_t(t.shape.size()));
    for (size_t i = t.shape.size(); i-- > 0;) put<uint64_t>(head, uint64_t(t.shape[i]));  // innermost first
    put<uint32_t>(head, uint32_t(t.type));
    put<uint64_t>(head, t.offset);
  }
  while (head.size() % alignment_) head.push_back(0);
  write_raw(head.data(), head.size());
  current_ = 0;
  current_done_ = 0;
}

void GgufWriter::append(const void* data, uint64_t nbytes) {
  if (!file_ || current_ >= tensors_.size()) fail_io(path_ + ": GGUF data written past the last tensor");
  const TensorDecl& t = tensors_[current_];
  if (current_done_ + nbytes > t.nbytes) fail_io(path_ + ": GGUF tensor " + t.name + " given more bytes than declared");
  write_raw(data, nbytes);
  current_done_ += nbytes;
}

void GgufWriter::end_tensor() {
  if (!file_ || current_ >= tensors_.size()) fail_io(path_ + ": GGUF end_tensor past the last tensor");
  const TensorDecl& t = tensors_[current_];
  if (current_done_ != t.nbytes)
    fail_io(path_ + ": GGUF tensor " + t.name + " got " + std::to_string(current_done_) + " of " + std::to_string(t.nbytes) + " bytes");
  uint64_t end = t.offset + t.nbytes;
  uint64_t next = current_ + 1 < tensors_.size() ? tensors_[current_ + 1].offset : (end + alignment_ - 1) / alignment_ * alignment_;
  static const uint8_t zeros[256] = {};
  write_raw(zeros, next - end);
  ++current_;
  current_done_ = 0;
}

void GgufWriter::finish() {
  if (!file_) fail_io("GGUF: finish() before write_header()");
  if (current_ != tensors_.size())
    fail_io(path_ + ": GGUF finished with " + std::to_string(tensors_.size() - current_) + " tensors unwritten");
  bool ok = std::fflush(file_) == 0;
  ok = std::fclose(file_) == 0 && ok;
  file_ = nullptr;
  if (!ok) fail_io(path_ + ": write failed");
}

}  // namespace fp4z
