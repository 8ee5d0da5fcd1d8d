// Global and block scale rules of the NVFP4 quantizers (compressed-tensors absmax, seed inflation).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace fp4z {

// How "source dtype" arithmetic rounds: compressed-tensors computes scales in the weight's dtype.
enum class SourceRounding { kF32, kBF16, kF16 };

float round_to_source(float x, SourceRounding r);

// compressed-tensors global scale: rnd(rnd(fl(1/amax)) * 2688) in the source dtype, as f32;
// 1.0 when amax is 0 or the result is not finite.
float absmax_global_scale(float amax, SourceRounding r);

// compressed-tensors block scale byte: q = rnd(amax_b / 6); s = min(fl(gs * q), 448); e4m3;
// a zero byte becomes 0.125 (0x20).
uint8_t absmax_block_scale(float amax_b, float gs, SourceRounding r);

// Seed step 5: g = fl(fl(1/M) * 448) (two roundings, as PyTorch evaluates 448/M); 1.0 if M == 0.
float seed_global_scale(float max_desired);

// Seed steps 6-7: e4m3(min(max(fl(D * g), 0), 448)).
uint8_t seed_block_scale(float desired, float g);

// The seed report's entropy proxy of a packed tensor (seed-method.md §5).
struct EntropyProxy {
  double mean_bits = 0;
  double std_bits = 0;  // population std over chunks
  uint64_t n_chunks = 0;
};
EntropyProxy entropy_proxy(const uint8_t* bytes, size_t n);
// Same, computing the chunks' entropies on `threads` threads (identical result).
EntropyProxy entropy_proxy_parallel(const uint8_t* bytes, size_t n, int threads);

// The same proxy from byte counts gathered piece by piece while a tensor is produced, so that no
// second pass reads it: per 32 KiB chunk, the counts of its even-offset and odd-offset bytes (H_chunk is
// the mean of the two halves' byte entropies).
class EntropyProxyCounts {
 public:
  static constexpr size_t kChunk = 32768;
  explicit EntropyProxyCounts(size_t nbytes);
  // Counts bytes [offset, offset + len) of the tensor; `p` points at byte `offset`. Calls for
  // disjoint ranges may run at the same time on different threads.
  void add(const uint8_t* p, size_t offset, size_t len);
  // Once every byte was added: the proxy, identical to entropy_proxy_parallel of the same bytes.
  EntropyProxy proxy(int threads) const;
  // Once every byte was added: the count of each 4-bit code over both nibbles (count_codes).
  void code_counts(uint64_t hist[16]) const;

 private:
  size_t n_;
  std::vector<uint32_t> counts_;  // [chunk][parity][byte value]
};

}  // namespace fp4z
