// pix2struct/backend/backend.hpp — what a backend is: the argument types of its primitives and a concept.
//
// The model's blocks (nn/, model/) are templates over a Backend type and call only the members listed in
// the `Backend` concept below. A backend names its activation type `Backend::Scalar` (float for the CPU and
// for CUDA's fp32 path; a bf16 type for a bf16 path): every activation the blocks pass between primitives —
// hidden states, Q/K/V, the K/V caches, MLP scratch, logits — is `scalar_t<Backend>` storage, a
// `Backend::Buffer` from alloc(n). What the reference keeps in fp32 whatever the model's dtype stays
// `float`, a `Backend::FloatBuffer` from alloc_float(n): the patch mask and the relative position bias
// (both added to fp32 scores), and the statistics and softmax inside the primitives. The logits are the
// lm_head's output in the model's dtype, as in the reference (generate casts them to fp32 afterwards,
// exactly), so they are Scalar too.
//
// Model code never dereferences a Buffer on the host: what the host prepares (patch pixels, the patch
// mask) goes in through detail::to_backend, what it reads (logits) comes out through
// detail::to_host: a backend's upload/download/copy members when it has them, plain copies otherwise
// (host or managed memory). Weights are passed as `const Weight&`: the host fp32 view, the stored tensor
// and the host copies made at load (a CPU backend reads those; it says so with `reads_host_weights`); a
// device backend keeps its own copies, uploaded once, in a table indexed by Weight::index. Embedding ids are host arrays (a
// handful of integers per call), except the decoder's token, which stays in backend memory (an IdBuffer)
// from the argmax that chooses it to the embedding that reads it: a decode step needs no host work.
#pragma once

#include <algorithm>
#include <atomic>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "pix2struct/backend/attention_args.hpp"
#include "pix2struct/weights.hpp"

