// A descriptor per shard of a checkpoint, opened once, for bulk copies and read-ahead of its tensors.
#pragma once
#include <cstdint>
#include <unordered_map>

#include "common/input_file.h"
#include "format/checkpoint.h"

namespace fp4z {

// The mapping of each shard stays the way tensors are read for computing; tensors that are only
// copied go from descriptor to descriptor (copy_file_range), and read-ahead hints go through it.
class ShardInputs {
 public:
  explicit ShardInputs(const Checkpoint& ck);
  // The shard file holding `r`, and the tensor's byte offset in it.
  const InputFile& file_of(const TensorRef& r) const;
  static uint64_t offset_of(const TensorRef& r) { return uint64_t(r.data() - r.file->map.data); }

 private:
  std::unordered_map<const SafetensorsFile*, InputFile> files_;
};

}  // namespace fp4z
