// pix2struct/model/kv_cache.hpp — the decoder's key/value caches, allocated once per session.
//
// CrossKV: per layer, K and V of the encoder states [N, I] (N real patches), projected once per image —
//          they depend only on the encoder output, never on the generated tokens.
// SelfKV:  per layer, K and V of the tokens decoded so far [capacity, I]; one row is appended per step.
#pragma once

#include <cstdint>
#include <vector>

namespace pix2struct {

// Per layer, K and V buffers of `capacity` rows of I values each; reallocated only to grow.
template <class Backend>
struct KVBuffers {
    using Buffer = typename Backend::Buffer;
    std::vector<Buffer> keys, values;  // [layers] × [capacity, I]
    int64_t capacity = 0;

    void reserve(Backend& backend, int layers, int64_t rows, int64_t I) {
        if (rows <= capacity && int(keys.size()) == layers) return;
        keys.clear();
        values.clear();
        for (int l = 0; l < layers; ++l) {
            keys.push_back(backend.alloc(size_t(rows * I)));
            values.push_back(backend.alloc(size_t(rows * I)));
        }
        capacity = rows;
    }
};

template <class Backend>
struct CrossKV : KVBuffers<Backend> {
    int64_t rows = 0;  // encoder rows projected
};

template <class Backend>
struct SelfKV : KVBuffers<Backend> {
    int64_t length = 0;  // tokens decoded so far (the caller resets it for a new sequence)
};

}  // namespace pix2struct
