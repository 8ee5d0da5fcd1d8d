// A Hugging Face checkpoint directory: single-file or sharded safetensors, plus its other files.
#pragma once
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <unordered_map>
#include <vector>

#include "format/safetensors.h"

namespace fp4z {

struct TensorRef {
  const SafetensorsFile* file = nullptr;
  const TensorInfo* info = nullptr;
  const uint8_t* data() const { return file->data_of(*info); }
  // Drops the tensor's resident pages (read again from the page cache if touched later), so that a
  // job's resident set follows the tensors in hand, not the whole checkpoint.
  void release() const;
};

struct Checkpoint {
  std::string dir;
  bool sharded = false;
  std::vector<std::unique_ptr<SafetensorsFile>> files;  // shard order (index order, sorted file names)
  std::vector<std::string> names;                       // every tensor: shard order, then header order
  std::unordered_map<std::string, TensorRef> by_name;
  const TensorRef* find(const std::string& name) const;
  const TensorRef& get(const std::string& name) const;  // throws Error(exit 2) if missing
  // Files of the directory that are not safetensors weights or the index (config, tokenizer, ...).
  std::vector<std::string> other_files() const;
};

// Opens `dir`: model.safetensors.index.json if present (every shard validated, every tensor in
// exactly one shard), else model.safetensors, else the single *.safetensors file.
std::unique_ptr<Checkpoint> open_checkpoint(const std::string& dir);

// Parses a JSON file strictly (duplicate keys rejected). Throws Error(exit 2) naming the file.
nlohmann::ordered_json read_json_file(const std::string& path);
// Parses JSON text strictly; `label` names the source in errors.
nlohmann::ordered_json parse_json_strict(const std::string& text, const std::string& label);
// Writes JSON with indent 2 and a trailing newline.
void write_json_file(const std::string& path, const nlohmann::ordered_json& j);
// Copies a file byte for byte.
void copy_file_exact(const std::string& from, const std::string& to);

}  // namespace fp4z
