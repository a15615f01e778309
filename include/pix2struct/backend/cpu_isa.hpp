// pix2struct/backend/cpu_isa.hpp — which SIMD kernels this CPU runs, chosen at run time (cpuid).
//
// Kernels of our own are compiled for each instruction set with a target attribute (PIX2STRUCT_AVX512 /
// PIX2STRUCT_AVX2 below), whatever flags the file is compiled with, and CpuBackend calls the widest one the
// CPU and the OS support (host_isa()). A backend may be asked for a narrower set (tests run every variant).
#pragma once

namespace pix2struct {

enum class CpuIsa { Generic = 0, Avx2 = 1, Avx512 = 2 };  // AVX2 means AVX2 + FMA; AVX-512 means F, BW, DQ, VL

// The int8 kernels' sets (backend/cpu_int8.hpp): AVX-512 VNNI (vpdpbusd), or plain loops.
enum class Int8Isa { Generic = 0, Avx512Vnni = 1 };

inline const char* isa_name(CpuIsa isa) {
    switch (isa) {
        case CpuIsa::Avx512: return "AVX-512";
        case CpuIsa::Avx2: return "AVX2";
        default: return "generic";
    }
}

inline const char* isa_name(Int8Isa isa) { return isa == Int8Isa::Avx512Vnni ? "AVX-512 VNNI" : "generic"; }

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
                                                                                                    : Int8Isa::Generic;
    return isa;
#else
    return Int8Isa::Generic;
#endif
}

}  // namespace pix2struct

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define PIX2STRUCT_X86_KERNELS 1
#define PIX2STRUCT_AVX512 __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")))
#define PIX2STRUCT_AVX2 __attribute__((target("avx2,fma")))
#define PIX2STRUCT_AVX512_VNNI __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni,avx2,fma")))
#endif
