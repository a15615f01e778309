// kernels/matmul.cuh — Y = X · Wᵀ (+ epilogue), the linear layers of Pix2Struct.
//
// Shapes: X [M, K] row-major (row stride ldx), W [N, K] row-major exactly as stored in the checkpoint
// (torch nn.Linear [out, in]), Y [M, N] row-major with row stride ldy (e.g. rows of a K/V cache).
// fp32 accumulation everywhere.
// Epilogues, fused into the store (each optional):
//   bias      Y += bias[n]                              (fp32 [N]; patch_projection)
//   residual  Y += R[m, n]                              (R [M, N] of Y's type, row stride ldy; may alias Y)
//   gated     Y = gelu_new(X·W0ᵀ) ⊙ (X·W1ᵀ)             (w_up = W1 given; the T5 gated-GELU MLP: each block
//             computes matching tiles of W0 and W1, so the [M, d_ff] products never reach memory)
// Types (TIn -> TOut): bf16 -> bf16, bf16 -> fp32, fp32 -> fp32.
//
// Kernels and launch geometry (kernels/geometry.hpp plan_matmul chooses):
//   matmul_tc_kernel    tensor cores, mma.sync (bf16 m16n8k16 via ldmatrix; fp32 inputs as TF32 m16n8k8
//                       when Fp32Mode::TF32), cp.async 4-stage pipeline, K slices of 64 bytes.
//                       Large tile 128x128 (8 warps, 64x32 each) or 64x64 (4 warps, 32x32 each), whichever
//                       leaves the busiest SM the least work (wave quantisation). Needs 16-byte aligned X, W
//                       and K·sizeof(TIn), ldx·sizeof(TIn) multiples of 16 bytes.
//   matmul_simt_kernel  exact fp32 FMA, 64x64 tile, 256 threads x 4x4 outputs; fp32 default, and the
//                       fallback for unaligned or ragged-K inputs of any type.
//   gemv_kernel         M <= 4 (a decode step): one warp per output column, 16-byte streaming loads of W.
// Ragged M, N, K: tiles that hang over an edge load zeros (cp.async zero fill) and skip the store.
// Measured (H100, pending a GPU session): see bench/RESULTS.md "GPU kernels".
#pragma once

#include "pix2struct/kernels/common.cuh"

