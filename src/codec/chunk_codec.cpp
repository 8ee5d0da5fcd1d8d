// Chunk codecs: entropy streams (raw / const / rANS), float byte-plane transforms, zstd, raw fallback.
#include "codec/chunk_codec.h"

#include <zstd.h>

#include <cmath>
#include <cstring>

#include "codec/planes.h"

namespace fp4z::codec {

const CodecKernels kCodecKernelsScalar = {Isa::kScalar, rans::decode_rounds_scalar, rans::encode_rounds_scalar,
                                           split_bf16_scalar, merge_bf16_scalar,
                                           xxh3_64_scalar};
const CodecKernels kCodecKernelsAvx512 = {Isa::kAvx512, rans::decode_rounds_avx512, rans::encode_rounds_avx512,
                                           split_bf16_avx512, merge_bf16_avx512,
                                           xxh3_64_avx512};

const CodecKernels& codec_kernels(Isa isa) { return isa == Isa::kAvx512 ? kCodecKernelsAvx512 : kCodecKernelsScalar; }

namespace {

void put_varint(std::vector<uint8_t>& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(uint8_t(v | 0x80));
    v >>= 7;
  }
  out.push_back(uint8_t(v));
}
size_t varint_size(uint64_t v) {
  size_t k = 1;
  while (v >= 0x80) v >>= 7, ++k;
  return k;
}
// Bounded varint read; false on overrun or more than 64 bits.
bool get_varint(const uint8_t* data, size_t size, size_t* pos, uint64_t* v) {
  uint64_t r = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (*pos >= size) return false;
    uint8_t b = data[(*pos)++];
    if (shift == 63 && (b & 0x7E)) return false;
    r |= uint64_t(b & 0x7F) << shift;
    if (!(b & 0x80)) {
      *v = r;
      return true;
    }
  }
  return false;
}
void put_u32(std::vector<uint8_t>& out, uint32_t v) {
  for (int k = 0; k < 4; ++k) out.push_back(uint8_t(v >> (8 * k)));
}
uint32_t get_u32(const uint8_t* p) {
  return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
}

// Bytes of the fixed part of a rANS stream of `lanes` states besides the table: mode + states.
constexpr size_t rans_fixed_bytes(int lanes) { return 1 + 4 * size_t(lanes); }

// --- float byte planes -------------------------------------------------------------------------

void split_f16(const uint8_t* raw, size_t m, uint8_t* hi, uint8_t* lo) {
  for (size_t i = 0; i < m; ++i) {
    lo[i] = raw[2 * i];
    hi[i] = raw[2 * i + 1];
  }
}
void merge_f16(const uint8_t* hi, const uint8_t* lo, size_t m, uint8_t* out) {
  for (size_t i = 0; i < m; ++i) {
    out[2 * i] = lo[i];
    out[2 * i + 1] = hi[i];
  }
}
void split_f32(const uint8_t* raw, size_t m, uint8_t* p0, uint8_t* p1, uint8_t* p2, uint8_t* p3) {
  for (size_t i = 0; i < m; ++i) {
    uint32_t b = get_u32(raw + 4 * i);
    p0[i] = uint8_t(b >> 23);
    p1[i] = uint8_t(((b >> 24) & 0x80) | ((b >> 16) & 0x7F));
    p2[i] = uint8_t(b >> 8);
    p3[i] = uint8_t(b);
  }
}
void merge_f32(const uint8_t* p0, const uint8_t* p1, const uint8_t* p2, const uint8_t* p3, size_t m, uint8_t* out) {
  for (size_t i = 0; i < m; ++i) {
    uint32_t b = (uint32_t(p1[i] & 0x80) << 24) | (uint32_t(p0[i]) << 23) | (uint32_t(p1[i] & 0x7F) << 16) |
                 (uint32_t(p2[i]) << 8) | p3[i];
    std::memcpy(out + 4 * i, &b, 4);  // little-endian host (x86-64)
  }
}

