// A descriptor per shard of a checkpoint, opened once, for bulk copies and read-ahead of its tensors.
#include "format/shard_inputs.h"

#include "common/error.h"

namespace fp4z {

ShardInputs::ShardInputs(const Checkpoint& ck) {
  for (const auto& f : ck.files) files_.emplace(f.get(), open_input(f->map));
}

const InputFile& ShardInputs::file_of(const TensorRef& r) const {
  auto it = files_.find(r.file);
  if (it == files_.end()) fail_io("internal: tensor '" + r.info->name + "' is not in this checkpoint");
  return it->second;
}

}  // namespace fp4z
