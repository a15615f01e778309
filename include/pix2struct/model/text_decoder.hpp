// pix2struct/model/text_decoder.hpp — Pix2StructTextModel, one decode step at a time.
//
//   h = embed_tokens[token]                                                         [A, H]
//   per block:  h += SelfAttn(RMS(h), cache, rel_bias);  h += CrossAttn(RMS(h), E);  h += MLP(RMS(h))
//   logits = lm_head(RMS(h))                                                        [A, V]
//
// A step advances A sequences of a batch by one token each (A = 1 for a single image): the row-wise work
// (norms, projections, MLP, lm_head) runs once over the A rows, so the weights are read once per step
// whatever A is; each row attends to its own sequence's caches.
//
// The relative position bias is computed from layer 0's table and added in every layer (the reference
// passes layer 0's position_bias on to the others). lm_head is not tied to embed_tokens and the logits
// are not rescaled (unlike T5's d_model^-0.5). Teacher forcing over T tokens equals T steps with the
// cache (the causal mask of the reference hides later tokens), which is how tests check the logits.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "pix2struct/backend/backend.hpp"
#include "pix2struct/config.hpp"
#include "pix2struct/model/kv_cache.hpp"
#include "pix2struct/nn/attention.hpp"
#include "pix2struct/nn/mlp.hpp"
#include "pix2struct/nn/relative_position.hpp"
#include "pix2struct/nn/rms_norm.hpp"
#include "pix2struct/weights.hpp"

namespace pix2struct {

// Activations of one decode step of up to `rows` sequences, allocated once per session. The logits are
// the activation type (the lm_head output in the model's dtype, as in the reference); the relative
// position bias is fp32 (added to fp32 scores) and shared by the step's rows when they are at one position
// (a batch begun together); a step of sequences at different positions (a continuous batch) has one per
// position in mixed_bias.
template <class Backend>
struct TextActivations {
    using Buffer = typename Backend::Buffer;
    Buffer hidden, normed, q, k, v, out, gelu, linear, logits;  // [rows, ·]
    typename Backend::FloatBuffer bias;  // [heads, 1, positions]: the relative position bias of the step
    typename Backend::IdBuffer token;    // [rows] the tokens a step feeds: written by the host or by argmax
    int64_t rows = 0, positions = 0;
    int64_t id = 0;  // detail::next_buffers_id() of the current allocation
    std::vector<int32_t> host_tokens;  // staging of the tokens the host feeds
    typename Backend::FloatBuffer mixed_bias;  // the biases of a step at several positions, one after another
    int64_t mixed_capacity = 0;                // floats in mixed_bias
    std::vector<int64_t> row_pos;              // such a step's position of each row
    std::vector<const float*> row_bias;        // and its bias (into mixed_bias)

    void reserve(Backend& backend, const TextConfig& c, int64_t max_rows, int64_t max_positions) {
        const int64_t H = c.hidden_size, I = c.inner_dim(), F = c.d_ff;
        if (max_rows > rows) {
            rows = max_rows;
            hidden = backend.alloc(size_t(max_rows * H));
            normed = backend.alloc(size_t(max_rows * H));
            q = backend.alloc(size_t(max_rows * I));
            k = backend.alloc(size_t(max_rows * I));
            v = backend.alloc(size_t(max_rows * I));
            out = backend.alloc(size_t(max_rows * I));
            gelu = backend.alloc(size_t(max_rows * F));
            linear = backend.alloc(size_t(max_rows * F));
            logits = backend.alloc(size_t(max_rows * c.vocab_size));
            token = backend.alloc_ids(size_t(max_rows));
            id = detail::next_buffers_id();
        }
        if (max_positions > positions) {
            positions = max_positions;
            bias = backend.alloc_float(size_t(c.num_heads * positions));
            id = detail::next_buffers_id();
        }
    }
    AttentionScratch<scalar_t<Backend>> attention() { return {q.data(), k.data(), v.data(), out.data()}; }
    MlpScratch<scalar_t<Backend>> mlp() { return {gelu.data(), linear.data()}; }
};

// Called after each layer of a decode step with the layer's index and its cross-attention queries [A, I]
// (backend memory, row r for the step's sequence slots[r]): how the cross-attention weights are recorded
// (ForConditionalGeneration, GenerateOptions::cross_attention) without a primitive for them.
template <class Backend>
using CrossQueryObserver = std::function<void(int layer, const scalar_t<Backend>* q)>;

// transformers: Pix2StructTextLayerSelfAttention
struct TextLayerSelfAttention {
    LayerNorm layer_norm;
    TextAttention attention;

