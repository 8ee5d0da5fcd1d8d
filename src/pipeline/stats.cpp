// `fp4z stats` computations: per quantized layer entropies, real coded sizes (the container's coder),
// zstd -19 comparison, bits per weight, histograms, and reference MSE.
#include "pipeline/stats.h"

#include <zstd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <set>

#include "codec/chunk_codec.h"
#include "common/error.h"
#include "common/parallel.h"
#include "common/printable.h"
#include "nvfp4/rd.h"
#include "format/checkpoint.h"
#include "format/nvfp4_tensors.h"
#include "model/model.h"
#include "nvfp4/measure.h"

namespace fp4z {

namespace {

constexpr uint64_t kCodedChunk = 1 << 20;  // the container's default chunk size
constexpr double kTableBytesPer16 = 24;    // a 16-entry frequency table, as in the design note

using codec::ChunkCodec;
using codec::CodecScratch;

uint64_t coded_size(const uint8_t* p, uint64_t n, CodecScratch& scratch) {
  std::vector<uint8_t> payload;
  uint64_t total = 0;
  for (uint64_t at = 0; at < n; at += kCodedChunk) {
    uint64_t m = std::min(kCodedChunk, n - at);
    codec::encode_chunk(ChunkCodec::kBytes, p + at, size_t(m), 1, payload, scratch);
    total += payload.size();
  }
  return total;
}

uint64_t zstd19_size(const uint8_t* p, uint64_t n) {
  std::vector<uint8_t> out(ZSTD_compressBound(size_t(n)));
  size_t r = ZSTD_compress(out.data(), out.size(), p, size_t(n), 19);
  return ZSTD_isError(r) ? 0 : uint64_t(r);
}


}  // namespace

double byte_entropy(const uint8_t* p, uint64_t n) {
  uint64_t c[256] = {};
  for (uint64_t i = 0; i < n; ++i) ++c[p[i]];
  return entropy_bits(c, 256);
}

StatsReport compute_stats(const std::string& dir, const StatsOptions& opt) {
  StatsReport rep;
  rep.dir = dir;
  std::unique_ptr<Checkpoint> ck = open_checkpoint(dir);
  std::unique_ptr<Checkpoint> ref;
  if (!opt.reference.empty()) ref = open_checkpoint(opt.reference);
  std::vector<Nvfp4Tensors> layers;
  std::set<std::string> seen;
  uint64_t quant_bytes = 0, all_bytes = 0;
  for (const std::string& name : ck->names) {
    all_bytes += ck->get(name).info->nbytes();
    Nvfp4NameRole nr = classify_nvfp4_name(name);
    if (nr.role == Nvfp4Role::kNone || seen.count(nr.module)) continue;
    Nvfp4Lookup found = find_nvfp4_tensors(*ck, nr.module);
    if (!found.quantized()) continue;
    seen.insert(nr.module);
    Nvfp4Tensors q = require_nvfp4_tensors(found);
    require_usable_block_scales(q, opt.threads);
    quant_bytes += q.codes->info->nbytes() + q.block_scales->info->nbytes() + 4;
    layers.push_back(q);
  }
  if (layers.empty()) fail_input(dir + ": no NVFP4 layers (compressed-tensors weight_packed or ModelOpt weight + weight_scale)");
  rep.other_tensor_bytes = all_bytes - quant_bytes;
  rep.layers.resize(layers.size());

  parallel_for(layers.size(), resolve_threads(opt.threads), 1, [&](size_t b, size_t e) {
    CodecScratch scratch;
    for (size_t i = b; i < e; ++i) {
      const Nvfp4Tensors& l = layers[i];
      LayerStats& s = rep.layers[i];
      s.name = l.module;
      s.format = nvfp4_convention_name(l.convention);
      const uint8_t* codes = l.codes->data();
      const uint8_t* scales = l.block_scales->data();
      s.code_bytes = l.codes->info->nbytes();
      s.scale_bytes = l.block_scales->info->nbytes();
      s.weights = 2 * s.code_bytes;
      s.proxy = entropy_proxy(codes, s.code_bytes);
      // Histograms: codes, code pairs, codes per scale value.
      std::vector<uint64_t> per_scale(256 * 16, 0);
      uint64_t pairs[256] = {}, sc[256] = {};
      for (uint64_t j = 0; j < s.code_bytes; ++j) {
        uint8_t byte = codes[j];
        uint8_t scale = scales[j / 8];
        ++pairs[byte];
        ++per_scale[scale * 16 + (byte & 15)];
        ++per_scale[scale * 16 + (byte >> 4)];
      }
      for (uint64_t j = 0; j < s.scale_bytes; ++j) ++sc[scales[j]];
      count_codes(codes, s.code_bytes, s.code_hist);
      s.h0_codes = entropy_bits(s.code_hist, 16);
      s.h0_code_pairs = entropy_bits(pairs, 256) / 2;
      s.h0_scales = entropy_bits(sc, 256);
      double hcond = 0;
      int used_scales = 0;
      for (int v = 0; v < 256; ++v) {
        uint64_t n = 0;
        for (int c = 0; c < 16; ++c) n += per_scale[v * 16 + c];
        if (!n) continue;
        ++used_scales;
        hcond += double(n) * entropy_bits(&per_scale[v * 16], 16);
      }
      s.h_codes_given_scale = hcond / double(s.weights);
      s.cond_scale_table_bits = 8.0 * kTableBytesPer16 * used_scales / double(s.weights);
      s.coded_codes = coded_size(codes, s.code_bytes, scratch);
      s.coded_scales = coded_size(scales, s.scale_bytes, scratch);
      if (opt.zstd) {
        s.has_zstd = true;
        s.zstd_codes = zstd19_size(codes, s.code_bytes);
        s.zstd_scales = zstd19_size(scales, s.scale_bytes);
      }
      s.bits_per_weight = 8.0 * double(s.coded_codes + s.coded_scales + 4) / double(s.weights);
      s.raw_bits_per_weight = 8.0 * double(s.code_bytes + s.scale_bytes + 4) / double(s.weights);
      if (ref) {
        const TensorRef* src = ref->find(l.module + ".weight");
        if (!src) fail_input(opt.reference + ": no source tensor " + l.module + ".weight");
        if (!dtype_is_float_weight(src->info->dtype))
          fail_input(opt.reference + ": " + l.module + ".weight is not F32/F16/BF16");
        if (src->info->shape != std::vector<int64_t>{l.rows, l.cols})
          fail_input(opt.reference + ": " + l.module + ".weight has shape other than the quantized layer's [" +
                     std::to_string(l.rows) + ", " + std::to_string(l.cols) + "]");
        const DType dt = src->info->dtype;
        const size_t C = size_t(l.cols), row_bytes = C * dtype_size(dt);
        PackedWeights pw{codes, scales, size_t(l.rows), C, l.global_scale, l.global_is_divisor};
        RowStats st = packed_error_stats(
            pw, [&](size_t r, float* out) { convert_to_f32(src->data() + r * row_bytes, dt, C, out); }, 1);
        s.has_mse = true;
        s.mse = mse_of(st, s.weights);
      }
    }
  });

  LayerStats& t = rep.total;
  t.name = "total";
  double wsum = 0;
  for (const LayerStats& s : rep.layers) {
    double w = double(s.weights);
    wsum += w;
    t.weights += s.weights;
    t.code_bytes += s.code_bytes;
    t.scale_bytes += s.scale_bytes;
    t.coded_codes += s.coded_codes;
    t.coded_scales += s.coded_scales;
    t.zstd_codes += s.zstd_codes;
    t.zstd_scales += s.zstd_scales;
    for (int c = 0; c < 16; ++c) t.code_hist[c] += s.code_hist[c];
    t.proxy.mean_bits += w * s.proxy.mean_bits;
    t.proxy.std_bits += w * s.proxy.std_bits;
    t.proxy.n_chunks += s.proxy.n_chunks;
    t.h0_codes += w * s.h0_codes;
    t.h0_code_pairs += w * s.h0_code_pairs;
    t.h_codes_given_scale += w * s.h_codes_given_scale;
    t.cond_scale_table_bits += w * s.cond_scale_table_bits;
    t.h0_scales += w * s.h0_scales;
    t.has_mse = s.has_mse;
    t.has_zstd = s.has_zstd;
    t.mse += w * s.mse;
  }
  for (double* f : {&t.proxy.mean_bits, &t.proxy.std_bits, &t.h0_codes, &t.h0_code_pairs,
                    &t.h_codes_given_scale, &t.cond_scale_table_bits, &t.h0_scales, &t.mse})
    *f /= wsum;
  t.bits_per_weight = 8.0 * double(t.coded_codes + t.coded_scales + 4 * rep.layers.size()) / wsum;
  t.raw_bits_per_weight = 8.0 * double(t.code_bytes + t.scale_bytes + 4 * rep.layers.size()) / wsum;
  Nvfp4Histogram pooled;  // the ideal order-0 size that `quantize --method rd` targets
  for (const Nvfp4Tensors& l : layers) {
    pooled.add_packed(l.codes->data(), l.codes->info->nbytes());
    pooled.add_scales(l.block_scales->data(), l.block_scales->info->nbytes());
  }
  rep.ideal_bits_per_weight = pooled.ideal_bits_per_weight();
  return rep;
}

namespace {

nlohmann::ordered_json layer_json(const LayerStats& s) {
  nlohmann::ordered_json j;
  j["name"] = s.name;
  if (!s.format.empty()) j["format"] = s.format;
  j["weights"] = s.weights;
  j["code_bytes"] = s.code_bytes;
  j["scale_bytes"] = s.scale_bytes;
  j["proxy_mean_entropy_bits"] = s.proxy.mean_bits;
  j["proxy_std_entropy_bits"] = s.proxy.std_bits;
  j["proxy_compression_rate"] = 1.0 - s.proxy.mean_bits / 8.0;
  j["proxy_n_chunks"] = s.proxy.n_chunks;
  j["h0_codes_bits"] = s.h0_codes;
  j["h0_code_pairs_bits_per_code"] = s.h0_code_pairs;
  j["h_codes_given_scale_bits"] = s.h_codes_given_scale;
  j["cond_scale_table_bits_per_code"] = s.cond_scale_table_bits;
  j["h0_scales_bits"] = s.h0_scales;
  j["order0_bound_bytes"] = uint64_t(std::ceil(s.h0_codes * double(s.weights) / 8 + s.h0_scales * double(s.scale_bytes) / 8));
  j["fp4z_codes_bytes"] = s.coded_codes;
  j["fp4z_scales_bytes"] = s.coded_scales;
  j["zstd19_codes_bytes"] = s.has_zstd ? nlohmann::ordered_json(s.zstd_codes) : nlohmann::ordered_json(nullptr);
  j["zstd19_scales_bytes"] = s.has_zstd ? nlohmann::ordered_json(s.zstd_scales) : nlohmann::ordered_json(nullptr);
  j["bits_per_weight"] = s.bits_per_weight;
  j["raw_bits_per_weight"] = s.raw_bits_per_weight;
  j["code_histogram"] = std::vector<uint64_t>(s.code_hist, s.code_hist + 16);
  if (s.has_mse) j["mse"] = s.mse;
  return j;
}

}  // namespace

nlohmann::ordered_json stats_json(const StatsReport& r) {
  nlohmann::ordered_json j;
  j["checkpoint"] = r.dir;
  j["layers"] = nlohmann::ordered_json::array();
  for (const LayerStats& s : r.layers) j["layers"].push_back(layer_json(s));
  j["total"] = layer_json(r.total);
  j["ideal_order0_bits_per_weight"] = r.ideal_bits_per_weight;
  j["other_tensor_bytes"] = r.other_tensor_bytes;
  return j;
}

std::string stats_text(const StatsReport& r) {
  std::string out;
  char line[512];
  auto pct = [](uint64_t a, uint64_t b) { return b ? 100.0 * double(a) / double(b) : 0.0; };
  std::snprintf(line, sizeof line, "%-48s %11s %7s %6s %6s %6s %7s %7s %7s %7s %6s%s\n", "layer", "weights", "proxy%",
                "H0code", "H0pair", "H0scl", "codes%", "zstd%", "scale%", "zstd%", "bpw", r.total.has_mse ? "        mse" : "");
  out += line;
  auto row = [&](const LayerStats& s) {
    std::snprintf(line, sizeof line, "%-48s %11llu %7.3f %6.3f %6.3f %6.3f %7.3f %7.3f %7.3f %7.3f %6.4f", printable(s.name).c_str(),
                  (unsigned long long)s.weights, 100.0 * (1.0 - s.proxy.mean_bits / 8.0), s.h0_codes,
                  s.h0_code_pairs, s.h0_scales, pct(s.coded_codes, s.code_bytes), pct(s.zstd_codes, s.code_bytes),
                  pct(s.coded_scales, s.scale_bytes), pct(s.zstd_scales, s.scale_bytes), s.bits_per_weight);
    out += line;
    if (s.has_mse) {
      std::snprintf(line, sizeof line, " %11.4e", s.mse);
      out += line;
    }
    out += "\n";
  };
  for (const LayerStats& s : r.layers) row(s);
  row(r.total);
  const LayerStats& t = r.total;
  out += "\ntotals (all quantized layers)\n";
  std::snprintf(line, sizeof line,
                "  weights %llu; codes %llu B -> fp4z %llu B (%.3f%%), zstd -19 %llu B; scales %llu B -> fp4z %llu B "
                "(%.3f%%), zstd -19 %llu B\n",
                (unsigned long long)t.weights, (unsigned long long)t.code_bytes, (unsigned long long)t.coded_codes,
                pct(t.coded_codes, t.code_bytes), (unsigned long long)t.zstd_codes, (unsigned long long)t.scale_bytes,
                (unsigned long long)t.coded_scales, pct(t.coded_scales, t.scale_bytes), (unsigned long long)t.zstd_scales);
  out += line;
  std::snprintf(line, sizeof line,
                "  seed proxy %.3f%% (%.4f bit/byte); H0 codes %.4f bit; H0 code pairs %.4f bit/code; H(code|scale) %.4f "
                "+ tables %.4f bit; H0 scales %.4f bit\n",
                100.0 * (1.0 - t.proxy.mean_bits / 8.0), t.proxy.mean_bits, t.h0_codes, t.h0_code_pairs,
                t.h_codes_given_scale, t.cond_scale_table_bits, t.h0_scales);
  out += line;
  std::snprintf(line, sizeof line, "  bits per weight: %.4f coded (raw %.4f)%s\n", t.bits_per_weight, t.raw_bits_per_weight,
                t.has_mse ? "" : "");
  out += line;
  std::snprintf(line, sizeof line, "  ideal order-0 bits per weight: %.4f (H(pooled codes, -0 as +0) + H(pooled scales)/16)\n", r.ideal_bits_per_weight);
  out += line;
  if (t.has_mse) {
    std::snprintf(line, sizeof line, "  MSE vs reference %.6e\n", t.mse);
    out += line;
  }
  out += "  code histogram:";
  for (int c = 0; c < 16; ++c) {
    std::snprintf(line, sizeof line, " %d:%.4f", c, t.weights ? double(t.code_hist[c]) / double(t.weights) : 0.0);
    out += line;
  }
  out += "\n";
  std::snprintf(line, sizeof line, "  other tensors: %llu bytes\n", (unsigned long long)r.other_tensor_bytes);
  out += line;
  return out;
}

}  // namespace fp4z
