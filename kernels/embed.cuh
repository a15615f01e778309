// kernels/embed.cuh — the element-wise and gather kernels around the transformer blocks.
//
//   embedding_gather(table [V, H], ids [n], out [n, H], accumulate)   out[i] (+)= table[ids[i]]
//                         (decoder token embedding). Ids outside [0, V) are clamped to the table.
//   split_patches(flattened [N, 2 + P] fp32, pixels [N, P], ids [N, 2] int32)
//                         the preprocessor's rows (row id, col id, patch) split into the matmul input of
//                         patch_projection (16-byte aligned, any type) and the integer position ids.
//   add_position_embeddings(x [N, H], row_table [S, H], col_table [S, H], ids [N, 2])
//                         x[i] += row_table[row id] + col_table[col id] (ids used as stored, 1-based,
//                         padding rows have id 0 and are embedded too, as in the reference; clamped to S).
//   convert(in [n], out [n])                  fp32 <-> bf16 (round to nearest even), or copy.
//   argmax(logits [rows, V], out [rows])      first index of the maximum per row, -1 if it holds NaN/inf.
//   gelu_gate(a [n], b [n])                   a = gelu_new(a) ⊙ b (the gated-GELU MLP when its two products
//                                             are separate launches, as in the backend's block-by-block path).
//   add(y [n], x [n])                         y += x (residual adds the blocks do not fuse).
//   relative_position_bias(table [buckets, H], out [H, Lq, Lk], q_offset)
//                         the decoder's causal T5 position bias: out[h, i, j] = table[bucket(n), h] with
//                         n = max(0, (q_offset + i) - j); bucket(n) = n below buckets/2, else
//                         buckets/2 + trunc(log(n / (buckets/2)) / log(max_distance / (buckets/2)) · buckets/2)
//                         capped at buckets - 1, in float32 as the reference computes it.
// Launch: element-wise kernels one thread per 8 elements (grid-stride); gathers one warp per row;
// argmax one block of 256 threads per row.
// Measured (H100, pending a GPU session): see bench/RESULTS.md "GPU kernels".
#pragma once

#include <cmath>

#include "pix2struct/kernels/common.cuh"
#include "pix2struct/nn/position_bucket.hpp"

