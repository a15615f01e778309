// pix2struct/backend/cpu_kernels.hpp — the CPU backend's SIMD kernels, one per instruction set, chosen at run
// time (backend/cpu_isa.hpp): whatever flags an app compiles with, an AVX-512 CPU runs AVX-512 code.
//
//   sgemm        C[M, N] (=|+=) A[M, K] · op(B), op(B) = Bᵀ for B [N, K] (weights, attention keys) or B for
//                B [K, N] (attention values); fp32, blocked for the caches: B packed into panels of NR
//                columns (pack_b), A read in place, register tiles of MR × NR (AVX-512 12 × 32, AVX2 6 × 16)
//   softmax_row  x = exp(x - max x) / Σ, in place (the attention's fp32 softmax)
//   gelu_gate, rms_norm   the MLP's gated GELU and the T5 norm
//   gemv         the decode step: a few rows of X against weight rows (BF16 or fp32), read once for all rows
//   dot_keys, weighted_rows   a decode step's attention scores and output, keys and values read in place
// The generic set (no AVX2) has plain loops, except SGEMM: CpuBackend multiplies with Eigen there.
#pragma once

// GCC 12's AVX-512 intrinsics warn about their own _mm512_undefined_* placeholders once inlined (GCC bug
// 105593, fixed in 12.3): the warning's location is in the intrinsics' headers, silenced here where they are
// included (the first inclusion decides), for our kernels and Eigen's alike.
#if defined(__x86_64__)
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <utility>

#include "pix2struct/backend/cpu_isa.hpp"
#include "pix2struct/error.hpp"
#include "pix2struct/safetensors.hpp"

#if defined(__clang__)
#define PIX2STRUCT_UNROLL _Pragma("unroll")
#else
#define PIX2STRUCT_UNROLL _Pragma("GCC unroll 16")
#endif

namespace pix2struct::detail {

// ---------------------------------------------------------------------------------------------------------
// SGEMM
// ---------------------------------------------------------------------------------------------------------

// Register tile and cache blocks per instruction set. A B panel (kKc × NR floats, 32 KB for AVX-512) stays
// in L1 while the rows of an A block (kMc × kKc, 256 KB) stream from L2 past it.
inline constexpr int64_t kKc = 256, kMc = 240;
inline int gemm_nr(CpuIsa isa) { return isa == CpuIsa::Avx512 ? 32 : 16; }
inline int gemm_mr(CpuIsa isa) { return isa == CpuIsa::Avx512 ? 12 : 6; }

// Packs op(B)[k0 .. k0 + kc, n0 .. n0 + n] into panels of nr columns: panel p holds, for each k, the nr values
// op(B)[k, n0 + p·nr + j] (zero past n). B is [N, K] (transposed: `b_kn` false) or [K, N].
inline void pack_b(const float* B, int64_t ldb, bool b_kn, int64_t n0, int64_t n, int64_t k0, int64_t kc, int nr,
                   float* dst) {
    for (int64_t p = 0; p * nr < n; ++p) {
        float* panel = dst + p * nr * kc;
        const int64_t cols = std::min<int64_t>(nr, n - p * nr);
        if (b_kn) {
            for (int64_t k = 0; k < kc; ++k) {
                const float* src = B + (k0 + k) * ldb + n0 + p * nr;
                float* out = panel + k * nr;
                std::copy(src, src + cols, out);
                std::fill(out + cols, out + nr, 0.0f);
            }
        } else {
            for (int64_t j = 0; j < cols; ++j) {
                const float* src = B + (n0 + p * nr + j) * ldb + k0;
                for (int64_t k = 0; k < kc; ++k) panel[k * nr + j] = src[k];
            }
            for (int64_t j = cols; j < nr; ++j)
                for (int64_t k = 0; k < kc; ++k) panel[k * nr + j] = 0.0f;
        }
    }
}

#ifdef PIX2STRUCT_X86_KERNELS
// C[MR, nr] (=|+=) A[MR, kc] · panel[kc, 32]: 24 accumulators, A broadcast from memory.
template <int MR>
PIX2STRUCT_AVX512 inline void sgemm_tile_avx512(int64_t kc, const float* A, int64_t lda, const float* Bp, float* C,
                                                int64_t ldc, int nr, bool add) {
    __m512 c0[MR], c1[MR];
    PIX2STRUCT_UNROLL
    for (int i = 0; i < MR; ++i) c0[i] = c1[i] = _mm512_setzero_ps();
    for (int64_t k = 0; k < kc; ++k) {
        const __m512 b0 = _mm512_load_ps(Bp + k * 32), b1 = _mm512_load_ps(Bp + k * 32 + 16);
        PIX2STRUCT_UNROLL
        for (int i = 0; i < MR; ++i) {
            const __m512 a = _mm512_set1_ps(A[i * lda + k]);
            c0[i] = _mm512_fmadd_ps(a, b0, c0[i]);
            c1[i] = _mm512_fmadd_ps(a, b1, c1[i]);
        }
    }
    const __mmask16 m0 = nr >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << nr) - 1);
    const __mmask16 m1 = nr >= 32 ? __mmask16(0xFFFF) : nr <= 16 ? __mmask16(0) : __mmask16((1u << (nr - 16)) - 1);
    PIX2STRUCT_UNROLL
    for (int i = 0; i < MR; ++i) {
        float* c = C + i * ldc;
        if (add) {
            c0[i] = _mm512_add_ps(c0[i], _mm512_maskz_loadu_ps(m0, c));
            c1[i] = _mm512_add_ps(c1[i], _mm512_maskz_loadu_ps(m1, c + 16));
        }
        _mm512_mask_storeu_ps(c, m0, c0[i]);
        _mm512_mask_storeu_ps(c + 16, m1, c1[i]);
    }
}

