// pix2struct/model/vision_encoder.hpp — Pix2StructVisionModel: patch embeddings, pre-norm layers, final norm.
//
//   x = patch_projection(p[2:]) + row_embedder[p[0]] + column_embedder[p[1]]      [N, H]
//   per layer:  x += Attention(RMS(x));  x += MLP(RMS(x))
//   encoder_states = RMS(x)                                                        [N, H]
//
// Padding patches (mask 0) are embedded by the reference too, but they are masked as keys everywhere
// (here and in the decoder's cross-attention) and every other operation is row-wise, so no real row ever
// depends on them: by default only the real rows are computed (N = number of real patches, not
// max_patches). `EncodeOptions::skip_padding = false` runs all rows with the key mask, as the reference
// does (tests check both agree on the real rows).
//
// Several images (a batch) are encoded together, their rows packed one after another with no padding
// between them: every row-wise operation (projections, norms, MLP) runs once over all rows, and the
// attention runs per image over its own rows.
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "pix2struct/backend/backend.hpp"
#include "pix2struct/config.hpp"
#include "pix2struct/error.hpp"
#include "pix2struct/nn/attention.hpp"
#include "pix2struct/nn/mlp.hpp"
#include "pix2struct/nn/rms_norm.hpp"
#include "pix2struct/weights.hpp"

namespace pix2struct {

// transformers: Pix2StructVisionEmbeddings
struct VisionEmbeddings {
    const Weight* patch_projection_weight = nullptr;  // [H, D]   D = patch_embed_hidden_size (16·16·3)
    const Weight* patch_projection_bias = nullptr;    // [H]
    const Weight* row_embedder = nullptr;             // [seq_len, H]
    const Weight* column_embedder = nullptr;          // [seq_len, H]

    // pixels: [N, D] (the patches without their two id columns); row_ids, col_ids: [N]; x: [N, H].
    template <class Backend, class S = scalar_t<Backend>>
    void forward(Backend& backend, const S* pixels, const int64_t* row_ids, const int64_t* col_ids, int64_t N,
                 S* x) const {
        // embeddings = self.patch_projection(flattened_patches)
        backend.linear(pixels, N, *patch_projection_weight, x, Write::Overwrite, patch_projection_bias);  // [N, H]
        // embeddings = embeddings + row_embeddings + col_embeddings
        backend.embed(*row_embedder, row_ids, N, x, Write::Accumulate);     // [N, H]
        backend.embed(*column_embedder, col_ids, N, x, Write::Accumulate);  // [N, H]
    }
};

// Activations of the vision tower, sized for N rows once and reused. All are the backend's activation
// type except the key mask, fp32 as the reference adds it to fp32 scores.
template <class Backend>
struct VisionActivations {
    using Buffer = typename Backend::Buffer;
    int64_t capacity = 0;
    Buffer pixels, x, normed, q, k, v, out, gelu, linear;
    typename Backend::FloatBuffer mask;
    std::vector<scalar_t<Backend>> pixels_host;  // gathered on the host, then uploaded
    std::vector<float> mask_host;
    std::vector<int64_t> row_ids, col_ids;

    void reserve(Backend& backend, int64_t N, const VisionConfig& c) {
        if (N <= capacity) return;
        const int64_t H = c.hidden_size, I = c.inner_dim(), F = c.d_ff, D = c.patch_embed_hidden_size;
        pixels = backend.alloc(size_t(N * D));
        x = backend.alloc(size_t(N * H));
        normed = backend.alloc(size_t(N * H));
        q = backend.alloc(size_t(N * I));
        k = backend.alloc(size_t(N * I));
        v = backend.alloc(size_t(N * I));
        out = backend.alloc(size_t(N * I));
        gelu = backend.alloc(size_t(N * F));
        linear = backend.alloc(size_t(N * F));
        mask = backend.alloc_float(size_t(N));
        pixels_host.resize(size_t(N * D));
        mask_host.resize(size_t(N));
        row_ids.resize(size_t(N));
        col_ids.resize(size_t(N));
        capacity = N;
    }
};

// transformers: Pix2StructVisionLayer
struct VisionLayer {
    LayerNorm pre_attention_layer_norm;
    VisionAttention attention;
    LayerNorm pre_mlp_layer_norm;
    VisionMlp mlp;

    // x: [N, H] in/out, the images' rows packed (image i: rows segments[i] .. segments[i + 1]);
    // key_mask: [N] or null (all rows real).
    template <class Backend>
    void forward(Backend& backend, scalar_t<Backend>* x, std::span<const int64_t> segments, const float* key_mask,
                 VisionActivations<Backend>& a) const {
        const int64_t N = segments.back();
        // hidden_states = self.pre_attention_layer_norm(hidden_states)
        pre_attention_layer_norm.forward(backend, x, N, a.normed.data());  // [N, H]
        // hidden_states = attention_output + residual
        attention.forward(backend, a.normed.data(), segments, key_mask,
                          AttentionScratch<scalar_t<Backend>>{a.q.data(), a.k.data(), a.v.data(), a.out.data()},
                          x);  // [N, H]
        // layer_output = self.pre_mlp_layer_norm(hidden_states)
        pre_mlp_layer_norm.forward(backend, x, N, a.normed.data());  // [N, H]
        // layer_output = self.mlp(layer_output) + hidden_states
        mlp.forward(backend, a.normed.data(), N, MlpScratch<scalar_t<Backend>>{a.gelu.data(), a.linear.data()}, x,
                    Write::Accumulate);  // [N, H]
    }
};

// One image's model input: flattened [P, 2 + D] (row id, col id, pixels) and mask [P].
struct PatchInput {
    std::span<const float> flattened, mask;
};

struct EncodeOptions {
    bool skip_padding = true;  // compute only the real rows (same result on them; see the file comment)
};

// transformers: Pix2StructVisionModel (embeddings + Pix2StructVisionEncoder's layers + layernorm)
struct VisionModel {
    VisionConfig config;
    VisionEmbeddings embeddings;
    std::vector<VisionLayer> layer;  // encoder.layer.{i}
    LayerNorm layernorm;

