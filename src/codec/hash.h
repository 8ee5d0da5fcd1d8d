// XXH3-64 of chunk payloads and decoded chunks (docs/format.md §5), scalar (the system libxxhash) and
// AVX-512 (xxhash's own AVX-512 accumulate loop compiled inline): every path gives the same value.
#pragma once
#include <cstddef>
#include <cstdint>

namespace fp4z::codec {

uint64_t xxh3_64_scalar(const void* p, size_t n);
uint64_t xxh3_64_avx512(const void* p, size_t n);

using HashFn = uint64_t (*)(const void*, size_t);

}  // namespace fp4z::codec
