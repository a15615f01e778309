// pix2struct/backend/cpu_int8.hpp — the int8 matrix products of CpuBackend's int8 mode: AVX-512 VNNI
// (vpdpbusd) register tiles, AVX2 ones (vpmaddwd on bytes widened to 16 bits), or plain loops doing the same
// integer arithmetic on other CPUs.
//
// Weights (a linear layer's W [N, K]) are quantised once, at load: symmetric int8 per output row,
//     s_w[n] = max_k |W[n, k]| / 127,   Wq[n, k] = round(W[n, k] / s_w[n])  ∈ [-127, 127],
// packed into panels of 32 rows of W (32 output columns, two zmm registers of int32): panel p holds, for each
// group of 4 k's, the 4 bytes of each of its 32 rows (128 bytes, the operand layout of vpdpbusd), K padded
// with zeros to a multiple of 4. One scale per output row rather than per block of 32 along K (Q8_0): the
// whole K-long dot product stays in int32 registers (exact; no overflow below K ≈ 66000) and the scales are
// applied once per output, where block scales would cost a conversion and an FMA every 8 vpdpbusd. The same
// panels serve a decode step's few rows (a GEMV: each panel streamed from memory once for all rows) and the
// encoder's thousands (a GEMM: a panel stays in cache while blocks of rows pass over it).
//
// Activations (X [M, K]) are quantised per row on the fly the same way and stored biased by 128 as unsigned
// bytes (vpdpbusd multiplies unsigned by signed bytes): Σ_k (xq + 128)·wq = Σ_k xq·wq + 128·Σ_k wq, and the
// second term is a per-column constant computed at load (`bias128`). Then
//     Y[m, n] (=|+=) (acc[m, n] − bias128[n]) · s_w[n] · s_x[m]      (in this order, in fp32; += fused)
// The encoder's attention in int8 mode uses the same pieces: per head, the keys [Tk, D] are a B quantised per
// key, the values a B read transposed (per channel, across the keys), the queries and the softmax weights
// rows quantised on the fly (the weights, all ≥ 0, in an unsigned code using all 8 bits).
// A decode step's cross-attention scores in int8 mode (CpuInt8Backend keeps the cross K/V as codes biased by
// 128, a scale per row) are dot_codes: the query's signed codes against each key's, one vpdpbusd per 64 bytes.
// Every set computes the same integers and the same fp32 epilogue, so results are bit-identical across
// instruction sets (tests/test_backend_ops.cpp checks it). A row of X holding NaN or ±inf gets the scale NaN:
// its outputs are NaN (generate() then stops with an Error), never quietly finite.
#pragma once

#include "pix2struct/backend/cpu_kernels.hpp"  // first: it includes <immintrin.h> (see there)

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

#include "pix2struct/backend/cpu_isa.hpp"
#include "pix2struct/weights.hpp"

namespace pix2struct::detail {

inline constexpr int kI8Nr = 32;  // output columns per panel
inline constexpr int kI8Mr = 12;  // rows of a register tile (24 int32 accumulators)

// B [n, k] quantised and packed, as the products read it (a view).
struct Int8Panels {
    int64_t n = 0, k4 = 0;            // rows of B (output columns); k rounded up to 4 (bytes of a row in a panel)
    const int8_t* data = nullptr;      // ceil(n / 32) panels of 32·k4 bytes, 64-byte aligned
    const float* scale = nullptr;      // s_w per row, padded to the panels (0 past n)
    const int32_t* bias128 = nullptr;  // 128·Σ_k Bq[r, k] (0 for B multiplied by unbiased, non-negative rows), the same

