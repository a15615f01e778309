// pix2struct/backend/attention_args.hpp — the arguments of one multi-head attention call, the one type
// used by the Backend concept (backend/backend.hpp), the CPU backend, the CUDA kernels (kernels/attention.cuh)
// and the tests. No dependencies: nvcc and the CPU build both include it.
//
//   O[b, i, h, :] = Σ_j softmax_j(S[b, h, i, j]) · V[b, j, h, :],   S = Q·Kᵀ + bias[h, i, j]   (no 1/√D)
// Position l, head h of batch b is at ptr + b·batch + l·row + h·D: the [B, L, H·D] output of the Q/K/V
// projections, or any strided view of it (a fused QKV buffer, a K/V cache). The key mask and the bias are
// fp32 whatever T is: the reference adds them to fp32 scores (`softmax(scores.float())`).
#pragma once

#include <stdint.h>

namespace pix2struct {

// T: the activations (queries, output); KV: the keys and values, T unless a backend keeps its cross-attention
// K/V narrower (cross_t in backend/backend.hpp).
template <class T, class KV = T>
struct AttentionArgs {
    const T* q = nullptr;
    const KV* k = nullptr;
    const KV* v = nullptr;
    T* o = nullptr;
    int B = 1, H = 1, Lq = 0, Lk = 0;
    int D = 64;                                                  // head dim (d_kv)
    int64_t q_row = 0, k_row = 0, v_row = 0, o_row = 0;          // 0: H·D
    int64_t q_batch = 0, k_batch = 0, v_batch = 0, o_batch = 0;  // 0: L·row
    const float* key_mask = nullptr;  // [B, Lk]: 1 keep, 0 padded (weight 0); null: every key is real
    const float* bias = nullptr;      // additive, element (b, h, i, j) at b·bias_batch + h·bias_head + i·bias_row + j
    int64_t bias_batch = 0, bias_head = -1, bias_row = -1;  // -1: Lq·Lk and Lk ([H, Lq, Lk])
    bool causal = false;              // keys j > i + (Lk - Lq) left out
};

// The strides left 0 / -1 filled with their defaults (above).
template <class T, class KV>
AttentionArgs<T, KV> with_default_strides(AttentionArgs<T, KV> a) {
    const int64_t hd = int64_t(a.H) * a.D;
    auto fill = [hd](int64_t& row, int64_t& batch, int64_t L) {
        if (!row) row = hd;
        if (!batch) batch = L * row;
    };
    fill(a.q_row, a.q_batch, a.Lq);
    fill(a.k_row, a.k_batch, a.Lk);
    fill(a.v_row, a.v_batch, a.Lk);
    fill(a.o_row, a.o_batch, a.Lq);
    if (a.bias_head < 0) a.bias_head = int64_t(a.Lq) * a.Lk;
    if (a.bias_row < 0) a.bias_row = a.Lk;
    return a;
}

}  // namespace pix2struct
