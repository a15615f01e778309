// kernels/attention.cuh — fused multi-head attention, head dim 64, as Pix2Struct computes it.
//
//   O[b, i, h, :] = Σ_j softmax_j(S[b, h, i, j]) · V[b, j, h, :],   S = Q·Kᵀ + bias[h, i, j]
// with NO 1/√d scaling (the reference folds it into the trained weights), padded keys
// (key_mask[b, j] == 0) and, when causal, keys j > i + (Lk - Lq) left out. The softmax runs online in
// fp32 over tiles of keys (flash attention): no Lq x Lk matrix ever reaches memory.
// A row whose every key is masked returns zeros (the reference would return the mean of V there;
// Pix2Struct never builds such a row for a real query).
//
// Layout: position l, head h of batch b at ptr + b·batch_stride + l·row_stride + h·64 (the [B, L, H·64]
// output of the Q/K/V projections; a fused QKV buffer works through the strides). Bias is fp32, element
// (b, h, i, j) at bias[b·bias_batch + h·bias_head + i·bias_row + j] (decoder relative position bias:
// [H, Lq, Lk] with bias_batch 0). Covers encoder self-attention (N up to 4096, key mask), decoder causal
// self-attention with bias, and cross-attention (key mask).
//
// Kernels and launch geometry:
//   attention_tc_kernel    bf16: grid (⌈Lq/64⌉, H, B), 128 threads; each warp owns 16 queries, Q fragments
//                          in registers, K/V tiles of 64 keys double-buffered by cp.async; S = QKᵀ and
//                          O += PV on mma.sync m16n8k16 (P re-packed from the S accumulators).
//   attention_simt_kernel  fp32 (exact): grid (⌈Lq/64⌉, H, B), 128 threads, 16 queries per warp, tiles of
//                          32 keys in shared memory, one key per lane for S, two dims per lane for O.
//   attention_decode_kernel + attention_combine_kernel   Lq == 1 (a decode step over a K/V cache): the keys
//                          are split into chunks (geometry.hpp plan_decode_splits), one block of 4 warps per
//                          (chunk, head, batch); 8 (bf16) or 16 (fp32) lanes share a key with 16-byte loads,
//                          4 keys per lane group in flight;
//                          partial (max, sum, O) go to a workspace and a second kernel combines them.
//   attention_any_dim_kernel  any head dim D (checkpoints whose d_kv is not 64, e.g. the test models),
//                          fp32 math for either type: grid (Lq, H, B), 128 threads, the row's Lk scores in
//                          shared memory (two passes: scores and max, then exp and sum), then lanes over D.
//                          A plain fallback, not a fast path.
// Measured (H100, pending a GPU session): see bench/RESULTS.md "GPU kernels".
#pragma once

#include <cmath>
#include <tuple>

#include "pix2struct/kernels/common.cuh"
#include "pix2struct/backend/attention_args.hpp"