    template <class Backend>
    void forward(Backend& backend, const DecodeStep& step, scalar_t<Backend>* K_cache, scalar_t<Backend>* V_cache,
                 int64_t sequences, TextActivations<Backend>& a) const {
        // normed_hidden_states = self.layer_norm(hidden_states)
        layer_norm.forward(backend, a.hidden.data(), int64_t(step.slots.size()), a.normed.data());  // [A, H]
        // hidden_states = hidden_states + self.dropout(attention_output[0])
        attention.forward_self(backend, a.normed.data(), step, K_cache, V_cache, sequences, a.attention(),
                               a.hidden.data());  // [A, H]
    }
};

// transformers: Pix2StructTextLayerCrossAttention
struct TextLayerCrossAttention {
    LayerNorm layer_norm;
    TextAttention attention;

    template <class Backend>
    void forward(Backend& backend, std::span<const int64_t> slots, const cross_t<Backend>* K,
                 const cross_t<Backend>* V, const CrossKV<Backend>& cross, TextActivations<Backend>& a) const {
        layer_norm.forward(backend, a.hidden.data(), int64_t(slots.size()), a.normed.data());  // [A, H]
        // layer_output = hidden_states + self.dropout(attention_output[0])
        attention.forward_cross(backend, a.normed.data(), slots, K, V, cross, a.attention(), a.hidden.data());  // [A, H]
    }
};

// transformers: Pix2StructTextBlock
struct TextBlock {
    TextLayerSelfAttention self_attention;
    TextLayerCrossAttention encoder_decoder_attention;
    TextLayerFF mlp;

    template <class Backend>
    void forward(Backend& backend, int layer_index, const DecodeStep& step, SelfKV<Backend>& self_kv,
                 CrossKV<Backend>& cross_kv, TextActivations<Backend>& a) const {
        const size_t l = size_t(layer_index);
        self_attention.forward(backend, step, self_kv.keys[l].data(), self_kv.values[l].data(), self_kv.sequences, a);
        encoder_decoder_attention.forward(backend, step.slots, cross_kv.keys[l].data(), cross_kv.values[l].data(),
                                          cross_kv, a);
        mlp.forward(backend, a.hidden.data(), int64_t(step.slots.size()), a.normed.data(), a.mlp());  // [A, H]
    }
};

// transformers: Pix2StructTextModel (embed_tokens, layers, final_layer_norm, lm_head)
struct TextModel {
    TextConfig config;
    const Weight* embed_tokens = nullptr;  // [V, H]
    RelativePositionBias relative_attention_bias;
    std::vector<TextBlock> layer;
    LayerNorm final_layer_norm;
    const Weight* lm_head = nullptr;  // [V, H]

    TextModel() = default;
    TextModel(const TextConfig& c, const TextWeights& w) : config(c) {
        embed_tokens = &w.embed_tokens;
        relative_attention_bias = {&w.relative_attention_bias, c.relative_attention_num_buckets,
                                   c.relative_attention_max_distance};
        const float eps = c.layer_norm_epsilon;
        for (const TextLayerWeights& l : w.layers)
            layer.push_back(TextBlock{
                {LayerNorm{&l.self_attention_layer_norm, eps},
                 TextAttention{&l.self_attention, c.num_heads, c.d_kv}},
                {LayerNorm{&l.cross_attention_layer_norm, eps},
                 TextAttention{&l.cross_attention, c.num_heads, c.d_kv}},
                TextLayerFF{LayerNorm{&l.mlp_layer_norm, eps}, DenseGatedActDense{&l.mlp}}});
        final_layer_norm = LayerNorm{&w.final_layer_norm, eps};
        lm_head = &w.lm_head;
    }

