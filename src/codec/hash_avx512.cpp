// XXH3-64 compiled with AVX-512F: xxhash selects its 512-bit accumulate loop from the compiler flags
// (about 3x the system library's SSE2 build on 1 MiB chunks); the result is XXH3 as specified.
#define XXH_INLINE_ALL
// GCC 12 flags the _mm512_undefined_* pass-through operands inside xxhash's intrinsics.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <xxhash.h>
#pragma GCC diagnostic pop

#include "codec/hash.h"

namespace fp4z::codec {

static_assert(XXH_VECTOR == XXH_AVX512, "this file must be compiled with -mavx512f");

uint64_t xxh3_64_avx512(const void* p, size_t n) { return XXH3_64bits(p, n); }

}  // namespace fp4z::codec