// C[MR, nr] (=|+=) A[MR, kc] · panel[kc, 16]: 12 accumulators of 8.
template <int MR>
PIX2STRUCT_AVX2 inline void sgemm_tile_avx2(int64_t kc, const float* A, int64_t lda, const float* Bp, float* C,
                                            int64_t ldc, int nr, bool add) {
    __m256 c0[MR], c1[MR];
    PIX2STRUCT_UNROLL
    for (int i = 0; i < MR; ++i) c0[i] = c1[i] = _mm256_setzero_ps();
    for (int64_t k = 0; k < kc; ++k) {
        const __m256 b0 = _mm256_load_ps(Bp + k * 16), b1 = _mm256_load_ps(Bp + k * 16 + 8);
        PIX2STRUCT_UNROLL
        for (int i = 0; i < MR; ++i) {
            const __m256 a = _mm256_broadcast_ss(A + i * lda + k);
            c0[i] = _mm256_fmadd_ps(a, b0, c0[i]);
            c1[i] = _mm256_fmadd_ps(a, b1, c1[i]);
        }
    }
    alignas(32) float tail[16];
    PIX2STRUCT_UNROLL
    for (int i = 0; i < MR; ++i) {
        float* c = C + i * ldc;
        if (nr == 16) {
            if (add) {
                c0[i] = _mm256_add_ps(c0[i], _mm256_loadu_ps(c));
                c1[i] = _mm256_add_ps(c1[i], _mm256_loadu_ps(c + 8));
            }
            _mm256_storeu_ps(c, c0[i]);
            _mm256_storeu_ps(c + 8, c1[i]);
        } else {
            _mm256_store_ps(tail, c0[i]);
            _mm256_store_ps(tail + 8, c1[i]);
            for (int j = 0; j < nr; ++j) c[j] = add ? c[j] + tail[j] : tail[j];
        }
    }
}
#endif

// Each kernel's register-tile variants in a table by row count: table[r - 1] is the variant for r rows.
#ifdef PIX2STRUCT_X86_KERNELS
template <int... R>
constexpr auto sgemm_tiles_avx512(std::integer_sequence<int, R...>) { return std::array{&sgemm_tile_avx512<R + 1>...}; }
template <int... R>
constexpr auto sgemm_tiles_avx2(std::integer_sequence<int, R...>) { return std::array{&sgemm_tile_avx2<R + 1>...}; }
#endif

// Rows [0, m) of C, its columns [0, n): one packed kc-block of B against the same kc columns of A. AVX2 or
// AVX-512 only (CpuBackend multiplies with Eigen on a CPU without AVX2).
inline void sgemm_block(CpuIsa isa, int64_t m, int64_t n, int64_t kc, const float* A, int64_t lda, const float* Bp,
                        float* C, int64_t ldc, bool add) {
#ifdef PIX2STRUCT_X86_KERNELS
    static constexpr auto k512 = sgemm_tiles_avx512(std::make_integer_sequence<int, 12>{});
    static constexpr auto k2 = sgemm_tiles_avx2(std::make_integer_sequence<int, 6>{});
    if (isa != CpuIsa::Generic) {
        const int nr = gemm_nr(isa), mr = gemm_mr(isa);
        for (int64_t m0 = 0; m0 < m; m0 += kMc) {
            const int64_t mc = std::min(kMc, m - m0);
            for (int64_t p = 0; p * nr < n; ++p) {
                const int cols = int(std::min<int64_t>(nr, n - p * nr));
                for (int64_t i = m0; i < m0 + mc; i += mr) {
                    const int rows = int(std::min<int64_t>(mr, m0 + mc - i));
                    const auto tile = isa == CpuIsa::Avx512 ? k512[size_t(rows - 1)] : k2[size_t(rows - 1)];
                    tile(kc, A + i * lda, lda, Bp + p * nr * kc, C + i * ldc + p * nr, ldc, cols, add);
                }
            }
        }
        return;
    }
#endif
    (void)m, (void)n, (void)kc, (void)A, (void)lda, (void)Bp, (void)C, (void)ldc, (void)add;
    fail("sgemm: the ", isa_name(isa), " set has no SGEMM kernel (AVX2 or AVX-512 needed)");
}

// Floats of packing space sgemm() needs for n columns.
inline int64_t sgemm_pack_floats(CpuIsa isa, int64_t n) {
    const int nr = gemm_nr(isa);
    return (n + nr - 1) / nr * nr * kKc;
}

// C[M, n] (=|+=) A[M, K] · op(B)[K, n0 .. n0 + n] (C points at column n0), isa AVX2 or AVX-512.
// `pack`: sgemm_pack_floats(isa, n) floats, 64-byte aligned.
inline void sgemm(CpuIsa isa, int64_t M, int64_t n, int64_t K, const float* A, int64_t lda, const float* B,
                  int64_t ldb, bool b_kn, int64_t n0, float* C, int64_t ldc, bool accumulate, float* pack) {
    if (K == 0) {
        if (!accumulate)
            for (int64_t i = 0; i < M; ++i) std::fill(C + i * ldc, C + i * ldc + n, 0.0f);
        return;
    }
    for (int64_t k0 = 0; k0 < K; k0 += kKc) {
        const int64_t kc = std::min(kKc, K - k0);
        pack_b(B, ldb, b_kn, n0, n, k0, kc, gemm_nr(isa), pack);
        sgemm_block(isa, M, n, kc, A + k0, lda, pack, C, ldc, accumulate || k0 > 0);
    }
}

