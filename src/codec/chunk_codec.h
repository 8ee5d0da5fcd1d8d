// Chunk codecs of the .fp4z container: raw, zstd, byte rANS, and float byte-plane splits (docs/format.md §4).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "codec/rans.h"
#include "codec/hash.h"
#include "codec/planes.h"
#include "codec/rans_simd.h"

// zstd's context types, declared so that <zstd.h> stays out of the codec's public headers.
struct ZSTD_CCtx_s;
struct ZSTD_DCtx_s;

namespace fp4z::codec {

// How one chunk's payload turns back into its raw bytes. Values are part of the file format.
enum class ChunkCodec : uint8_t {
  kRaw = 0,        // payload == raw bytes
  kZstd = 1,       // one zstd frame
  kBytes = 2,      // one entropy stream over the bytes (FP4 code pairs, FP8 scales)
  kSplitBF16 = 3,  // two streams: exponent bytes, sign|7-bit mantissa bytes
  kSplitF16 = 4,   // two streams: high bytes, low bytes
  kSplitF32 = 5,   // four streams: exponent, sign|mantissa[22:16], mantissa[15:8], mantissa[7:0]
};
constexpr int kChunkCodecCount = 6;
const char* chunk_codec_name(ChunkCodec c);
// Element size the chunk's raw size must be a multiple of (1 for byte codecs).
unsigned chunk_codec_element_size(ChunkCodec c);

// Entropy stream modes inside kBytes / kSplit* payloads. kRansWide (format 1.1) is kRans with
// rans::kWideLanes states instead of rans::kLanes; the encoder uses it for streams of at least
// kWideStreamSymbols symbols, where its 128 extra state bytes cost < 0.4% (< 0.03% in a 1 MiB
// chunk) and its decoder runs twice as many independent state chains (~1.4x faster, AVX-512).
enum class StreamMode : uint8_t { kRaw = 0, kConst = 1, kRans = 2, kRansWide = 3 };
constexpr size_t kWideStreamSymbols = size_t(64) << 10;

// The codec's SIMD kernels for one ISA level: one table per level, chosen once from the CPU features
// (as nvfp4's NvKernels). Every table gives identical bytes.
struct CodecKernels {
  Isa isa;
  rans::DecodeRoundsFn decode_rounds;
  rans::EncodeRoundsFn encode_rounds;
  SplitFn split_bf16;
  MergeFn merge_bf16;
  HashFn hash;  // XXH3-64 of payloads and decoded chunks
};
extern const CodecKernels kCodecKernelsScalar;
extern const CodecKernels kCodecKernelsAvx512;
// The table for `isa` (the best one at or below it).
const CodecKernels& codec_kernels(Isa isa);

// Per-thread working memory for encoding and decoding chunks (reused between chunks).
struct CodecScratch {
  std::vector<uint8_t> planes;     // de-interleaved byte planes
  std::vector<uint16_t> words;     // rANS words of one stream
  std::vector<uint8_t> check;      // verify-after-encode buffer
  std::vector<uint8_t> alt;        // the zstd alternative of a small chunk
  rans::DecodeTable table;
  ZSTD_CCtx_s* cctx = nullptr;
  ZSTD_DCtx_s* dctx = nullptr;
  // Kernels for this CPU (detect_isa(), capped by FP4Z_ISA).
  const CodecKernels* kernels = &codec_kernels(detect_isa());
  CodecScratch() = default;
  CodecScratch(const CodecScratch&) = delete;
  CodecScratch& operator=(const CodecScratch&) = delete;
  ~CodecScratch();
};

// Encodes raw[0..n) as `want` (n must be a multiple of its element size), appending the payload to
// `payload` (cleared first). Falls back to kRaw when the coded form would not be smaller, and for an
// entropy-coded chunk of at most kSmallChunkBytes also tries zstd at level >= kSmallChunkZstdLevel,
// keeping the smaller (small tensors pay a frequency table per stream that zstd's adaptive coding
// does not). Returns the codec actually used.
constexpr size_t kSmallChunkBytes = size_t(64) << 10;
constexpr int kSmallChunkZstdLevel = 19;
ChunkCodec encode_chunk(ChunkCodec want, const uint8_t* raw, size_t n, int zstd_level, std::vector<uint8_t>& payload,
                        CodecScratch& scratch);

// Decodes a payload into out[0..n). Returns an empty string on success, else a short description of
// the fault. Never reads outside payload[0..payload_size) nor writes outside out[0..n), whatever the
// input.
std::string decode_chunk(ChunkCodec codec, const uint8_t* payload, size_t payload_size, uint8_t* out, size_t n,
                         CodecScratch& scratch);

// One entropy stream (the building block of kBytes/kSplit*): appends the coded form of sym[0..n) to out.
void encode_stream(const uint8_t* sym, size_t n, std::vector<uint8_t>& out, CodecScratch& scratch);
// Decodes one stream of n symbols starting at *pos (advanced past it). Returns "" or the fault.
std::string decode_stream(const uint8_t* data, size_t size, size_t* pos, uint8_t* out, size_t n, CodecScratch& scratch);

// Size in bytes of the serialised frequency table of t (for reports).
size_t table_bytes(const rans::FreqTable& t);

}  // namespace fp4z::codec