namespace pix2struct::kernels {

template <class TIn, class TOut>
struct MatmulArgs {
    const TIn* x = nullptr;       // [M, K], row stride ldx
    const TIn* w = nullptr;       // [N, K] (W0 when gated)
    const TIn* w_up = nullptr;    // [N, K] W1: non-null selects the gated-GELU epilogue
    const float* bias = nullptr;  // [N] or null (not with gated)
    const TOut* residual = nullptr;  // [M, N] or null
    TOut* y = nullptr;            // [M, N], row stride ldy
    int64_t M = 0, N = 0, K = 0;
    int64_t ldx = 0;              // 0: K
    int64_t ldy = 0;              // 0: N (also the residual's row stride)
};

// The supported dtype combinations, in one list.
template <class TIn, class TOut>
inline constexpr bool kMatmulSupported = (std::is_same_v<TIn, bf16> && std::is_same_v<TOut, bf16>) ||
                                         (std::is_same_v<TIn, bf16> && std::is_same_v<TOut, float>) ||
                                         (std::is_same_v<TIn, float> && std::is_same_v<TOut, float>);

namespace detail {

// =============================================================================================
// Kernels
// =============================================================================================

// The epilogue of one output element; `h` is X·W(0)ᵀ, `u` is X·W1ᵀ (gated only).
template <class TIn, class TOut>
__device__ __forceinline__ float epilogue_value(const MatmulArgs<TIn, TOut>& a, int64_t m, int64_t n, float h,
                                                float u) {
    float v = a.w_up ? gelu_new(h) * u : h;
    if (a.bias) v += a.bias[n];
    if (a.residual) v += to_float(a.residual[m * a.ldy + n]);
    return v;
}
template <class TIn, class TOut>
__device__ __forceinline__ void store_one(const MatmulArgs<TIn, TOut>& a, int64_t m, int64_t n, float h, float u) {
    if (m < a.M && n < a.N) a.y[m * a.ldy + n] = from_float<TOut>(epilogue_value(a, m, n, h, u));
}
// Two adjacent columns (n, n+1): one 4- or 8-byte store when both are inside and aligned.
template <class TIn, class TOut>
__device__ __forceinline__ void store_pair(const MatmulArgs<TIn, TOut>& a, int64_t m, int64_t n, float h0, float u0,
                                           float h1, float u1) {
    if (m >= a.M) return;
    if (n + 1 < a.N && (a.ldy % 2) == 0 && (reinterpret_cast<uintptr_t>(a.y) % (2 * sizeof(TOut))) == 0) {
        const float v0 = epilogue_value(a, m, n, h0, u0), v1 = epilogue_value(a, m, n + 1, h1, u1);
        if constexpr (kIsBf16<TOut>)
            *reinterpret_cast<__nv_bfloat162*>(a.y + m * a.ldy + n) = __floats2bfloat162_rn(v0, v1);
        else
            *reinterpret_cast<float2*>(a.y + m * a.ldy + n) = make_float2(v0, v1);
    } else {
        store_one(a, m, n, h0, u0);
        store_one(a, m, n + 1, h1, u1);
    }
}

// ---------------------------------------------------------------------------------------------
// Tensor cores. Shared memory per stage: A [BM][80 B], B [BN][80 B] (64 bytes of K + 16 padding).
// B rows of a gated block interleave W0 and W1 per warp: warp column wn owns rows
// [wn·WN, wn·WN + WN/2) from W0 and the next WN/2 from W1, for the same output columns, so the
// accumulators of n8-tile j and j + NT/2 of a thread belong to the same (m, n).
// ---------------------------------------------------------------------------------------------
template <class TIn, class TOut, int BM, int BN, int WARPS_M, int WARPS_N, int STAGES>
__global__ void __launch_bounds__(WARPS_M* WARPS_N * 32)
    matmul_tc_kernel(const MatmulArgs<TIn, TOut> a) {
    constexpr int kThreads = WARPS_M * WARPS_N * 32;
    constexpr int kRow = kGemmRowBytes;                      // smem row stride, bytes
    constexpr int kElems = 16 / int(sizeof(TIn));            // elements per 16-byte chunk
    constexpr int kBK = kGemmSliceBytes / int(sizeof(TIn));  // K per stage: 32 bf16 or 16 fp32
    constexpr int kChunksPerRow = kGemmSliceBytes / 16;      // 4
    constexpr int WM = BM / WARPS_M, WN = BN / WARPS_N;
    constexpr int MT = WM / 16, NT = WN / 8;
    constexpr int kAChunks = BM * kChunksPerRow / kThreads, kBChunks = BN * kChunksPerRow / kThreads;
    constexpr int kStageBytes = (BM + BN) * kRow;
    static_assert(kAChunks * kThreads == BM * kChunksPerRow && kBChunks * kThreads == BN * kChunksPerRow,
                  "matmul_tc_kernel: the tile's 16-byte chunks must divide evenly among the threads");
    static_assert(MT >= 1 && NT % 2 == 0, "matmul_tc_kernel: a warp tile needs 16 rows and an even number of n8 tiles");

    extern __shared__ __align__(128) unsigned char smem[];
    const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
    const int wm = warp / WARPS_N, wn = warp % WARPS_N;
    const bool gated = a.w_up != nullptr;
    const int64_t ldx = a.ldx;
    const int64_t m0 = int64_t(blockIdx.y) * BM;
    const int64_t n0 = int64_t(blockIdx.x) * (gated ? BN / 2 : BN);

    // Each thread's chunks: shared offset, global row start (nullptr: row outside the matrix), column.
    const TIn* a_src[kAChunks];
    int a_dst[kAChunks], a_col[kAChunks];
#pragma unroll
    for (int i = 0; i < kAChunks; ++i) {
        const int c = tid + i * kThreads, r = c / kChunksPerRow, j = c % kChunksPerRow;
        a_dst[i] = r * kRow + j * 16;
        a_col[i] = j * kElems;
        a_src[i] = (m0 + r < a.M) ? a.x + (m0 + r) * ldx : nullptr;
    }
    const TIn* b_src[kBChunks];
    int b_dst[kBChunks], b_col[kBChunks];
#pragma unroll
    for (int i = 0; i < kBChunks; ++i) {
        const int c = tid + i * kThreads, r = c / kChunksPerRow, j = c % kChunksPerRow;
        b_dst[i] = BM * kRow + r * kRow + j * 16;
        b_col[i] = j * kElems;
        int64_t n;
        const TIn* w = a.w;
        if (gated) {
            const int in_warp = r % WN, half = WN / 2;
            n = n0 + (r / WN) * half + in_warp % half;
            if (in_warp >= half) w = a.w_up;
        } else {
            n = n0 + r;
        }
        b_src[i] = (n < a.N) ? w + n * a.K : nullptr;
    }
    auto load_stage = [&](int stage, int64_t k0) {
        unsigned char* s = smem + stage * kStageBytes;
#pragma unroll
        for (int i = 0; i < kAChunks; ++i) {
            const int64_t k = k0 + a_col[i];
            const bool ok = a_src[i] && k < a.K;  // K·sizeof(TIn) % 16 == 0: a chunk is all in or all out
            cp_async_16(s + a_dst[i], ok ? a_src[i] + k : a.x, ok ? 16 : 0);
        }
#pragma unroll
        for (int i = 0; i < kBChunks; ++i) {
            const int64_t k = k0 + b_col[i];
            const bool ok = b_src[i] && k < a.K;
            cp_async_16(s + b_dst[i], ok ? b_src[i] + k : a.w, ok ? 16 : 0);
        }
    };

    float acc[MT][NT][4];
#pragma unroll
    for (int i = 0; i < MT; ++i)
#pragma unroll
        for (int j = 0; j < NT; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.f;

    const int64_t ktiles = ceil_div(a.K, kBK);
#pragma unroll
    for (int s = 0; s < STAGES - 1; ++s) {
        if (s < ktiles) load_stage(s, int64_t(s) * kBK);
        cp_async_commit();
    }
    const int g = lane / 4, t = lane % 4;
    for (int64_t kt = 0; kt < ktiles; ++kt) {
        cp_async_wait<STAGES - 2>();
        __syncthreads();  // stage kt landed for all threads; stage kt-1 is free to refill
        const int64_t next = kt + STAGES - 1;
        if (next < ktiles) load_stage(int(next % STAGES), next * kBK);
        cp_async_commit();

        const unsigned char* sA = smem + int(kt % STAGES) * kStageBytes + (wm * WM) * kRow;
        const unsigned char* sB = smem + int(kt % STAGES) * kStageBytes + BM * kRow + (wn * WN) * kRow;
        if constexpr (kIsBf16<TIn>) {
#pragma unroll
            for (int ks = 0; ks < kBK / 16; ++ks) {
                uint32_t af[MT][4], bfr[NT][2];
#pragma unroll
                for (int i = 0; i < MT; ++i)
                    ldmatrix_x4(af[i], sA + (i * 16 + lane % 16) * kRow + (ks * 16 + (lane / 16) * 8) * 2);
#pragma unroll
                for (int j = 0; j < NT / 2; ++j) {
                    uint32_t r[4];
                    ldmatrix_x4(r, sB + (j * 16 + (lane & 7) + ((lane >> 4) << 3)) * kRow +
                                       (ks * 16 + ((lane >> 3) & 1) * 8) * 2);
                    bfr[2 * j][0] = r[0], bfr[2 * j][1] = r[1], bfr[2 * j + 1][0] = r[2], bfr[2 * j + 1][1] = r[3];
                }
#pragma unroll
                for (int i = 0; i < MT; ++i)
#pragma unroll
                    for (int j = 0; j < NT; ++j) mma_bf16_16816(acc[i][j], af[i], bfr[j][0], bfr[j][1]);
            }
        } else {  // fp32 inputs through TF32
#pragma unroll
            for (int ks = 0; ks < kBK / 8; ++ks) {
                uint32_t af[MT][4], bfr[NT][2];
#pragma unroll
                for (int i = 0; i < MT; ++i) {
                    const float* p = reinterpret_cast<const float*>(sA + (i * 16 + g) * kRow) + ks * 8 + t;
                    const float* q = reinterpret_cast<const float*>(sA + (i * 16 + g + 8) * kRow) + ks * 8 + t;
                    af[i][0] = to_tf32(p[0]), af[i][1] = to_tf32(q[0]), af[i][2] = to_tf32(p[4]),
                    af[i][3] = to_tf32(q[4]);
                }
#pragma unroll
                for (int j = 0; j < NT; ++j) {
                    const float* p = reinterpret_cast<const float*>(sB + (j * 8 + g) * kRow) + ks * 8 + t;
                    bfr[j][0] = to_tf32(p[0]), bfr[j][1] = to_tf32(p[4]);
                }
#pragma unroll
                for (int i = 0; i < MT; ++i)
#pragma unroll
                    for (int j = 0; j < NT; ++j) mma_tf32_1688(acc[i][j], af[i], bfr[j][0], bfr[j][1]);
            }
        }
    }
    cp_async_wait<0>();

    // Epilogue straight from the accumulators: c0,c1 -> (g, 2t..2t+1), c2,c3 -> (g+8, 2t..2t+1).
#pragma unroll
    for (int i = 0; i < MT; ++i) {
        const int64_t row = m0 + wm * WM + i * 16 + g;
        if (gated) {
#pragma unroll
            for (int j = 0; j < NT / 2; ++j) {
                const int64_t col = n0 + wn * (WN / 2) + j * 8 + 2 * t;
                const float* h = acc[i][j];
                const float* u = acc[i][j + NT / 2];
                store_pair(a, row, col, h[0], u[0], h[1], u[1]);
                store_pair(a, row + 8, col, h[2], u[2], h[3], u[3]);
            }
        } else {
#pragma unroll
            for (int j = 0; j < NT; ++j) {
                const int64_t col = n0 + wn * WN + j * 8 + 2 * t;
                store_pair(a, row, col, acc[i][j][0], 0.f, acc[i][j][1], 0.f);
                store_pair(a, row + 8, col, acc[i][j][2], 0.f, acc[i][j][3], 0.f);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Exact fp32 SIMT: tile 64x64, K slices of 16 staged transposed in shared memory; thread (ty, tx)
// owns rows 4ty..4ty+3 and columns 4tx..4tx+3, read as float4 (2 shared loads per 16 FMAs).
// Any alignment, any M, N, K.
// ---------------------------------------------------------------------------------------------
template <class TIn, class TOut>
__global__ void __launch_bounds__(kSimtThreads) matmul_simt_kernel(const MatmulArgs<TIn, TOut> a) {
    constexpr int T = kSimtTile, BK = kSimtK;
    static_assert(T == 4 * 16 && kSimtThreads == 16 * 16, "matmul_simt_kernel: 16x16 threads with 4x4 outputs each");
    __shared__ __align__(16) float sx[BK][T + 4];
    __shared__ __align__(16) float sw[BK][T + 4];
    __shared__ __align__(16) float su[BK][T + 4];
    const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
    const int64_t m0 = int64_t(blockIdx.y) * T, n0 = int64_t(blockIdx.x) * T;
    const int64_t ldx = a.ldx;
    const bool gated = a.w_up != nullptr;
    float acc[4][4] = {}, accu[4][4] = {};
    for (int64_t k0 = 0; k0 < a.K; k0 += BK) {
#pragma unroll
        for (int i = 0; i < T * BK / kSimtThreads; ++i) {
            const int e = tid + i * kSimtThreads, r = e / BK, k = e % BK;
            const bool kin = k0 + k < a.K;
            sx[k][r] = (kin && m0 + r < a.M) ? to_float(a.x[(m0 + r) * ldx + k0 + k]) : 0.f;
            sw[k][r] = (kin && n0 + r < a.N) ? to_float(a.w[(n0 + r) * a.K + k0 + k]) : 0.f;
            if (gated) su[k][r] = (kin && n0 + r < a.N) ? to_float(a.w_up[(n0 + r) * a.K + k0 + k]) : 0.f;
        }
        __syncthreads();
#pragma unroll
        for (int k = 0; k < BK; ++k) {
            const float4 x4 = *reinterpret_cast<const float4*>(&sx[k][4 * ty]);
            const float4 w4 = *reinterpret_cast<const float4*>(&sw[k][4 * tx]);
            const float xv[4] = {x4.x, x4.y, x4.z, x4.w}, wv[4] = {w4.x, w4.y, w4.z, w4.w};
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(xv[i], wv[j], acc[i][j]);
            if (gated) {
                const float4 u4 = *reinterpret_cast<const float4*>(&su[k][4 * tx]);
                const float uv[4] = {u4.x, u4.y, u4.z, u4.w};
#pragma unroll
                for (int i = 0; i < 4; ++i)
#pragma unroll
                    for (int j = 0; j < 4; ++j) accu[i][j] = fmaf(xv[i], uv[j], accu[i][j]);
            }
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; j += 2)
            store_pair(a, m0 + 4 * ty + i, n0 + 4 * tx + j, acc[i][j], accu[i][j], acc[i][j + 1], accu[i][j + 1]);
}

// ---------------------------------------------------------------------------------------------
// Decode GEMV (M <= kGemvMaxM): warp w of block b owns column n = 4b + w and streams W[n, :] (and
// W1[n, :] when gated) in 16-byte packs, 4 packs in flight per lane; X rows come from L1/L2.
// ---------------------------------------------------------------------------------------------
template <class TIn, class TOut>
__global__ void __launch_bounds__(32 * kGemvWarps) gemv_kernel(const MatmulArgs<TIn, TOut> a) {
    constexpr int E = Pack<TIn>::kSize, kUnroll = 4, MM = kGemvMaxM;
    const int lane = threadIdx.x % 32;
    const int64_t n = int64_t(blockIdx.x) * kGemvWarps + threadIdx.x / 32;
    if (n >= a.N) return;
    const int64_t ldx = a.ldx;
    const bool gated = a.w_up != nullptr;
    const TIn* w0 = a.w + n * a.K;
    const TIn* w1 = gated ? a.w_up + n * a.K : w0;
    float h[MM] = {}, u[MM] = {};
    const bool vec = (a.K % E) == 0 && (ldx % E) == 0 && aligned16(a.x) && aligned16(a.w) &&
                     (!gated || aligned16(a.w_up));
    if (vec) {
        for (int64_t k = int64_t(lane) * E; k < a.K; k += int64_t(32) * E * kUnroll) {
            Pack<TIn> wp[kUnroll], up[kUnroll];
#pragma unroll
            for (int q = 0; q < kUnroll; ++q) {  // all loads first: kUnroll (x2) 16-byte loads in flight
                const int64_t kk = k + int64_t(q) * 32 * E;
                if (kk < a.K) {
                    wp[q] = Pack<TIn>::load_global_nc(w0 + kk);
                    if (gated) up[q] = Pack<TIn>::load_global_nc(w1 + kk);
                }
            }
#pragma unroll
            for (int q = 0; q < kUnroll; ++q) {
                const int64_t kk = k + int64_t(q) * 32 * E;
                if (kk >= a.K) break;
#pragma unroll
                for (int m = 0; m < MM; ++m) {
                    if (m >= a.M) break;
                    const Pack<TIn> xp = Pack<TIn>::load(a.x + m * ldx + kk);
#pragma unroll
                    for (int e = 0; e < E; ++e) {
                        h[m] = fmaf(xp.get(e), wp[q].get(e), h[m]);
                        if (gated) u[m] = fmaf(xp.get(e), up[q].get(e), u[m]);
                    }
                }
            }
        }
    } else {
        for (int64_t k = lane; k < a.K; k += 32) {
            const float wv = to_float(w0[k]), uv = gated ? to_float(w1[k]) : 0.f;
#pragma unroll
            for (int m = 0; m < MM; ++m) {
                if (m >= a.M) break;
                const float xv = to_float(a.x[m * ldx + k]);
                h[m] = fmaf(xv, wv, h[m]);
                u[m] = fmaf(xv, uv, u[m]);
            }
        }
    }
#pragma unroll
    for (int m = 0; m < MM; ++m) {
        h[m] = warp_sum(h[m]);
        if (gated) u[m] = warp_sum(u[m]);
    }
    if (lane == 0) {
#pragma unroll
        for (int m = 0; m < MM; ++m)
            if (m < a.M) store_one(a, m, n, h[m], u[m]);
    }
}

template <class TIn, class TOut, int BM, int BN, int WM, int WN, int STAGES>
void launch_matmul_tc(const MatmulArgs<TIn, TOut>& a, const MatmulPlan& plan, cudaStream_t stream) {
    auto kernel = matmul_tc_kernel<TIn, TOut, BM, BN, WM, WN, STAGES>;
    // More than 48 KB of dynamic shared memory must be allowed once per kernel instance.
    static const bool allowed = [&] {
        PIX2STRUCT_CUDA_CHECK(
            cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, plan.smem_bytes));
        return true;
    }();
    (void)allowed;
    kernel<<<dim3(unsigned(plan.grid_x), unsigned(plan.grid_y)), plan.threads, plan.smem_bytes, stream>>>(a);
}

// Runs the kernel of `plan` (from plan_matmul, or matmul_plan_for to force a path in benchmarks).
template <class TIn, class TOut>
void matmul_with_plan(const MatmulArgs<TIn, TOut>& a, const MatmulPlan& plan, cudaStream_t stream) {
    switch (plan.path) {
        case MatmulPath::TensorCoreLarge:
            launch_matmul_tc<TIn, TOut, kGemmLarge.bm, kGemmLarge.bn, kGemmLarge.warps_m, kGemmLarge.warps_n,
                             kGemmLarge.stages>(a, plan, stream);
            break;
        case MatmulPath::TensorCoreSmall:
            launch_matmul_tc<TIn, TOut, kGemmSmall.bm, kGemmSmall.bn, kGemmSmall.warps_m, kGemmSmall.warps_n,
                             kGemmSmall.stages>(a, plan, stream);
            break;
        case MatmulPath::Simt:
            matmul_simt_kernel<TIn, TOut><<<dim3(unsigned(plan.grid_x), unsigned(plan.grid_y)), plan.threads, 0, stream>>>(a);
            break;
        case MatmulPath::Gemv:
            gemv_kernel<TIn, TOut><<<unsigned(plan.grid_x), plan.threads, 0, stream>>>(a);
            break;
    }
    check_launch("matmul");
}

}  // namespace detail

// =============================================================================================
// Launcher
// =============================================================================================
// Y = X·Wᵀ (+ epilogue) on `stream`. fp32 inputs run exact FMA unless fp32_mode is TF32.
// Throws pix2struct::Error for a bad shape, missing pointer or launch failure.
template <class TIn, class TOut>
void matmul(const MatmulArgs<TIn, TOut>& args, cudaStream_t stream = nullptr, Fp32Mode fp32_mode = Fp32Mode::Exact) {
    static_assert(kMatmulSupported<TIn, TOut>,
                  "matmul: supported (input, output) types are (bf16, bf16), (bf16, float), (float, float)");
    MatmulArgs<TIn, TOut> a = args;
    if (!a.ldx) a.ldx = a.K;
    if (!a.ldy) a.ldy = a.N;
    if (a.M < 0 || a.N <= 0 || a.K <= 0)
        pix2struct::detail::fail("matmul: shape M=", a.M, " N=", a.N, " K=", a.K, " is not a valid product");
    if (a.M == 0) return;
    if (!a.x || !a.w || !a.y) pix2struct::detail::fail("matmul: X, W and Y must all be given");
    if (a.w_up && a.bias) pix2struct::detail::fail("matmul: the gated-GELU epilogue takes no bias");
    const int64_t ldx = a.ldx;
    if (ldx < a.K) pix2struct::detail::fail("matmul: row stride of X (", ldx, ") is shorter than K=", a.K);
    if (a.ldy < a.N) pix2struct::detail::fail("matmul: row stride of Y (", a.ldy, ") is shorter than N=", a.N);
    constexpr int kIn = sizeof(TIn);
    const bool aligned = aligned16(a.x) && aligned16(a.w) && (!a.w_up || aligned16(a.w_up)) &&
                         (a.K * kIn) % 16 == 0 && (ldx * kIn) % 16 == 0;
    detail::matmul_with_plan(a, plan_matmul(a.M, a.N, a.K, kIn, aligned, sm_count(), fp32_mode, a.w_up != nullptr),
                             stream);
}

}  // namespace pix2struct::kernels