// Floats pack_b_all() writes for n columns and K rows (every kKc block's panels).
inline int64_t sgemm_packed_floats(CpuIsa isa, int64_t n, int64_t K) {
    const int nr = gemm_nr(isa);
    return (n + nr - 1) / nr * nr * K;
}

// op(B)[0 .. K, 0 .. n] packed once for several products (attention's keys and values): the panels of each
// kKc block, one block after another.
inline void pack_b_all(CpuIsa isa, const float* B, int64_t ldb, bool b_kn, int64_t n, int64_t K, float* dst) {
    const int nr = gemm_nr(isa);
    const int64_t padded = (n + nr - 1) / nr * nr;
    for (int64_t k0 = 0; k0 < K; k0 += kKc) pack_b(B, ldb, b_kn, 0, n, k0, std::min(kKc, K - k0), nr, dst + padded * k0);
}

// C[M, n] (=|+=) A[M, K] · op(B) with op(B) packed by pack_b_all.
inline void sgemm_packed(CpuIsa isa, int64_t M, int64_t n, int64_t K, const float* A, int64_t lda, const float* packed,
                         float* C, int64_t ldc, bool accumulate) {
    const int nr = gemm_nr(isa);
    const int64_t padded = (n + nr - 1) / nr * nr;
    for (int64_t k0 = 0; k0 < K; k0 += kKc)
        sgemm_block(isa, M, n, std::min(kKc, K - k0), A + k0, lda, packed + padded * k0, C, ldc, accumulate || k0 > 0);
}

// ---------------------------------------------------------------------------------------------------------
// Softmax of one row, in place: exp(x - max) / Σ. exp by range reduction to [-ln2/2, ln2/2] and a degree-6
// polynomial (Cephes' expf coefficients), 2^n by the exponent: ≤ 2 ulp on the range softmax sees
// (x - max ≤ 0). Below -87.3 (where float's exp turns denormal) the result is 0, so a masked key (the
// reference adds float's lowest to its score) weighs exactly 0; NaN stays NaN.
// ---------------------------------------------------------------------------------------------------------

#ifdef PIX2STRUCT_X86_KERNELS
inline constexpr float kExpLowest = -87.3365f;  // log(FLT_MIN): 2^-126

PIX2STRUCT_AVX512 inline __m512 exp_avx512(__m512 v) {
    const __mmask16 keep = _mm512_cmp_ps_mask(v, _mm512_set1_ps(kExpLowest), _CMP_NLT_UQ);  // NaN kept
    const __m512 x = _mm512_max_ps(_mm512_set1_ps(kExpLowest), v);  // (NaN in, NaN out)
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_maskz_mov_ps(keep, _mm512_scalef_ps(p, n));
}

PIX2STRUCT_AVX512 inline void softmax_row_avx512(float* x, int64_t n) {
    __m512 mx = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) mx = _mm512_max_ps(mx, _mm512_loadu_ps(x + i));
    float m = _mm512_reduce_max_ps(mx);
    for (int64_t j = i; j < n; ++j) m = std::max(m, x[j]);
    const __m512 vm = _mm512_set1_ps(m);
    __m512 sum = _mm512_setzero_ps();
    for (i = 0; i + 16 <= n; i += 16) {
        const __m512 e = exp_avx512(_mm512_sub_ps(_mm512_loadu_ps(x + i), vm));
        _mm512_storeu_ps(x + i, e);
        sum = _mm512_add_ps(sum, e);
    }
    if (i < n) {
        const __mmask16 tail = __mmask16((1u << (n - i)) - 1);
        const __m512 e = exp_avx512(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, x + i), vm));
        _mm512_mask_storeu_ps(x + i, tail, e);
        sum = _mm512_add_ps(sum, _mm512_maskz_mov_ps(tail, e));
    }
    const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(sum));
    for (i = 0; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, _mm512_mul_ps(_mm512_loadu_ps(x + i), inv));
    if (i < n) {
        const __mmask16 tail = __mmask16((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(x + i, tail, _mm512_mul_ps(_mm512_maskz_loadu_ps(tail, x + i), inv));
    }
}

// As exp_avx512, but above 88.376 the result stays at 3.4e38 (float's largest power of two times the
// polynomial) instead of turning infinite: the exponent bits built below must not overflow.
PIX2STRUCT_AVX2 inline __m256 exp_avx2(__m256 v) {
    const __m256 keep = _mm256_cmp_ps(v, _mm256_set1_ps(kExpLowest), _CMP_NLT_UQ);  // NaN kept
    const __m256 x = _mm256_min_ps(_mm256_max_ps(_mm256_set1_ps(kExpLowest), v), _mm256_set1_ps(88.3762626647949f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    // 2^n as n + 127 in the exponent bits: n ≥ -126 after the clamp, a normal number. A NaN lane's bits
    // are garbage here and replaced by the NaN below.
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    const __m256 y = _mm256_mul_ps(p, _mm256_castsi256_ps(e));
    return _mm256_and_ps(_mm256_blendv_ps(y, v, _mm256_cmp_ps(v, v, _CMP_UNORD_Q)), keep);
}

PIX2STRUCT_AVX2 inline void softmax_row_avx2(float* x, int64_t n) {
    float m = -std::numeric_limits<float>::infinity();
    for (int64_t j = 0; j < n; ++j) m = std::max(m, x[j]);
    const __m256 vm = _mm256_set1_ps(m);
    __m256 sum = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 e = exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
        _mm256_storeu_ps(x + i, e);
        sum = _mm256_add_ps(sum, e);
    }
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, sum);
    float s = 0;
    for (float l : lanes) s += l;
    for (; i < n; ++i) s += (x[i] = std::exp(x[i] - m));
    const __m256 inv = _mm256_set1_ps(1.0f / s);
    for (i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), inv));
    for (; i < n; ++i) x[i] *= 1.0f / s;
}
#endif