namespace pix2struct::kernels {

using pix2struct::AttentionArgs;  // pix2struct/backend/attention_args.hpp: the fast kernels take D == kHeadDim

template <class T>
inline constexpr bool kAttentionSupported = std::is_same_v<T, float> || std::is_same_v<T, bf16>;

namespace detail {

inline constexpr float kLog2e = 1.4426950408889634f;

// The score of (b, h, i, j) after masking and bias, in log2 units (exp2 of it is exp of the score);
// -inf when the key is not visible.
template <class T>
__device__ __forceinline__ float masked_score(const AttentionArgs<T>& a, int b, int h, int i, int j, float s) {
    if (j >= a.Lk || i >= a.Lq) return -INFINITY;
    if (a.key_mask && a.key_mask[int64_t(b) * a.Lk + j] == 0.f) return -INFINITY;
    if (a.causal && j > i + (a.Lk - a.Lq)) return -INFINITY;
    if (a.bias) s += a.bias[b * a.bias_batch + h * a.bias_head + int64_t(i) * a.bias_row + j];
    return s * kLog2e;
}

// Last key tile a block of queries [q0, q0 + rows) needs (causal cuts it short).
template <class T>
__device__ __forceinline__ int key_tiles(const AttentionArgs<T>& a, int q0, int rows, int keys_per_tile) {
    int last_key = a.Lk - 1;
    if (a.causal) last_key = min(last_key, min(q0 + rows, a.Lq) - 1 + (a.Lk - a.Lq));
    return last_key < 0 ? 0 : last_key / keys_per_tile + 1;
}

// Online-softmax step for one row: new running max, the factor that rescales the old sum and output,
// and the base to subtract (0 while every score so far is -inf, so that exp2 never sees inf - inf).
struct OnlineMax {
    float scale, base;
};
__device__ __forceinline__ OnlineMax online_max(float& m, float tile_max) {
    const float m_new = fmaxf(m, tile_max);
    const float base = (m_new == -INFINITY) ? 0.f : m_new;
    const OnlineMax r{exp2f(m - base), base};
    m = m_new;
    return r;
}

// =============================================================================================
// bf16 tensor-core flash attention
// =============================================================================================
inline constexpr int kAttnRow = (kHeadDim + 8) * 2;  // smem row: 64 bf16 + 16 bytes padding = 144 B

template <int kRows>
__device__ __forceinline__ void load_rows_async(unsigned char* smem, const bf16* base, int64_t row_stride, int r0,
                                                int rows_valid) {
    // kRows x 64 bf16 = kRows x 8 chunks of 16 bytes, spread over the block's 128 threads.
#pragma unroll
    for (int i = 0; i < kRows * 8 / kAttnThreads; ++i) {
        const int c = threadIdx.x + i * kAttnThreads, r = c / 8, j = c % 8;
        const bool ok = r0 + r < rows_valid;
        cp_async_16(smem + r * kAttnRow + j * 16, ok ? base + int64_t(r0 + r) * row_stride + j * 8 : base, ok ? 16 : 0);
    }
}

// A template (of bf16 only) so that the header can be included by several translation units.
template <class T>
__global__ void __launch_bounds__(kAttnThreads) attention_tc_kernel(const AttentionArgs<T> a) {
    static_assert(kIsBf16<T>, "attention_tc_kernel: bf16 only");
    constexpr int BR = kAttnRowsPerBlock, BC = kAttnKeysPerTile, D = kHeadDim;
    __shared__ __align__(128) unsigned char sQ[BR * kAttnRow];
    __shared__ __align__(128) unsigned char sK[2][BC * kAttnRow];
    __shared__ __align__(128) unsigned char sV[2][BC * kAttnRow];
    const int b = blockIdx.z, h = blockIdx.y, q0 = blockIdx.x * BR;
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, g = lane / 4, t = lane % 4;
    const bf16* Q = a.q + b * a.q_batch + h * D;
    const bf16* K = a.k + b * a.k_batch + h * D;
    const bf16* V = a.v + b * a.v_batch + h * D;

    const int tiles = key_tiles(a, q0, BR, BC);
    load_rows_async<BR>(sQ, Q, a.q_row, q0, a.Lq);
    if (tiles > 0) {
        load_rows_async<BC>(sK[0], K, a.k_row, 0, a.Lk);
        load_rows_async<BC>(sV[0], V, a.v_row, 0, a.Lk);
    }
    cp_async_commit();

    uint32_t qf[D / 16][4];          // this warp's 16 queries as A fragments, 4 steps of k16 over d
    float o[D / 8][4] = {};          // O accumulators: 8 n8 tiles over d
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};  // rows g and g + 8