    int64_t panel_count() const { return (n + kI8Nr - 1) / kI8Nr; }
    const int8_t* panel(int64_t p) const { return data + p * kI8Nr * k4; }
};

inline int64_t int8_panel_bytes(int64_t n, int64_t k) { return (n + kI8Nr - 1) / kI8Nr * kI8Nr * ((k + 3) / 4 * 4); }
inline int64_t int8_panel_rows(int64_t n) { return (n + kI8Nr - 1) / kI8Nr * kI8Nr; }

// Rows [32·p0, 32·p1) of B [n, k], element (r, c) at src[r·rs + c·cs], quantised into their panels (threads may
// fill disjoint ranges at once). `offset`: B multiplies rows stored biased by 128 (quantise_rows), so its
// bias128 terms are computed; else they are 0 (rows in quantise_rows' unsigned code).
inline void quantise_panels_generic(const float* src, int64_t rs, int64_t cs, int64_t n, int64_t k, int64_t p0,
                                    int64_t p1, bool offset, int8_t* data, float* scale, int32_t* bias128) {
    const int64_t k4 = (k + 3) / 4 * 4;
    for (int64_t p = p0; p < p1; ++p) {
        int8_t* panel = data + p * kI8Nr * k4;
        std::fill(panel, panel + kI8Nr * k4, int8_t(0));
        const int rows = int(std::min<int64_t>(kI8Nr, n - p * kI8Nr));
        float amax[kI8Nr] = {}, inv[kI8Nr] = {};
        bool finite[kI8Nr];
        std::fill(finite, finite + kI8Nr, true);
        const float* b = src + p * kI8Nr * rs;
        // the loop over rows innermost when rows are adjacent (rs = 1: a transposed view), else over columns
        auto each = [&](auto&& f) {
            if (rs == 1 && cs != 1) {
                for (int64_t c = 0; c < k; ++c)
                    for (int j = 0; j < rows; ++j) f(j, c, b[j + c * cs]);
            } else {
                for (int j = 0; j < rows; ++j)
                    for (int64_t c = 0; c < k; ++c) f(j, c, b[j * rs + c * cs]);
            }
        };
        each([&](int j, int64_t, float v) {
            finite[j] = finite[j] && std::isfinite(v);
            amax[j] = std::max(amax[j], std::fabs(v));
        });
        int32_t sum[kI8Nr] = {};
        for (int j = 0; j < rows; ++j) inv[j] = finite[j] && amax[j] > 0.0f ? 127.0f / amax[j] : 0.0f;
        each([&](int j, int64_t c, float v) {
            if (!finite[j]) return;
            const int32_t q = std::clamp(int32_t(std::nearbyint(v * inv[j])), -127, 127);
            panel[(c / 4) * 4 * kI8Nr + j * 4 + c % 4] = int8_t(q);
            sum[j] += q;
        });
        for (int j = 0; j < kI8Nr; ++j) {
            const size_t r = size_t(p * kI8Nr + j);
            // a row holding NaN or inf: its outputs are NaN, as in fp32 (generate() reports non-finite logits)
            scale[r] = j >= rows ? 0.0f : finite[j] ? amax[j] / 127.0f : std::numeric_limits<float>::quiet_NaN();
            bias128[r] = offset ? 128 * sum[j] : 0;
        }
    }
}

#ifdef PIX2STRUCT_X86_KERNELS
// One panel of rows with adjacent elements (cs = 1: weights, attention keys): a row at a time.
PIX2STRUCT_AVX512_VNNI inline void quantise_panel_rows_avx512(const float* b, int64_t rs, int rows, int64_t k,
                                                              int64_t k4, bool offset, int8_t* panel, float* scale,
                                                              int32_t* bias128) {
    std::fill(panel, panel + kI8Nr * k4, int8_t(0));
    const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127);
    for (int j = 0; j < kI8Nr; ++j) {
        scale[j] = 0.0f, bias128[j] = 0;
        if (j >= rows) continue;
        const float* w = b + j * rs;
        __m512 amax = _mm512_setzero_ps();
        __mmask16 bad = 0;
        for (int64_t c = 0; c < k; c += 16) {
            const __mmask16 m = k - c >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (k - c)) - 1);
            const __m512 v = _mm512_maskz_loadu_ps(m, w + c);
            bad |= _mm512_fpclass_ps_mask(v, 0x99);
            amax = _mm512_max_ps(amax, _mm512_abs_ps(v));
        }
        if (bad) {
            scale[j] = std::numeric_limits<float>::quiet_NaN();
            continue;
        }
        const float top = _mm512_reduce_max_ps(amax);
        const __m512 inv = _mm512_set1_ps(top > 0.0f ? 127.0f / top : 0.0f);
        __m512i sum = _mm512_setzero_si512();
        for (int64_t c = 0; c < k; c += 16) {
            const __mmask16 m = k - c >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (k - c)) - 1);
            __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, w + c), inv));
            q = _mm512_min_epi32(_mm512_max_epi32(q, lo), hi);
            sum = _mm512_add_epi32(sum, q);
            alignas(16) int32_t groups[4];
            _mm_store_si128(reinterpret_cast<__m128i*>(groups), _mm512_cvtepi32_epi8(q));
            for (int64_t t = 0; t < 4 && c + 4 * t < k; ++t)
                std::memcpy(panel + (c / 4 + t) * 4 * kI8Nr + j * 4, &groups[t], 4);
        }
        scale[j] = top / 127.0f;
        bias128[j] = offset ? 128 * _mm512_reduce_add_epi32(sum) : 0;
    }
}