inline void softmax_row(CpuIsa isa, float* x, int64_t n) {
#ifdef PIX2STRUCT_X86_KERNELS
    if (isa == CpuIsa::Avx512) return softmax_row_avx512(x, n);
    if (isa == CpuIsa::Avx2) return softmax_row_avx2(x, n);
#endif
    (void)isa;
    float m = -std::numeric_limits<float>::infinity();
    for (int64_t j = 0; j < n; ++j) m = std::max(m, x[j]);
    float s = 0;
    for (int64_t j = 0; j < n; ++j) s += (x[j] = std::exp(x[j] - m));
    for (int64_t j = 0; j < n; ++j) x[j] /= s;
}

// ---------------------------------------------------------------------------------------------------------
// Gated GELU and RMS norm, elementwise. gelu_new(a) = 0.5·a·(1 + tanh(√(2/π)(a + 0.044715·a³))) is computed
// as a · σ(2y) = a / (1 + exp(-2y)), the same function without tanh's cancellation near -1.
// ---------------------------------------------------------------------------------------------------------

#ifdef PIX2STRUCT_X86_KERNELS
PIX2STRUCT_AVX2 inline float reduce_add_avx2(__m256 v) {
    const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));
}

PIX2STRUCT_AVX512 inline void gelu_gate_avx512(float* A, const float* B, int64_t n) {
    const __m512 k = _mm512_set1_ps(-2.0f * 0.7978845608028654f), c = _mm512_set1_ps(0.044715f), one = _mm512_set1_ps(1.0f);
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - i)) - 1);
        const __m512 a = _mm512_maskz_loadu_ps(m, A + i), b = _mm512_maskz_loadu_ps(m, B + i);
        const __m512 inner = _mm512_fmadd_ps(_mm512_mul_ps(c, a), _mm512_mul_ps(a, a), a);  // a + 0.044715 a³
        const __m512 e = exp_avx512(_mm512_mul_ps(k, inner));                            // exp(-2y)
        _mm512_mask_storeu_ps(A + i, m, _mm512_mul_ps(_mm512_div_ps(a, _mm512_add_ps(one, e)), b));
    }
}

PIX2STRUCT_AVX512 inline void rms_norm_avx512(const float* x, const float* g, int64_t H, float eps, float* y) {
    __m512 ss = _mm512_setzero_ps();
    for (int64_t i = 0; i < H; i += 16) {
        const __mmask16 m = H - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (H - i)) - 1);
        const __m512 v = _mm512_maskz_loadu_ps(m, x + i);
        ss = _mm512_fmadd_ps(v, v, ss);
    }
    const __m512 inv = _mm512_set1_ps(1.0f / std::sqrt(_mm512_reduce_add_ps(ss) / float(H) + eps));
    for (int64_t i = 0; i < H; i += 16) {
        const __mmask16 m = H - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (H - i)) - 1);
        _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, g + i),
                                                      _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), inv)));
    }
}

PIX2STRUCT_AVX2 inline void gelu_gate_avx2(float* A, const float* B, int64_t n) {
    const __m256 k = _mm256_set1_ps(-2.0f * 0.7978845608028654f), c = _mm256_set1_ps(0.044715f), one = _mm256_set1_ps(1.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 a = _mm256_loadu_ps(A + i), b = _mm256_loadu_ps(B + i);
        const __m256 inner = _mm256_fmadd_ps(_mm256_mul_ps(c, a), _mm256_mul_ps(a, a), a);
        const __m256 e = exp_avx2(_mm256_mul_ps(k, inner));
        _mm256_storeu_ps(A + i, _mm256_mul_ps(_mm256_div_ps(a, _mm256_add_ps(one, e)), b));
    }
    for (; i < n; ++i) {
        const float a = A[i];
        A[i] = a / (1.0f + std::exp(-2.0f * 0.7978845608028654f * (a + 0.044715f * a * a * a))) * B[i];
    }
}

PIX2STRUCT_AVX2 inline void rms_norm_avx2(const float* x, const float* g, int64_t H, float eps, float* y) {
    __m256 ss = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= H; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        ss = _mm256_fmadd_ps(v, v, ss);
    }
    float sum = reduce_add_avx2(ss);
    for (int64_t j = i; j < H; ++j) sum += x[j] * x[j];
    const float inv = 1.0f / std::sqrt(sum / float(H) + eps);
    const __m256 vinv = _mm256_set1_ps(inv);
    for (i = 0; i + 8 <= H; i += 8)
        _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(g + i), _mm256_mul_ps(_mm256_loadu_ps(x + i), vinv)));
    for (; i < H; ++i) y[i] = g[i] * (x[i] * inv);
}
#endif

