// bench/peak.hpp — register-only loops that measure the peak rate of each arithmetic instruction of this
// CPU (bench_peak prints them all; bench_e2e prints the fp32 FMA one beside its stages): 12 independent
// accumulators (more than latency × ports), on `threads` threads at once, best of 3.
//
// Counted per instruction: fp32 FMA (AVX-512 vfmadd231ps zmm, AVX2 ymm): 2 FLOP per lane; AVX512-BF16
// vdpbf16ps: 2 bf16 products + 2 adds per fp32 lane (4 FLOP); AVX512-FP16 vfmadd231ph: 2 FLOP per fp16 lane
// (32 lanes); AVX512-VNNI vpdpbusd: 4 u8·s8 products + 4 adds per int32 lane (8 OP); AVX2 vpmaddwd + vpaddd:
// 2 s16 products + 2 adds per int32 lane (4 OP).
#pragma once

#if defined(__x86_64__)
#include <cpuid.h>
#endif

#include <algorithm>
#include <chrono>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "pix2struct/backend/cpu_kernels.hpp"  // <immintrin.h>, GCC 12's false warnings about it silenced

namespace peak {

inline constexpr int64_t kIters = 20'000'000;

// Leaf 7 feature bits (sub-leaf 0: ECX bit 11 AVX512-VNNI, EDX bit 23 AVX512-FP16; sub-leaf 1: EAX bit 5
// AVX512-BF16). All of them need AVX-512 (and the OS's zmm state, which host_isa() checks).
inline bool cpu_has(const char* what) {
#if defined(__x86_64__)
    if (pix2struct::host_isa() != pix2struct::CpuIsa::Avx512) return false;
    unsigned a = 0, b = 0, c = 0, d = 0;
    const std::string w = what;
    if (w == "avx512vnni") return __get_cpuid_count(7, 0, &a, &b, &c, &d) && (c >> 11 & 1);
    if (w == "avx512fp16") return __get_cpuid_count(7, 0, &a, &b, &c, &d) && (d >> 23 & 1);
    if (w == "avx512bf16") return __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a >> 5 & 1);
#endif
    (void)what;
    return false;
}