// One panel of rows that are adjacent to each other (rs = 1: attention values, read as Vᵀ): 32 rows in two
// registers, four columns at a time interleaved into the panel's 4-byte groups.
PIX2STRUCT_AVX512_VNNI inline void quantise_panel_columns_avx512(const float* b, int64_t cs, int rows, int64_t k,
                                                                 int64_t k4, bool offset, int8_t* panel, float* scale,
                                                                 int32_t* bias128) {
    const __mmask16 m0 = rows >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << rows) - 1);
    const __mmask16 m1 = rows >= 32 ? __mmask16(0xFFFF) : rows <= 16 ? __mmask16(0) : __mmask16((1u << (rows - 16)) - 1);
    __m512 amax0 = _mm512_setzero_ps(), amax1 = amax0;
    __mmask16 bad0 = 0, bad1 = 0;
    for (int64_t c = 0; c < k; ++c) {
        const __m512 v0 = _mm512_maskz_loadu_ps(m0, b + c * cs), v1 = _mm512_maskz_loadu_ps(m1, b + c * cs + 16);
        bad0 |= _mm512_fpclass_ps_mask(v0, 0x99);
        bad1 |= _mm512_fpclass_ps_mask(v1, 0x99);
        amax0 = _mm512_max_ps(amax0, _mm512_abs_ps(v0));
        amax1 = _mm512_max_ps(amax1, _mm512_abs_ps(v1));
    }
    const __m512 n127 = _mm512_set1_ps(127.0f), zero = _mm512_setzero_ps();
    // inv = 127 / amax where the row is finite and not all zero, else 0 (as the generic loop)
    const __m512 inv0 = _mm512_maskz_div_ps(_mm512_cmp_ps_mask(amax0, zero, _CMP_GT_OQ) & __mmask16(~bad0), n127, amax0);
    const __m512 inv1 = _mm512_maskz_div_ps(_mm512_cmp_ps_mask(amax1, zero, _CMP_GT_OQ) & __mmask16(~bad1), n127, amax1);
    const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127), byte = _mm512_set1_epi32(0xFF);
    __m512i sum0 = _mm512_setzero_si512(), sum1 = sum0;
    for (int64_t c = 0; c < k4; c += 4) {
        __m512i g0 = _mm512_setzero_si512(), g1 = g0;
        for (int t = 0; t < 4 && c + t < k; ++t) {
            const float* col = b + (c + t) * cs;
            __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_maskz_loadu_ps(m0, col), inv0));
            __m512i q1 = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_maskz_loadu_ps(m1, col + 16), inv1));
            q0 = _mm512_maskz_mov_epi32(__mmask16(~bad0), _mm512_min_epi32(_mm512_max_epi32(q0, lo), hi));
            q1 = _mm512_maskz_mov_epi32(__mmask16(~bad1), _mm512_min_epi32(_mm512_max_epi32(q1, lo), hi));
            sum0 = _mm512_add_epi32(sum0, q0);
            sum1 = _mm512_add_epi32(sum1, q1);
            g0 = _mm512_or_si512(g0, _mm512_slli_epi32(_mm512_and_si512(q0, byte), 8 * t));
            g1 = _mm512_or_si512(g1, _mm512_slli_epi32(_mm512_and_si512(q1, byte), 8 * t));
        }
        _mm512_store_si512(panel + c * kI8Nr, g0);
        _mm512_store_si512(panel + c * kI8Nr + 64, g1);
    }
    const __m512 nan = _mm512_set1_ps(std::numeric_limits<float>::quiet_NaN());
    _mm512_storeu_ps(scale, _mm512_mask_blend_ps(bad0, _mm512_div_ps(amax0, n127), nan));
    _mm512_storeu_ps(scale + 16, _mm512_mask_blend_ps(bad1, _mm512_div_ps(amax1, n127), nan));
    const __m512i z = _mm512_setzero_si512();
    _mm512_storeu_si512(bias128, offset ? _mm512_slli_epi32(sum0, 7) : z);
    _mm512_storeu_si512(bias128 + 16, offset ? _mm512_slli_epi32(sum1, 7) : z);
}
#endif

// quantise_panels_generic with the kernels of `isa` where they apply (cs = 1 or rs = 1): the same bytes.
inline void quantise_panels(Int8Isa isa, const float* src, int64_t rs, int64_t cs, int64_t n, int64_t k, int64_t p0,
                            int64_t p1, bool offset, int8_t* data, float* scale, int32_t* bias128) {
#ifdef PIX2STRUCT_X86_KERNELS
    if (isa == Int8Isa::Avx512Vnni && (cs == 1 || rs == 1)) {
        const int64_t k4 = (k + 3) / 4 * 4;
        for (int64_t p = p0; p < p1; ++p) {
            const int rows = int(std::min<int64_t>(kI8Nr, n - p * kI8Nr));
            const float* b = src + p * kI8Nr * rs;
            int8_t* panel = data + p * kI8Nr * k4;
            if (cs == 1) quantise_panel_rows_avx512(b, rs, rows, k, k4, offset, panel, scale + p * kI8Nr, bias128 + p * kI8Nr);
            else quantise_panel_columns_avx512(b, cs, rows, k, k4, offset, panel, scale + p * kI8Nr, bias128 + p * kI8Nr);
        }
        return;
    }
#endif
    (void)isa;
    quantise_panels_generic(src, rs, cs, n, k, p0, p1, offset, data, scale, bias128);
}

