// pix2struct/backend/cpu_bf16.hpp — the bf16 mode's matrix products on AVX512-BF16 (vdpbf16ps): bf16 operands,
// fp32 sums, for CpuBf16Backend (backend/cpu.hpp) on CPUs where the instruction outruns fp32 FMA.
//
// vdpbf16ps adds two bf16 products to each fp32 lane per instruction. Its rate against fp32 FMA depends on the
// core (bench_peak, bench/RESULTS.md): twice fp32 FMA's FLOP rate on AMD Zen 4 (both run 512-bit vectors on
// 256-bit units), half of it on Intel Sapphire Rapids. So host_bf16_isa() picks it on AMD only; elsewhere the
// bf16 mode multiplies its bf16 values with the fp32 kernels. Both are bf16 products (exact in fp32) summed in
// fp32; they differ only in the order of the sums and in vdpbf16ps flushing subnormal inputs and outputs to 0.
//
// Weights [n, k] are packed once into panels of 32 rows (output columns): for each pair of k's, the pair of each
// of its 32 rows (128 bytes: two zmm registers, the operand layout of vdpbf16ps), k padded with 0 to even.
// Activation rows go in as bf16 pairs too (their values are bf16: the top halves of the floats).
#pragma once

#include "pix2struct/backend/cpu_kernels.hpp"  // first: it includes <immintrin.h> (see there)

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <utility>

#include "pix2struct/backend/cpu_isa.hpp"
#include "pix2struct/safetensors.hpp"
#include "pix2struct/weights.hpp"

namespace pix2struct::detail {

inline constexpr int kBfNr = 32;  // output columns per panel
inline constexpr int kBfMr = 12;  // rows of a register tile (24 fp32 accumulators)
inline constexpr int64_t kBfMc = 240;  // rows of A per block (stays in L2 while a panel passes)

// Elements of one row of bf16 pairs: k rounded up to even, then to a cache line.
inline int64_t bf16_row_elements(int64_t k) { return ((k + 1) / 2 * 2 + 31) / 32 * 32; }

// W [n, k] (fp32 holding bf16 values) packed for the products.
struct Bf16Panels {
    int64_t n = 0, k = 0, k2 = 0;   // rows, columns, columns rounded up to even
    const float* source = nullptr;  // the values packed (a backend checks it is given those)
    HugePageBytes data;