    // Projects the encoder states E [N, H] — every sequence's rows, packed as `offsets` says — into every
    // layer's cross-attention K/V (once per batch).
    template <class Backend>
    void compute_cross_kv(Backend& backend, const scalar_t<Backend>* E, std::span<const int64_t> offsets,
                          CrossKV<Backend>& cross) const {
        const int64_t N = offsets.back();
        cross.reserve(backend, int(layer.size()), N, config.inner_dim());
        project_cross_kv(backend, E, N, cross, 0);
        const size_t images = offsets.size() - 1;
        cross.first.assign(offsets.begin(), offsets.end() - 1);
        cross.count.resize(images);
        cross.image.resize(images);
        for (size_t i = 0; i < images; ++i) {
            cross.count[i] = offsets[i + 1] - offsets[i];
            cross.image[i] = int64_t(i);  // one sequence per image
        }
    }
    // Projects N encoder states E [N, H] into rows row0 .. row0 + N of every layer's cross K/V (reserved).
    template <class Backend>
    void project_cross_kv(Backend& backend, const scalar_t<Backend>* E, int64_t N, CrossKV<Backend>& cross,
                          int64_t row0) const {
        if (row0 < 0 || row0 + N > cross.capacity)
            detail::fail("decoder: cross K/V rows ", row0, " .. ", row0 + N, " outside the ", cross.capacity, " reserved");
        const int64_t I = config.inner_dim();
        for (size_t l = 0; l < layer.size(); ++l)
            layer[l].encoder_decoder_attention.attention.project_kv(backend, E, N, cross.keys[l].data() + row0 * I,
                                                                   cross.values[l].data() + row0 * I);  // [N, I] each
    }

    // One step of the sequences `slots` (row r of the step is sequence slots[r]), each fed the token in
    // a.token[r] (backend memory: written by the host, or by the previous step's choose_greedy) at its next
    // position (self_kv.length: one for all in a batch begun together, any in a continuous batch); appends to
    // their self caches. Returns the logits [A, V], row r for slots[r] (a backend buffer: detail::to_host()
    // them to read on the host).
    template <class Backend>
    const scalar_t<Backend>* step(Backend& backend, std::span<const int64_t> slots, SelfKV<Backend>& self_kv,
                                  CrossKV<Backend>& cross_kv, TextActivations<Backend>& a,
                                  const CrossQueryObserver<Backend>& observe = {}) const {
        const int64_t A = int64_t(slots.size()), H = config.hidden_size;
        if (A == 0 || A > a.rows) detail::fail("decoder: a step of ", A, " sequences (room for ", a.rows, ")");
        for (int64_t slot : slots)
            if (slot < 0 || slot >= int64_t(self_kv.length.size()) || slot >= int64_t(cross_kv.image.size()))
                detail::fail("decoder: sequence ", slot, " was not begun");
        const int64_t pos = self_kv.length[size_t(slots[0])];
        bool one_position = true;
        for (int64_t slot : slots) {
            const int64_t p = self_kv.length[size_t(slot)];
            if (p >= self_kv.positions || p >= a.positions)
                detail::fail("decoder: position ", p, " of sequence ", slot, " exceeds the cache (", self_kv.positions, ")");
            one_position = one_position && p == pos;
        }
        // inputs_embeds = self.embed_tokens(input_ids)
        for (int64_t r = 0; r < A; ++r)
            backend.embed_token(*embed_tokens, a.token.data() + r, a.hidden.data() + r * H);  // [1, H] each
        // position_bias = compute_bias(...)[:, :, -seq_length:, :]  (layer 0's table, reused by every layer)
        DecodeStep step{slots, pos, a.bias.data()};
        if (one_position) relative_attention_bias.compute(backend, pos, a.bias.data());  // [heads, 1, pos + 1]
        else mixed_position_bias(backend, slots, self_kv, a, step);
        for (size_t l = 0; l < layer.size(); ++l) {
            layer[l].forward(backend, int(l), step, self_kv, cross_kv, a);
            if (observe) observe(int(l), a.q.data());  // the MLP left the cross-attention queries in a.q
        }
        advance(slots, self_kv);
        // hidden_states = self.final_layer_norm(hidden_states); logits = self.lm_head(hidden_states)
        final_layer_norm.forward(backend, a.hidden.data(), A, a.normed.data());  // [A, H]
        backend.linear(a.normed.data(), A, *lm_head, a.logits.data());           // [A, V]
        return a.logits.data();
    }

