// pix2struct/nn/mlp.hpp — the gated-GELU feed-forward of both towers.
//
//   y = wo · (gelu_new(wi_0 · x) ⊙ (wi_1 · x))      x: [M, H], wi_0/wi_1: [F, H], wo: [H, F], y: [M, H]
//
// Pix2StructVisionMlp and Pix2StructTextDenseGatedActDense compute the same thing (the text one is named
// DenseReluDense in the checkpoint although its activation is gelu_new, the tanh approximation).
#pragma once

#include <cstdint>

#include "pix2struct/backend/backend.hpp"
#include "pix2struct/nn/rms_norm.hpp"
#include "pix2struct/weights.hpp"

namespace pix2struct {

// Scratch the MLP needs, [M, F] each, of activation type S; owned by the model's workspace.
template <class S>
struct MlpScratch {
    S* gelu;    // [M, F]
    S* linear;  // [M, F]
};

// transformers: Pix2StructVisionMlp / Pix2StructTextDenseGatedActDense
struct DenseGatedActDense {
    const GatedMlpWeights* w = nullptr;  // wi_0, wi_1 [F, H], wo [H, F]

    // y (=|+=) MLP(x); Write::Accumulate adds the block's output onto the residual stream in place.
    template <class Backend, class S = scalar_t<Backend>>
    void forward(Backend& backend, const S* x, int64_t M, MlpScratch<S> s, S* y, Write mode) const {
        // hidden_gelu = self.act(self.wi_0(hidden_states))
        backend.linear(x, M, w->wi_0, s.gelu);                // [M, F]
        // hidden_linear = self.wi_1(hidden_states)
        backend.linear(x, M, w->wi_1, s.linear);              // [M, F]
        // hidden_states = hidden_gelu * hidden_linear
        backend.gelu_gate(s.gelu, s.linear, M * w->wi_0.rows()); // [M, F]
        // hidden_states = self.wo(hidden_states)
        backend.linear(s.gelu, M, w->wo, y, mode);            // [M, H]
    }
};
using VisionMlp = DenseGatedActDense;
using TextDenseGatedActDense = DenseGatedActDense;

// transformers: Pix2StructTextLayerFF — pre-norm MLP with a residual.
struct TextLayerFF {
    LayerNorm layer_norm;
    DenseGatedActDense DenseReluDense;  // the checkpoint's name

    // hidden: [M, H] in/out; normed: [M, H] scratch.
    template <class Backend, class S = scalar_t<Backend>>
    void forward(Backend& backend, S* hidden, int64_t M, S* normed, MlpScratch<S> s) const {
        // forwarded_states = self.layer_norm(hidden_states)
        layer_norm.forward(backend, hidden, M, normed);                           // [M, H]
        // hidden_states = hidden_states + self.DenseReluDense(forwarded_states)
        DenseReluDense.forward(backend, normed, M, s, hidden, Write::Accumulate); // [M, H]
    }
};

}  // namespace pix2struct