// A[n] = gelu_new(A) ⊙ B.
inline void gelu_gate(CpuIsa isa, float* A, const float* B, int64_t n) {
#ifdef PIX2STRUCT_X86_KERNELS
    if (isa == CpuIsa::Avx512) return gelu_gate_avx512(A, B, n);
    if (isa == CpuIsa::Avx2) return gelu_gate_avx2(A, B, n);
#endif
    (void)isa;
    for (int64_t i = 0; i < n; ++i)
        A[i] = A[i] / (1.0f + std::exp(-2.0f * 0.7978845608028654f * (A[i] + 0.044715f * A[i] * A[i] * A[i]))) * B[i];
}

// y[H] = g ⊙ x / sqrt(mean(x²) + eps), the mean in fp32.
inline void rms_norm(CpuIsa isa, const float* x, const float* g, int64_t H, float eps, float* y) {
#ifdef PIX2STRUCT_X86_KERNELS
    if (isa == CpuIsa::Avx512) return rms_norm_avx512(x, g, H, eps, y);
    if (isa == CpuIsa::Avx2) return rms_norm_avx2(x, g, H, eps, y);
#endif
    (void)isa;
    float sum = 0;
    for (int64_t i = 0; i < H; ++i) sum += x[i] * x[i];
    const float inv = 1.0f / std::sqrt(sum / float(H) + eps);
    for (int64_t i = 0; i < H; ++i) y[i] = g[i] * (x[i] * inv);
}

// ---------------------------------------------------------------------------------------------------------
// GEMV: Y[m, n] (=|+=) Σ_k W[n, k] · X[m, k] for the M rows of X [M, K] and n in [n0, n1), Y [M, N]; W [N, K]
// stored as BF16 (the checkpoint's bytes) or fp32. Decode steps (M = one row per sequence of the batch, a
// handful) are memory-bound: each weight row is read from memory once for all M rows (it stays in L1 while
// they pass over it), and BF16 halves the bytes. BF16 → fp32 is exact (a 16-bit shift), so the arithmetic is
// the same fp32 dot product as with an fp32 copy, in the same order for every row whatever M is: a sequence
// gets the same logits alone or in a batch.
// ---------------------------------------------------------------------------------------------------------

inline constexpr int64_t kGemvMaxRows = 16;  // up to here the GEMV beats a GEMM (bytes vs FLOPs)

#ifdef PIX2STRUCT_X86_KERNELS
PIX2STRUCT_AVX512 inline __m512 load16(const uint16_t* p) {
    return _mm512_castsi512_ps(
        _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), 16));
}
PIX2STRUCT_AVX512 inline __m512 load16(const float* p) { return _mm512_loadu_ps(p); }
PIX2STRUCT_AVX512 inline __m512 load16(__mmask16 m, const uint16_t* p) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
}
PIX2STRUCT_AVX512 inline __m512 load16(__mmask16 m, const float* p) { return _mm512_maskz_loadu_ps(m, p); }
PIX2STRUCT_AVX2 inline __m256 load8(const uint16_t* p) {
    return _mm256_castsi256_ps(
        _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 16));
}
PIX2STRUCT_AVX2 inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
// uint8_t: int8 codes stored biased by 128 (CpuInt8Backend's cross-attention values, scaled by the caller):
// the signed integers as floats.
PIX2STRUCT_AVX512 inline __m512 load16(const uint8_t* p) {
    return _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))),
                                               _mm512_set1_epi32(128)));
}
PIX2STRUCT_AVX512 inline __m512 load16(__mmask16 m, const uint8_t* p) {
    return _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, p)), _mm512_set1_epi32(128)));
}
PIX2STRUCT_AVX2 inline __m256 load8(const uint8_t* p) {
    return _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))),
                                               _mm256_set1_epi32(128)));
}
#endif

inline float widen(uint16_t w) { return bf16_to_float(w); }
inline float widen(float w) { return w; }
inline float widen(uint8_t w) { return float(int(w) - 128); }  // a code biased by 128

#ifdef PIX2STRUCT_X86_KERNELS
// Rows [0, R) of X against one weight row w: AVX-512, R ≤ 8 (two accumulators per row: 16 registers). The
// next weight row `prefetch_row` is fetched a line per iteration.
template <int R, class Wt>
PIX2STRUCT_AVX512 inline void dot_rows_avx512(const float* X, int64_t ldx, int64_t K, const Wt* w,
                                              const Wt* prefetch_row, float* out) {
    __m512 s0[R], s1[R];
    PIX2STRUCT_UNROLL
    for (int r = 0; r < R; ++r) s0[r] = s1[r] = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 32 <= K; k += 32) {
        if (prefetch_row) {  // 32 weights: one line of BF16, two of fp32
            _mm_prefetch(reinterpret_cast<const char*>(prefetch_row + k), _MM_HINT_T0);
            if constexpr (sizeof(Wt) == 4) _mm_prefetch(reinterpret_cast<const char*>(prefetch_row + k + 16), _MM_HINT_T0);
        }
        const __m512 w0 = load16(w + k), w1 = load16(w + k + 16);
        PIX2STRUCT_UNROLL
        for (int r = 0; r < R; ++r) {
            s0[r] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(X + r * ldx + k), s0[r]);
            s1[r] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(X + r * ldx + k + 16), s1[r]);
        }
    }
    for (; k + 16 <= K; k += 16) {
        const __m512 w0 = load16(w + k);
        PIX2STRUCT_UNROLL
        for (int r = 0; r < R; ++r) s0[r] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(X + r * ldx + k), s0[r]);
    }
    for (int r = 0; r < R; ++r) {
        float t = _mm512_reduce_add_ps(_mm512_add_ps(s0[r], s1[r]));
        for (int64_t j = k; j < K; ++j) t += widen(w[j]) * X[r * ldx + j];
        out[r] = t;
    }
}