#ifdef PIX2STRUCT_X86_KERNELS
PIX2STRUCT_AVX512 inline double fma_f32_zmm(int64_t n, float* sink) {
    __m512 acc[12];
    for (int i = 0; i < 12; ++i) acc[i] = _mm512_set1_ps(float(i));
    const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
    for (int64_t it = 0; it < n; ++it)
        for (int i = 0; i < 12; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
    for (int i = 1; i < 12; ++i) acc[0] = _mm512_add_ps(acc[0], acc[i]);
    *sink = _mm512_reduce_add_ps(acc[0]);
    return double(n) * 12 * 16 * 2;
}

PIX2STRUCT_AVX2 inline double fma_f32_ymm(int64_t n, float* sink) {
    __m256 acc[12];
    for (int i = 0; i < 12; ++i) acc[i] = _mm256_set1_ps(float(i));
    const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
    for (int64_t it = 0; it < n; ++it)
        for (int i = 0; i < 12; ++i) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
    for (int i = 1; i < 12; ++i) acc[0] = _mm256_add_ps(acc[0], acc[i]);
    *sink = _mm256_cvtss_f32(acc[0]);
    return double(n) * 12 * 8 * 2;
}

__attribute__((target("avx512f,avx512bf16"))) inline double dp_bf16_zmm(int64_t n, float* sink) {
    __m512 acc[12];
    for (int i = 0; i < 12; ++i) acc[i] = _mm512_set1_ps(float(i));
    const __m512bh a = (__m512bh)_mm512_set1_epi16(0x3F80), b = (__m512bh)_mm512_set1_epi16(0x3400);  // 1, ~1.2e-7
    for (int64_t it = 0; it < n; ++it)
        for (int i = 0; i < 12; ++i) acc[i] = _mm512_dpbf16_ps(acc[i], a, b);
    for (int i = 1; i < 12; ++i) acc[0] = _mm512_add_ps(acc[0], acc[i]);
    *sink = _mm512_reduce_add_ps(acc[0]);
    return double(n) * 12 * 16 * 4;
}

// clang 14 has no _Float16 on x86 without -mavx512fp16 for the whole file (a target attribute is not enough):
// there the fp16 loop is left out of the table.
#if !defined(__clang__) || __clang_major__ >= 15
#define PIX2STRUCT_PEAK_FP16 1
__attribute__((target("avx512f,avx512bw,avx512vl,avx512fp16"))) inline double fma_f16_zmm(int64_t n, float* sink) {
    __m512h acc[12];
    for (int i = 0; i < 12; ++i) acc[i] = _mm512_set1_ph(_Float16(i));
    const __m512h a = _mm512_set1_ph(_Float16(0.999f)), b = _mm512_set1_ph(_Float16(0.0001f));
    for (int64_t it = 0; it < n; ++it)
        for (int i = 0; i < 12; ++i) acc[i] = _mm512_fmadd_ph(acc[i], a, b);
    for (int i = 1; i < 12; ++i) acc[0] = _mm512_add_ph(acc[0], acc[i]);
    *sink = float(_mm512_reduce_add_ph(acc[0]));
    return double(n) * 12 * 32 * 2;
}
#endif

__attribute__((target("avx512f,avx512vnni"))) inline double dp_u8s8_zmm(int64_t n, float* sink) {
    __m512i acc[12];
    for (int i = 0; i < 12; ++i) acc[i] = _mm512_set1_epi32(i);
    const __m512i a = _mm512_set1_epi8(3), b = _mm512_set1_epi8(-2);
    for (int64_t it = 0; it < n; ++it)
        for (int i = 0; i < 12; ++i) acc[i] = _mm512_dpbusd_epi32(acc[i], a, b);
    for (int i = 1; i < 12; ++i) acc[0] = _mm512_add_epi32(acc[0], acc[i]);
    *sink = float(_mm512_reduce_add_epi32(acc[0]));
    return double(n) * 12 * 16 * 8;
}

// The AVX2 int8 kernels' pair: vpmaddwd (bytes widened to 16 bits; two products summed per int32 lane) and the
// vpaddd that accumulates it.
PIX2STRUCT_AVX2 inline double madd_s16_ymm(int64_t n, float* sink) {
    __m256i acc[12];
    for (int i = 0; i < 12; ++i) acc[i] = _mm256_set1_epi32(i);
    const __m256i a = _mm256_set1_epi16(3), b = _mm256_set1_epi16(-2);
    for (int64_t it = 0; it < n; ++it)
        for (int i = 0; i < 12; ++i) acc[i] = _mm256_add_epi32(acc[i], _mm256_madd_epi16(a, b));
    for (int i = 1; i < 12; ++i) acc[0] = _mm256_add_epi32(acc[0], acc[i]);
    *sink = float(_mm256_extract_epi32(acc[0], 0));
    return double(n) * 12 * 8 * 4;
}
#endif

struct Loop {
    std::string name, unit;
    bool available;
    std::function<double(int64_t, float*)> run;  // returns the operations done
};

// Operations per second (G) of `loop` on `threads` threads at once, best of 3.
inline double rate(const Loop& loop, int threads) {
    double best = 0;
    for (int round = 0; round < 3; ++round) {
        std::vector<float> sinks(static_cast<size_t>(threads));
        std::vector<double> ops(static_cast<size_t>(threads));
        std::vector<std::thread> pool;
        const auto t = std::chrono::steady_clock::now();
        for (int i = 0; i < threads; ++i)
            pool.emplace_back([&, i] { ops[size_t(i)] = loop.run(kIters, &sinks[size_t(i)]); });
        for (auto& th : pool) th.join();
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
        double total = 0;
        for (double o : ops) total += o;
        best = std::max(best, total / s / 1e9);
    }
    return best;
}


#ifdef PIX2STRUCT_X86_KERNELS
// Every loop, each marked available or not on this CPU.
inline std::vector<Loop> loops() {
    const bool avx512 = pix2struct::host_isa() == pix2struct::CpuIsa::Avx512;
    const bool avx2 = pix2struct::host_isa() != pix2struct::CpuIsa::Generic;
    return {{"fp32 FMA, AVX-512 (vfmadd231ps zmm)", "GFLOP/s", avx512, fma_f32_zmm},
            {"fp32 FMA, AVX2 (vfmadd231ps ymm)", "GFLOP/s", avx2, fma_f32_ymm},
            {"bf16 dot, AVX512-BF16 (vdpbf16ps zmm)", "GFLOP/s", cpu_has("avx512bf16"), dp_bf16_zmm},
#ifdef PIX2STRUCT_PEAK_FP16
            {"fp16 FMA, AVX512-FP16 (vfmadd231ph zmm)", "GFLOP/s", cpu_has("avx512fp16"), fma_f16_zmm},
#endif
            {"int8 dot, AVX512-VNNI (vpdpbusd zmm)", "GOP/s", cpu_has("avx512vnni"), dp_u8s8_zmm},
            {"int8 dot, AVX2 (vpmaddwd + vpaddd ymm)", "GOP/s", avx2, madd_s16_ymm}};
}
#else
inline std::vector<Loop> loops() { return {}; }
#endif

// The rate of the loop whose name begins with `name` on `threads` threads (0 where this CPU lacks it).
inline double rate_of(const std::string& name, int threads) {
    for (const Loop& loop : loops())
        if (loop.name.compare(0, name.size(), name) == 0) return loop.available ? rate(loop, threads) : 0;
    return 0;
}

// GFLOP/s of fp32 FMAs with the widest SIMD of `isa` on `threads` threads (0 without AVX2).
inline double fp32_fma_gflops(pix2struct::CpuIsa isa, int threads) {
    if (isa == pix2struct::CpuIsa::Generic) return 0;
    return rate_of(isa == pix2struct::CpuIsa::Avx512 ? "fp32 FMA, AVX-512" : "fp32 FMA, AVX2", threads);
}

// GFLOP/s of bf16 dot products (vdpbf16ps) on `threads` threads (0 unless the bf16 mode uses them).
inline double bf16_dot_gflops(pix2struct::Bf16Isa isa, int threads) {
    return isa == pix2struct::Bf16Isa::Avx512Bf16 ? rate_of("bf16 dot, AVX512-BF16", threads) : 0;
}

// GOP/s of the int8 kernels' instruction (vpdpbusd, or AVX2's vpmaddwd + vpaddd) on `threads` threads (0 for
// the plain loops).
inline double int8_dot_gops(pix2struct::Int8Isa isa, int threads) {
    switch (isa) {
        case pix2struct::Int8Isa::Avx512Vnni: return rate_of("int8 dot, AVX512-VNNI", threads);
        case pix2struct::Int8Isa::Avx2: return rate_of("int8 dot, AVX2", threads);
        default: return 0;
    }
}

}  // namespace peak