    VisionModel() = default;
    VisionModel(const VisionConfig& c, const VisionWeights& w) : config(c) {
        embeddings = {&w.patch_projection_weight, &w.patch_projection_bias, &w.row_embedder, &w.column_embedder};
        for (const VisionLayerWeights& l : w.layers)
            layer.push_back(VisionLayer{LayerNorm{&l.pre_attention_layer_norm, c.layer_norm_eps},
                                        VisionAttention{&l.attention, c.num_attention_heads, c.d_kv},
                                        LayerNorm{&l.pre_mlp_layer_norm, c.layer_norm_eps},
                                        VisionMlp{&l.mlp}});
        layernorm = LayerNorm{&w.layernorm, c.layer_norm_eps};
    }

    // Encodes the images one after another in one pass. Writes encoder_states [N, H] for the N rows
    // computed — per image its real rows in order (or all its P rows), packed — their patch indices within
    // their image into `rows`, and the images' row ranges into `segments` [images + 1]. Returns N.
    template <class Backend>
    int64_t forward(Backend& backend, std::span<const PatchInput> images, VisionActivations<Backend>& a,
                    scalar_t<Backend>* encoder_states, std::vector<int64_t>& rows, std::vector<int64_t>& segments,
                    const EncodeOptions& options = {}) const {
        const int64_t D = config.patch_embed_hidden_size, W = D + 2;
        if (images.empty()) detail::fail("encoder: no image to encode");
        rows.clear();
        segments.assign(1, 0);
        for (size_t i = 0; i < images.size(); ++i) {
            const PatchInput& in = images[i];
            const std::string which = images.size() > 1 ? "image " + std::to_string(i) + ": " : "";
            if (in.flattened.size() % size_t(W) != 0)
                detail::fail(which, "flattened patches: ", in.flattened.size(), " values is not a multiple of the patch width ",
                             W, " (2 ids + ", D, " pixels, the checkpoint's patch_embed_hidden_size)");
            const int64_t P = int64_t(in.flattened.size()) / W;
            if (int64_t(in.mask.size()) != P) detail::fail(which, "patch mask: ", in.mask.size(), " values for ", P, " patches");
            if (std::all_of(in.mask.begin(), in.mask.end(), [](float m) { return m == 0; }))
                detail::fail(which, "flattened patches: no real patch (the mask is all zero)");
            for (int64_t p = 0; p < P; ++p) {
                if (options.skip_padding && in.mask[size_t(p)] == 0.0f) continue;
                // row_indices = flattened_patches[:, :, 0].long(); col_indices = flattened_patches[:, :, 1].long()
                const float* patch = in.flattened.data() + p * W;
                if (!(patch[0] >= 0 && patch[0] < float(config.seq_len) && patch[1] >= 0 && patch[1] < float(config.seq_len)))
                    detail::fail(which, "flattened patches: patch ", p, " has row/column id ", patch[0], "/", patch[1],
                                 ", outside the embedding tables [0, ", config.seq_len, ")");
                rows.push_back(p);
            }
            segments.push_back(int64_t(rows.size()));
        }
        const int64_t N = int64_t(rows.size());
        a.reserve(backend, N, config);
        for (size_t i = 0; i + 1 < segments.size(); ++i)
            for (int64_t n = segments[i]; n < segments[i + 1]; ++n) {
                const int64_t p = rows[size_t(n)];
                const float* patch = images[i].flattened.data() + p * W;
                a.row_ids[size_t(n)] = int64_t(patch[0]);
                a.col_ids[size_t(n)] = int64_t(patch[1]);
                std::copy(patch + 2, patch + W, a.pixels_host.data() + n * D);  // float → the activation type
                a.mask_host[size_t(n)] = images[i].mask[size_t(p)];
            }
        detail::to_backend(backend, a.pixels.data(), a.pixels_host.data(), N * D);  // [N, D]
        // Only the reference path (skip_padding = false) masks keys; the real rows alone need no mask.
        const float* key_mask = nullptr;
        if (!options.skip_padding) {
            detail::to_backend(backend, a.mask.data(), a.mask_host.data(), N);  // [N]
            key_mask = a.mask.data();
        }
        embeddings.forward(backend, a.pixels.data(), a.row_ids.data(), a.col_ids.data(), N, a.x.data());  // [N, H]
        for (const VisionLayer& l : layer) l.forward(backend, a.x.data(), segments, key_mask, a);          // [N, H]
        // sequence_output = self.layernorm(sequence_output)
        layernorm.forward(backend, a.x.data(), N, encoder_states);  // [N, H]
        return N;
    }
};

}  // namespace pix2struct
