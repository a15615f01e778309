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
#include <span>

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
    const AttentionWeights* w = nullptr;  // query, key, value [I, H], output [H, I]
    int n_heads = 0, key_value_proj_dim = 0;

    // y += Attention(x) (the residual add is fused). x: [N, H] normed states of one or more images packed
    // one after another: image i owns rows segments[i] .. segments[i + 1] and attends only to them (the
    // projections run over all N rows at once). key_mask: [N] fp32 or null.
    template <class Backend, class S = scalar_t<Backend>>
    void forward(Backend& backend, const S* x, std::span<const int64_t> segments, const float* key_mask,
                 AttentionScratch<S> s, S* y) const {
        const int64_t I = int64_t(n_heads) * key_value_proj_dim, N = segments.back();
        // query_states = to_projection_shape(self.query(hidden_states)), same for key and value
        backend.linear(x, N, w->query, s.q);  // [N, I]
        backend.linear(x, N, w->key, s.k);    // [N, I]
        backend.linear(x, N, w->value, s.v);  // [N, I]
        // scores = torch.matmul(query_states, key_states.transpose(3, 2))   — no 1/sqrt(d_kv)
        // scores += position_bias_masked; attn_weights = softmax(scores, dtype=float32)
        // attn_output = torch.matmul(attn_weights, value_states)
        for (size_t i = 0; i + 1 < segments.size(); ++i) {
            const int64_t o = segments[i], n = segments[i + 1] - o;
            backend.attention(AttentionArgs<S>{.q = s.q + o * I, .k = s.k + o * I, .v = s.v + o * I,
                                               .o = s.out + o * I, .H = n_heads, .Lq = int(n), .Lk = int(n),
                                               .D = key_value_proj_dim, .q_row = I, .k_row = I, .v_row = I,
                                               .o_row = I, .key_mask = key_mask ? key_mask + o : nullptr});  // [n, I]
        }
        // attn_output = self.output(attn_output); hidden_states = attention_output + residual
        backend.linear(s.out, N, w->output, y, Write::Accumulate);  // [N, H]
    }
};

// A decode step: one token for each of the sequences `slots` (row r of the step is sequence slots[r]), all
// at position `pos` — the sequences of a batch start together and advance together.
struct DecodeStep {
    std::span<const int64_t> slots;
    int64_t pos = 0;
    const float* bias = nullptr;  // [heads, 1, pos + 1]: the relative position bias (fp32, backend memory)
    // Sequences at different positions (continuous batching): row r is at row_pos[r], with the bias
    // row_bias[r] [heads, 1, row_pos[r] + 1]. Empty: every row is at pos, with bias.
    std::span<const int64_t> row_pos{};
    std::span<const float* const> row_bias{};

    int64_t pos_of(int64_t r) const { return row_pos.empty() ? pos : row_pos[size_t(r)]; }
    const float* bias_of(int64_t r) const { return row_bias.empty() ? bias : row_bias[size_t(r)]; }
};

// transformers: Pix2StructTextAttention — one decode step: one query row per sequence of the batch, against
// that sequence's cached keys/values. Self-attention appends this step's K/V to the cache; cross-attention
// reads K/V projected once per image. The projections run over all rows at once (one weight read for the
// batch); the attention runs per row, over its own sequence.
struct TextAttention {
    const AttentionWeights* w = nullptr;  // query, key, value [I, H], output [H, I]
    int n_heads = 0, key_value_proj_dim = 0;

    int64_t inner_dim() const { return int64_t(n_heads) * key_value_proj_dim; }

    // K/V of rows `kv` (the encoder states for cross-attention): K, V: [T, I].
    template <class Backend, class S = scalar_t<Backend>, class C = cross_t<Backend>>
    void project_kv(Backend& backend, const S* kv, int64_t T, C* K, C* V) const {
        // key_states = self.key(current_states); value_states = self.value(current_states)
        backend.linear(kv, T, w->key, K);    // [T, I]
        backend.linear(kv, T, w->value, V);  // [T, I]
    }

