// pix2struct/model/kv_cache.hpp — the decoder's key/value caches, allocated once per session.
//
// CrossKV: per layer, K and V of the encoder states [N, I] (N real patches), projected once per image —
//          they depend only on the encoder output, never on the generated tokens.
// SelfKV:  per layer, K and V of the tokens decoded so far [capacity, I]; one row is appended per step.
#pragma once

#include <cstdint>
#include <vector>

namespace pix2struct {

template <class Backend>
struct CrossKV {
    using Buffer = typename Backend::Buffer;
    std::vector<Buffer> keys, values;  // [layers] × [N, I]
    int64_t rows = 0, capacity = 0;

    void reserve(Backend& backend, int layers, int64_t N, int64_t I) {
        if (N <= capacity && int(keys.size()) == layers) return;
        keys.clear();
        values.clear();
        for (int l = 0; l < layers; ++l) {
            keys.push_back(backend.alloc(size_t(N * I)));
            values.push_back(backend.alloc(size_t(N * I)));
        }
        capacity = N;
    }
};

template <class Backend>
struct SelfKV {
    using Buffer = typename Backend::Buffer;
    std::vector<Buffer> keys, values;  // [layers] × [capacity, I]
    int64_t length = 0, capacity = 0;

    void reserve(Backend& backend, int layers, int64_t T, int64_t I) {
        if (T <= capacity && int(keys.size()) == layers) return;
        keys.clear();
        values.clear();
        for (int l = 0; l < layers; ++l) {
            keys.push_back(backend.alloc(size_t(T * I)));
            values.push_back(backend.alloc(size_t(T * I)));
        }
        capacity = T;
        length = 0;
    }
};

}  // namespace pix2struct
