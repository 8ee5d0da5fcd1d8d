// GGUF v3 file writer: header, typed metadata key/values, tensor infos and aligned tensor data.
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace fp4z {

// The ggml tensor types this writer knows the block geometry of (numbers from ggml.h).
enum class GgmlType : uint32_t { kF32 = 0, kF16 = 1, kQ4_0 = 2, kBF16 = 30, kNvfp4 = 40 };

const char* ggml_type_name(GgmlType t);
// Elements per block and bytes per block of `t` (1 and the element size for float types).
int64_t ggml_block_elems(GgmlType t);
int64_t ggml_block_bytes(GgmlType t);
// Bytes of one row of `cols` elements; throws Error(exit 3) if cols is not a multiple of the block.
uint64_t ggml_row_bytes(GgmlType t, int64_t cols);

// Builds a GGUF file (spec: ggml's docs/gguf.md, version 3). Metadata and tensor infos are
// declared first; write_header() then writes everything before the data, and the tensors' bytes
// follow in declaration order through append()/end_tensor() (streamed, nothing buffered beyond
// the header). Every tensor's data starts at a multiple of `alignment` from the data section.
class GgufWriter {
 public:
  explicit GgufWriter(uint32_t alignment = 32);

  void add_u32(const std::string& key, uint32_t v);
  void add_i32(const std::string& key, int32_t v);
  void add_f32(const std::string& key, float v);
  void add_bool(const std::string& key, bool v);
  void add_string(const std::string& key, const std::string& v);
  void add_string_array(const std::string& key, const std::vector<std::string>& v);
  void add_f32_array(const std::string& key, const std::vector<float>& v);
  void add_i32_array(const std::string& key, const std::vector<int32_t>& v);
  void add_bool_array(const std::string& key, const std::vector<bool>& v);

  // Declares a tensor of logical shape `shape` (row-major, outermost first, as in safetensors;
  // GGUF stores the dimensions innermost first). Returns its index.
  size_t add_tensor(const std::string& name, GgmlType type, const std::vector<int64_t>& shape);
  uint64_t tensor_bytes(size_t index) const { return tensors_[index].nbytes; }
  size_t tensor_count() const { return tensors_.size(); }

  // Writes header, metadata and tensor infos to `path` (created/truncated).
  void write_header(const std::string& path);
  // Appends bytes of the current tensor (tensors are filled in declaration order).
  void append(const void* data, uint64_t nbytes);
  // Checks the current tensor is complete and pads to the alignment.
  void end_tensor();
  // Checks every tensor was written and closes the file (flush errors are fatal).
  void finish();
  ~GgufWriter();

 private:
  struct TensorDecl {
    std::string name;
    GgmlType type;
    std::vector<int64_t> shape;
    uint64_t nbytes = 0, offset = 0;
  };
  void key_header(const std::string& key, uint32_t type);
  void put_string(std::vector<uint8_t>& buf, const std::string& s);
  template <typename T>
  void put(std::vector<uint8_t>& buf, T v);
  void write_raw(const void* data, uint64_t n);

  uint32_t alignment_;
  uint64_t n_kv_ = 0;
  std::vector<uint8_t> kv_;
  std::vector<std::string> keys_;
  std::vector<TensorDecl> tensors_;
  uint64_t data_size_ = 0;
  std::string path_;
  FILE* file_ = nullptr;
  std::vector<char> file_buffer_;
  size_t current_ = 0;        // tensor being written
  uint64_t current_done_ = 0;  // its bytes so far
};

}  // namespace fp4z