// A weight W [n, k] (fp32 rows at `source`) quantised and packed once, on huge pages.
struct Int8Matrix {
    int64_t n = 0, k = 0;
    const float* source = nullptr;     // the fp32 rows it was made from (a backend checks it is given those)
    HugePageBytes panels;
    std::vector<float> scale;
    std::vector<int32_t> bias128;

    // Allocates; quantise(p0, p1) fills.
    Int8Matrix(const float* w, int64_t rows, int64_t cols)
        : n(rows), k(cols), source(w), panels(huge_page_alloc(size_t(int8_panel_bytes(rows, cols)))),
          scale(size_t(int8_panel_rows(rows))), bias128(scale.size()) {}
    Int8Matrix() = default;

    Int8Panels view() const {
        return {n, (k + 3) / 4 * 4, static_cast<const int8_t*>(panels.get()), scale.data(), bias128.data()};
    }
    int64_t bytes() const { return int8_panel_bytes(n, k); }
    void quantise(Int8Isa isa, int64_t p0, int64_t p1) {
        quantise_panels(isa, source, k, 1, n, k, p0, p1, true, static_cast<int8_t*>(panels.get()), scale.data(),
                        bias128.data());
    }
};

// Bytes per row of quantised activations for rows of k values (k4, rounded up to a cache line).
inline int64_t int8_row_bytes(int64_t k) { return ((k + 3) / 4 * 4 + 63) / 64 * 64; }

// Rows [0, M) of X [M, K] (row stride ldx) → Q (row stride ldq ≥ int8_row_bytes(K)) and scale[m], in one of two
// codes (the instruction multiplies unsigned bytes by the panels' signed ones):
// - signed (activations): s = max |x| / 127, q = round(x / s) ∈ [-127, 127] stored as q + 128; the padding up
//   to the next multiple of 4 is 128 (its products with the weights' zero padding vanish); multiplies panels
//   quantised with offset true, whose bias terms remove the 128;
// - Unsigned (softmax weights, x ≥ 0): s = max x / 255, q = round(x / s) ∈ [0, 255] stored as is, padding 0;
//   multiplies panels quantised with offset false.
// A row holding NaN or ±inf gets s = NaN (its outputs are NaN). Rounding: to nearest even, as std::nearbyint
// and vcvtps2dq do in the default floating-point environment.
template <bool Unsigned>
struct RowCode {
    static constexpr float kRange = Unsigned ? 255.0f : 127.0f;
    static constexpr int32_t kLo = Unsigned ? 0 : -127, kHi = Unsigned ? 255 : 127, kBias = Unsigned ? 0 : 128;
    static uint8_t code(float x, float inv) {  // one value, stored (the SIMD kernels compute the same)
        return uint8_t(std::clamp(int32_t(std::nearbyint(x * inv)), kLo, kHi) + kBias);
    }
};

inline void non_finite_row(int64_t K, uint8_t* q, float* scale, uint8_t zero) {
    std::fill(q, q + K, zero);
    *scale = std::numeric_limits<float>::quiet_NaN();
}

template <bool Unsigned>
inline void quantise_row_generic(const float* x, int64_t K, uint8_t* q, float* scale) {
    using C = RowCode<Unsigned>;
    float amax = 0.0f;
    bool finite = true;
    for (int64_t i = 0; i < K; ++i) {
        finite = finite && std::isfinite(x[i]);
        amax = std::max(amax, Unsigned ? x[i] : std::fabs(x[i]));
    }
    if (!finite) return non_finite_row(K, q, scale, uint8_t(C::kBias));
    const float inv = amax > 0.0f ? C::kRange / amax : 0.0f;
    for (int64_t i = 0; i < K; ++i) q[i] = C::code(x[i], inv);
    *scale = amax / C::kRange;
}