// Decodes one stream; for raw streams it may point *result straight into the payload instead of
// copying into buf.
std::string decode_stream_view(const uint8_t* data, size_t size, size_t* pos, uint8_t* buf, size_t n,
                               CodecScratch& scratch, const uint8_t** result) {
  if (*pos >= size) return "stream header missing";
  StreamMode mode = StreamMode(data[(*pos)++]);
  *result = buf;
  switch (mode) {
    case StreamMode::kRaw:
      if (size - *pos < n) return "raw stream truncated";
      *result = data + *pos;
      *pos += n;
      return "";
    case StreamMode::kConst:
      if (*pos >= size) return "const stream truncated";
      if (n == 0) return "const stream with no symbols";
      std::memset(buf, data[*pos], n);
      *pos += 1;
      return "";
    case StreamMode::kRans:
    case StreamMode::kRansWide: {
      const int lanes = mode == StreamMode::kRansWide ? rans::kWideLanes : rans::kLanes;
      if (n == 0) return "rANS stream with no symbols";
      if (size - *pos < 32) return "rANS table truncated";
      const uint8_t* bitmap = data + *pos;
      *pos += 32;
      rans::FreqTable t;
      uint32_t sum = 0;
      for (int s = 0; s < 256; ++s) {
        t.freq[s] = 0;
        if (!(bitmap[s >> 3] & (1u << (s & 7)))) continue;
        uint64_t f1;
        if (!get_varint(data, size, pos, &f1)) return "rANS table truncated";
        if (f1 + 1 > rans::kTotal - 1) return "rANS frequency out of range";
        t.freq[s] = uint32_t(f1 + 1);
        sum += t.freq[s];
        if (sum > rans::kTotal) return "rANS frequencies exceed the total";
      }
      if (sum != rans::kTotal) return "rANS frequencies do not sum to the total";
      t.finish_starts();
      if (size - *pos < 4 * size_t(lanes)) return "rANS states truncated";
      uint32_t states[rans::kMaxLanes];
      for (int l = 0; l < lanes; ++l) states[l] = get_u32(data + *pos + 4 * l);
      *pos += 4 * size_t(lanes);
      uint64_t n_words;
      if (!get_varint(data, size, pos, &n_words)) return "rANS word count truncated";
      if (n_words > (size - *pos) / 2) return "rANS words truncated";
      rans::build_decode_table(t, scratch.table);
      if (!rans::decode(scratch.table, lanes, states, data + *pos, size_t(n_words), buf, n,
                        scratch.kernels->decode_rounds))
        return "rANS stream inconsistent (corrupt data)";
      *pos += 2 * size_t(n_words);
      return "";
    }
  }
  return "unknown stream mode " + std::to_string(int(mode));
}

}  // namespace

CodecScratch::~CodecScratch() {
  if (cctx) ZSTD_freeCCtx(cctx);
  if (dctx) ZSTD_freeDCtx(dctx);
}

const char* chunk_codec_name(ChunkCodec c) {
  switch (c) {
    case ChunkCodec::kRaw: return "raw";
    case ChunkCodec::kZstd: return "zstd";
    case ChunkCodec::kBytes: return "rans-bytes";
    case ChunkCodec::kSplitBF16: return "split-bf16";
    case ChunkCodec::kSplitF16: return "split-f16";
    case ChunkCodec::kSplitF32: return "split-f32";
  }
  return "?";
}

unsigned chunk_codec_element_size(ChunkCodec c) {
  switch (c) {
    case ChunkCodec::kSplitBF16:
    case ChunkCodec::kSplitF16: return 2;
    case ChunkCodec::kSplitF32: return 4;
    default: return 1;
  }
}

size_t table_bytes(const rans::FreqTable& t) {
  size_t k = 32;
  for (int s = 0; s < 256; ++s)
    if (t.freq[s]) k += varint_size(t.freq[s] - 1);
  return k;
}

