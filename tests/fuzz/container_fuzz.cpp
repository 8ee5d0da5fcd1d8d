// libFuzzer target: the .fp4z container parser and, for inputs that parse, every chunk decoder
// (checksums skipped so that hostile payloads reach the decoders).
#include <cstddef>
#include <cstdint>
#include <vector>

#include "codec/container.h"
#include "common/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace fp4z::codec;
  ContainerIndex idx;
  try {
    (void)parse_container(data, size, "fuzz");
  } catch (const fp4z::Error&) {
  }
  // Without the index checksum, so that mutated indexes exercise the parser's own checks.
  try {
    idx = parse_container(data, size, "fuzz", /*verify_index_hash=*/false);
  } catch (const fp4z::Error&) {
    return 0;
  }
  CodecScratch scratch;
  std::vector<uint8_t> out;
  for (size_t k = 0; k < idx.chunks.size(); ++k) {
    if (idx.chunks[k].raw_size > (1u << 22)) continue;  // keep each run fast; the parser bounds it anyway
    out.resize(size_t(idx.chunks[k].raw_size));
    for (bool verify : {false, true}) {
      try {
        decode_container_chunk(data, size, idx, k, out.data(), scratch, "fuzz", verify);
      } catch (const fp4z::Error&) {
      }
    }
  }
  if (!idx.tensors.empty()) {
    try {
      (void)find_tensor(idx, idx.tensors[0].name);
    } catch (const fp4z::Error&) {
    }
  }
  return 0;
}