#ifdef PIX2STRUCT_X86_KERNELS
template <bool Unsigned>
PIX2STRUCT_AVX512_VNNI inline void quantise_row_avx512(const float* x, int64_t K, uint8_t* q, float* scale) {
    using C = RowCode<Unsigned>;
    __m512 amax = _mm512_setzero_ps();
    __mmask16 bad = 0;
    for (int64_t i = 0; i < K; i += 16) {
        const __mmask16 m = K - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (K - i)) - 1);
        const __m512 v = _mm512_maskz_loadu_ps(m, x + i);
        bad |= _mm512_fpclass_ps_mask(v, 0x99);  // QNaN, +inf, -inf, SNaN
        amax = _mm512_max_ps(amax, Unsigned ? v : _mm512_abs_ps(v));
    }
    if (bad) return non_finite_row(K, q, scale, uint8_t(C::kBias));
    const float top = _mm512_reduce_max_ps(amax);
    const __m512 inv = _mm512_set1_ps(top > 0.0f ? C::kRange / top : 0.0f);
    const __m512i lo = _mm512_set1_epi32(C::kLo), hi = _mm512_set1_epi32(C::kHi), bias = _mm512_set1_epi32(C::kBias);
    for (int64_t i = 0; i < K; i += 16) {
        const __mmask16 m = K - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (K - i)) - 1);
        __m512i v = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), inv));
        v = _mm512_add_epi32(_mm512_min_epi32(_mm512_max_epi32(v, lo), hi), bias);
        _mm_mask_storeu_epi8(q + i, m, _mm512_cvtepi32_epi8(v));
    }
    *scale = top / C::kRange;
}
#endif

#ifdef PIX2STRUCT_X86_KERNELS
// Eight int32 in [0, 255] → eight bytes.
PIX2STRUCT_AVX2 inline int64_t bytes_of_epi32(__m256i v) {
    const __m128i w = _mm_packus_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    return _mm_cvtsi128_si64(_mm_packus_epi16(w, w));
}

// Lanes holding NaN or ±inf (|v| not below inf, or unordered).
PIX2STRUCT_AVX2 inline int non_finite_mask(__m256 v) {
    const __m256 abs = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v);
    return _mm256_movemask_ps(_mm256_cmp_ps(abs, _mm256_set1_ps(std::numeric_limits<float>::infinity()), _CMP_NLT_UQ));
}

template <bool Unsigned>
PIX2STRUCT_AVX2 inline void quantise_row_avx2(const float* x, int64_t K, uint8_t* q, float* scale) {
    using C = RowCode<Unsigned>;
    const int64_t K8 = K / 8 * 8;
    __m256 amax = _mm256_setzero_ps();
    int bad = 0;
    for (int64_t i = 0; i < K8; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        bad |= non_finite_mask(v);
        amax = _mm256_max_ps(amax, Unsigned ? v : _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v));
    }
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, amax);
    float top = 0.0f;
    for (float l : lanes) top = std::max(top, l);
    for (int64_t i = K8; i < K; ++i) {
        bad |= !std::isfinite(x[i]);
        top = std::max(top, Unsigned ? x[i] : std::fabs(x[i]));
    }
    if (bad) return non_finite_row(K, q, scale, uint8_t(C::kBias));
    const float inv = top > 0.0f ? C::kRange / top : 0.0f;
    const __m256 vinv = _mm256_set1_ps(inv);
    const __m256i lo = _mm256_set1_epi32(C::kLo), hi = _mm256_set1_epi32(C::kHi), bias = _mm256_set1_epi32(C::kBias);
    for (int64_t i = 0; i < K8; i += 8) {
        __m256i v = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i), vinv));
        v = _mm256_add_epi32(_mm256_min_epi32(_mm256_max_epi32(v, lo), hi), bias);
        const int64_t b = bytes_of_epi32(v);
        std::memcpy(q + i, &b, 8);
    }
    for (int64_t i = K8; i < K; ++i) q[i] = C::code(x[i], inv);
    *scale = top / C::kRange;
}
#endif

template <bool Unsigned = false>
inline void quantise_rows(Int8Isa isa, const float* X, int64_t ldx, int64_t M, int64_t K, uint8_t* Q, int64_t ldq,
                          float* scale) {
    const int64_t k4 = (K + 3) / 4 * 4;
    for (int64_t m = 0; m < M; ++m) {
        uint8_t* q = Q + m * ldq;
#ifdef PIX2STRUCT_X86_KERNELS
        if (isa == Int8Isa::Avx512Vnni) quantise_row_avx512<Unsigned>(X + m * ldx, K, q, scale + m);
        else if (isa == Int8Isa::Avx2) quantise_row_avx2<Unsigned>(X + m * ldx, K, q, scale + m);
        else
#endif
            quantise_row_generic<Unsigned>(X + m * ldx, K, q, scale + m);
        std::fill(q + K, q + k4, uint8_t(RowCode<Unsigned>::kBias));
    }
    (void)isa;
}

// C[rows, nr] (=|+=) the epilogue of A[rows, k4] (quantised) · panel: one register tile. sw, b128: the panel's
// 32 columns' scales and bias terms; sx: the rows' scales.
inline void igemm_tile_generic(int rows, int64_t k4, const uint8_t* A, int64_t lda, const int8_t* Bp, const float* sw,
                               const int32_t* b128, const float* sx, float* C, int64_t ldc, int nr, bool add) {
    for (int i = 0; i < rows; ++i)
        for (int j = 0; j < nr; ++j) {
            int32_t acc = 0;
            for (int64_t k = 0; k < k4; ++k) acc += int32_t(A[i * lda + k]) * int32_t(Bp[(k / 4) * 4 * kI8Nr + j * 4 + k % 4]);
            const float t = float(acc - b128[j]) * sw[j];
            float& c = C[i * ldc + j];
            c = add ? std::fma(t, sx[i], c) : t * sx[i];  // fused where added, in every set: the same bits
        }
}