// The same with AVX2 + FMA: R ≤ 4 (two 8-wide accumulators per row of the 16 registers).
template <int R, class Wt>
PIX2STRUCT_AVX2 inline void dot_rows_avx2(const float* X, int64_t ldx, int64_t K, const Wt* w, const Wt* prefetch_row,
                                          float* out) {
    __m256 s0[R], s1[R];
    PIX2STRUCT_UNROLL
    for (int r = 0; r < R; ++r) s0[r] = s1[r] = _mm256_setzero_ps();
    constexpr int64_t kLine = 64 / int64_t(sizeof(Wt));
    int64_t k = 0;
    for (; k + 16 <= K; k += 16) {
        if (prefetch_row && k % kLine == 0) _mm_prefetch(reinterpret_cast<const char*>(prefetch_row + k), _MM_HINT_T0);
        const __m256 w0 = load8(w + k), w1 = load8(w + k + 8);
        PIX2STRUCT_UNROLL
        for (int r = 0; r < R; ++r) {
            s0[r] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(X + r * ldx + k), s0[r]);
            s1[r] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(X + r * ldx + k + 8), s1[r]);
        }
    }
    for (int r = 0; r < R; ++r) {
        float t = reduce_add_avx2(_mm256_add_ps(s0[r], s1[r]));
        for (int64_t j = k; j < K; ++j) t += widen(w[j]) * X[r * ldx + j];
        out[r] = t;
    }
}
#endif

#ifdef PIX2STRUCT_X86_KERNELS
template <class Wt, int... R>
constexpr auto dot_rows_table_avx512(std::integer_sequence<int, R...>) { return std::array{&dot_rows_avx512<R + 1, Wt>...}; }
template <class Wt, int... R>
constexpr auto dot_rows_table_avx2(std::integer_sequence<int, R...>) { return std::array{&dot_rows_avx2<R + 1, Wt>...}; }
#endif

// One weight row against up to 8 rows of X with the kernel for `isa`: returns how many rows it took.
template <class Wt>
inline int dot_rows(CpuIsa isa, const float* X, int64_t ldx, int rows, int64_t K, const Wt* w, const Wt* prefetch_row,
                    float* out) {
#ifdef PIX2STRUCT_X86_KERNELS
    static constexpr auto k512 = dot_rows_table_avx512<Wt>(std::make_integer_sequence<int, 8>{});
    static constexpr auto k2 = dot_rows_table_avx2<Wt>(std::make_integer_sequence<int, 4>{});
    if (isa != CpuIsa::Generic) {
        using Kernel = typename decltype(k512)::value_type;
        const std::span<const Kernel> table = isa == CpuIsa::Avx512 ? std::span<const Kernel>(k512) : std::span<const Kernel>(k2);
        rows = std::min<int>(rows, int(table.size()));
        table[size_t(rows - 1)](X, ldx, K, w, prefetch_row, out);
        return rows;
    }
#endif
    (void)isa, (void)rows, (void)prefetch_row;
    float t = 0;
    for (int64_t k = 0; k < K; ++k) t += widen(w[k]) * X[k];
    out[0] = t;
    return 1;
}

// X rows at X + m·ldx, W rows at W + n·ldw, Y rows at Y + m·ldy.
template <class Wt>
inline void gemv(CpuIsa isa, const float* X, int64_t ldx, int64_t M, const Wt* W, int64_t ldw, int64_t n0, int64_t n1,
                 int64_t K, float* Y, int64_t ldy, bool accumulate) {
    float dots[8];
    for (int64_t n = n0; n < n1; ++n) {
        const Wt* w = W + n * ldw;
        // A software prefetch of the row kPrefetchRows ahead: rows are short streams (K·2 bytes) the
        // hardware prefetcher ramps up on too late. Measured on this machine (2 threads, 300 MB of bf16
        // rows, noisy): 4 rows/pass without prefetch 13-20 GB/s, 4 rows + prefetch 16-21, this 19-23.
        constexpr int64_t kPrefetchRows = 4;
        const Wt* ahead = n + kPrefetchRows < n1 ? w + kPrefetchRows * ldw : nullptr;
        for (int64_t m0 = 0; m0 < M;) {
            const int rows = dot_rows(isa, X + m0 * ldx, ldx, int(std::min<int64_t>(8, M - m0)), K, w, ahead, dots);
            ahead = nullptr;  // once per weight row
            for (int r = 0; r < rows; ++r) {
                float& y = Y[(m0 + r) * ldy + n];
                y = accumulate ? y + dots[r] : dots[r];
            }
            m0 += rows;
        }
    }
}