    for (int tile = 0; tile < tiles; ++tile) {
        cp_async_wait<0>();
        __syncthreads();  // tile landed; the other buffer's previous tile is no longer read
        if (tile == 0) {
#pragma unroll
            for (int kk = 0; kk < D / 16; ++kk)
                ldmatrix_x4(qf[kk], sQ + (warp * 16 + lane % 16) * kAttnRow + (kk * 16 + (lane / 16) * 8) * 2);
        }
        if (tile + 1 < tiles) {
            load_rows_async<BC>(sK[(tile + 1) % 2], K, a.k_row, (tile + 1) * BC, a.Lk);
            load_rows_async<BC>(sV[(tile + 1) % 2], V, a.v_row, (tile + 1) * BC, a.Lk);
        }
        cp_async_commit();
        const unsigned char* k_s = sK[tile % 2];
        const unsigned char* v_s = sV[tile % 2];

        // S = Q·Kᵀ for 16 queries x 64 keys: K rows are the "col" B operand as stored ([key][d]).
        float s[BC / 8][4] = {};
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk)
#pragma unroll
            for (int np = 0; np < BC / 16; ++np) {
                uint32_t r[4];
                ldmatrix_x4(r, k_s + (np * 16 + (lane & 7) + ((lane >> 4) << 3)) * kAttnRow +
                                   (kk * 16 + ((lane >> 3) & 1) * 8) * 2);
                mma_bf16_16816(s[2 * np], qf[kk], r[0], r[1]);
                mma_bf16_16816(s[2 * np + 1], qf[kk], r[2], r[3]);
            }

        // Mask, bias, online softmax (each row's 64 scores live in the 4 threads of a quad).
        // Key padding is the same for both rows of a thread: read it once per tile.
        const int key0 = tile * BC;
        float key_add[BC / 8][2];
#pragma unroll
        for (int nt = 0; nt < BC / 8; ++nt)
#pragma unroll
            for (int e = 0; e < 2; ++e) {
                const int j = key0 + nt * 8 + 2 * t + e;
                const bool real = j < a.Lk && (!a.key_mask || a.key_mask[int64_t(b) * a.Lk + j] != 0.f);
                key_add[nt][e] = real ? 0.f : -INFINITY;
            }
        const bool plain = !a.bias && !a.causal;
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            const int i = q0 + warp * 16 + g + 8 * r;
            float mx = -INFINITY;
#pragma unroll
            for (int nt = 0; nt < BC / 8; ++nt)
#pragma unroll
                for (int e = 0; e < 2; ++e) {
                    float& x = s[nt][2 * r + e];
                    x = plain ? fmaf(x, kLog2e, key_add[nt][e])
                              : masked_score(a, b, h, i, key0 + nt * 8 + 2 * t + e, x);
                    mx = fmaxf(mx, x);
                }
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            const OnlineMax om = online_max(m[r], mx);
            float sum = 0.f;
#pragma unroll
            for (int nt = 0; nt < BC / 8; ++nt)
#pragma unroll
                for (int e = 0; e < 2; ++e) {
                    float& x = s[nt][2 * r + e];
                    x = exp2f(x - om.base);
                    sum += x;
                }
            l[r] = l[r] * om.scale + sum;  // this thread's share; the quad is summed at the end
#pragma unroll
            for (int dt = 0; dt < D / 8; ++dt) o[dt][2 * r] *= om.scale, o[dt][2 * r + 1] *= om.scale;
        }