#ifdef PIX2STRUCT_X86_KERNELS
// acc += Σ of 4 products u8(a) · s8(b) per int32 lane. GCC 12 compiles _mm512_dpbusd_epi32 in a loop of 24
// accumulators into copies and stack spills around every instruction (a quarter of the instruction's rate);
// the same instruction written with register constraints keeps them in registers.
PIX2STRUCT_AVX512_VNNI inline __m512i dpbusd(__m512i acc, __m512i a, __m512i b) {
#if defined(__GNUC__) && !defined(__clang__)
    asm("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(a), "v"(b));
    return acc;
#else
    return _mm512_dpbusd_epi32(acc, a, b);
#endif
}

template <int MR>
PIX2STRUCT_AVX512_VNNI inline void igemm_tile_vnni(int64_t k4, const uint8_t* A, int64_t lda, const int8_t* Bp,
                                                   const float* sw, const int32_t* b128, const float* sx, float* C,
                                                   int64_t ldc, int nr, bool add) {
    __m512i c0[MR], c1[MR];
    PIX2STRUCT_UNROLL
    for (int i = 0; i < MR; ++i) c0[i] = c1[i] = _mm512_setzero_si512();
    for (int64_t k = 0; k < k4; k += 4) {
        const __m512i b0 = _mm512_load_si512(Bp + k * kI8Nr), b1 = _mm512_load_si512(Bp + k * kI8Nr + 64);
        PIX2STRUCT_UNROLL
        for (int i = 0; i < MR; ++i) {
            int32_t four;
            std::memcpy(&four, A + i * lda + k, 4);
            const __m512i a = _mm512_set1_epi32(four);
            c0[i] = dpbusd(c0[i], a, b0);
            c1[i] = dpbusd(c1[i], a, b1);
        }
    }
    const __mmask16 m0 = nr >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << nr) - 1);
    const __mmask16 m1 = nr >= 32 ? __mmask16(0xFFFF) : nr <= 16 ? __mmask16(0) : __mmask16((1u << (nr - 16)) - 1);
    const __m512i z0 = _mm512_loadu_si512(b128), z1 = _mm512_loadu_si512(b128 + 16);
    const __m512 w0 = _mm512_loadu_ps(sw), w1 = _mm512_loadu_ps(sw + 16);
    PIX2STRUCT_UNROLL
    for (int i = 0; i < MR; ++i) {
        const __m512 s = _mm512_set1_ps(sx[i]);
        const __m512 t0 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(c0[i], z0)), w0);
        const __m512 t1 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(c1[i], z1)), w1);
        float* c = C + i * ldc;
        _mm512_mask_storeu_ps(c, m0, add ? _mm512_fmadd_ps(t0, s, _mm512_maskz_loadu_ps(m0, c)) : _mm512_mul_ps(t0, s));
        _mm512_mask_storeu_ps(c + 16, m1,
                              add ? _mm512_fmadd_ps(t1, s, _mm512_maskz_loadu_ps(m1, c + 16)) : _mm512_mul_ps(t1, s));
    }
}

template <int... R>
constexpr auto igemm_tiles_vnni(std::integer_sequence<int, R...>) { return std::array{&igemm_tile_vnni<R + 1>...}; }
#endif

#ifdef PIX2STRUCT_X86_KERNELS
// AVX2 has no byte dot product that cannot saturate (vpmaddubsw's pairs of u8·s8 overflow int16), so its kernels
// widen both sides to 16 bits and multiply with vpmaddwd (two exact products summed per int32 lane): the rows of
// A once per block (widen_rows_avx2), the panel's bytes as they are read. A register tile is MR rows × 8 columns:
// one group of 4 k's of 8 columns is 32 bytes of the panel, two registers of 16-bit values, each lane pair of
// the products one column's partial sums, added pairwise at the end.
inline constexpr int kI8MrAvx2 = 6;

// Rows [0, M) of Q (row stride ldq, k4 bytes each) → 16-bit values (row stride k4).
PIX2STRUCT_AVX2 inline void widen_rows_avx2(const uint8_t* Q, int64_t ldq, int64_t M, int64_t k4, int16_t* out) {
    for (int64_t m = 0; m < M; ++m) {
        const uint8_t* q = Q + m * ldq;
        int16_t* o = out + m * k4;
        int64_t k = 0;
        for (; k + 16 <= k4; k += 16)
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(o + k),
                                _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + k))));
        for (; k < k4; ++k) o[k] = int16_t(q[k]);
    }
}