    Bf16Panels() = default;
    // Allocates; pack(p0, p1) fills.
    Bf16Panels(const float* w, int64_t rows, int64_t cols)
        : n(rows), k(cols), k2((cols + 1) / 2 * 2), source(w),
          data(huge_page_alloc(size_t(panel_count() * kBfNr * k2) * sizeof(uint16_t))) {}
    int64_t panel_count() const { return (n + kBfNr - 1) / kBfNr; }
    const uint16_t* panel(int64_t p) const { return static_cast<const uint16_t*>(data.get()) + p * kBfNr * k2; }
    int64_t bytes() const { return panel_count() * kBfNr * k2 * int64_t(sizeof(uint16_t)); }
    // Fills panels [p0, p1) (threads may fill disjoint ranges at once).
    void pack(int64_t p0, int64_t p1) {
        for (int64_t p = p0; p < p1; ++p) {
            uint16_t* out = static_cast<uint16_t*>(data.get()) + p * kBfNr * k2;
            std::fill(out, out + kBfNr * k2, uint16_t(0));
            const int rows = int(std::min<int64_t>(kBfNr, n - p * kBfNr));
            for (int j = 0; j < rows; ++j) {
                const float* w = source + (p * kBfNr + j) * k;
                for (int64_t c = 0; c < k; ++c) out[(c / 2) * 2 * kBfNr + j * 2 + c % 2] = float_to_bf16(w[c]);
            }
        }
    }
};

// Rows [0, M) of X [M, K] (row stride ldx; bf16 values) as bf16 pairs, row stride lda, K padded with 0 to even.
inline void bf16_rows(const float* X, int64_t ldx, int64_t M, int64_t K, uint16_t* A, int64_t lda) {
    for (int64_t m = 0; m < M; ++m) {
        uint16_t* a = A + m * lda;
        for (int64_t k = 0; k < K; ++k) a[k] = float_to_bf16(X[m * ldx + k]);
        if (K % 2) a[K] = 0;
    }
}

#ifdef PIX2STRUCT_X86_KERNELS
// acc += Σ of 2 bf16 products per fp32 lane (register constraints: see dpbusd in backend/cpu_int8.hpp).
PIX2STRUCT_AVX512_BF16 inline __m512 dpbf16(__m512 acc, __m512i a, __m512i b) {
#if defined(__GNUC__) && !defined(__clang__)
    asm("vdpbf16ps %2, %1, %0" : "+v"(acc) : "v"(a), "v"(b));
    return acc;
#else
    return _mm512_dpbf16_ps(acc, (__m512bh)a, (__m512bh)b);
#endif
}

// C[MR, nr] (=|+=) A[MR, k2] · panel: one register tile.
template <int MR>
PIX2STRUCT_AVX512_BF16 inline void bgemm_tile(int64_t k2, const uint16_t* A, int64_t lda, const uint16_t* Bp, float* C,
                                              int64_t ldc, int nr, bool add) {
    __m512 c0[MR], c1[MR];
    PIX2STRUCT_UNROLL
    for (int i = 0; i < MR; ++i) c0[i] = c1[i] = _mm512_setzero_ps();
    for (int64_t k = 0; k < k2; k += 2) {
        const __m512i b0 = _mm512_load_si512(Bp + k * kBfNr), b1 = _mm512_load_si512(Bp + k * kBfNr + 32);
        PIX2STRUCT_UNROLL
        for (int i = 0; i < MR; ++i) {
            int32_t pair;
            std::memcpy(&pair, A + i * lda + k, 4);
            const __m512i a = _mm512_set1_epi32(pair);
            c0[i] = dpbf16(c0[i], a, b0);
            c1[i] = dpbf16(c1[i], a, b1);
        }
    }
    const __mmask16 m0 = nr >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << nr) - 1);
    const __mmask16 m1 = nr >= 32 ? __mmask16(0xFFFF) : nr <= 16 ? __mmask16(0) : __mmask16((1u << (nr - 16)) - 1);
    PIX2STRUCT_UNROLL
    for (int i = 0; i < MR; ++i) {
        float* c = C + i * ldc;
        __m512 v0 = c0[i], v1 = c1[i];
        if (add) {
            v0 = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, c), v0);
            v1 = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, c + 16), v1);
        }
        _mm512_mask_storeu_ps(c, m0, v0);
        _mm512_mask_storeu_ps(c + 16, m1, v1);
    }
}

template <int... R>
constexpr auto bgemm_tiles(std::integer_sequence<int, R...>) { return std::array{&bgemm_tile<R + 1>...}; }

// C[M, n] (=|+=) A [M, ·] (bf16_rows) · W's columns [n0, n0 + n), n0 a multiple of 32 (C points at column n0).
inline void bgemm(int64_t M, const uint16_t* A, int64_t lda, const Bf16Panels& W, int64_t n0, int64_t n, float* C,
                  int64_t ldc, bool add) {
    static constexpr auto tiles = bgemm_tiles(std::make_integer_sequence<int, kBfMr>{});
    for (int64_t m0 = 0; m0 < M; m0 += kBfMc) {
        const int64_t mc = std::min(kBfMc, M - m0);
        for (int64_t j = 0; j < n; j += kBfNr) {
            const int64_t p = (n0 + j) / kBfNr;
            const int cols = int(std::min<int64_t>(kBfNr, n - j));
            for (int64_t i = m0; i < m0 + mc; i += kBfMr) {
                const int rows = int(std::min<int64_t>(kBfMr, m0 + mc - i));
                tiles[size_t(rows - 1)](W.k2, A + i * lda, lda, W.panel(p), C + i * ldc + j, ldc, cols, add);
            }
        }
    }
}
#endif

}  // namespace pix2struct::detail
