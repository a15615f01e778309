// pix2struct/backend/backend.hpp — what a backend is: the argument types of its primitives and a concept.
//
// The model's blocks (nn/, model/) are templates over a Backend type and call only the members listed in
// the `Backend` concept below; buffers are `Backend::Buffer` (float storage the backend can address: host
// memory for the CPU, device memory for CUDA). Model code never dereferences a Buffer on the host: what
// the host prepares (patch pixels, masks, the relative position bias) goes in through detail::to_backend,
// what it reads (logits) comes out through detail::to_host: a backend's upload/download/copy members when
// it has them, plain copies otherwise (host or managed memory). Weights are passed as `const Weight&` (the host fp32 view
// and the stored tensor); a device backend maps them to its own copies, uploaded once. Embedding ids are
// host arrays (a handful of integers per call).
#pragma once

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstdint>

#include "pix2struct/weights.hpp"

namespace pix2struct {

// How a primitive writes its output: replace it, or add to it (residual connections, in place).
enum class Write { Overwrite, Accumulate };

// Arguments of one multi-head attention call. Rows are strided (ld*) so Q/K/V may live side by side.
struct AttentionArgs {
    const float* Q; int64_t ldq;   // [Tq, heads·D]
    const float* K; int64_t ldk;   // [Tk, heads·D]
    const float* V; int64_t ldv;   // [Tk, heads·D]
    float* O; int64_t ldo;         // [Tq, heads·D]
    int64_t Tq, Tk;
    int heads, D;
    const float* key_mask = nullptr;  // [Tk] 1 keep, 0 masked (gets the lowest float, as the reference); or null
    const float* bias = nullptr;      // [heads, Tq, Tk] additive (relative position bias); or null
};

template <class B>
concept Backend = requires(B& b, const float* x, float* y, const Weight& w, const AttentionArgs& a,
                           const int64_t* ids, int64_t n) {
    typename B::Buffer;
    { b.alloc(size_t(n)) } -> std::same_as<typename B::Buffer>;
    b.linear(x, n, w, y, Write::Overwrite, &w);   // Y[M, N] (=|+=) X[M, K]·Wᵀ (+ bias)
    b.rms_norm(x, n, w, 1e-6f, y);                // Y[M, H] = w ⊙ X / rms(X)
    b.gelu_gate(y, x, n);                         // A = gelu_new(A) ⊙ B
    b.attention(a);                               // softmax(QKᵀ + bias, mask)·V, no 1/√d
    b.embed(w, ids, n, y, Write::Overwrite);      // Y[i] = table[ids[i]]
    b.add_rows(y, x, n);                          // Y += X
};

namespace detail {
// backend ← host
template <class B>
void to_backend(B& b, float* dst, const float* src, int64_t n) {
    if constexpr (requires { b.upload(dst, src, n); }) b.upload(dst, src, n);
    else std::copy(src, src + n, dst);
}
// host ← backend
template <class B>
void to_host(B& b, float* dst, const float* src, int64_t n) {
    if constexpr (requires { b.download(dst, src, n); }) b.download(dst, src, n);
    else std::copy(src, src + n, dst);
}
// backend ← backend
template <class B>
void within_backend(B& b, float* dst, const float* src, int64_t n) {
    if constexpr (requires { b.copy(dst, src, n); }) b.copy(dst, src, n);
    else std::copy(src, src + n, dst);
}
}  // namespace detail

}  // namespace pix2struct
