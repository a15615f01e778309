// kernels/geometry.hpp — launch-geometry arithmetic of the CUDA kernels, in plain C++.
//
// The launchers in kernels/*.cuh turn a problem (M, N, K; or B, H, Lq, Lk) into a grid through these
// functions; they include no CUDA header so that tests/test_kernels_host.cpp checks them without nvcc.
//   plan_matmul(M, N, K, in_bytes, aligned, sm_count, fp32_mode) -> MatmulPlan   which kernel and grid
//   plan_decode_splits(B, H, Lk, sm_count)                        -> DecodeSplit  keys per block
#pragma once

#include <algorithm>
#include <cstdint>

namespace pix2struct::kernels {

constexpr int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// ---------------------------------------------------------------------------------------------
// Matmul Y[M,N] = X[M,K] · W[N,K]ᵀ
// ---------------------------------------------------------------------------------------------
// Tensor-core tiles. A row of a K-slice is 64 bytes (32 bf16 or 16 fp32), padded to 80 bytes in
// shared memory so that ldmatrix / 32-bit fragment loads hit 8 distinct 16-byte bank groups.
struct GemmTile {
    int bm, bn;            // block tile
    int warps_m, warps_n;  // warp grid; warp tile = (bm / warps_m) x (bn / warps_n)
    int stages;            // cp.async pipeline depth
};
inline constexpr int kGemmSliceBytes = 64;                       // bytes of K per stage and row
inline constexpr int kGemmRowBytes = kGemmSliceBytes + 16;        // padded smem row
inline constexpr GemmTile kGemmLarge{128, 128, 2, 4, 4};          // 8 warps, warp tile 64x32
inline constexpr GemmTile kGemmSmall{64, 64, 2, 2, 4};            // 4 warps, warp tile 32x32
constexpr int gemm_threads(const GemmTile& t) { return 32 * t.warps_m * t.warps_n; }
constexpr int gemm_smem_bytes(const GemmTile& t) { return t.stages * (t.bm + t.bn) * kGemmRowBytes; }

// The fp32 exact (SIMT) kernel: 64x64 tile, 16-deep K slice, 256 threads with 4x4 outputs each.
inline constexpr int kSimtTile = 64, kSimtK = 16, kSimtThreads = 256;

// The decode-step GEMV (M <= kGemvMaxM): one warp per output column n, 4 warps per block.
inline constexpr int kGemvMaxM = 4, kGemvWarps = 4;

enum class MatmulPath { TensorCoreLarge, TensorCoreSmall, Simt, Gemv };
enum class Fp32Mode { Exact, TF32 };

struct MatmulPlan {
    MatmulPath path;
    int64_t grid_x, grid_y;  // grid_x over N tiles (or N columns for GEMV), grid_y over M tiles
    int threads;
    int smem_bytes;
};

// The grid of one path. A gated block covers BN/2 output columns (its B tile holds W0 and W1 rows).
constexpr MatmulPlan matmul_plan_for(MatmulPath path, int64_t M, int64_t N, bool gated = false) {
    switch (path) {
        case MatmulPath::Gemv: return {path, ceil_div(N, kGemvWarps), 1, 32 * kGemvWarps, 0};
        case MatmulPath::Simt: return {path, ceil_div(N, kSimtTile), ceil_div(M, kSimtTile), kSimtThreads, 0};
        case MatmulPath::TensorCoreLarge:
            return {path, ceil_div(N, gated ? kGemmLarge.bn / 2 : kGemmLarge.bn), ceil_div(M, kGemmLarge.bm),
                    gemm_threads(kGemmLarge), gemm_smem_bytes(kGemmLarge)};
        case MatmulPath::TensorCoreSmall: break;
    }
    return {MatmulPath::TensorCoreSmall, ceil_div(N, gated ? kGemmSmall.bn / 2 : kGemmSmall.bn),
            ceil_div(M, kGemmSmall.bm), gemm_threads(kGemmSmall), gemm_smem_bytes(kGemmSmall)};
}

// Relative cost of one large-tile block in small-tile blocks: 4x the work, done ~25% more efficiently
// (twice the MMAs per byte staged). A first guess, to be tuned on the GPU (bench_kernels prints both).
inline constexpr double kLargeTileCost = 3.2;

// in_bytes: 2 (bf16 inputs) or 4 (fp32 inputs). aligned: X and W 16-byte aligned and K·in_bytes and the
// row stride of X multiples of 16 bytes (cp.async moves 16-byte chunks). fp32 inputs take the tensor
// cores only in TF32 mode. Between the two tiles: the one whose busiest SM runs the least work, with
// blocks spread evenly over the SMs (wave quantisation).
constexpr MatmulPlan plan_matmul(int64_t M, int64_t N, int64_t K, int in_bytes, bool aligned, int sm_count,
                                 Fp32Mode fp32_mode = Fp32Mode::Exact, bool gated = false) {
    (void)K;
    if (M <= kGemvMaxM) return matmul_plan_for(MatmulPath::Gemv, M, N, gated);
    const bool tensor = aligned && (in_bytes == 2 || fp32_mode == Fp32Mode::TF32);
    if (!tensor) return matmul_plan_for(MatmulPath::Simt, M, N, gated);
    const MatmulPlan large = matmul_plan_for(MatmulPath::TensorCoreLarge, M, N, gated);
    const MatmulPlan small = matmul_plan_for(MatmulPath::TensorCoreSmall, M, N, gated);
    const int64_t sms = sm_count > 0 ? sm_count : 1;
    const double cost_large = double(ceil_div(large.grid_x * large.grid_y, sms)) * kLargeTileCost;
    const double cost_small = double(ceil_div(small.grid_x * small.grid_y, sms));
    return cost_large < cost_small ? large : small;
}

// ---------------------------------------------------------------------------------------------
// Attention, head dim 64
// ---------------------------------------------------------------------------------------------
inline constexpr int kHeadDim = 64;
inline constexpr int kAttnRowsPerBlock = 64;  // queries per block (4 warps x 16 rows)
inline constexpr int kAttnKeysPerTile = 64;   // keys per K/V tile
inline constexpr int kAttnThreads = 128;

// Split-K decode: one query per (batch, head); the keys are cut into `splits` chunks of `chunk` keys
// (a multiple of 64), one block each, so that B·H·splits blocks give each SM about four blocks (16
// warps) with 4 keys per lane group in flight: enough loads outstanding to stream the cache.
inline constexpr int kDecodeMaxSplits = 64, kDecodeThreads = 128, kDecodeMinChunk = 64, kDecodeUnroll = 4;
inline constexpr int kDecodeBlocksPerSm = 4;
struct DecodeSplit {
    int splits;
    int chunk;
};
constexpr DecodeSplit plan_decode_splits(int64_t B, int64_t H, int64_t Lk, int sm_count) {
    if (Lk <= 0) return {1, kDecodeMinChunk};
    const int64_t heads = std::max<int64_t>(1, B * H);
    int64_t want = ceil_div(kDecodeBlocksPerSm * int64_t(sm_count), heads);  // splits per head
    want = std::clamp<int64_t>(want, 1, kDecodeMaxSplits);
    want = std::min<int64_t>(want, ceil_div(Lk, kDecodeMinChunk));           // at least 64 keys each
    int64_t chunk = ceil_div(ceil_div(Lk, want), kDecodeMinChunk) * kDecodeMinChunk;
    const int64_t splits = ceil_div(Lk, chunk);                               // no empty split
    return {int(splits), int(chunk)};
}

}  // namespace pix2struct::kernels