namespace pix2struct::kernels {

namespace detail {

inline constexpr int kEwThreads = 256, kArgmaxThreads = 256, kGatherWarps = 4;

inline unsigned ew_blocks(int64_t n) {
    return unsigned(std::min<int64_t>(std::max<int64_t>(ceil_div(n, kEwThreads), 1), int64_t(1) << 20));
}

// =============================================================================================
// Kernels
// =============================================================================================
template <class TTable, class TOut>
__global__ void __launch_bounds__(32 * kGatherWarps)
    embedding_gather_kernel(const TTable* table, int64_t V, const int32_t* ids, TOut* out, int64_t n, int H,
                            bool accumulate) {
    const int lane = threadIdx.x % 32;
    const int64_t i = int64_t(blockIdx.x) * kGatherWarps + threadIdx.x / 32;
    if (i >= n) return;
    const int64_t id = min(max(int64_t(ids[i]), int64_t(0)), V - 1);
    const TTable* src = table + id * H;
    TOut* dst = out + i * H;
    for (int c = lane; c < H; c += 32) {
        const float v = to_float(src[c]);
        dst[c] = from_float<TOut>(accumulate ? to_float(dst[c]) + v : v);
    }
}

template <class TOut>
__global__ void __launch_bounds__(kEwThreads)
    split_patches_kernel(const float* flattened, int64_t N, int P, TOut* pixels, int32_t* ids) {
    const int64_t total = N * (P + 2);
    for (int64_t e = int64_t(blockIdx.x) * kEwThreads + threadIdx.x; e < total; e += int64_t(gridDim.x) * kEwThreads) {
        const int64_t r = e / (P + 2);
        const int c = int(e % (P + 2));
        const float v = flattened[e];
        if (c < 2) ids[2 * r + c] = int32_t(v);  // the reference's .long(): truncation
        else pixels[r * P + (c - 2)] = from_float<TOut>(v);
    }
}

template <class T, class TTable>
__global__ void __launch_bounds__(32 * kGatherWarps)
    add_position_embeddings_kernel(T* x, const TTable* row_table, const TTable* col_table, int64_t S,
                                   const int32_t* ids, int64_t N, int H) {
    const int lane = threadIdx.x % 32;
    const int64_t i = int64_t(blockIdx.x) * kGatherWarps + threadIdx.x / 32;
    if (i >= N) return;
    const int64_t r = min(max(int64_t(ids[2 * i]), int64_t(0)), S - 1);
    const int64_t c = min(max(int64_t(ids[2 * i + 1]), int64_t(0)), S - 1);
    for (int h = lane; h < H; h += 32)
        x[i * H + h] = from_float<T>(to_float(x[i * H + h]) + to_float(row_table[r * H + h]) +
                                     to_float(col_table[c * H + h]));
}

template <class TIn, class TOut>
__global__ void __launch_bounds__(kEwThreads) convert_kernel(const TIn* in, TOut* out, int64_t n) {
    for (int64_t e = int64_t(blockIdx.x) * kEwThreads + threadIdx.x; e < n; e += int64_t(gridDim.x) * kEwThreads)
        out[e] = from_float<TOut>(to_float(in[e]));
}

template <class T>
__global__ void __launch_bounds__(kEwThreads) gelu_gate_kernel(T* a, const T* b, int64_t n) {
    for (int64_t e = int64_t(blockIdx.x) * kEwThreads + threadIdx.x; e < n; e += int64_t(gridDim.x) * kEwThreads)
        a[e] = from_float<T>(gelu_new(to_float(a[e])) * to_float(b[e]));
}

template <class T>
__global__ void __launch_bounds__(kEwThreads) add_kernel(T* y, const T* x, int64_t n) {
    for (int64_t e = int64_t(blockIdx.x) * kEwThreads + threadIdx.x; e < n; e += int64_t(gridDim.x) * kEwThreads)
        y[e] = from_float<T>(to_float(y[e]) + to_float(x[e]));
}

// (value, index) ordering of argmax: larger value wins, equal values go to the smaller index.
__device__ __forceinline__ bool argmax_better(float v, int64_t i, float bv, int64_t bi) {
    return v > bv || (v == bv && i < bi);
}

// out[row] = the first index of the row's maximum, or -1 (pix2struct::kNonFiniteLogits) when the row holds
// a NaN or an infinity.
template <class T>
__global__ void __launch_bounds__(kArgmaxThreads) argmax_kernel(const T* logits, int64_t V, int32_t* out) {
    const T* row = logits + int64_t(blockIdx.x) * V;
    float best = -INFINITY;
    int64_t bi = V;  // "none yet": any real index is smaller
    bool finite = true;
    for (int64_t j = threadIdx.x; j < V; j += kArgmaxThreads) {
        const float v = to_float(row[j]);
        finite = finite && isfinite(v);
        if (argmax_better(v, j, best, bi)) best = v, bi = j;
    }
    finite = __all_sync(0xffffffffu, finite);
#pragma unroll
    for (int o = 16; o > 0; o /= 2) {
        const float ov = __shfl_xor_sync(0xffffffffu, best, o);
        const int64_t oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (argmax_better(ov, oi, best, bi)) best = ov, bi = oi;
    }
    __shared__ float s_v[kArgmaxThreads / 32];
    __shared__ int64_t s_i[kArgmaxThreads / 32];
    __shared__ bool s_finite[kArgmaxThreads / 32];
    if (threadIdx.x % 32 == 0) s_v[threadIdx.x / 32] = best, s_i[threadIdx.x / 32] = bi, s_finite[threadIdx.x / 32] = finite;
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < kArgmaxThreads / 32; ++w) {
            finite = finite && s_finite[w];
            if (argmax_better(s_v[w], s_i[w], best, bi)) best = s_v[w], bi = s_i[w];
        }
        out[blockIdx.x] = finite ? int32_t(bi) : -1;
    }
}

template <class TTable>
__global__ void __launch_bounds__(kEwThreads)
    relative_position_bias_kernel(const TTable* table, int buckets, int max_distance, int H, int Lq, int Lk,
                                  int q_offset, float* out) {
    const int64_t total = int64_t(H) * Lq * Lk;
    for (int64_t e = int64_t(blockIdx.x) * kEwThreads + threadIdx.x; e < total; e += int64_t(gridDim.x) * kEwThreads) {
        const int j = int(e % Lk), i = int((e / Lk) % Lq), h = int(e / (int64_t(Lk) * Lq));
        // relative_position = key - query (nn/position_bucket.hpp: the CPU's and the tests' function)
        const int b = relative_position_bucket(int64_t(j) - (q_offset + i), false, buckets, max_distance);
        out[e] = to_float(table[int64_t(b) * H + h]);
    }
}

// The two-operand element-wise launchers (convert, gelu_gate, add): kernel(p, q, n) over n elements.
template <class P, class Q>
void launch_elementwise(const char* name, void (*kernel)(P*, Q*, int64_t), P* p, Q* q, int64_t n,
                        cudaStream_t stream) {
    if (n == 0) return;
    if (!p || !q || n < 0) pix2struct::detail::fail(name, ": ", n, " elements: invalid arguments");
    kernel<<<ew_blocks(n), kEwThreads, 0, stream>>>(p, q, n);
    check_launch(name);
}

}  // namespace detail