template <int MR>
PIX2STRUCT_AVX2 inline void igemm_tile_avx2(int64_t k4, const int16_t* A, int64_t lda, const int8_t* Bp,
                                            const float* sw, const int32_t* b128, const float* sx, float* C,
                                            int64_t ldc, int nr, bool add) {
    for (int j0 = 0; j0 < nr; j0 += 8) {
        __m256i c0[MR], c1[MR];
        PIX2STRUCT_UNROLL
        for (int i = 0; i < MR; ++i) c0[i] = c1[i] = _mm256_setzero_si256();
        const int8_t* b = Bp + j0 * 4;
        for (int64_t k = 0; k < k4; k += 4, b += 4 * kI8Nr) {
            const __m256i b0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b)));
            const __m256i b1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 16)));
            PIX2STRUCT_UNROLL
            for (int i = 0; i < MR; ++i) {
                int64_t four;
                std::memcpy(&four, A + i * lda + k, 8);
                const __m256i a = _mm256_set1_epi64x(four);
                c0[i] = _mm256_add_epi32(c0[i], _mm256_madd_epi16(a, b0));
                c1[i] = _mm256_add_epi32(c1[i], _mm256_madd_epi16(a, b1));
            }
        }
        const int cols = std::min(8, nr - j0);
        const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(cols), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        const __m256i z = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b128 + j0));
        const __m256 w = _mm256_loadu_ps(sw + j0);
        PIX2STRUCT_UNROLL
        for (int i = 0; i < MR; ++i) {
            // per 128-bit half: [c0 c1 c4 c5 | c2 c3 c6 c7] → columns in order
            const __m256i sum = _mm256_permute4x64_epi64(_mm256_hadd_epi32(c0[i], c1[i]), 0xD8);
            const __m256 t = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(sum, z)), w), s = _mm256_set1_ps(sx[i]);
            float* c = C + i * ldc + j0;
            _mm256_maskstore_ps(c, mask, add ? _mm256_fmadd_ps(t, s, _mm256_maskload_ps(c, mask)) : _mm256_mul_ps(t, s));
        }
    }
}

template <int... R>
constexpr auto igemm_tiles_avx2(std::integer_sequence<int, R...>) { return std::array{&igemm_tile_avx2<R + 1>...}; }
#endif

// C[M, n] (=|+=) the int8 product of Q [M, ·] (quantise_rows, scales sx) and W's columns [n0, n0 + n), n0 a
// multiple of 32 (C points at column n0). Rows go in blocks of kMc that stay in L2 while each panel passes.
inline void igemm(Int8Isa isa, int64_t M, const uint8_t* Q, int64_t ldq, const float* sx, const Int8Panels& W,
                  int64_t n0, int64_t n, float* C, int64_t ldc, bool add) {
#ifdef PIX2STRUCT_X86_KERNELS
    static constexpr auto vnni = igemm_tiles_vnni(std::make_integer_sequence<int, kI8Mr>{});
    static constexpr auto avx2 = igemm_tiles_avx2(std::make_integer_sequence<int, kI8MrAvx2>{});
    thread_local std::vector<int16_t> wide;  // the AVX2 kernels' rows of a block, widened
    const int64_t mr = isa == Int8Isa::Avx2 ? kI8MrAvx2 : kI8Mr;
#else
    const int64_t mr = kI8Mr;
#endif
    for (int64_t m0 = 0; m0 < M; m0 += kMc) {
        const int64_t mc = std::min(kMc, M - m0);
#ifdef PIX2STRUCT_X86_KERNELS
        if (isa == Int8Isa::Avx2) {
            if (int64_t(wide.size()) < mc * W.k4) wide.resize(size_t(mc * W.k4));
            widen_rows_avx2(Q + m0 * ldq, ldq, mc, W.k4, wide.data());
        }
#endif
        for (int64_t j = 0; j < n; j += kI8Nr) {
            const int64_t p = (n0 + j) / kI8Nr;
            const int cols = int(std::min<int64_t>(kI8Nr, n - j));
            const float* sw = W.scale + p * kI8Nr;
            const int32_t* b128 = W.bias128 + p * kI8Nr;
            for (int64_t i = m0; i < m0 + mc; i += mr) {
                const int rows = int(std::min(mr, m0 + mc - i));
                float* c = C + i * ldc + j;
#ifdef PIX2STRUCT_X86_KERNELS
                if (isa == Int8Isa::Avx512Vnni) {
                    vnni[size_t(rows - 1)](W.k4, Q + i * ldq, ldq, W.panel(p), sw, b128, sx + i, c, ldc, cols, add);
                    continue;
                }
                if (isa == Int8Isa::Avx2) {
                    avx2[size_t(rows - 1)](W.k4, wide.data() + (i - m0) * W.k4, W.k4, W.panel(p), sw, b128, sx + i, c,
                                           ldc, cols, add);
                    continue;
                }
#endif
                igemm_tile_generic(rows, W.k4, Q + i * ldq, ldq, W.panel(p), sw, b128, sx + i, c, ldc, cols, add);
            }
        }
    }
    (void)isa;
}

