// pix2struct/model/text_decoder.hpp — Pix2StructTextModel, one decode step at a time.
//
//   h = embed_tokens[token]                                                         [1, H]
//   per block:  h += SelfAttn(RMS(h), cache, rel_bias);  h += CrossAttn(RMS(h), E);  h += MLP(RMS(h))
//   logits = lm_head(RMS(h))                                                        [1, V]
//
// The relative position bias is computed from layer 0's table and added in every layer (the reference
// passes layer 0's position_bias on to the others). lm_head is not tied to embed_tokens and the logits
// are not rescaled (unlike T5's d_model^-0.5). Teacher forcing over T tokens equals T steps with the
// cache (the causal mask of the reference hides later tokens), which is how tests check the logits.
#pragma once

#include <cstdint>
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

// Activations of one decode step, allocated once per session. The logits are the activation type (the
// lm_head output in the model's dtype, as in the reference); the relative position bias is fp32 (added
// to fp32 scores).
template <class Backend>
struct TextActivations {
    using Buffer = typename Backend::Buffer;
    Buffer hidden, normed, q, out, gelu, linear, logits;
    typename Backend::FloatBuffer bias;  // the relative position bias, computed by the backend
    typename Backend::IdBuffer token;    // [1] the token a step feeds: written by the host or by argmax
    int64_t bias_capacity = 0;

    void reserve(Backend& backend, const TextConfig& c, int64_t max_positions) {
        const int64_t H = c.hidden_size, I = c.inner_dim(), F = c.d_ff;
        if (hidden.size() == 0) {
            hidden = backend.alloc(size_t(H));
            normed = backend.alloc(size_t(H));
            q = backend.alloc(size_t(I));
            out = backend.alloc(size_t(I));
            gelu = backend.alloc(size_t(F));
            linear = backend.alloc(size_t(F));
            logits = backend.alloc(size_t(c.vocab_size));
            token = backend.alloc_ids(1);
        }
        if (max_positions > bias_capacity) {
            bias = backend.alloc_float(size_t(int64_t(c.num_heads) * max_positions));  // [heads, 1, positions]
            bias_capacity = max_positions;
        }
    }
    AttentionScratch<scalar_t<Backend>> attention() { return {q.data(), nullptr, nullptr, out.data()}; }
    MlpScratch<scalar_t<Backend>> mlp() { return {gelu.data(), linear.data()}; }
};

// transformers: Pix2StructTextLayerSelfAttention
struct TextLayerSelfAttention {
    LayerNorm layer_norm;
    TextAttention attention;

    template <class Backend>
    void forward(Backend& backend, int64_t pos, scalar_t<Backend>* K_cache, scalar_t<Backend>* V_cache,
                 TextActivations<Backend>& a) const {
        // normed_hidden_states = self.layer_norm(hidden_states)
        layer_norm.forward(backend, a.hidden.data(), 1, a.normed.data());  // [1, H]
        // hidden_states = hidden_states + self.dropout(attention_output[0])
        attention.forward_self(backend, a.normed.data(), pos, K_cache, V_cache, a.bias.data(), a.attention(),
                               a.hidden.data());  // [1, H]
    }
};

// transformers: Pix2StructTextLayerCrossAttention
struct TextLayerCrossAttention {
    LayerNorm layer_norm;
    TextAttention attention;

    template <class Backend>
    void forward(Backend& backend, const scalar_t<Backend>* K, const scalar_t<Backend>* V, int64_t T,
                 TextActivations<Backend>& a) const {
        layer_norm.forward(backend, a.hidden.data(), 1, a.normed.data());  // [1, H]
        // layer_output = hidden_states + self.dropout(attention_output[0])
        attention.forward_cross(backend, a.normed.data(), K, V, T, a.attention(), a.hidden.data());  // [1, H]
    }
};

// transformers: Pix2StructTextBlock
struct TextBlock {
    TextLayerSelfAttention self_attention;
    TextLayerCrossAttention encoder_decoder_attention;
    TextLayerFF mlp;

