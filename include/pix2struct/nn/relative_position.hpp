// pix2struct/nn/relative_position.hpp — the decoder's relative position bias (T5's bucketed scheme).
//
// Layer 0 of the text decoder owns a table [buckets, heads]; every layer adds the same bias to its
// self-attention scores. For query position q and key position k the decoder (unidirectional) uses
// n = max(0, q - k), bucketed by relative_position_bucket (nn/position_bucket.hpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "pix2struct/nn/position_bucket.hpp"
#include "pix2struct/weights.hpp"

namespace pix2struct {

// The decoder's bias of one query at position q against keys 0..q, on the host: out[h, 0, k] =
// table[bucket(k - q), h], out [heads, 1, q + 1], table [buckets, heads] (CpuBackend's primitive; a device
// backend computes the same on the device).
inline void relative_position_bias_host(const Weight& table, int num_buckets, int max_distance, int64_t q, float* out) {
    const int64_t heads = table.cols(), Tk = q + 1;
    for (int64_t k = 0; k < Tk; ++k) {
        // relative_position = memory_position - context_position
        const int b = relative_position_bucket(k - q, /*bidirectional=*/false, num_buckets, max_distance);
        const float* row = table.data + int64_t(b) * heads;
        for (int64_t h = 0; h < heads; ++h) out[h * Tk + k] = row[h];
    }
}

// transformers: Pix2StructTextAttention.compute_bias (the layer-0 table, shared by all layers).
struct RelativePositionBias {
    const Weight* relative_attention_bias = nullptr;  // [buckets, heads]
    int num_buckets = 32;
    int max_distance = 128;

    // bias[h, k] for one query at position q against keys 0..q: out is [heads, 1, q + 1], fp32 (the
    // reference adds it to fp32 scores), a backend buffer: computed where the attention reads it.
    template <class Backend>
    void compute(Backend& backend, int64_t q, float* out) const {
        backend.relative_position_bias(*relative_attention_bias, num_buckets, max_distance, q, out);
    }
};

}  // namespace pix2struct