        // O += P·V: the S accumulators of key tiles 2kk, 2kk+1 are the A fragment of k16 step kk;
        // V ([key][d]) is the B operand transposed, so ldmatrix .trans.
#pragma unroll
        for (int kk = 0; kk < BC / 16; ++kk) {
            const uint32_t pa[4] = {pack_bf16x2(s[2 * kk][0], s[2 * kk][1]), pack_bf16x2(s[2 * kk][2], s[2 * kk][3]),
                                    pack_bf16x2(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                    pack_bf16x2(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
            for (int dp = 0; dp < D / 16; ++dp) {
                uint32_t r[4];
                ldmatrix_x4_trans(r, v_s + (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * kAttnRow +
                                         (dp * 16 + (lane >> 4) * 8) * 2);
                mma_bf16_16816(o[2 * dp], pa, r[0], r[1]);
                mma_bf16_16816(o[2 * dp + 1], pa, r[2], r[3]);
            }
        }
    }
    cp_async_wait<0>();

#pragma unroll
    for (int r = 0; r < 2; ++r) {
        float sum = l[r];
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        sum += __shfl_xor_sync(0xffffffffu, sum, 2);
        const float inv = sum > 0.f ? 1.f / sum : 0.f;
        const int i = q0 + warp * 16 + g + 8 * r;
        if (i >= a.Lq) continue;
        bf16* out = a.o + b * a.o_batch + int64_t(i) * a.o_row + h * D;
#pragma unroll
        for (int dt = 0; dt < D / 8; ++dt)
            *reinterpret_cast<__nv_bfloat162*>(out + dt * 8 + 2 * t) =
                __floats2bfloat162_rn(o[dt][2 * r] * inv, o[dt][2 * r + 1] * inv);
    }
}

// =============================================================================================
// fp32 exact flash attention (SIMT)
// =============================================================================================
inline constexpr int kSimtAttnKeys = 32;

template <class T>
__global__ void __launch_bounds__(kAttnThreads) attention_simt_kernel(const AttentionArgs<T> a) {
    static_assert(std::is_same_v<T, float>, "attention_simt_kernel: fp32 only");
    constexpr int BR = kAttnRowsPerBlock, BC = kSimtAttnKeys, D = kHeadDim, QW = BR / (kAttnThreads / 32);
    __shared__ __align__(16) float sQ[BR][D];
    __shared__ float sK[BC][D + 1];
    __shared__ float sV[BC][D];
    __shared__ float sP[kAttnThreads / 32][QW][BC];
    const int b = blockIdx.z, h = blockIdx.y, q0 = blockIdx.x * BR;
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const float* Q = a.q + b * a.q_batch + h * D;
    const float* K = a.k + b * a.k_batch + h * D;
    const float* V = a.v + b * a.v_batch + h * D;

    for (int e = threadIdx.x; e < BR * D; e += kAttnThreads) {
        const int r = e / D, d = e % D;
        sQ[r][d] = q0 + r < a.Lq ? Q[int64_t(q0 + r) * a.q_row + d] : 0.f;
    }
    float o[QW][2] = {}, m[QW], l[QW] = {};
#pragma unroll
    for (int q = 0; q < QW; ++q) m[q] = -INFINITY;

    const int tiles = key_tiles(a, q0, BR, BC);
    for (int tile = 0; tile < tiles; ++tile) {
        const int key0 = tile * BC;
        __syncthreads();  // previous tile fully read (and sQ written, the first time)
        for (int e = threadIdx.x; e < BC * D; e += kAttnThreads) {
            const int r = e / D, d = e % D;
            const bool ok = key0 + r < a.Lk;
            sK[r][d] = ok ? K[int64_t(key0 + r) * a.k_row + d] : 0.f;
            sV[r][d] = ok ? V[int64_t(key0 + r) * a.v_row + d] : 0.f;
        }
        __syncthreads();

        // S: lane owns key key0 + lane, for the warp's QW queries.
        float s[QW] = {};
        for (int d = 0; d < D; d += 4) {
            const float k0 = sK[lane][d], k1 = sK[lane][d + 1], k2 = sK[lane][d + 2], k3 = sK[lane][d + 3];
#pragma unroll
            for (int q = 0; q < QW; ++q) {
                const float4 qv = *reinterpret_cast<const float4*>(&sQ[warp * QW + q][d]);
                s[q] = fmaf(qv.x, k0, fmaf(qv.y, k1, fmaf(qv.z, k2, fmaf(qv.w, k3, s[q]))));
            }
        }
#pragma unroll
        for (int q = 0; q < QW; ++q) {
            const float x = masked_score(a, b, h, q0 + warp * QW + q, key0 + lane, s[q]);
            const OnlineMax om = online_max(m[q], warp_max(x));
            const float p = exp2f(x - om.base);
            l[q] = l[q] * om.scale + p;  // per-lane share, summed over the warp at the end
            o[q][0] *= om.scale, o[q][1] *= om.scale;
            sP[warp][q][lane] = p;
        }
        __syncwarp();
        // O: lane owns dims lane and lane + 32.
        for (int j = 0; j < BC; ++j) {
            const float v0 = sV[j][lane], v1 = sV[j][lane + 32];
#pragma unroll
            for (int q = 0; q < QW; ++q) {
                const float p = sP[warp][q][j];
                o[q][0] = fmaf(p, v0, o[q][0]);
                o[q][1] = fmaf(p, v1, o[q][1]);
            }
        }
        __syncwarp();
    }
#pragma unroll
    for (int q = 0; q < QW; ++q) {
        const float sum = warp_sum(l[q]);
        const int i = q0 + warp * QW + q;
        if (i >= a.Lq) continue;
        const float inv = sum > 0.f ? 1.f / sum : 0.f;
        float* out = a.o + b * a.o_batch + int64_t(i) * a.o_row + h * D;
        out[lane] = o[q][0] * inv;
        out[lane + 32] = o[q][1] * inv;
    }
}

// =============================================================================================
// Decode: one query per (batch, head), keys split across blocks, then combined.
// Workspace per (b, h, split): 64 unnormalised outputs, then (max in log2 units, sum).
// =============================================================================================
template <class T>
__global__ void __launch_bounds__(kDecodeThreads)
    attention_decode_kernel(const AttentionArgs<T> a, int chunk, int splits, float* part_o, float* part_ml) {
    constexpr int D = kHeadDim, E = Pack<T>::kSize, LPK = D / E, KPW = 32 / LPK, W = kDecodeThreads / 32;
    constexpr int G = W * KPW;  // lane groups in the block, each with its own running softmax
    __shared__ float s_o[G][D];
    __shared__ float s_m[G], s_l[G];
    const int split = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, grp = lane / LPK, sub = lane % LPK;
    const int j0 = split * chunk, j1 = min(a.Lk, j0 + chunk);
    const T* K = a.k + b * a.k_batch + h * D + sub * E;
    const T* V = a.v + b * a.v_batch + h * D + sub * E;

    const Pack<T> qp = Pack<T>::load(a.q + b * a.q_batch + h * D + sub * E);
    float q[E], o[E] = {};
#pragma unroll
    for (int e = 0; e < E; ++e) q[e] = qp.get(e);
    float m = -INFINITY, l = 0.f;

    // Each pass a group takes U keys (interleaved so that a warp reads KPW consecutive rows per step),
    // issues all their K and V loads first, then folds them into its running softmax with one rescale.
    constexpr int U = kDecodeUnroll;
    for (int base = j0 + warp * KPW * U; base < j1; base += W * KPW * U) {  // uniform over the warp
        Pack<T> kp[U], vp[U];
        bool in[U];
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const int j = base + u * KPW + grp;
            in[u] = j < j1;
            if (in[u]) {
                kp[u] = Pack<T>::load_global_nc(K + int64_t(j) * a.k_row);
                vp[u] = Pack<T>::load_global_nc(V + int64_t(j) * a.v_row);
            }
        }
        float s[U], tile_max = -INFINITY;
#pragma unroll
        for (int u = 0; u < U; ++u) {
            float d = 0.f;
            if (in[u]) {
#pragma unroll
                for (int e = 0; e < E; ++e) d = fmaf(q[e], kp[u].get(e), d);
            }
            s[u] = warp_sum<LPK>(d);  // every lane takes part, also past the end
        }
#pragma unroll
        for (int u = 0; u < U; ++u) {
            s[u] = in[u] ? masked_score(a, b, h, a.Lq - 1, base + u * KPW + grp, s[u]) : -INFINITY;
            tile_max = fmaxf(tile_max, s[u]);
        }
        if (tile_max == -INFINITY) continue;
        const OnlineMax om = online_max(m, tile_max);
        l *= om.scale;
#pragma unroll
        for (int e = 0; e < E; ++e) o[e] *= om.scale;
#pragma unroll
        for (int u = 0; u < U; ++u) {
            if (s[u] == -INFINITY) continue;  // masked or past the end: V was not loaded
            const float p = exp2f(s[u] - om.base);
            l += p;
#pragma unroll
            for (int e = 0; e < E; ++e) o[e] = fmaf(p, vp[u].get(e), o[e]);
        }
    }

    const int gid = warp * KPW + grp;
#pragma unroll
    for (int e = 0; e < E; ++e) s_o[gid][sub * E + e] = o[e];
    if (sub == 0) s_m[gid] = m, s_l[gid] = l;
    __syncthreads();
    if (threadIdx.x < D) {
        const int d = threadIdx.x;
        float mx = -INFINITY;
#pragma unroll
        for (int i = 0; i < G; ++i) mx = fmaxf(mx, s_m[i]);
        const float base = mx == -INFINITY ? 0.f : mx;
        float sum = 0.f, acc = 0.f;
#pragma unroll
        for (int i = 0; i < G; ++i) {
            const float f = exp2f(s_m[i] - base);
            sum += s_l[i] * f;
            acc += s_o[i][d] * f;
        }
        const int64_t slot = (int64_t(b) * a.H + h) * splits + split;
        part_o[slot * D + d] = acc;
        if (d == 0) part_ml[2 * slot] = mx, part_ml[2 * slot + 1] = sum;
    }
}

template <class T>
__global__ void __launch_bounds__(kHeadDim)
    attention_combine_kernel(const AttentionArgs<T> a, int splits, const float* part_o, const float* part_ml) {
    const int h = blockIdx.x % a.H, b = blockIdx.x / a.H, d = threadIdx.x;
    const int64_t slot0 = (int64_t(b) * a.H + h) * splits;
    float mx = -INFINITY;
    for (int s = 0; s < splits; ++s) mx = fmaxf(mx, part_ml[2 * (slot0 + s)]);
    const float base = mx == -INFINITY ? 0.f : mx;
    float sum = 0.f, acc = 0.f;
    for (int s = 0; s < splits; ++s) {
        const float f = exp2f(part_ml[2 * (slot0 + s)] - base);
        sum += part_ml[2 * (slot0 + s) + 1] * f;
        acc += part_o[(slot0 + s) * kHeadDim + d] * f;
    }
    a.o[b * a.o_batch + h * kHeadDim + d] = from_float<T>(sum > 0.f ? acc / sum : 0.f);
}

// =============================================================================================
// Any head dim: one block per (query, head, batch); the scores of the row live in shared memory.
// =============================================================================================
inline constexpr int kAnyDimThreads = 128;

template <class T>
__global__ void __launch_bounds__(kAnyDimThreads) attention_any_dim_kernel(const AttentionArgs<T> a, int D) {
    extern __shared__ float s_any[];  // [D] the query, then [Lk] scores
    __shared__ float s_red[kAnyDimThreads / 32];
    float* sq = s_any;
    float* sp = s_any + D;
    const int i = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    const T* Q = a.q + b * a.q_batch + int64_t(i) * a.q_row + int64_t(h) * D;
    const T* K = a.k + b * a.k_batch + int64_t(h) * D;
    const T* V = a.v + b * a.v_batch + int64_t(h) * D;
    for (int d = threadIdx.x; d < D; d += kAnyDimThreads) sq[d] = to_float(Q[d]);
    __syncthreads();
    float mx = -INFINITY;
    for (int j = threadIdx.x; j < a.Lk; j += kAnyDimThreads) {
        const T* k = K + int64_t(j) * a.k_row;
        float s = 0.f;
        for (int d = 0; d < D; ++d) s = fmaf(sq[d], to_float(k[d]), s);
        s = masked_score(a, b, h, i, j, s);  // log2 units, -inf when hidden
        sp[j] = s;
        mx = fmaxf(mx, s);
    }
    mx = warp_max(mx);
    if (threadIdx.x % 32 == 0) s_red[threadIdx.x / 32] = mx;
    __syncthreads();
    mx = -INFINITY;
#pragma unroll
    for (int w = 0; w < kAnyDimThreads / 32; ++w) mx = fmaxf(mx, s_red[w]);
    const float base = mx == -INFINITY ? 0.f : mx;
    float sum = 0.f;
    for (int j = threadIdx.x; j < a.Lk; j += kAnyDimThreads) {
        const float p = exp2f(sp[j] - base);
        sp[j] = p;
        sum += p;
    }
    sum = block_sum<kAnyDimThreads>(sum, s_red);  // its barriers also publish sp
    const float inv = sum > 0.f ? 1.f / sum : 0.f;
    T* out = a.o + b * a.o_batch + int64_t(i) * a.o_row + int64_t(h) * D;
    for (int d = threadIdx.x; d < D; d += kAnyDimThreads) {
        float acc = 0.f;
        for (int j = 0; j < a.Lk; ++j) acc = fmaf(sp[j], to_float(V[int64_t(j) * a.v_row + d]), acc);
        out[d] = from_float<T>(acc * inv);
    }
}

// Fills the default strides and checks the arguments; `what` names the entry point in errors.
template <class T>
AttentionArgs<T> resolve(AttentionArgs<T> a, const char* what) {
    if (!a.q || !a.k || !a.v || !a.o) pix2struct::detail::fail(what, ": Q, K, V and O must all be given");
    if (a.B < 1 || a.H < 1 || a.Lq < 0 || a.Lk < 0)
        pix2struct::detail::fail(what, ": shape B=", a.B, " H=", a.H, " Lq=", a.Lq, " Lk=", a.Lk, " is not valid");
    if (a.D != kHeadDim) pix2struct::detail::fail(what, ": head dim ", a.D, ", this kernel takes ", kHeadDim);
    a = with_default_strides(a);
    constexpr int kE = 16 / sizeof(T);
    const bool ok = aligned16(a.q) && aligned16(a.k) && aligned16(a.v) && aligned16(a.o) && a.q_row % kE == 0 &&
                    a.k_row % kE == 0 && a.v_row % kE == 0 && a.o_row % kE == 0 && a.q_batch % kE == 0 &&
                    a.k_batch % kE == 0 && a.v_batch % kE == 0 && a.o_batch % kE == 0;
    if (!ok)
        pix2struct::detail::fail(what, ": Q, K, V, O need 16-byte aligned pointers and strides that are multiples of ",
                                 kE, " elements");
    return a;
}

}  // namespace detail

// =============================================================================================
// Launchers
// =============================================================================================
// Full attention (any Lq, Lk) on `stream`.
template <class T>
void attention(const AttentionArgs<T>& args, cudaStream_t stream = nullptr) {
    static_assert(kAttentionSupported<T>, "attention: supported element types are float and bf16");
    const AttentionArgs<T> a = detail::resolve(args, "attention");
    if (a.Lq == 0) return;
    const dim3 grid(unsigned(ceil_div(a.Lq, kAttnRowsPerBlock)), unsigned(a.H), unsigned(a.B));
    if constexpr (detail::kIsBf16<T>)
        detail::attention_tc_kernel<T><<<grid, kAttnThreads, 0, stream>>>(a);
    else
        detail::attention_simt_kernel<T><<<grid, kAttnThreads, 0, stream>>>(a);
    check_launch("attention");
}

// Full attention with any head dim D (rows of H·D unless the strides say otherwise), no alignment
// needed; Lq·H·B blocks. For checkpoints whose d_kv is not 64; the D = 64 kernels are the fast path.
template <class T>
void attention_any_dim(const AttentionArgs<T>& args, cudaStream_t stream = nullptr) {
    static_assert(kAttentionSupported<T>, "attention_any_dim: supported element types are float and bf16");
    if (!args.q || !args.k || !args.v || !args.o)
        pix2struct::detail::fail("attention_any_dim: Q, K, V and O must all be given");
    if (args.B < 1 || args.H < 1 || args.Lq < 0 || args.Lk < 0 || args.D < 1)
        pix2struct::detail::fail("attention_any_dim: shape B=", args.B, " H=", args.H, " Lq=", args.Lq, " Lk=", args.Lk,
                                 " D=", args.D, " is not valid");
    const AttentionArgs<T> a = with_default_strides(args);
    const int D = a.D;
    const size_t smem = size_t(D + a.Lk) * sizeof(float);
    if (smem > 48 * 1024)
        pix2struct::detail::fail("attention_any_dim: ", a.Lk, " keys of head dim ", D,
                                 " need more than 48 KB of shared memory per row");
    if (a.Lq == 0) return;
    detail::attention_any_dim_kernel<T>
        <<<dim3(unsigned(a.Lq), unsigned(a.H), unsigned(a.B)), detail::kAnyDimThreads, smem, stream>>>(a, D);
    check_launch("attention_any_dim");
}

namespace detail {
// Partial outputs [splits, B, H, D] and (max, sum) pairs [splits, B, H, 2], fp32.
inline size_t decode_workspace_bytes(int splits, int B, int H) {
    return size_t(splits) * B * H * (kHeadDim + 2) * sizeof(float);
}
}  // namespace detail

// Workspace the decode launcher needs for B, H and a cache of Lk keys, in bytes.
inline size_t attention_decode_workspace_bytes(int B, int H, int Lk) {
    return detail::decode_workspace_bytes(plan_decode_splits(B, H, Lk, sm_count()).splits, B, H);
}
// Enough workspace for B, H and a cache of any length (plan_decode_splits never exceeds kDecodeMaxSplits).
inline size_t attention_decode_max_workspace_bytes(int B, int H) {
    return detail::decode_workspace_bytes(kDecodeMaxSplits, B, H);
}

// One query per (batch, head) (Lq == 1) against Lk cached keys; `workspace` of at least
// attention_decode_workspace_bytes(B, H, Lk) bytes. The query is the newest position, so a causal
// mask hides nothing; bias row 0 is used.
template <class T>
void attention_decode(const AttentionArgs<T>& args, void* workspace, size_t workspace_bytes,
                      cudaStream_t stream = nullptr) {
    static_assert(kAttentionSupported<T>, "attention_decode: supported element types are float and bf16");
    const AttentionArgs<T> a = detail::resolve(args, "attention_decode");
    if (a.Lq != 1) pix2struct::detail::fail("attention_decode: takes one query per head, got Lq=", a.Lq);
    const DecodeSplit sp = plan_decode_splits(a.B, a.H, a.Lk, sm_count());
    const size_t need = detail::decode_workspace_bytes(sp.splits, a.B, a.H);
    if (!workspace || workspace_bytes < need)
        pix2struct::detail::fail("attention_decode: workspace of ", workspace_bytes, " bytes, needs ", need);
    float* part_o = static_cast<float*>(workspace);
    float* part_ml = part_o + size_t(sp.splits) * a.B * a.H * kHeadDim;
    detail::attention_decode_kernel<T>
        <<<dim3(unsigned(sp.splits), unsigned(a.H), unsigned(a.B)), kDecodeThreads, 0, stream>>>(a, sp.chunk, sp.splits,
                                                                                               part_o, part_ml);
    check_launch("attention_decode");
    detail::attention_combine_kernel<T><<<unsigned(a.B * a.H), kHeadDim, 0, stream>>>(a, sp.splits, part_o, part_ml);
    check_launch("attention_decode (combine)");
}

}  // namespace pix2struct::kernels
