// kernels/rms_norm.cuh — T5/Pix2Struct RMSNorm: y = w ⊙ x / sqrt(mean(x²) + eps).
//
// Shapes: x [rows, cols] (row stride cols), w [cols] fp32, y [rows, cols]. No mean subtraction, no bias;
// the statistics are fp32 whatever the element type (the reference upcasts to fp32 for the variance).
// Types (TIn -> TOut): fp32 -> fp32, bf16 -> bf16, fp32 -> bf16 (an fp32 residual stream feeding bf16
// matmuls), bf16 -> fp32.
// Launch: one warp per row, 4 warps per block, grid ⌈rows/4⌉; 8 elements per step (16-byte loads when
// cols % 8 == 0 and the pointers are 16-byte aligned, scalar otherwise); the second pass re-reads the
// row from L1/L2.
// Measured (H100, pending a GPU session): see bench/RESULTS.md "GPU kernels".
#pragma once

#include "pix2struct/kernels/common.cuh"

namespace pix2struct::kernels {

namespace detail {

inline constexpr int kNormWarps = 4;

// 8 consecutive elements as floats (one 16-byte load of bf16, two of fp32), and back.
template <class T>
__device__ __forceinline__ void load8(const T* p, float (&v)[8]) {
#pragma unroll
    for (int h = 0; h < 8 / Pack<T>::kSize; ++h) {
        const Pack<T> pk = Pack<T>::load(p + h * Pack<T>::kSize);
#pragma unroll
        for (int e = 0; e < Pack<T>::kSize; ++e) v[h * Pack<T>::kSize + e] = pk.get(e);
    }
}
template <class T>
__device__ __forceinline__ void store8(T* p, const float (&v)[8]) {
#pragma unroll
    for (int h = 0; h < 8 / Pack<T>::kSize; ++h) {
        Pack<T> pk;
#pragma unroll
        for (int e = 0; e < Pack<T>::kSize; ++e) pk.set(e, v[h * Pack<T>::kSize + e]);
        pk.store(p + h * Pack<T>::kSize);
    }
}

// =============================================================================================
// Kernel
// =============================================================================================
template <class TIn, class TOut>
__global__ void __launch_bounds__(32 * kNormWarps)
    rms_norm_kernel(const TIn* x, const float* w, TOut* y, int64_t rows, int cols, float eps) {
    const int lane = threadIdx.x % 32;
    const int64_t row = int64_t(blockIdx.x) * kNormWarps + threadIdx.x / 32;
    if (row >= rows) return;
    const TIn* xr = x + row * cols;
    TOut* yr = y + row * cols;
    const bool vec = cols % 8 == 0 && aligned16(x) && aligned16(y) && aligned16(w);
    float ss = 0.f;
    if (vec) {
        for (int c = lane * 8; c < cols; c += 32 * 8) {
            float v[8];
            load8(xr + c, v);
#pragma unroll
            for (int e = 0; e < 8; ++e) ss = fmaf(v[e], v[e], ss);
        }
    } else {
        for (int c = lane; c < cols; c += 32) {
            const float v = to_float(xr[c]);
            ss = fmaf(v, v, ss);
        }
    }
    const float inv = rsqrtf(warp_sum(ss) / float(cols) + eps);
    if (vec) {
        for (int c = lane * 8; c < cols; c += 32 * 8) {
            float v[8];
            load8(xr + c, v);
            const float4 w0 = *reinterpret_cast<const float4*>(w + c), w1 = *reinterpret_cast<const float4*>(w + c + 4);
            const float ww[8] = {w0.x, w0.y, w0.z, w0.w, w1.x, w1.y, w1.z, w1.w};
#pragma unroll
            for (int e = 0; e < 8; ++e) v[e] = ww[e] * (v[e] * inv);
            store8(yr + c, v);
        }
    } else {
        for (int c = lane; c < cols; c += 32) yr[c] = from_float<TOut>(w[c] * (to_float(xr[c]) * inv));
    }
}

}  // namespace detail

// =============================================================================================
// Launcher
// =============================================================================================
template <class TIn, class TOut>
void rms_norm(const TIn* x, const float* weight, TOut* y, int64_t rows, int64_t cols, float eps,
              cudaStream_t stream = nullptr) {
    static_assert(detail::kIsElement<TIn> && detail::kIsElement<TOut>, "rms_norm: element types are float and bf16");
    if (rows < 0 || cols <= 0 || cols > (int64_t(1) << 30))
        pix2struct::detail::fail("rms_norm: shape [", rows, ", ", cols, "] is not valid");
    if (rows == 0) return;
    if (!x || !weight || !y) pix2struct::detail::fail("rms_norm: x, weight and y must all be given");
    detail::rms_norm_kernel<TIn, TOut>
        <<<unsigned(ceil_div(rows, detail::kNormWarps)), 32 * detail::kNormWarps, 0, stream>>>(x, weight, y, rows,
                                                                                               int(cols), eps);
    check_launch("rms_norm");
}

}  // namespace pix2struct::kernels