// =============================================================================================
// Launchers (element types: float and bf16 in any combination)
// =============================================================================================
template <class TTable, class TOut>
void embedding_gather(const TTable* table, int64_t V, const int32_t* ids, TOut* out, int64_t n, int64_t H,
                      bool accumulate = false, cudaStream_t stream = nullptr) {
    static_assert(detail::kIsElement<TTable> && detail::kIsElement<TOut>, "embedding_gather: float or bf16");
    if (n == 0) return;
    if (!table || !ids || !out || V <= 0 || H <= 0 || n < 0)
        pix2struct::detail::fail("embedding_gather: table [", V, ", ", H, "], ", n, " ids: invalid arguments");
    detail::embedding_gather_kernel<<<unsigned(ceil_div(n, detail::kGatherWarps)), 32 * detail::kGatherWarps, 0,
                                      stream>>>(table, V, ids, out, n, int(H), accumulate);
    check_launch("embedding_gather");
}

template <class TOut>
void split_patches(const float* flattened, int64_t N, int64_t P, TOut* pixels, int32_t* ids,
                   cudaStream_t stream = nullptr) {
    static_assert(detail::kIsElement<TOut>, "split_patches: pixels are float or bf16");
    if (N == 0) return;
    if (!flattened || !pixels || !ids || N < 0 || P <= 0)
        pix2struct::detail::fail("split_patches: patches [", N, ", 2 + ", P, "]: invalid arguments");
    detail::split_patches_kernel<<<detail::ew_blocks(N * (P + 2)), detail::kEwThreads, 0, stream>>>(
        flattened, N, int(P), pixels, ids);
    check_launch("split_patches");
}

template <class T, class TTable>
void add_position_embeddings(T* x, const TTable* row_table, const TTable* col_table, int64_t S, const int32_t* ids,
                             int64_t N, int64_t H, cudaStream_t stream = nullptr) {
    static_assert(detail::kIsElement<T> && detail::kIsElement<TTable>, "add_position_embeddings: float or bf16");
    if (N == 0) return;
    if (!x || !row_table || !col_table || !ids || S <= 0 || H <= 0 || N < 0)
        pix2struct::detail::fail("add_position_embeddings: x [", N, ", ", H, "], tables [", S, ", ", H,
                                 "]: invalid arguments");
    detail::add_position_embeddings_kernel<<<unsigned(ceil_div(N, detail::kGatherWarps)), 32 * detail::kGatherWarps,
                                             0, stream>>>(x, row_table, col_table, S, ids, N, int(H));
    check_launch("add_position_embeddings");
}

template <class TIn, class TOut>
void convert(const TIn* in, TOut* out, int64_t n, cudaStream_t stream = nullptr) {
    static_assert(detail::kIsElement<TIn> && detail::kIsElement<TOut>, "convert: float or bf16");
    detail::launch_elementwise("convert", detail::convert_kernel<TIn, TOut>, in, out, n, stream);
}

// a[i] = gelu_new(a[i]) · b[i]
template <class T>
void gelu_gate(T* a, const T* b, int64_t n, cudaStream_t stream = nullptr) {
    static_assert(detail::kIsElement<T>, "gelu_gate: float or bf16");
    detail::launch_elementwise("gelu_gate", detail::gelu_gate_kernel<T>, a, b, n, stream);
}

// y[i] += x[i]
template <class T>
void add(T* y, const T* x, int64_t n, cudaStream_t stream = nullptr) {
    static_assert(detail::kIsElement<T>, "add: float or bf16");
    detail::launch_elementwise("add", detail::add_kernel<T>, y, x, n, stream);
}

template <class T>
void argmax(const T* logits, int64_t rows, int64_t V, int32_t* out, cudaStream_t stream = nullptr) {
    static_assert(detail::kIsElement<T>, "argmax: logits are float or bf16");
    if (rows == 0) return;
    if (!logits || !out || rows < 0 || V <= 0)
        pix2struct::detail::fail("argmax: logits [", rows, ", ", V, "]: invalid arguments");
    detail::argmax_kernel<<<unsigned(rows), detail::kArgmaxThreads, 0, stream>>>(logits, V, out);
    check_launch("argmax");
}

// out [H, Lq, Lk] fp32 (the attention kernels' bias layout); queries are at positions q_offset + i
// (q_offset = tokens already in the self-attention cache), keys at 0..Lk-1.
template <class TTable>
void relative_position_bias(const TTable* table, int buckets, int max_distance, int H, int Lq, int Lk, int q_offset,
                            float* out, cudaStream_t stream = nullptr) {
    static_assert(detail::kIsElement<TTable>, "relative_position_bias: the table is float or bf16");
    if (!table || !out || buckets < 2 || max_distance <= buckets / 2 || H <= 0 || Lq < 0 || Lk < 0 || q_offset < 0)
        pix2struct::detail::fail("relative_position_bias: table [", buckets, ", ", H, "], max distance ", max_distance,
                                 ", ", Lq, " queries at offset ", q_offset, " x ", Lk, " keys: invalid arguments");
    if (int64_t(Lq) * Lk == 0) return;
    detail::relative_position_bias_kernel<<<detail::ew_blocks(int64_t(H) * Lq * Lk), detail::kEwThreads, 0, stream>>>(
        table, buckets, max_distance, H, Lq, Lk, q_offset, out);
    check_launch("relative_position_bias");
}

}  // namespace pix2struct::kernels
