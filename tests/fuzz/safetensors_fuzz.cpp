// libFuzzer target: the safetensors header parser must reject or accept any bytes without UB or crashes.
#include <cstddef>
#include <cstdint>

#include "common/error.h"
#include "format/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fp4z::SafetensorsFile f;
  try {
    fp4z::parse_safetensors_header(data, size, "fuzz", f);
    // Accepted: every tensor's bytes must lie inside the buffer.
    for (const auto& t : f.tensors) {
      if (8 + f.header_len + t.end > size) __builtin_trap();
      volatile uint8_t sink = t.nbytes() ? data[8 + f.header_len + t.end - 1] : 0;
      (void)sink;
    }
  } catch (const fp4z::Error&) {
  }
  return 0;
}