    // Self-attention step. x: [A, H], one row per sequence of the step. The caches are position-major
    // [positions, sequences, I] (model/kv_cache.hpp): row r's K/V go to row pos·sequences + slots[r] (pos:
    // the row's position), and it attends to its sequence's rows 0..pos (stride sequences · I) with its bias;
    // y += output. When the step's sequences are consecutive and at one position (a whole batch, or one
    // sequence) the K/V projections write into the caches directly; otherwise they go through s.k, s.v
    // [A, I] and are copied row by row.
    template <class Backend, class S = scalar_t<Backend>>
    void forward_self(Backend& backend, const S* x, const DecodeStep& step, S* K_cache, S* V_cache,
                      int64_t sequences, AttentionScratch<S> s, S* y) const {
        const int64_t I = inner_dim(), A = int64_t(step.slots.size()), ld = sequences * I;
        auto row = [&](S* cache, int64_t r) { return cache + step.pos_of(r) * ld + step.slots[size_t(r)] * I; };
        backend.linear(x, A, w->query, s.q);  // [A, I]
        bool consecutive = step.row_pos.empty();
        for (int64_t r = 1; r < A; ++r) consecutive = consecutive && step.slots[size_t(r)] == step.slots[0] + r;
        if (consecutive) {
            backend.linear(x, A, w->key, row(K_cache, 0));    // [A, I] → cache rows
            backend.linear(x, A, w->value, row(V_cache, 0));  // [A, I] → cache rows
        } else {
            backend.linear(x, A, w->key, s.k);    // [A, I]
            backend.linear(x, A, w->value, s.v);  // [A, I]
            for (int64_t r = 0; r < A; ++r) {
                detail::within_backend(backend, row(K_cache, r), s.k + r * I, I);
                detail::within_backend(backend, row(V_cache, r), s.v + r * I, I);
            }
        }
        // causal: the cache holds only positions ≤ pos, so no mask is needed
        for (int64_t r = 0; r < A; ++r) {
            const int64_t o = step.slots[size_t(r)] * I;
            backend.attention(AttentionArgs<S>{.q = s.q + r * I, .k = K_cache + o, .v = V_cache + o,
                                               .o = s.out + r * I, .H = n_heads, .Lq = 1, .Lk = int(step.pos_of(r) + 1),
                                               .D = key_value_proj_dim, .q_row = I, .k_row = ld, .v_row = ld,
                                               .o_row = I, .bias = step.bias_of(r)});  // [1, I]
        }
        backend.linear(s.out, A, w->output, y, Write::Accumulate);  // [A, H]
    }

    // Cross-attention step: row r attends to its sequence's encoder rows of K, V [N, I] (cross.first_row,
    // cross.rows of sequence slots[r]: its image's real patches; no position bias).
    template <class Backend, class S = scalar_t<Backend>, class C = cross_t<Backend>, class Cross>
    void forward_cross(Backend& backend, const S* x, std::span<const int64_t> slots, const C* K, const C* V,
                       const Cross& cross, AttentionScratch<S> s, S* y) const {
        const int64_t I = inner_dim(), A = int64_t(slots.size());
        backend.linear(x, A, w->query, s.q);  // [A, I]
        for (int64_t r = 0; r < A; ++r) {
            const int64_t o = cross.first_row(slots[size_t(r)]), T = cross.rows(slots[size_t(r)]);
            backend.attention(AttentionArgs<S, C>{.q = s.q + r * I, .k = K + o * I, .v = V + o * I,
                                               .o = s.out + r * I, .H = n_heads, .Lq = 1, .Lk = int(T),
                                               .D = key_value_proj_dim, .q_row = I, .k_row = I, .v_row = I,
                                               .o_row = I});  // [1, I]
        }
        backend.linear(s.out, A, w->output, y, Write::Accumulate);  // [A, H]
    }
};

}  // namespace pix2struct