    template <class Backend>
    void forward(Backend& backend, int64_t pos, int layer_index, SelfKV<Backend>& self_kv, CrossKV<Backend>& cross_kv,
                 TextActivations<Backend>& a) const {
        const size_t l = size_t(layer_index);
        self_attention.forward(backend, pos, self_kv.keys[l].data(), self_kv.values[l].data(), a);
        encoder_decoder_attention.forward(backend, cross_kv.keys[l].data(), cross_kv.values[l].data(), cross_kv.rows, a);
        mlp.forward(backend, a.hidden.data(), 1, a.normed.data(), a.mlp());  // [1, H]
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
                 TextAttention{&l.self_query, &l.self_key, &l.self_value, &l.self_output, c.num_heads, c.d_kv}},
                {LayerNorm{&l.cross_attention_layer_norm, eps},
                 TextAttention{&l.cross_query, &l.cross_key, &l.cross_value, &l.cross_output, c.num_heads, c.d_kv}},
                TextLayerFF{LayerNorm{&l.mlp_layer_norm, eps}, DenseGatedActDense{&l.wi_0, &l.wi_1, &l.wo}}});
        final_layer_norm = LayerNorm{&w.final_layer_norm, eps};
        lm_head = &w.lm_head;
    }

    // Projects the encoder states E [N, H] into every layer's cross-attention K/V (once per image).
    template <class Backend>
    void compute_cross_kv(Backend& backend, const scalar_t<Backend>* E, int64_t N, CrossKV<Backend>& cross) const {
        cross.reserve(backend, int(layer.size()), N, config.inner_dim());
        for (size_t l = 0; l < layer.size(); ++l)
            layer[l].encoder_decoder_attention.attention.project_kv(backend, E, N, cross.keys[l].data(),
                                                                   cross.values[l].data());  // [N, I] each
        cross.rows = N;
    }

    // One step: `token` at position self_kv.length; appends to the self cache; returns the logits [V]
    // (a backend buffer: detail::to_host() them to read on the host).
    template <class Backend>
    const scalar_t<Backend>* step(Backend& backend, int64_t token, SelfKV<Backend>& self_kv, CrossKV<Backend>& cross_kv,
                                  TextActivations<Backend>& a) const {
        if (token < 0 || token >= config.vocab_size)
            detail::fail("decoder: token ", token, " is outside the vocabulary [0, ", config.vocab_size, ")");
        const int32_t id = int32_t(token);
        detail::to_backend(backend, a.token.data(), &id, 1);
        return step(backend, self_kv, cross_kv, a);
    }

    // The same step for the token already in a.token (backend memory), e.g. the previous step's
    // choose_greedy(): the step then needs nothing from the host.
    template <class Backend>
    const scalar_t<Backend>* step(Backend& backend, SelfKV<Backend>& self_kv, CrossKV<Backend>& cross_kv,
                                  TextActivations<Backend>& a) const {
        const int64_t pos = self_kv.length;
        if (pos >= self_kv.capacity) detail::fail("decoder: position ", pos, " exceeds the cache (", self_kv.capacity, ")");
        // inputs_embeds = self.embed_tokens(input_ids)
        backend.embed_token(*embed_tokens, a.token.data(), a.hidden.data());  // [1, H]
        // position_bias = compute_bias(...)[:, :, -seq_length:, :]  (layer 0's table, reused by every layer)
        relative_attention_bias.compute(backend, pos, a.bias.data());  // [heads, 1, pos + 1]
        for (size_t l = 0; l < layer.size(); ++l) layer[l].forward(backend, pos, int(l), self_kv, cross_kv, a);
        self_kv.length = pos + 1;
        // hidden_states = self.final_layer_norm(hidden_states); logits = self.lm_head(hidden_states)
        final_layer_norm.forward(backend, a.hidden.data(), 1, a.normed.data());  // [1, H]
        backend.linear(a.normed.data(), 1, *lm_head, a.logits.data());           // [1, V]
        return a.logits.data();
    }

    // Greedy decoding on the backend: a.token = argmax(a.logits), the first maximum (torch.argmax's tie
    // rule) — the token the next step(backend, self_kv, cross_kv, a) feeds.
    template <class Backend>
    void choose_greedy(Backend& backend, TextActivations<Backend>& a) const {
        // next_tokens = torch.argmax(next_token_scores, dim=-1)
        backend.argmax(a.logits.data(), config.vocab_size, a.token.data());
    }
};

}  // namespace pix2struct
