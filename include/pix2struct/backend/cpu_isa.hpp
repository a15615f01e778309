// pix2struct/backend/cpu_isa.hpp — which SIMD kernels this CPU runs, chosen at run time (cpuid).
//
// Kernels of our own are compiled for each instruction set with a target attribute (PIX2STRUCT_AVX512 /
// PIX2STRUCT_AVX2 below), whatever flags the file is compiled with, and CpuBackend calls the widest one the
// CPU and the OS support (host_isa()). A backend may be asked for a narrower set (tests run every variant).
#pragma once

namespace pix2struct {

enum class CpuIsa { Generic = 0, Avx2 = 1, Avx512 = 2 };  // AVX2 means AVX2 + FMA; AVX-512 means F, BW, DQ, VL

// The int8 kernels' sets (backend/cpu_int8.hpp): AVX-512 VNNI (vpdpbusd), AVX2 (bytes widened to 16 bits,
// vpmaddwd), or plain loops.
enum class Int8Isa { Generic = 0, Avx2 = 1, Avx512Vnni = 2 };

// How the bf16 mode multiplies: fp32 FMA on its bf16 values (the fp32 kernels), or AVX512-BF16 vdpbf16ps
// (backend/cpu_bf16.hpp), chosen where it is the faster of the two.
enum class Bf16Isa { Fp32 = 0, Avx512Bf16 = 1 };

inline const char* isa_name(CpuIsa isa) {
    switch (isa) {
        case CpuIsa::Avx512: return "AVX-512";
        case CpuIsa::Avx2: return "AVX2";
        default: return "generic";
    }
}

inline const char* isa_name(Int8Isa isa) {
    switch (isa) {
        case Int8Isa::Avx512Vnni: return "AVX-512 VNNI";
        case Int8Isa::Avx2: return "AVX2";
        default: return "generic";
    }
}
inline const char* isa_name(Bf16Isa isa) { return isa == Bf16Isa::Avx512Bf16 ? "AVX512-BF16" : "fp32 FMA"; }

// The widest set this CPU and OS run (libgcc's cpuid check includes the OS's XSAVE support of the registers).
inline CpuIsa host_isa() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    static const CpuIsa isa = [] {
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
            __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
            return CpuIsa::Avx512;
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return CpuIsa::Avx2;
        return CpuIsa::Generic;
    }();
    return isa;
#else
    return CpuIsa::Generic;
#endif
}

// The int8 set this CPU and OS run.
inline Int8Isa host_int8_isa() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    static const Int8Isa isa = host_isa() == CpuIsa::Avx512 && __builtin_cpu_supports("avx512vnni") ? Int8Isa::Avx512Vnni
                               : host_isa() != CpuIsa::Generic                                      ? Int8Isa::Avx2
                                                                                                    : Int8Isa::Generic;
    return isa;
#else
    return Int8Isa::Generic;
#endif
}

// The bf16 products this CPU runs fastest: vdpbf16ps runs at twice fp32 FMA's FLOP rate on AMD (Zen 4) and at
// half of it on Intel (Sapphire Rapids; bench_peak, bench/RESULTS.md), so it is chosen on AMD CPUs that have it.
inline Bf16Isa host_bf16_isa() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    static const Bf16Isa isa = host_isa() == CpuIsa::Avx512 && __builtin_cpu_supports("avx512bf16") &&
                                       __builtin_cpu_is("amd")
                                   ? Bf16Isa::Avx512Bf16
                                   : Bf16Isa::Fp32;
    return isa;
#else
    return Bf16Isa::Fp32;
#endif
}

}  // namespace pix2struct

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define PIX2STRUCT_X86_KERNELS 1
#define PIX2STRUCT_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")))
#define PIX2STRUCT_AVX2 __attribute__((target("avx2,fma")))
#define PIX2STRUCT_AVX512_VNNI __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma")))
#define PIX2STRUCT_AVX512_BF16 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512bf16,avx2,fma")))
#endif