    // The biases of a step whose sequences are at several positions: one [heads, 1, p + 1] per position p.
    template <class Backend>
    void mixed_position_bias(Backend& backend, std::span<const int64_t> slots, const SelfKV<Backend>& self_kv,
                             TextActivations<Backend>& a, DecodeStep& step) const {
        a.row_pos.clear();
        for (int64_t slot : slots) a.row_pos.push_back(self_kv.length[size_t(slot)]);
        std::vector<int64_t> positions = a.row_pos;
        std::sort(positions.begin(), positions.end());
        positions.erase(std::unique(positions.begin(), positions.end()), positions.end());
        int64_t need = 0;
        for (int64_t p : positions) need += config.num_heads * (p + 1);
        if (need > a.mixed_capacity) {
            a.mixed_bias = backend.alloc_float(size_t(need));
            a.mixed_capacity = need;
        }
        std::vector<const float*> at(positions.size());
        float* next = a.mixed_bias.data();
        for (size_t i = 0; i < positions.size(); ++i) {
            relative_attention_bias.compute(backend, positions[i], next);
            at[i] = next;
            next += config.num_heads * (positions[i] + 1);
        }
        a.row_bias.clear();
        for (int64_t p : a.row_pos)
            a.row_bias.push_back(at[size_t(std::lower_bound(positions.begin(), positions.end(), p) - positions.begin())]);
        step.row_pos = a.row_pos;
        step.row_bias = a.row_bias;
    }

    // A step's host-side effect: its sequences' next position (step() does it; a backend that replays a
    // recorded step without running step() leaves it to the caller).
    template <class Backend>
    void advance(std::span<const int64_t> slots, SelfKV<Backend>& self_kv) const {
        for (int64_t slot : slots) ++self_kv.length[size_t(slot)];
    }

    // The same step with the tokens given by the host (one per slot).
    template <class Backend>
    const scalar_t<Backend>* step(Backend& backend, std::span<const int64_t> slots, std::span<const int64_t> tokens,
                                  SelfKV<Backend>& self_kv, CrossKV<Backend>& cross_kv, TextActivations<Backend>& a,
                                  const CrossQueryObserver<Backend>& observe = {}) const {
        if (tokens.size() != slots.size() || int64_t(tokens.size()) > a.rows)
            detail::fail("decoder: ", tokens.size(), " tokens for ", slots.size(), " sequences");
        std::vector<int32_t>& ids = a.host_tokens;
        ids.resize(tokens.size());
        for (size_t r = 0; r < tokens.size(); ++r) {
            if (tokens[r] < 0 || tokens[r] >= config.vocab_size)
                detail::fail("decoder: token ", tokens[r], " is outside the vocabulary [0, ", config.vocab_size, ")");
            ids[r] = int32_t(tokens[r]);
        }
        detail::to_backend(backend, a.token.data(), ids.data(), int64_t(ids.size()));
        return step(backend, slots, self_kv, cross_kv, a, observe);
    }

    // Greedy decoding on the backend: a.token[r] = argmax(logits row r) for the first `A` rows of the last
    // step, the first maximum (torch.argmax's tie rule) — the tokens the next step feeds.
    template <class Backend>
    void choose_greedy(Backend& backend, int64_t A, TextActivations<Backend>& a) const {
        // next_tokens = torch.argmax(next_token_scores, dim=-1)
        for (int64_t r = 0; r < A; ++r)
            backend.argmax(a.logits.data() + r * config.vocab_size, config.vocab_size, a.token.data() + r);
    }
};

}  // namespace pix2struct