// out[j] = Σ_d (K[j·ldk + d] − 128) · q[d] for the n rows j of K: codes stored biased by 128 (quantise_rows'
// form) against signed codes q [D], exact in int32; q_sum = Σ_d q[d]. The VNNI kernel takes 16 rows at a time,
// 64 bytes of each per vpdpbusd (K · q + 128 · q: the bias's term is then taken off once).
// (GCC 12 at -O3 -march=znver4 vectorises the generic loop written as Σ (K − 128)·q into wrong sums; written as
// the VNNI kernel computes it, Σ K·q − 128·Σ q, it is right.)
inline void dot_codes_generic(const int8_t* q, int32_t q_sum, int64_t D, const uint8_t* K, int64_t ldk, int64_t n,
                              int32_t* out) {
    for (int64_t j = 0; j < n; ++j) {
        int32_t t = 0;
        for (int64_t d = 0; d < D; ++d) t += int32_t(K[j * ldk + d]) * int32_t(q[d]);
        out[j] = t - 128 * q_sum;
    }
}

#ifdef PIX2STRUCT_X86_KERNELS
PIX2STRUCT_AVX512_VNNI inline void dot_codes_vnni(const int8_t* q, int32_t q_sum, int64_t D, const uint8_t* K,
                                                  int64_t ldk, int64_t n, int32_t* out) {
    for (int64_t j0 = 0; j0 < n; j0 += 16) {
        const int rows = int(std::min<int64_t>(16, n - j0));
        __m512i acc[16];
        PIX2STRUCT_UNROLL
        for (int i = 0; i < 16; ++i) acc[i] = _mm512_setzero_si512();
        for (int64_t d = 0; d < D; d += 64) {
            const __mmask64 m = D - d >= 64 ? ~__mmask64(0) : (__mmask64(1) << (D - d)) - 1;
            const __m512i qv = _mm512_maskz_loadu_epi8(m, q + d);
            PIX2STRUCT_UNROLL
            for (int i = 0; i < 16; ++i)
                if (i < rows) acc[i] = dpbusd(acc[i], _mm512_maskz_loadu_epi8(m, K + (j0 + i) * ldk + d), qv);
        }
        __m512 sums[16];
        PIX2STRUCT_UNROLL
        for (int i = 0; i < 16; ++i) sums[i] = _mm512_castsi512_ps(acc[i]);
        const __m512i r = _mm512_castps_si512(sum_lanes16(sums, AddEpi32{}));
        _mm512_mask_storeu_epi32(out + j0, rows == 16 ? __mmask16(0xFFFF) : __mmask16((1u << rows) - 1),
                                 _mm512_sub_epi32(r, _mm512_set1_epi32(128 * q_sum)));
    }
}
#endif

#ifdef PIX2STRUCT_X86_KERNELS
PIX2STRUCT_AVX2 inline void dot_codes_avx2(const int8_t* q, int32_t q_sum, int64_t D, const uint8_t* K, int64_t ldk,
                                           int64_t n, int32_t* out) {
    const int64_t D16 = D / 16 * 16;
    for (int64_t j = 0; j < n; ++j) {
        const uint8_t* k = K + j * ldk;
        __m256i acc = _mm256_setzero_si256();
        for (int64_t d = 0; d < D16; d += 16) {
            const __m256i kv = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(k + d)));
            const __m256i qv = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + d)));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(kv, qv));
        }
        __m128i s = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
        s = _mm_hadd_epi32(s, s);
        int32_t t = _mm_cvtsi128_si32(_mm_hadd_epi32(s, s));
        for (int64_t d = D16; d < D; ++d) t += int32_t(k[d]) * int32_t(q[d]);
        out[j] = t - 128 * q_sum;
    }
}
#endif

inline void dot_codes(Int8Isa isa, const int8_t* q, int64_t D, const uint8_t* K, int64_t ldk, int64_t n, int32_t* out) {
    int32_t q_sum = 0;
    for (int64_t d = 0; d < D; ++d) q_sum += q[d];
#ifdef PIX2STRUCT_X86_KERNELS
    if (isa == Int8Isa::Avx512Vnni) return dot_codes_vnni(q, q_sum, D, K, ldk, n, out);
    if (isa == Int8Isa::Avx2) return dot_codes_avx2(q, q_sum, D, K, ldk, n, out);
#endif
    (void)isa;
    dot_codes_generic(q, q_sum, D, K, ldk, n, out);
}

}  // namespace pix2struct::detail
