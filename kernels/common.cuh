// kernels/common.cuh — the small named primitives every kernel file is written with.
//
//   PIX2STRUCT_CUDA_CHECK(call)   every CUDA runtime call goes through it: a failure throws
//                                 pix2struct::Error naming the call, the file:line and CUDA's message.
//   check_launch("kernel")        after each launch (cudaGetLastError).
//   warp_sum / warp_max           butterfly reductions over a warp (or a group of `width` lanes).
//   Pack<T>                       16 bytes of T (8 bf16 or 4 fp32): one vector load or store.
//   to_float / from_float<T>      bf16 <-> fp32 (round to nearest even).
//   ldmatrix_x4 / _x4_trans       8x8 b16 tiles from shared memory into mma fragments.
//   mma_bf16_16816 / mma_tf32_1688  mma.sync tensor-core instructions, fp32 accumulate.
//   cp_async_16 / commit / wait   asynchronous global->shared copies with zero fill past the edge.
//   gelu_new                      the tanh GELU of the reference ("gelu_new").
//
// Namespaces: launchers (the API of kernels/) in pix2struct::kernels; kernels and device helpers in
// pix2struct::kernels::detail.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "pix2struct/kernels/geometry.hpp"
#include "pix2struct/error.hpp"

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
#error "pix2struct kernels need sm_80 or newer (cp.async, bf16 mma.sync): build for the GPU, e.g. CMAKE_CUDA_ARCHITECTURES=90a"
#endif

namespace pix2struct::kernels {

using bf16 = __nv_bfloat16;

namespace detail {
inline void cuda_check(cudaError_t err, const char* call, const char* file, int line) {
    if (err != cudaSuccess)
        pix2struct::detail::fail("CUDA call '", call, "' failed at ", file, ":", line, ": ",
                                 cudaGetErrorName(err), " (", cudaGetErrorString(err), ")");
}
}  // namespace detail

#define PIX2STRUCT_CUDA_CHECK(call) ::pix2struct::kernels::detail::cuda_check((call), #call, __FILE__, __LINE__)

// After a launch: reports a bad configuration (or an earlier asynchronous fault) by the kernel's name.
inline void check_launch(const char* kernel) {
    const cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess)
        pix2struct::detail::fail("CUDA kernel '", kernel, "' failed to launch: ", cudaGetErrorName(err), " (",
                                 cudaGetErrorString(err), ")");
}

// Multiprocessor count of the device current at the first call (for the launch plans); read once, so
// that launches pay no driver query (the library drives one GPU).
inline int sm_count() {
    static const int count = [] {
        int device = 0, n = 0;
        PIX2STRUCT_CUDA_CHECK(cudaGetDevice(&device));
        PIX2STRUCT_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device));
        return n;
    }();
    return count;
}

__host__ __device__ inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

namespace detail {

// ---------------------------------------------------------------------------------------------
// Element types
// ---------------------------------------------------------------------------------------------
template <class T>
inline constexpr bool kIsBf16 = std::is_same_v<T, bf16>;
template <class T>
inline constexpr bool kIsElement = std::is_same_v<T, float> || kIsBf16<T>;

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(bf16 x) { return __bfloat162float(x); }
template <class T>
__device__ __forceinline__ T from_float(float x) {
    if constexpr (kIsBf16<T>) return __float2bfloat16_rn(x);
    else return x;
}

// 16 bytes of T: the unit of every vector load and store.
template <class T>
struct alignas(16) Pack {
    static constexpr int kSize = 16 / sizeof(T);
    T v[kSize];
    __device__ __forceinline__ static Pack load(const T* p) { return *reinterpret_cast<const Pack*>(p); }
    __device__ __forceinline__ static Pack load_global_nc(const T* p) {  // read-only path, streams
        Pack r;
        *reinterpret_cast<int4*>(&r) = __ldg(reinterpret_cast<const int4*>(p));
        return r;
    }
    __device__ __forceinline__ void store(T* p) const { *reinterpret_cast<Pack*>(p) = *this; }
    __device__ __forceinline__ float get(int i) const { return to_float(v[i]); }
    __device__ __forceinline__ void set(int i, float x) { v[i] = from_float<T>(x); }
};

// ---------------------------------------------------------------------------------------------
// Warp reductions
// ---------------------------------------------------------------------------------------------
template <int kWidth = 32>
__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
    for (int o = kWidth / 2; o > 0; o /= 2) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}
template <int kWidth = 32>
__device__ __forceinline__ float warp_max(float x) {
#pragma unroll
    for (int o = kWidth / 2; o > 0; o /= 2) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
    return x;
}

// Sum over a block of kThreads (a multiple of 32); `scratch` holds kThreads/32 floats. Every thread
// gets the total.
template <int kThreads>
__device__ __forceinline__ float block_sum(float x, float* scratch) {
    constexpr int kWarps = kThreads / 32;
    x = warp_sum(x);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    __syncthreads();  // scratch may still be read from a previous call
    if (lane == 0) scratch[warp] = x;
    __syncthreads();
    float total = 0.f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) total += scratch[w];
    return total;
}

// ---------------------------------------------------------------------------------------------
// Math
// ---------------------------------------------------------------------------------------------
// gelu_new(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))  (reference NewGELUActivation)
__device__ __forceinline__ float gelu_new(float x) {
    const float kAlpha = 0.7978845608028654f;  // sqrt(2/pi)
    return 0.5f * x * (1.f + tanhf(kAlpha * (x + 0.044715f * x * x * x)));
}

// ---------------------------------------------------------------------------------------------
// cp.async: 16-byte global->shared copies; bytes past `src_bytes` (0..16) are filled with zeros, so
// tiles that hang over a ragged edge load zeros instead of reading out of bounds.
// ---------------------------------------------------------------------------------------------
__device__ __forceinline__ uint32_t smem_addr(const void* p) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
__device__ __forceinline__ void cp_async_16(void* smem, const void* global, int src_bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(smem)), "l"(global),
                 "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending));
}

// ---------------------------------------------------------------------------------------------
// Tensor-core fragments (PTX ISA "warp-level matrix fragments", g = lane/4, t = lane%4)
//   m16n8k16 bf16: A a0..a3 = A[g|g+8][2t..2t+1 | +8], B b0,b1 = B[k=2t..2t+1 | +8][n=g],
//                  C c0,c1 = C[g][2t..2t+1], c2,c3 = C[g+8][2t..2t+1]
//   m16n8k8 tf32:  A a0..a3 = A[g][t], A[g+8][t], A[g][t+4], A[g+8][t+4]; B b0,b1 = B[k=t|t+4][n=g]
// ---------------------------------------------------------------------------------------------
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* smem) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(smem)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* smem) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(smem)));
}
// D = A·B + D, bf16 inputs, fp32 accumulators.
__device__ __forceinline__ void mma_bf16_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ uint32_t to_tf32(float x) {
    uint32_t r;
    asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(x));
    return r;
}
// D = A·B + D, tf32 inputs (10-bit mantissa), fp32 accumulators.
__device__ __forceinline__ void mma_tf32_1688(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
// Two floats as one bf16x2 register (lo in the low half), the A-fragment form of an accumulator pair.
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&v);
}

}  // namespace detail
}  // namespace pix2struct::kernels