void encode_stream(const uint8_t* sym, size_t n, std::vector<uint8_t>& out, CodecScratch& scratch) {
  auto put_raw = [&] {
    out.push_back(uint8_t(StreamMode::kRaw));
    out.insert(out.end(), sym, sym + n);
  };
  if (n == 0) return put_raw();
  uint64_t counts[256];
  rans::histogram(sym, n, counts);
  int distinct = rans::distinct_symbols(counts);
  if (distinct == 1) {
    out.push_back(uint8_t(StreamMode::kConst));
    out.push_back(sym[0]);
    return;
  }
  rans::FreqTable t;
  rans::normalize(counts, t);
  // Estimate first (ideal code length under the quantised table), so that streams which cannot
  // pay (mantissa planes, near-uniform bytes) skip the encoder entirely.
  double bits = 0;
  for (int s = 0; s < 256; ++s)
    if (counts[s]) bits += double(counts[s]) * (rans::kScaleBits - std::log2(double(t.freq[s])));
  const bool wide = n >= kWideStreamSymbols;
  const int lanes = wide ? rans::kWideLanes : rans::kLanes;
  size_t overhead = rans_fixed_bytes(lanes) + table_bytes(t) + varint_size(n);
  if (double(overhead) + bits / 8 >= double(n)) return put_raw();
  uint32_t states[rans::kMaxLanes];
  rans::encode(sym, n, t, lanes, states, scratch.words, scratch.kernels->encode_rounds);
  size_t n_words = scratch.words.size();
  size_t coded = overhead - varint_size(n) + varint_size(n_words) + 2 * n_words;
  if (coded >= n + 1) return put_raw();
  out.push_back(uint8_t(wide ? StreamMode::kRansWide : StreamMode::kRans));
  size_t bitmap_at = out.size();
  out.resize(out.size() + 32, 0);
  for (int s = 0; s < 256; ++s)
    if (t.freq[s]) out[bitmap_at + (s >> 3)] |= uint8_t(1u << (s & 7));
  for (int s = 0; s < 256; ++s)
    if (t.freq[s]) put_varint(out, t.freq[s] - 1);
  for (int l = 0; l < lanes; ++l) put_u32(out, states[l]);
  put_varint(out, n_words);
  // The words are stored little-endian, which is the host's order (x86-64): one copy.
  const uint8_t* wb = reinterpret_cast<const uint8_t*>(scratch.words.data());
  out.insert(out.end(), wb, wb + 2 * n_words);
}

std::string decode_stream(const uint8_t* data, size_t size, size_t* pos, uint8_t* out, size_t n,
                          CodecScratch& scratch) {
  const uint8_t* view;
  std::string err = decode_stream_view(data, size, pos, out, n, scratch, &view);
  if (err.empty() && view != out) std::memcpy(out, view, n);
  return err;
}

namespace {

// zstd frame of raw[0..n) in `out`; false when zstd fails or does not shrink the data.
bool zstd_frame(const uint8_t* raw, size_t n, int level, std::vector<uint8_t>& out, CodecScratch& scratch) {
  if (!scratch.cctx) scratch.cctx = ZSTD_createCCtx();
  out.resize(ZSTD_compressBound(n));
  size_t r = ZSTD_compressCCtx(scratch.cctx, out.data(), out.size(), raw, n, level);
  if (ZSTD_isError(r) || r >= n) return false;
  out.resize(r);
  return true;
}

}  // namespace