// out[j] = Σ_d q[d] · K[j·ldk + d] for the n keys j (a decode step's attention scores, the keys read in
// place, fp32 or BF16): 16 (AVX-512) or 8 (AVX2) keys at a time, one accumulator each, summed across lanes
// together.
#ifdef PIX2STRUCT_X86_KERNELS
// Lane i of the result = the sum of v[i]'s 16 lanes, for 16 vectors at once (pairs within 128-bit lanes, then
// across lanes). `add` adds two registers: AddPs (fp32 sums) or AddEpi32 (int32 sums held in float registers);
// functors with the target attribute (a lambda would not inherit its function's).
struct AddPs {
    PIX2STRUCT_AVX512 __m512 operator()(__m512 a, __m512 b) const { return _mm512_add_ps(a, b); }
};
struct AddEpi32 {
    PIX2STRUCT_AVX512 __m512 operator()(__m512 a, __m512 b) const {
        return _mm512_castsi512_ps(_mm512_add_epi32(_mm512_castps_si512(a), _mm512_castps_si512(b)));
    }
};
template <class Add>
PIX2STRUCT_AVX512 inline __m512 sum_lanes16(const __m512* v, Add add) {
    __m512 u[4];
    PIX2STRUCT_UNROLL
    for (int g = 0; g < 4; ++g) {
        const __m512* w = v + 4 * g;
        const __m512 t0 = add(_mm512_unpacklo_ps(w[0], w[1]), _mm512_unpackhi_ps(w[0], w[1]));
        const __m512 t1 = add(_mm512_unpacklo_ps(w[2], w[3]), _mm512_unpackhi_ps(w[2], w[3]));
        u[g] = add(_mm512_shuffle_ps(t0, t1, _MM_SHUFFLE(1, 0, 1, 0)), _mm512_shuffle_ps(t0, t1, _MM_SHUFFLE(3, 2, 3, 2)));
    }
    const __m512 x0 = add(_mm512_shuffle_f32x4(u[0], u[1], _MM_SHUFFLE(1, 0, 1, 0)),
                          _mm512_shuffle_f32x4(u[0], u[1], _MM_SHUFFLE(3, 2, 3, 2)));
    const __m512 x1 = add(_mm512_shuffle_f32x4(u[2], u[3], _MM_SHUFFLE(1, 0, 1, 0)),
                          _mm512_shuffle_f32x4(u[2], u[3], _MM_SHUFFLE(3, 2, 3, 2)));
    return add(_mm512_shuffle_f32x4(x0, x1, _MM_SHUFFLE(2, 0, 2, 0)), _mm512_shuffle_f32x4(x0, x1, _MM_SHUFFLE(3, 1, 3, 1)));
}

template <class Kt>
PIX2STRUCT_AVX512 inline void dot_keys_avx512(const float* q, int64_t D, const Kt* K, int64_t ldk, int64_t n,
                                              float* out) {
    for (int64_t j0 = 0; j0 < n; j0 += 16) {
        const int keys = int(std::min<int64_t>(16, n - j0));
        __m512 acc[16];
        PIX2STRUCT_UNROLL
        for (int i = 0; i < 16; ++i) acc[i] = _mm512_setzero_ps();
        for (int64_t d = 0; d < D; d += 16) {
            const __mmask16 m = D - d >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (D - d)) - 1);
            const __m512 qv = _mm512_maskz_loadu_ps(m, q + d);
            PIX2STRUCT_UNROLL
            for (int i = 0; i < 16; ++i)
                if (i < keys) acc[i] = _mm512_fmadd_ps(qv, load16(m, K + (j0 + i) * ldk + d), acc[i]);
        }
        const __m512 r = sum_lanes16(acc, AddPs{});
        _mm512_mask_storeu_ps(out + j0, keys == 16 ? __mmask16(0xFFFF) : __mmask16((1u << keys) - 1), r);
    }
}

template <class Kt>
PIX2STRUCT_AVX2 inline void dot_keys_avx2(const float* q, int64_t D, const Kt* K, int64_t ldk, int64_t n, float* out) {
    for (int64_t j0 = 0; j0 < n; j0 += 8) {
        const int keys = int(std::min<int64_t>(8, n - j0));
        __m256 acc[8];
        PIX2STRUCT_UNROLL
        for (int i = 0; i < 8; ++i) acc[i] = _mm256_setzero_ps();
        int64_t d = 0;
        for (; d + 8 <= D; d += 8) {
            const __m256 qv = _mm256_loadu_ps(q + d);
            PIX2STRUCT_UNROLL
            for (int i = 0; i < 8; ++i)
                if (i < keys) acc[i] = _mm256_fmadd_ps(qv, load8(K + (j0 + i) * ldk + d), acc[i]);
        }
        const __m256 u0 = _mm256_hadd_ps(_mm256_hadd_ps(acc[0], acc[1]), _mm256_hadd_ps(acc[2], acc[3]));
        const __m256 u1 = _mm256_hadd_ps(_mm256_hadd_ps(acc[4], acc[5]), _mm256_hadd_ps(acc[6], acc[7]));
        const __m256 r = _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
        alignas(32) float sums[8];
        _mm256_store_ps(sums, r);
        for (int i = 0; i < keys; ++i) {
            float t = sums[i];
            for (int64_t e = d; e < D; ++e) t += q[e] * widen(K[(j0 + i) * ldk + e]);
            out[j0 + i] = t;
        }
    }
}
#endif

