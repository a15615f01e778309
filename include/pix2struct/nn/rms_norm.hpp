// pix2struct/nn/rms_norm.hpp — Pix2StructLayerNorm: the T5-style RMS norm of every pre-norm sub-block.
//
//   y = weight ⊙ x / sqrt(mean(x², last dim) + eps)      x, y: [M, H], weight: [H]
//
// No mean subtraction and no bias (T5 style). The reference computes the variance in fp32 whatever the
// activation dtype, then (for bf16/f16 weights) casts back before the multiply: x and y are the backend's
// activation type (scalar_t<Backend>), the statistics are fp32 inside the primitive.
#pragma once

#include <cstdint>

#include "pix2struct/backend/backend.hpp"
#include "pix2struct/weights.hpp"

namespace pix2struct {

// transformers: Pix2StructLayerNorm
struct LayerNorm {
    const Weight* weight = nullptr;  // [H]
    float eps = 1e-6f;

    template <class Backend, class S = scalar_t<Backend>>
    void forward(Backend& backend, const S* x, int64_t rows, S* y) const {
        // variance = hidden_states.to(torch.float32).pow(2).mean(-1, keepdim=True)
        // hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
        // return self.weight * hidden_states
        backend.rms_norm(x, rows, *weight, eps, y);  // [rows, H]
    }
};

}  // namespace pix2struct
