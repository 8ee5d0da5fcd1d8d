// Portable XXH3-64 through the system libxxhash (the reference the AVX-512 build is tested against).
#include "codec/hash.h"

#include <xxhash.h>

namespace fp4z::codec {

uint64_t xxh3_64_scalar(const void* p, size_t n) { return XXH3_64bits(p, n); }

}  // namespace fp4z::codec
