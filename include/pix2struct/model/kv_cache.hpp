// pix2struct/model/kv_cache.hpp — the decoder's key/value caches, allocated once per session.
//
// Several sequences (a batch) share each buffer; a decode step works on any subset of them.
// CrossKV: per layer, K and V of the encoder states [N, I] of every image: image i owns rows first[i] ..
//          first[i] + count[i] (its real patches; packed in a batch, anywhere free in a continuous batch),
//          projected once per image — they depend only on the encoder output, never on the generated
//          tokens; each sequence reads its image's rows (one sequence per image, or several: beams, scored
//          candidates).
// SelfKV:  per layer, K and V of the tokens decoded so far, position-major: [positions, sequences, I],
//          the row of sequence s at position p is p·sequences + s; one row per sequence is appended per
//          step, so the rows a step of consecutive sequences at one position appends are contiguous (one
//          projection writes them all), and a sequence's keys are rows of stride sequences · I.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

#include "pix2struct/backend/backend.hpp"

namespace pix2struct {

// Per layer, K and V buffers of `capacity` rows of I values each; reallocated only to grow. Cross: of the
// backend's cross-attention type (cross_t: narrower on CpuInt8Backend), else of its Scalar.
template <class Backend, bool Cross = false>
struct KVBuffers {
    using Buffer = std::conditional_t<Cross, decltype(detail::alloc_cross(std::declval<Backend&>(), 0)),
                                      typename Backend::Buffer>;
    std::vector<Buffer> keys, values;  // [layers] × [capacity, I]
    int64_t capacity = 0;
    int64_t id = 0;  // detail::next_buffers_id() of the current allocation

    void reserve(Backend& backend, int layers, int64_t rows, int64_t I) {
        if (rows <= capacity && int(keys.size()) == layers) return;
        keys.clear();
        values.clear();
        for (int l = 0; l < layers; ++l) {
            keys.push_back(alloc(backend, size_t(rows * I)));
            values.push_back(alloc(backend, size_t(rows * I)));
        }
        capacity = rows;
        id = detail::next_buffers_id();
    }

private:
    static Buffer alloc(Backend& backend, size_t n) {
        if constexpr (Cross) return detail::alloc_cross(backend, n);
        else return backend.alloc(n);
    }
};

template <class Backend>
struct CrossKV : KVBuffers<Backend, true> {
    std::vector<int64_t> first, count;  // [images]: image i's encoder rows are first[i] .. first[i] + count[i]
    std::vector<int64_t> image;         // [sequences]: the image sequence s reads (several beams or candidates
                                        // of one image share its rows)

    int64_t first_row(int64_t sequence) const { return first[size_t(image[size_t(sequence)])]; }
    int64_t rows(int64_t sequence) const { return count[size_t(image[size_t(sequence)])]; }
    int64_t end_row() const {  // one past the last row any image owns
        int64_t end = 0;
        for (size_t i = 0; i < first.size(); ++i) end = std::max(end, first[i] + count[i]);
        return end;
    }
};

template <class Backend>
struct SelfKV : KVBuffers<Backend> {
    int64_t sequences = 0, positions = 0;
    std::vector<int64_t> length;  // [sequences]: tokens decoded so far (begin() empties them)

    // Room for `n` sequences of `max_positions` tokens each, all empty.
    void begin(Backend& backend, int layers, int64_t n, int64_t max_positions, int64_t I) {
        this->reserve(backend, layers, n * max_positions, I);
        sequences = n;
        positions = this->capacity / n;  // may exceed max_positions after a larger batch: still valid
        length.assign(size_t(n), 0);
    }
};

}  // namespace pix2struct
