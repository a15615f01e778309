// pix2struct/nn/attention.hpp — multi-head attention of the vision encoder and of the text decoder.
//
//   Q = x·Wqᵀ, K = kv·Wkᵀ, V = kv·Wvᵀ        [T, I] with I = heads · d_kv
//   O_h = softmax(Q_h K_hᵀ + bias_h + mask) V_h   per head, NO 1/√d_kv scaling (folded into the trained Wq)
//   y = concat_h(O_h) · Woᵀ                    [T, H]
//
// Reference quirks written where the code depends on them:
// - Masked keys get finfo(float32).min added (vision: `position_bias.masked_fill(.., min)` then a clamp at
//   min; cross-attention: `(1 - mask) * min`), so their softmax weight is exactly 0: a real row never
//   depends on a padded one. We therefore give attention only the real encoder rows as keys, which is
//   the same computation (see VisionModel).
// - The softmax runs in fp32 (`softmax(scores.float())`).
// - Vision attention allows I ≠ H (heads · d_kv may differ from hidden_size); text attention has I = H.
//
// Activations (x, Q/K/V, the caches, y) are S = scalar_t<Backend>, the backend's activation type; the key
// mask and the position bias are fp32 (AttentionArgs), as the reference adds them to fp32 scores.
#pragma once

#include <cstdint>

#include "pix2struct/backend/backend.hpp"
#include "pix2struct/nn/relative_position.hpp"
#include "pix2struct/weights.hpp"

namespace pix2struct {

// Scratch for one attention call, of activation type S; owned by the model's workspace.
template <class S>
struct AttentionScratch {
    S* q;    // [T, I]
    S* k;    // [T, I]  (self-attention of the encoder; the decoder reads its caches instead)
    S* v;    // [T, I]
    S* out;  // [T, I]  heads concatenated
};

// transformers: Pix2StructVisionAttention (bidirectional self-attention over the patches).
struct VisionAttention {
    const Weight* query = nullptr;   // [I, H]
    const Weight* key = nullptr;     // [I, H]
    const Weight* value = nullptr;   // [I, H]
    const Weight* output = nullptr;  // [H, I]
    int n_heads = 0, key_value_proj_dim = 0;

    // y += Attention(x) (the residual add is fused). x: [N, H] normed states; key_mask: [N] fp32 or null.
    template <class Backend, class S = scalar_t<Backend>>
    void forward(Backend& backend, const S* x, int64_t N, const float* key_mask, AttentionScratch<S> s, S* y) const {
        const int64_t I = int64_t(n_heads) * key_value_proj_dim;
        // query_states = to_projection_shape(self.query(hidden_states)), same for key and value
        backend.linear(x, N, *query, s.q);  // [N, I]
        backend.linear(x, N, *key, s.k);    // [N, I]
        backend.linear(x, N, *value, s.v);  // [N, I]
        // scores = torch.matmul(query_states, key_states.transpose(3, 2))   — no 1/sqrt(d_kv)
        // scores += position_bias_masked; attn_weights = softmax(scores, dtype=float32)
        // attn_output = torch.matmul(attn_weights, value_states)
        backend.attention(AttentionArgs<S>{s.q, I, s.k, I, s.v, I, s.out, I, N, N, n_heads, key_value_proj_dim,
                                           key_mask, nullptr});  // [N, I]
        // attn_output = self.output(attn_output); hidden_states = attention_output + residual
        backend.linear(s.out, N, *output, y, Write::Accumulate);  // [N, H]
    }
};

// transformers: Pix2StructTextAttention — one decode step (one query row) against cached keys/values.
// Self-attention appends this step's K/V to the cache; cross-attention reads K/V projected once per image.
struct TextAttention {
    const Weight* query = nullptr;   // [I, H]
    const Weight* key = nullptr;     // [I, H]
    const Weight* value = nullptr;   // [I, H]
    const Weight* output = nullptr;  // [H, I]
    int n_heads = 0, key_value_proj_dim = 0;

    int64_t inner_dim() const { return int64_t(n_heads) * key_value_proj_dim; }

    // K/V of rows `kv` (the encoder states for cross-attention): K, V: [T, I].
    template <class Backend, class S = scalar_t<Backend>>
    void project_kv(Backend& backend, const S* kv, int64_t T, S* K, S* V) const {
        // key_states = self.key(current_states); value_states = self.value(current_states)
        backend.linear(kv, T, *key, K);    // [T, I]
        backend.linear(kv, T, *value, V);  // [T, I]
    }

    // Self-attention step at position `pos`: writes this row's K/V into the caches at row pos, attends to
    // rows 0..pos with `bias` [heads, 1, pos + 1] (the relative position bias, fp32), y += output.
    template <class Backend, class S = scalar_t<Backend>>
    void forward_self(Backend& backend, const S* x, int64_t pos, S* K_cache, S* V_cache, const float* bias,
                      AttentionScratch<S> s, S* y) const {
        const int64_t I = inner_dim();
        backend.linear(x, 1, *query, s.q);                 // [1, I]
        backend.linear(x, 1, *key, K_cache + pos * I);     // [1, I] → cache row pos
        backend.linear(x, 1, *value, V_cache + pos * I);   // [1, I] → cache row pos
        // causal: the cache holds only positions ≤ pos, so no mask is needed
        backend.attention(AttentionArgs<S>{s.q, I, K_cache, I, V_cache, I, s.out, I, 1, pos + 1, n_heads,
                                           key_value_proj_dim, nullptr, bias});  // [1, I]
        backend.linear(s.out, 1, *output, y, Write::Accumulate);             // [1, H]
    }

    // Cross-attention step: one query against the T real encoder rows' K/V [T, I] (no position bias).
    template <class Backend, class S = scalar_t<Backend>>
    void forward_cross(Backend& backend, const S* x, const S* K, const S* V, int64_t T, AttentionScratch<S> s,
                       S* y) const {
        const int64_t I = inner_dim();
        backend.linear(x, 1, *query, s.q);  // [1, I]
        backend.attention(AttentionArgs<S>{s.q, I, K, I, V, I, s.out, I, 1, T, n_heads, key_value_proj_dim,
                                           nullptr, nullptr});        // [1, I]
        backend.linear(s.out, 1, *output, y, Write::Accumulate);     // [1, H]
    }
};

}  // namespace pix2struct
