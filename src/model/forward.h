// Forward pass of a loaded Model with a KV cache (Hugging Face semantics, f32 activations).
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "model/linear.h"
#include "model/model.h"
#include "model/thread_pool.h"

namespace fp4z {

struct EngineOptions {
  int threads = 1;
  Isa isa = Isa::kScalar;  // set from kernel_isa() by callers
  bool act_quant = false;  // W4A4 emulation (needs input_global_scale on the NVFP4 linears)
  int64_t max_batch = 256; // tokens per forward chunk (bounds the activation scratch)
  bool kv_bf16 = false;    // store keys/values rounded to BF16 (half the cache memory; not exact)
  // NVFP4 linears with int8 activations per token and 16 features (KernelOptions::int8_act): the
  // CLI's default (--exact turns it off); call prepare_int8_weights first for speed. Not the f32 reference.
  bool int8_act = false;
  bool bf16_act = false;   // prompt kernels with BF16 activations (vdpbf16ps); not the f32 reference
};

// Calibration hook (fp4z quantize --method rd): sees the input rows x [T, w.k] of every Linear of
// decoder layer `layer` just before the product; the f32 path is unchanged by it.
using LinearObserver = std::function<void(int64_t layer, const Linear& w, const float* x, int64_t T)>;

// One sequence: a KV cache in f32, sized on demand (so memory follows the prompt length).
struct Session {
  Session(const Model& model, const EngineOptions& opt);
  // Appends `n` tokens at positions len()...len()+n-1 and returns, in `logits` ([count, vocab]),
  // the logits of the last `count` of them (count <= n; 0 = none).
  void forward(const int32_t* tokens, int64_t n, int64_t count, std::vector<float>& logits);
  // Forgets positions >= len (prefix reuse).
  void truncate(int64_t len);
  int64_t len() const { return len_; }
  void set_linear_observer(LinearObserver f) { observer_ = std::move(f); }
  // Applies decoder layers [l0, l1) in place to hidden states x [T, hidden] of a fresh sequence at
  // positions 0..T-1 (no embedding, no head; the KV cache is reset first).
  void run_layers(float* x, int64_t T, int64_t l0, int64_t l1);
  // Inside an observer call for layer `layer`'s last Linear (the MLP's down projection): the layer's
  // residual stream rows [T, hidden] at that point, i.e. everything the layer adds except that product.
  const float* residual_before_last_linear() const { return x_.data(); }
  bool is_last_linear(int64_t layer, const Linear& w) const { return &w == &m_.layers[size_t(layer)].down; }
  // What run_layers would finish layer `layer` with, from what an observer saw of its last Linear:
  // out = residual + down(last_input), with the session's kernels (the same bits as the whole pass).
  void finish_layer(int64_t layer, const float* residual, const float* last_input, int64_t T, float* out);
  const Model& model() const { return m_; }
  ThreadPool& pool() { return pool_; }
  uint64_t kv_bytes() const {
    return uint64_t(k_cache_.size() + v_cache_.size()) * 4 + uint64_t(k16_.size() + v16_.size()) * 2;
  }

 private:
  void reserve(int64_t positions, int64_t slots);  // KV cache for `slots` layers (the first one = layer_begin_)
  void forward_chunk(const int32_t* tokens, int64_t n, int64_t count, float* logits);
  const Model& m_;
  EngineOptions opt_;
  KernelOptions kopt_;
  ThreadPool pool_;
  int64_t len_ = 0, capacity_ = 0, slots_ = 0;
  std::vector<float> k_cache_, v_cache_;  // [layer][position][kv_heads*head_dim]
  std::vector<uint16_t> k16_, v16_;       // the same in BF16 (EngineOptions::kv_bf16)
  std::vector<float> inv_freq_;
  LinearObserver observer_;
  float* ext_x_ = nullptr;  // run_layers: hidden states in/out instead of embedding and head
  int64_t layer_begin_ = 0, layer_end_ = -1;
  // activation scratch
  std::vector<float> x_, xn_, q_, k_, v_, att_, o_, g_, u_, head_in_;
  Int8Activations shared_in_;  // int8 path: xn quantized once for q/k/v and for gate/up
};

}  // namespace fp4z
