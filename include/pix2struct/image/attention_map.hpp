// pix2struct/image/attention_map.hpp — where the model looked, drawn on what it saw.
//
//   pix2struct::Answer a = pipe.run(patches, {.cross_attention = true});
//   std::vector<float> w = pix2struct::attention_weights(a.cross_attention);          // mean of tokens, layers
//   pix2struct::save_png(pix2struct::attention_overlay(patches, w), "map.png");
//
// The picture is rebuilt from the model input itself (Patches: the image with its question header, resized
// to the patch grid, one 16×16 patch per cell), so every weight lands exactly on the pixels of its patch;
// the per-image normalisation is undone by stretching the pixel values to 0..255, and the picture is shown
// in grey under a heat colour (transparent where the weight is 0, red, then yellow at the largest weight).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "pix2struct/error.hpp"
#include "pix2struct/generation_config.hpp"
#include "pix2struct/image/image.hpp"

namespace pix2struct {

// Weights over the patches [patches] from recorded cross-attention: the mean over `tokens` (all when empty)
// and over the layers, or layer `layer` alone (≥ 0).
inline std::vector<float> attention_weights(const CrossAttention& a, int layer = -1, std::span<const int64_t> tokens = {}) {
    if (a.tokens == 0) detail::fail("attention map: no cross-attention was recorded (no token generated?)");
    if (layer >= a.layers) detail::fail("attention map: layer ", layer, " of a decoder with ", a.layers, " layers");
    std::vector<int64_t> all;
    if (tokens.empty()) {
        for (int64_t t = 0; t < a.tokens; ++t) all.push_back(t);
        tokens = all;
    }
    std::vector<float> w(size_t(a.patches), 0.0f);
    double n = 0;
    for (int64_t t : tokens) {
        if (t < 0 || t >= a.tokens) detail::fail("attention map: token ", t, " of ", a.tokens);
        for (int64_t l = layer < 0 ? 0 : layer; l < (layer < 0 ? a.layers : layer + 1); ++l, ++n) {
            const std::span<const float> x = a.at(t, l);
            for (size_t j = 0; j < w.size(); ++j) w[j] += x[j];
        }
    }
    for (float& x : w) x = float(x / n);
    return w;
}

// The model's input picture with `weights` (one per real patch, row-major over the grid) as a heat overlay:
// (patches.cols · pw) × (patches.rows · ph) pixels.
inline Image attention_overlay(const Patches& patches, std::span<const float> weights) {
    const int64_t n = patches.num_real(), dim = patches.patch_dim - 2;
    const int side = int(std::lround(std::sqrt(double(dim / 3))));
    if (int64_t(weights.size()) != n) detail::fail("attention map: ", weights.size(), " weights for ", n, " patches");
    if (int64_t(side) * side * 3 != dim) detail::fail("attention map: patches of ", dim, " values are not square RGB");
    Image out;
    out.width = patches.cols * side;
    out.height = patches.rows * side;
    out.rgb.resize(size_t(out.width) * out.height * 3);
    float lo = 0, hi = 0;
    for (int64_t j = 0; j < n; ++j) {
        const float* px = patches.flattened.data() + j * patches.patch_dim + 2;
        const auto [a, b] = std::minmax_element(px, px + dim);
        lo = j == 0 ? *a : std::min(lo, *a);
        hi = j == 0 ? *b : std::max(hi, *b);
    }
    const float top = std::max(*std::max_element(weights.begin(), weights.end()), 1e-30f);
    for (int64_t j = 0; j < n; ++j) {
        const float* px = patches.flattened.data() + j * patches.patch_dim + 2;  // [side, side, 3]
        const float heat = std::clamp(weights[size_t(j)] / top, 0.0f, 1.0f);
        // red → yellow over the grey picture, opacity growing with the weight (no blue: a hot pixel is never grey)
        const float colour[3] = {1.0f, std::clamp(2 * heat - 1, 0.0f, 1.0f), 0.0f};
        const float alpha = 0.75f * std::sqrt(heat);
        const int y0 = int(j / patches.cols) * side, x0 = int(j % patches.cols) * side;
        for (int y = 0; y < side; ++y)
            for (int x = 0; x < side; ++x) {
                const float* p = px + (y * side + x) * 3;
                const float grey = hi > lo ? ((p[0] + p[1] + p[2]) / 3 - lo) / (hi - lo) : 0.5f;
                uint8_t* o = out.rgb.data() + (size_t(y0 + y) * out.width + x0 + x) * 3;
                for (int c = 0; c < 3; ++c)
                    o[c] = uint8_t(std::lround(255 * ((1 - alpha) * grey + alpha * colour[c])));
            }
    }
    return out;
}

}  // namespace pix2struct
