// Decoder forward pass: RMSNorm, (Qwen3) q/k norm, rotate-half RoPE, causal GQA attention over a KV
// cache (flash style, model/attention.h), SwiGLU MLP, tied or separate head; every step as Hugging
// Face computes it, in f32 (the NVFP4 linears' int8 activations aside, see EngineOptions).
#include "model/forward.h"

#include <algorithm>
#include <cmath>

#include "common/error.h"
#include "model/attention.h"

namespace fp4z {

namespace {

// y = w ⊙ x / sqrt(mean(x²) + eps); the mean of squares is accumulated in double.
void rms_norm(const float* x, const float* w, int64_t n, float eps, float* y) {
  double ss = 0.0;
  for (int64_t i = 0; i < n; ++i) ss += double(x[i]) * double(x[i]);
  float inv = 1.0f / std::sqrt(float(ss / double(n)) + eps);
  for (int64_t i = 0; i < n; ++i) y[i] = w[i] * (x[i] * inv);
}

}  // namespace

Session::Session(const Model& model, const EngineOptions& opt) : m_(model), opt_(opt), pool_(std::max(1, opt.threads)) {
  kopt_.isa = opt.isa;
  kopt_.act_quant = opt.act_quant;
  kopt_.bf16_act = opt.bf16_act;
  kopt_.int8_act = opt.int8_act;
  const ModelConfig& c = m_.cfg;
  const int64_t d = c.head_dim;
  // inv_freq[j] = 1 / theta^(2j/d), in f32 like Hugging Face's default rope init.
  inv_freq_.resize(size_t(d / 2));
  for (int64_t j = 0; j < d / 2; ++j) {
    float e = float(2 * j) / float(d);
    float p = float(std::pow(double(float(c.rope_theta)), double(e)));
    inv_freq_[size_t(j)] = 1.0f / p;
  }
  if (c.llama3_factor > 0) {
    const double L = c.llama3_original, lo = c.llama3_low, hi = c.llama3_high, f = c.llama3_factor;
    const double low_wl = L / lo, high_wl = L / hi;
    for (auto& inv : inv_freq_) {
      double wl = 2.0 * M_PI / inv;
      if (wl < high_wl) continue;
      if (wl > low_wl) {
        inv = float(inv / f);
      } else {
        double s = (L / wl - lo) / (hi - lo);
        inv = float((1.0 - s) * inv / f + s * inv);
      }
    }
  }
}

namespace {
// Re-lays out a [layers][capacity][kvd] cache for a larger capacity, keeping the first len rows.
template <class T>
void grow_cache(std::vector<T>& c, int64_t old_layers, int64_t layers, int64_t old_cap, int64_t cap, int64_t len, int64_t kvd) {
  std::vector<T> n(static_cast<size_t>(layers * cap * kvd));
  for (int64_t l = 0; l < old_layers && len > 0; ++l)
    std::copy_n(c.begin() + l * old_cap * kvd, len * kvd, n.begin() + l * cap * kvd);
  c.swap(n);
}
}  // namespace

void Session::reserve(int64_t positions, int64_t slots) {
  if (positions <= capacity_ && slots <= slots_) return;
  const ModelConfig& c = m_.cfg;
  const int64_t cap = positions <= capacity_ ? capacity_ : std::max(positions, std::min<int64_t>(capacity_ * 2, positions + 1024));
  const int64_t new_slots = std::max(slots, slots_);
  const int64_t kvd = c.kv_heads * c.head_dim;
  if (opt_.kv_bf16) {
    grow_cache(k16_, slots_, new_slots, capacity_, cap, len_, kvd);
    grow_cache(v16_, slots_, new_slots, capacity_, cap, len_, kvd);
  } else {
    grow_cache(k_cache_, slots_, new_slots, capacity_, cap, len_, kvd);
    grow_cache(v_cache_, slots_, new_slots, capacity_, cap, len_, kvd);
  }
  capacity_ = cap;
  slots_ = new_slots;
}

void Session::truncate(int64_t len) {
  if (len < 0 || len > len_) throw Error(kExitInternal, "Session::truncate beyond the cached length");
  len_ = len;
}

void Session::forward(const int32_t* tokens, int64_t n, int64_t count, std::vector<float>& logits) {
  if (count > n) count = n;
  const int64_t V = m_.cfg.vocab;
  logits.assign(size_t(count * V), 0.0f);
  if (n <= 0) return;
  if (m_.cfg.max_positions > 0 && len_ + n > m_.cfg.max_positions)
    fail_input("sequence of " + std::to_string(len_ + n) + " tokens exceeds max_position_embeddings " +
               std::to_string(m_.cfg.max_positions));
  reserve(len_ + n, m_.cfg.layers);
  const int64_t first_logit = n - count;
  for (int64_t s = 0; s < n; s += opt_.max_batch) {
    int64_t e = std::min(n, s + opt_.max_batch);
    int64_t lo = std::max(s, first_logit);
    int64_t cnt = e > lo ? e - lo : 0;
    forward_chunk(tokens + s, e - s, cnt, cnt ? logits.data() + (lo - first_logit) * V : nullptr);
  }
}

void Session::run_layers(float* x, int64_t T, int64_t l0, int64_t l1) {
  truncate(0);
  reserve(T, l1 - l0);  // a fresh sequence through [l0, l1) needs those layers' cache only
  ext_x_ = x;
  layer_begin_ = l0;
  layer_end_ = l1;
  forward_chunk(nullptr, T, 0, nullptr);
  ext_x_ = nullptr;
  layer_begin_ = 0;
  layer_end_ = -1;
}

void Session::finish_layer(int64_t layer, const float* residual, const float* last_input, int64_t T, float* out) {
  const int64_t H = m_.cfg.hidden;
  o_.resize(size_t(T * H));
  linear_forward(m_.layers[size_t(layer)].down, last_input, T, o_.data(), pool_, kopt_);
  pool_.run(T, [&](int64_t t, int) {
    for (int64_t i = 0; i < H; ++i) out[t * H + i] = residual[t * H + i] + o_[size_t(t * H + i)];
  });
}

void Session::forward_chunk(const int32_t* tokens, int64_t T, int64_t count, float* logits) {
  const ModelConfig& c = m_.cfg;
  const int64_t H = c.hidden, D = c.head_dim, nh = c.heads, nkv = c.kv_heads, I = c.intermediate;
  const int64_t qd = nh * D, kvd = nkv * D, pos0 = len_;
  x_.resize(size_t(T * H));
  xn_.resize(size_t(T * H));
  q_.resize(size_t(T * qd));
  k_.resize(size_t(T * kvd));
  v_.resize(size_t(T * kvd));
  att_.resize(size_t(T * qd));
  o_.resize(size_t(T * H));
  g_.resize(size_t(T * I));
  u_.resize(size_t(T * I));
  for (int64_t t = 0; t < T && ext_x_; ++t) std::copy_n(ext_x_ + t * H, H, x_.data() + t * H);
  for (int64_t t = 0; t < T && !ext_x_; ++t) {
    if (tokens[t] < 0 || tokens[t] >= m_.embed.rows)
      fail_input("token id " + std::to_string(tokens[t]) + " is outside the vocabulary (" + std::to_string(m_.embed.rows) + ")");
    m_.embed.row(tokens[t], x_.data() + t * H);
  }
  // cos/sin per chunk position, f32 angle = pos·inv_freq as in Hugging Face.
  std::vector<float> cosv(size_t(T * D / 2)), sinv(size_t(T * D / 2));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t j = 0; j < D / 2; ++j) {
      float ang = float(pos0 + t) * inv_freq_[size_t(j)];
      cosv[size_t(t * D / 2 + j)] = float(std::cos(double(ang)));
      sinv[size_t(t * D / 2 + j)] = float(std::sin(double(ang)));
    }
  auto rope = [&](float* h, int64_t t) {
    const float* cs = cosv.data() + t * D / 2;
    const float* sn = sinv.data() + t * D / 2;
    for (int64_t j = 0; j < D / 2; ++j) {
      float a = h[j], b = h[j + D / 2];
      h[j] = a * cs[j] - b * sn[j];
      h[j + D / 2] = b * cs[j] + a * sn[j];
    }
  };
  const float scale = float(1.0 / std::sqrt(double(D)));
  // Every decoder Linear goes through here, so the calibration observer sees its exact input rows.
  auto linear = [&](int64_t li, const Linear& w, const float* x, float* y, Int8Activations* shared = nullptr) {
    if (observer_) observer_(li, w, x, T);
    linear_forward(w, x, T, y, pool_, kopt_, shared);
  };
  const int64_t l_end = layer_end_ < 0 ? c.layers : layer_end_;
  for (int64_t li = layer_begin_; li < l_end; ++li) {
    const LayerWeights& L = m_.layers[size_t(li)];
    const bool kv16 = opt_.kv_bf16;
    const int64_t slot = li - layer_begin_;  // run_layers keeps only its own layers' cache
    float* kc = kv16 ? nullptr : k_cache_.data() + slot * capacity_ * kvd;
    float* vc = kv16 ? nullptr : v_cache_.data() + slot * capacity_ * kvd;
    uint16_t* kc16 = kv16 ? k16_.data() + slot * capacity_ * kvd : nullptr;
    uint16_t* vc16 = kv16 ? v16_.data() + slot * capacity_ * kvd : nullptr;
    // The per-token steps run as parallel loops over tokens (one task per token; inline when T = 1).
    pool_.run(T, [&](int64_t t, int) { rms_norm(x_.data() + t * H, L.input_norm.data(), H, c.rms_eps, xn_.data() + t * H); });
    shared_in_.source = nullptr;  // q, k and v quantize xn once (int8 path)
    linear(li, L.q, xn_.data(), q_.data(), &shared_in_);
    linear(li, L.k, xn_.data(), k_.data(), &shared_in_);
    linear(li, L.v, xn_.data(), v_.data(), &shared_in_);
    pool_.run(T, [&](int64_t t, int) {
      for (int64_t h = 0; h < nh; ++h) {
        float* qh = q_.data() + t * qd + h * D;
        if (c.qk_norm) rms_norm(qh, L.q_norm.data(), D, c.rms_eps, qh);
        rope(qh, t);
      }
      for (int64_t h = 0; h < nkv; ++h) {
        float* kh = k_.data() + t * kvd + h * D;
        if (c.qk_norm) rms_norm(kh, L.k_norm.data(), D, c.rms_eps, kh);
        rope(kh, t);
      }
      if (kv16) {
        for (int64_t i = 0; i < kvd; ++i) {
          kc16[(pos0 + t) * kvd + i] = f32_to_bf16_rne(k_[size_t(t * kvd + i)]);
          vc16[(pos0 + t) * kvd + i] = f32_to_bf16_rne(v_[size_t(t * kvd + i)]);
        }
      } else {
        std::copy_n(k_.data() + t * kvd, kvd, kc + (pos0 + t) * kvd);
        std::copy_n(v_.data() + t * kvd, kvd, vc + (pos0 + t) * kvd);
      }
    });
    // Causal attention: query t (position pos0+t) sees positions 0..pos0+t.
    AttentionArgs aa;
    aa.q = q_.data();
    aa.T = T;
    aa.heads = nh;
    aa.kv_heads = nkv;
    aa.D = D;
    aa.pos0 = pos0;
    aa.k = kc;
    aa.v = vc;
    aa.k16 = kc16;
    aa.v16 = vc16;
    aa.kv_stride = kvd;
    aa.scale = scale;
    aa.out = att_.data();
    attention_forward(aa, pool_, opt_.isa);
    linear(li, L.o, att_.data(), o_.data());
    pool_.run(T, [&](int64_t t, int) {
      float* xt = x_.data() + t * H;
      const float* ot = o_.data() + t * H;
      for (int64_t i = 0; i < H; ++i) xt[i] += ot[i];
      rms_norm(xt, L.post_norm.data(), H, c.rms_eps, xn_.data() + t * H);
    });
    shared_in_.source = nullptr;
    linear(li, L.gate, xn_.data(), g_.data(), &shared_in_);
    linear(li, L.up, xn_.data(), u_.data(), &shared_in_);
    pool_.run(T, [&](int64_t t, int) {
      float* gt = g_.data() + t * I;
      const float* ut = u_.data() + t * I;
      for (int64_t i = 0; i < I; ++i) gt[i] = gt[i] / (1.0f + std::exp(-gt[i])) * ut[i];
    });
    linear(li, L.down, g_.data(), o_.data());
    pool_.run(T, [&](int64_t t, int) {
      float* xt = x_.data() + t * H;
      const float* ot = o_.data() + t * H;
      for (int64_t i = 0; i < H; ++i) xt[i] += ot[i];
    });
  }
  if (ext_x_) {
    std::copy_n(x_.data(), T * H, ext_x_);
    return;
  }
  len_ = pos0 + T;
  if (count > 0) {
    head_in_.resize(size_t(count * H));
    for (int64_t r = 0; r < count; ++r)
      rms_norm(x_.data() + (T - count + r) * H, m_.final_norm.data(), H, c.rms_eps, head_in_.data() + r * H);
    KernelOptions head_opt = kopt_;
    linear_forward(m_.lm_head, head_in_.data(), count, logits, pool_, head_opt);
  }
}

}  // namespace fp4z
