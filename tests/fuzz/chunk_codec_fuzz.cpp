// libFuzzer target: every chunk decoder on arbitrary payloads, and encode->decode identity of every
// codec on arbitrary data (a mismatch aborts).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "codec/chunk_codec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace fp4z::codec;
  if (size < 4) return 0;
  ChunkCodec codec = ChunkCodec(data[0] % (kChunkCodecCount + 1));  // includes one invalid value
  size_t n = (size_t(data[1]) | size_t(data[2]) << 8 | size_t(data[3] & 0x0F) << 16) + 1;
  const uint8_t* payload = data + 4;
  size_t psize = size - 4;
  thread_local CodecScratch scratch;
  std::vector<uint8_t> out(n);
  (void)decode_chunk(codec, payload, psize, out.data(), n, scratch);
  // Round trip of the payload bytes as data.
  if (size_t(codec) < size_t(kChunkCodecCount) && psize > 0) {
    unsigned es = chunk_codec_element_size(codec);
    size_t m = psize - psize % es;
    if (m == 0) return 0;
    std::vector<uint8_t> coded, back(m);
    ChunkCodec used = encode_chunk(codec, payload, m, 1, coded, scratch);
    std::string err = decode_chunk(used, coded.data(), coded.size(), back.data(), m, scratch);
    if (!err.empty() || std::memcmp(back.data(), payload, m) != 0 || coded.size() > m) std::abort();
  }
  return 0;
}