ChunkCodec encode_chunk(ChunkCodec want, const uint8_t* raw, size_t n, int zstd_level, std::vector<uint8_t>& payload,
                        CodecScratch& scratch) {
  payload.clear();
  unsigned es = chunk_codec_element_size(want);
  if (n == 0 || n % es != 0) want = ChunkCodec::kRaw;
  size_t m = n / es;
  switch (want) {
    case ChunkCodec::kRaw: break;
    case ChunkCodec::kZstd:
      if (zstd_frame(raw, n, zstd_level, payload, scratch)) return want;
      break;
    case ChunkCodec::kBytes:
      encode_stream(raw, n, payload, scratch);
      break;
    case ChunkCodec::kSplitBF16:
    case ChunkCodec::kSplitF16:
    case ChunkCodec::kSplitF32: {
      scratch.planes.resize(n);
      uint8_t* p = scratch.planes.data();
      if (want == ChunkCodec::kSplitBF16) scratch.kernels->split_bf16(raw, m, p, p + m);
      else if (want == ChunkCodec::kSplitF16) split_f16(raw, m, p, p + m);
      else split_f32(raw, m, p, p + m, p + 2 * m, p + 3 * m);
      for (unsigned k = 0; k < es; ++k) encode_stream(p + k * m, m, payload, scratch);
      break;
    }
  }
  if (want != ChunkCodec::kRaw && want != ChunkCodec::kZstd) {  // an entropy-coded chunk
    const bool coded_smaller = payload.size() < n;
    // Small chunks pay a frequency table per stream; zstd's adaptive coding may do better there.
    if (n <= kSmallChunkBytes && zstd_frame(raw, n, std::max(zstd_level, kSmallChunkZstdLevel), scratch.alt, scratch) &&
        (!coded_smaller || scratch.alt.size() < payload.size())) {
      payload.swap(scratch.alt);
      return ChunkCodec::kZstd;
    }
    if (coded_smaller) return want;
  }
  payload.assign(raw, raw + n);
  return ChunkCodec::kRaw;
}

std::string decode_chunk(ChunkCodec codec, const uint8_t* payload, size_t payload_size, uint8_t* out, size_t n,
                         CodecScratch& scratch) {
  switch (codec) {
    case ChunkCodec::kRaw:
      if (payload_size != n) return "raw payload size differs from the chunk size";
      if (n) std::memcpy(out, payload, n);
      return "";
    case ChunkCodec::kZstd: {
      if (!scratch.dctx) scratch.dctx = ZSTD_createDCtx();
      size_t r = ZSTD_decompressDCtx(scratch.dctx, out, n, payload, payload_size);
      if (ZSTD_isError(r)) return std::string("zstd: ") + ZSTD_getErrorName(r);
      if (r != n) return "zstd frame decodes to the wrong size";
      return "";
    }
    case ChunkCodec::kBytes: {
      size_t pos = 0;
      std::string err = decode_stream(payload, payload_size, &pos, out, n, scratch);
      if (err.empty() && pos != payload_size) err = "trailing bytes after the stream";
      return err;
    }
    case ChunkCodec::kSplitBF16:
    case ChunkCodec::kSplitF16:
    case ChunkCodec::kSplitF32: {
      unsigned es = chunk_codec_element_size(codec);
      if (n % es) return "chunk size is not a multiple of the element size";
      size_t m = n / es;
      scratch.planes.resize(n);
      uint8_t* p = scratch.planes.data();
      const uint8_t* view[4] = {};
      size_t pos = 0;
      for (unsigned k = 0; k < es; ++k) {
        std::string err = decode_stream_view(payload, payload_size, &pos, p + k * m, m, scratch, &view[k]);
        if (!err.empty()) return "plane " + std::to_string(k) + ": " + err;
      }
      if (pos != payload_size) return "trailing bytes after the streams";
      if (codec == ChunkCodec::kSplitBF16) scratch.kernels->merge_bf16(view[0], view[1], m, out);
      else if (codec == ChunkCodec::kSplitF16) merge_f16(view[0], view[1], m, out);
      else merge_f32(view[0], view[1], view[2], view[3], m, out);
      return "";
    }
  }
  return "unknown codec " + std::to_string(int(codec));
}

}  // namespace fp4z::codec