namespace pix2struct {

// What argmax() writes for a row of logits holding a NaN or an infinity: generate() stops with an Error
// naming the step instead of decoding a made-up token.
inline constexpr int32_t kNonFiniteLogits = -1;

// How a primitive writes its output: replace it, or add to it (residual connections, in place).
enum class Write { Overwrite, Accumulate };

// The activation type of a backend (float, or a bf16 type).
template <class B>
using scalar_t = typename B::Scalar;

// The element type of the decoder's cross-attention K/V caches: B::CrossScalar when the backend names one
// (CpuInt8Backend: int8 codes, a quarter of the bytes every decode step reads), else its Scalar. Such a backend also
// has alloc_cross(n), a linear() writing CrossScalar rows (the K/V projections) and an attention() reading
// AttentionArgs<Scalar, CrossScalar> (the decode steps' cross-attention).
template <class B>
struct cross_scalar {
    using type = scalar_t<B>;
};
template <class B>
    requires requires { typename B::CrossScalar; }
struct cross_scalar<B> {
    using type = typename B::CrossScalar;
};
template <class B>
using cross_t = typename cross_scalar<B>::type;

// Whether a backend multiplies by the checkpoint's host memory (`static constexpr bool reads_host_weights
// = true;`, the CPU) rather than by copies of its own (a GPU): a pipeline then loads the checkpoint with
// the host copies of the decode matrices (LoadOptions::decode_copies).
template <class B>
inline constexpr bool reads_host_weights = requires { requires B::reads_host_weights; };

template <class B>
concept Backend = requires(B& b, const scalar_t<B>* x, scalar_t<B>* y, float* f, const Weight& w,
                           const AttentionArgs<scalar_t<B>>& a, const int64_t* ids, int32_t* t, int64_t n) {
    typename B::Buffer;       // n Scalars: activations
    typename B::FloatBuffer;  // n floats: masks, position bias
    typename B::IdBuffer;     // n int32 token ids (the decoder's next token, chosen on the backend)
    { b.alloc(size_t(n)) } -> std::same_as<typename B::Buffer>;
    { b.alloc_float(size_t(n)) } -> std::same_as<typename B::FloatBuffer>;
    { b.alloc(size_t(n)).data() } -> std::same_as<scalar_t<B>*>;
    { b.alloc_float(size_t(n)).data() } -> std::same_as<float*>;
    { b.alloc_ids(size_t(n)) } -> std::same_as<typename B::IdBuffer>;
    { b.alloc_ids(size_t(n)).data() } -> std::same_as<int32_t*>;
    // The primitives (M, N, K, H: rows and widths; W: a Weight [N, K] as torch's nn.Linear stores it):
    b.linear(x, n, w, y, Write::Overwrite, &w);   // Y[M, N] (=|+=) X[M, K]·Wᵀ (+ bias[N])
    b.rms_norm(x, n, w, 1e-6f, y);                // Y[M, H] = w ⊙ X / sqrt(mean(X², row) + eps)   (T5 style)
    b.gelu_gate(y, x, n);                         // A[n] = gelu_new(A) ⊙ B                       (gated MLP)
    b.attention(a);                               // O = softmax(Q·Kᵀ + bias, masked keys → 0)·V per head,
                                                  //     no 1/√d (backend/attention_args.hpp)
    b.embed(w, ids, n, y, Write::Overwrite);      // Y[n, H] (=|+=) table[ids[i]]         (ids: host int64)
    b.embed_token(w, t, y);                       // Y[H] = table[*T]              (T: one backend int32)
    b.argmax(x, n, t);                            // *T = first index of the maximum of X[n];
                                                  //      kNonFiniteLogits if X holds NaN or infinity
    b.add_rows(y, x, n);                          // Y[n] += X[n]
    b.relative_position_bias(w, 32, 128, n, f);   // F[heads, 1, q + 1] (fp32) = the decoder's bias of query
                                                  //     q = n against keys 0..q (nn/relative_position.hpp)
};

namespace detail {
// A process-wide unique number for a set of buffers, taken anew whenever they are (re)allocated: a backend
// that records launch sequences (CudaBackend's CUDA graphs) keys them with it, so a recording never
// outlives the buffers it names, even when an allocator hands the same addresses out again.
inline int64_t next_buffers_id() {
    static std::atomic<int64_t> n{0};
    return ++n;
}

// Transfers of n elements of one type T (a Scalar, float or int32 token id); the host side converts
// before or after when its type differs.
// backend ← host
template <class B, class T>
void to_backend(B& b, T* dst, const T* src, int64_t n) {
    if constexpr (requires { b.upload(dst, src, n); }) b.upload(dst, src, n);
    else std::copy(src, src + n, dst);
}
// host ← backend
template <class B, class T>
void to_host(B& b, T* dst, const T* src, int64_t n) {
    if constexpr (requires { b.download(dst, src, n); }) b.download(dst, src, n);
    else std::copy(src, src + n, dst);
}
// n elements for the cross-attention K/V caches (cross_t<B>).
template <class B>
auto alloc_cross(B& b, size_t n) {
    if constexpr (requires { b.alloc_cross(n); }) return b.alloc_cross(n);
    else return b.alloc(n);
}

// host fp32 ← `rows` rows of `width` cross-attention K/V values (cross_t<B>): the backend's cross_to_host
// when it has one (CpuInt8Backend dequantises its int8 rows), else a transfer and a conversion.
template <class B, class C>
void cross_to_host(B& b, float* dst, const C* src, int64_t rows, int64_t width) {
    if constexpr (requires { b.cross_to_host(dst, src, rows, width); }) {
        b.cross_to_host(dst, src, rows, width);
    } else {
        std::vector<C> staged(size_t(rows * width));
        to_host(b, staged.data(), src, rows * width);
        std::transform(staged.begin(), staged.end(), dst, [](C x) { return float(x); });
    }
}

// backend ← backend
template <class B, class T>
void within_backend(B& b, T* dst, const T* src, int64_t n) {
    if constexpr (requires { b.copy(dst, src, n); }) b.copy(dst, src, n);
    else std::copy(src, src + n, dst);
}
}  // namespace detail

}  // namespace pix2struct