template <class Kt>
inline void dot_keys(CpuIsa isa, const float* q, int64_t D, const Kt* K, int64_t ldk, int64_t n, float* out) {
#ifdef PIX2STRUCT_X86_KERNELS
    if (isa == CpuIsa::Avx512) return dot_keys_avx512(q, D, K, ldk, n, out);
    if (isa == CpuIsa::Avx2) return dot_keys_avx2(q, D, K, ldk, n, out);
#endif
    (void)isa;
    for (int64_t j = 0; j < n; ++j) {
        float t = 0;
        for (int64_t d = 0; d < D; ++d) t += q[d] * widen(K[j * ldk + d]);
        out[j] = t;
    }
}

// out[0 .. D) (+)= Σ_j p[j] · V[j·ldv + 0 .. D): a query's attention output from its softmax weights, the values
// read in place, fp32, BF16 or int8 codes biased by 128 (decode steps, where packing them would cost more than the product); `add`:
// added to out (a sum over blocks of keys).
#ifdef PIX2STRUCT_X86_KERNELS
template <class Vt>
PIX2STRUCT_AVX512 inline void weighted_rows_avx512(const float* p, int64_t n, const Vt* V, int64_t ldv, int64_t D,
                                                   float* out, bool add) {
    int64_t d = 0;
    for (; d + 64 <= D; d += 64) {
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        if (add) {
            a0 = _mm512_loadu_ps(out + d), a1 = _mm512_loadu_ps(out + d + 16);
            a2 = _mm512_loadu_ps(out + d + 32), a3 = _mm512_loadu_ps(out + d + 48);
        }
        for (int64_t j = 0; j < n; ++j) {
            const __m512 w = _mm512_set1_ps(p[j]);
            const Vt* v = V + j * ldv + d;
            a0 = _mm512_fmadd_ps(w, load16(v), a0);
            a1 = _mm512_fmadd_ps(w, load16(v + 16), a1);
            a2 = _mm512_fmadd_ps(w, load16(v + 32), a2);
            a3 = _mm512_fmadd_ps(w, load16(v + 48), a3);
        }
        _mm512_storeu_ps(out + d, a0);
        _mm512_storeu_ps(out + d + 16, a1);
        _mm512_storeu_ps(out + d + 32, a2);
        _mm512_storeu_ps(out + d + 48, a3);
    }
    for (; d < D; d += 16) {
        const __mmask16 m = D - d >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (D - d)) - 1);
        __m512 a = add ? _mm512_maskz_loadu_ps(m, out + d) : _mm512_setzero_ps();
        for (int64_t j = 0; j < n; ++j) a = _mm512_fmadd_ps(_mm512_set1_ps(p[j]), load16(m, V + j * ldv + d), a);
        _mm512_mask_storeu_ps(out + d, m, a);
    }
}

template <class Vt>
PIX2STRUCT_AVX2 inline void weighted_rows_avx2(const float* p, int64_t n, const Vt* V, int64_t ldv, int64_t D,
                                               float* out, bool add) {
    int64_t d = 0;
    for (; d + 32 <= D; d += 32) {
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        if (add) {
            a0 = _mm256_loadu_ps(out + d), a1 = _mm256_loadu_ps(out + d + 8);
            a2 = _mm256_loadu_ps(out + d + 16), a3 = _mm256_loadu_ps(out + d + 24);
        }
        for (int64_t j = 0; j < n; ++j) {
            const __m256 w = _mm256_set1_ps(p[j]);
            const Vt* v = V + j * ldv + d;
            a0 = _mm256_fmadd_ps(w, load8(v), a0);
            a1 = _mm256_fmadd_ps(w, load8(v + 8), a1);
            a2 = _mm256_fmadd_ps(w, load8(v + 16), a2);
            a3 = _mm256_fmadd_ps(w, load8(v + 24), a3);
        }
        _mm256_storeu_ps(out + d, a0);
        _mm256_storeu_ps(out + d + 8, a1);
        _mm256_storeu_ps(out + d + 16, a2);
        _mm256_storeu_ps(out + d + 24, a3);
    }
    for (; d + 8 <= D; d += 8) {
        __m256 a = add ? _mm256_loadu_ps(out + d) : _mm256_setzero_ps();
        for (int64_t j = 0; j < n; ++j) a = _mm256_fmadd_ps(_mm256_set1_ps(p[j]), load8(V + j * ldv + d), a);
        _mm256_storeu_ps(out + d, a);
    }
    for (; d < D; ++d) {
        float a = add ? out[d] : 0.0f;
        for (int64_t j = 0; j < n; ++j) a += p[j] * widen(V[j * ldv + d]);
        out[d] = a;
    }
}
#endif

template <class Vt>
inline void weighted_rows(CpuIsa isa, const float* p, int64_t n, const Vt* V, int64_t ldv, int64_t D, float* out,
                          bool add = false) {
#ifdef PIX2STRUCT_X86_KERNELS
    if (isa == CpuIsa::Avx512) return weighted_rows_avx512(p, n, V, ldv, D, out, add);
    if (isa == CpuIsa::Avx2) return weighted_rows_avx2(p, n, V, ldv, D, out, add);
#endif
    (void)isa;
    for (int64_t d = 0; d < D; ++d) {
        float a = add ? out[d] : 0.0f;
        for (int64_t j = 0; j < n; ++j) a += p[j] * widen(V[j * ldv + d]);
        out[d] = a;
    }
}

}  // namespace pix2struct::detail
