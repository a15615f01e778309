// pix2struct/backend/cpu.hpp — the CPU backend: fp32 arithmetic on kernels of our own, threads of our own.
//
// CpuBackend supplies every primitive of the Backend concept (backend/backend.hpp lists them, with their
// formulas) on host memory: Scalar = float, buffers are 64-byte aligned host arrays, ids are host vectors.
// tests/test_backend_ops.cpp checks each, with every SIMD set the CPU runs, against float64.
//
// Threads: the backend splits work over a small pool it owns (no global state): a linear layer splits the
// output features N into one slice per thread (each an SGEMM, or a GEMV for a decode step's few rows),
// attention splits heads.
//
// SIMD: the products, the softmax, the norms and the GELU are backend/cpu_kernels.hpp's, compiled for
// AVX-512 and AVX2 whatever the flags and chosen at run time (backend/cpu_isa.hpp), so an app needs no
// -march flag. On a CPU without AVX2 they are plain loops, and Eigen does the GEMMs (at the width the
// including file's flags allow).
//
// Int8 (CpuOptions::dtype = Dtype::Int8): the linear layers CpuOptions::int8 names are quantised once, at
// construction, and multiplied in int8 (backend/cpu_int8.hpp: symmetric per output row, activations per
// row on the fly, int32 accumulation), as are the encoder's attention products and (CpuInt8Backend) the
// decoder's cross-attention scores; norms, softmax and the residual stream stay fp32.
//
// Bf16 (Dtype::Bf16): CpuBf16Backend rounds weights and every primitive's output to bf16, as the GPU's bf16 path
// and transformers' bfloat16 do; its products are vdpbf16ps (backend/cpu_bf16.hpp) or the fp32 kernels.
#pragma once

#include "pix2struct/backend/cpu_kernels.hpp"  // first: it includes <immintrin.h> (see there)
#include "pix2struct/backend/cpu_int8.hpp"
#include "pix2struct/backend/cpu_bf16.hpp"

// Warnings that are not ours, silenced for Eigen only (an app may see it through -I, e.g. from pkg-config):
// Eigen 3.4's unused variables in its AVX code and (clang -Wpedantic) a C99 compound literal in Eigen/Half.h.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-variable"
#if defined(__clang__)
#pragma clang diagnostic ignored "-Wc99-extensions"
#endif
#include <Eigen/Core>
#pragma GCC diagnostic pop
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "pix2struct/backend/backend.hpp"
#include "pix2struct/backend/cpu_isa.hpp"
#include "pix2struct/backend/thread_pool.hpp"
#include "pix2struct/error.hpp"
#include "pix2struct/nn/relative_position.hpp"
#include "pix2struct/pipeline.hpp"
#include "pix2struct/weights.hpp"

namespace pix2struct {

namespace detail {

// 64-byte aligned storage of n T's, zeroed (Eigen and AVX-512 like aligned rows). From 4 MiB on, aligned to and
// advised as 2 MiB huge pages: the decoder's K/V caches are streamed from memory every step, and on 4 KiB pages
// the TLB misses cost a third of a narrow (BF16) cross-attention's time.
template <class T>
class AlignedArray {
public:
    AlignedArray() = default;
    explicit AlignedArray(size_t n) : n_(n) {
        if (n) {
            p_ = static_cast<T*>(::operator new[](n * sizeof(T), std::align_val_t(alignment())));
#ifdef MADV_HUGEPAGE
            if (alignment() > 64) ::madvise(p_, (n * sizeof(T) + alignment() - 1) / alignment() * alignment(), MADV_HUGEPAGE);
#endif
            std::fill(p_, p_ + n, T(0));
        }
    }
    AlignedArray(AlignedArray&& o) noexcept : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
    AlignedArray& operator=(AlignedArray&& o) noexcept {
        std::swap(p_, o.p_);
        std::swap(n_, o.n_);
        return *this;
    }
    ~AlignedArray() {
        if (p_) ::operator delete[](p_, std::align_val_t(alignment()));
    }
    T* data() { return p_; }
    const T* data() const { return p_; }
    size_t size() const { return n_; }

private:
    size_t alignment() const { return n_ * sizeof(T) >= (size_t(4) << 20) ? HugePageFree::kHuge : 64; }

    T* p_ = nullptr;
    size_t n_ = 0;
};
using AlignedFloats = AlignedArray<float>;

}  // namespace detail

// Which linear layers int8 mode quantises (the rest stay fp32; the patch projection and the embeddings
// always do; lm_head is read as BF16 in decode steps). The defaults are the measured choice
// (bench/RESULTS.md, "Int8"): everything but lm_head, whose int8 rounding changed greedy answers at small
// margins.
struct Int8Layers {
    bool encoder = true;      // the vision layers' attention projections and MLP
    bool decoder = true;      // the text layers' self- and cross-attention projections and MLP
    bool mlp_out = true;      // the MLPs' output projection wo (T5's sensitive one), in both towers
    bool lm_head = false;     // the decoder's output projection to the vocabulary
    bool attention = true;    // the encoder's attention products Q·Kᵀ and P·V (queries and keys per row and head,
                              // values per channel, the softmax weights P per row in 8 unsigned bits)
};

// The linear layers of `c` that `layers` names.
inline std::vector<const Weight*> int8_weights(const Checkpoint& c, const Int8Layers& layers) {
    std::vector<const Weight*> out;
    auto add = [&](const AttentionWeights& a, const GatedMlpWeights& m) {
        for (const Weight* w : {&a.query, &a.key, &a.value, &a.output, &m.wi_0, &m.wi_1}) out.push_back(w);
        if (layers.mlp_out) out.push_back(&m.wo);
    };
    if (layers.encoder)
        for (const VisionLayerWeights& l : c.vision().layers) add(l.attention, l.mlp);
    if (layers.decoder)
        for (const TextLayerWeights& l : c.text().layers) {
            add(l.self_attention, l.mlp);
            for (const Weight* w : {&l.cross_attention.query, &l.cross_attention.key, &l.cross_attention.value,
                                    &l.cross_attention.output})
                out.push_back(w);
        }
    if (layers.lm_head) out.push_back(&c.text().lm_head);
    return out;
}

struct CpuOptions {
    int threads = 0;                    // 0: all hardware threads
    Dtype dtype = Dtype::F32;           // F32 or Int8 (Bf16: CpuBf16Backend)
    Int8Layers int8{};                  // with Int8: the layers quantised
    CpuIsa isa = host_isa();            // the widest fp32 kernels to use (tests ask for narrower ones)
    Int8Isa int8_isa = host_int8_isa(); // the same for the int8 kernels
    Bf16Isa bf16_isa = host_bf16_isa(); // the bf16 mode's products (CpuBf16Backend)
};

struct CpuBackend {
    using Scalar = float;                      // activations are fp32
    using Buffer = detail::AlignedFloats;      // n Scalars
    using FloatBuffer = detail::AlignedFloats; // n floats (masks, position bias)
    using IdBuffer = std::vector<int32_t>;     // n token ids
    static constexpr bool reads_host_weights = true;  // Weight::data, and Weight::bf16 in decode steps

    // `isa`: the widest kernels to use (default: what this CPU runs; a wider one than that is refused).
    explicit CpuBackend(int threads = 0, CpuIsa isa = host_isa(), Int8Isa int8_isa = host_int8_isa())
        : isa_(isa), int8_isa_(int8_isa),
          pool_(threads > 0 ? threads : int(std::max(1u, std::thread::hardware_concurrency()))) {
        if (int(isa) > int(host_isa()))
            detail::fail("CpuBackend: this CPU does not run ", isa_name(isa), " kernels (it runs ", isa_name(host_isa()), ")");
        if (int(int8_isa) > int(host_int8_isa()))
            detail::fail("CpuBackend: this CPU does not run ", isa_name(int8_isa), " kernels (it runs ",
                         isa_name(host_int8_isa()), ")");
    }
    // Without a checkpoint: with Dtype::Int8 and options.int8.attention, the attention of many queries in int8;
    // linear weights are quantised by quantise().
    explicit CpuBackend(const CpuOptions& options) : CpuBackend(options.threads, options.isa, options.int8_isa) {
        if (options.dtype == Dtype::Bf16) detail::fail("CpuBackend computes in f32 or int8: the bf16 mode is CpuBf16Backend");
        int8_attention_ = options.dtype == Dtype::Int8 && options.int8.attention;
    }
    // For a checkpoint: with Dtype::Int8, its layers `options.int8` names are quantised here, and lm_head, when
    // it stays wider, gets a BF16 copy for the decode steps (the stored bytes of a BF16 checkpoint; rounded to
    // nearest even from an F32 one): half of fp32's bytes, at a fraction of int8's error.
    CpuBackend(const Checkpoint& c, const CpuOptions& options) : CpuBackend(options) {
        if (options.dtype != Dtype::Int8) return;
        quantise(int8_weights(c, options.int8));
        const Weight& lm = c.text().lm_head;
        if (!options.int8.lm_head && !lm.bf16 && lm.data) {
            std::vector<uint16_t> h(size_t(lm.size()));
            for (size_t i = 0; i < h.size(); ++i) h[i] = float_to_bf16(lm.data[i]);
            if (size_t(lm.index) >= bf16_.size()) bf16_.resize(size_t(lm.index) + 1);
            bf16_[size_t(lm.index)] = detail::huge_page_copy(std::as_bytes(std::span(h)));
        }
    }

    // Quantises these linear weights (fp32 views) for int8 products from now on, threads over their panels.
    void quantise(std::span<const Weight* const> weights) {
        for (const Weight* w : weights) {
            if (!w->data) detail::fail("CpuBackend::quantise: '", w->name, "' has no fp32 view");
            if (w->index < 0) detail::fail("CpuBackend::quantise: '", w->name, "' has no index");
            if (size_t(w->index) >= int8_.size()) int8_.resize(size_t(w->index) + 1);
            detail::Int8Matrix& q = int8_[size_t(w->index)];
            q = detail::Int8Matrix(w->data, w->rows(), w->cols());
            pool_.parallel_for(q.view().panel_count(), [&](int64_t p, int) { q.quantise(int8_isa_, p, p + 1); });
        }
    }

    int threads() const { return pool_.size(); }
    CpuIsa isa() const { return isa_; }
    Int8Isa int8_isa() const { return int8_isa_; }
    // For logs: the threads and the kernels chosen.
    std::string describe() const {
        std::string s = "CPU, " + std::to_string(threads()) + " threads, fp32 kernels " + isa_name(isa_);
        if (const int64_t b = int8_bytes())
            s += ", int8 kernels " + std::string(isa_name(int8_isa_)) + " (" + std::to_string(b >> 20) + " MiB of int8 weights)";
        return s;
    }
    // Bytes per value linear() reads of W: 1 (int8 panels), 2 (a BF16 copy, in decode steps), 4 (fp32).
    int bytes_per_value(const Weight& W) const { return int8(W) ? 1 : W.bf16 || own_bf16(W) ? 2 : 4; }
    // Bytes of int8 weight panels held (0 in fp32 mode).
    int64_t int8_bytes() const {
        int64_t n = 0;
        for (const detail::Int8Matrix& q : int8_) n += q.n ? q.bytes() : 0;
        return n;
    }
    Buffer alloc(size_t n) const { return Buffer(n); }
    FloatBuffer alloc_float(size_t n) const { return FloatBuffer(n); }
    IdBuffer alloc_ids(size_t n) const { return IdBuffer(n); }

    // Y[M, N] (=|+=) X[M, K] · Wᵀ (+ bias[N]).  W: [N, K] row-major (torch nn.Linear).
    // Split over N: each thread owns a column slice of Y. A decode step's few rows: detail::gemv over the
    // BF16 copy (Weight::bf16) or the fp32 rows; more rows: detail::sgemm (Eigen's GEMM on a CPU without AVX2).
    void linear(const float* X, int64_t M, const Weight& W, float* Y, Write mode = Write::Overwrite,
                const Weight* bias = nullptr) {
        const int64_t N = W.rows(), K = W.cols();
        const bool accumulate = mode == Write::Accumulate;
        if (const detail::Int8Matrix* q = int8(W)) return linear_int8(X, M, W, *q, Y, accumulate, bias);
        const uint16_t* bf16 = W.bf16 ? W.bf16 : own_bf16(W);
        const bool gemv = M <= detail::kGemvMaxRows && !bias && (bf16 || isa_ != CpuIsa::Generic);
        if (gemv) {  // slices of ≥ 64 output features, one per thread
            int64_t slices = std::min<int64_t>(std::max<int64_t>(1, N / 64), pool_.size());
            if (M * N * K < 64 * 1024) slices = 1;  // too small to be worth a wake-up
            const int64_t step = (N + slices - 1) / slices;
            pool_.parallel_for(slices, [&](int64_t s, int) {
                const int64_t n0 = s * step, n1 = std::min(N, n0 + step);
                if (bf16) detail::gemv(isa_, X, K, M, bf16, K, n0, n1, K, Y, N, accumulate);
                else detail::gemv(isa_, X, K, M, W.data, K, n0, n1, K, Y, N, accumulate);
            });
            return;
        }
        const int64_t nr = isa_ == CpuIsa::Generic ? 64 : detail::gemm_nr(isa_);
        int64_t slices = std::min<int64_t>((N + nr - 1) / nr, pool_.size());
        if (M * N * K < 64 * 1024) slices = 1;
        const int64_t step = ((N + nr - 1) / nr + slices - 1) / slices * nr;  // whole register panels
        if (isa_ != CpuIsa::Generic) reserve(pack_, detail::sgemm_pack_floats(isa_, step));
        pool_.parallel_for(slices, [&](int64_t s, int worker) {
            const int64_t n0 = s * step, n = std::min(step, N - n0);
            if (n <= 0) return;
            if (isa_ != CpuIsa::Generic) {
                detail::sgemm(isa_, M, n, K, X, K, W.data, K, false, n0, Y + n0, N, accumulate,
                              pack_[size_t(worker)].data());
            } else {
                using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
                Eigen::Map<const RowMat> x(X, M, K);
                Eigen::Map<const RowMat> w(W.data + n0 * K, n, K);
                Eigen::Map<RowMat, 0, Eigen::OuterStride<>> y(Y + n0, M, n, Eigen::OuterStride<>(N));
                if (accumulate) y.noalias() += x * w.transpose();
                else y.noalias() = x * w.transpose();
            }
            if (bias)
                for (int64_t m = 0; m < M; ++m)
                    for (int64_t j = 0; j < n; ++j) Y[m * N + n0 + j] += bias->data[n0 + j];
        });
    }

    // Y[M, H] = w ⊙ X / sqrt(mean(X²) + eps). The mean is taken in fp32 (the reference casts to fp32).
    void rms_norm(const float* X, int64_t M, const Weight& w, float eps, float* Y) {
        const int64_t H = w.rows();
        for (int64_t i = 0; i < M; ++i) detail::rms_norm(isa_, X + i * H, w.data, H, eps, Y + i * H);
    }

    // A[n] = gelu_new(A) ⊙ B with gelu_new(a) = 0.5·a·(1 + tanh(√(2/π)·(a + 0.044715·a³))) (the tanh form,
    // transformers' NewGELUActivation), in chunks over the threads.
    void gelu_gate(float* A, const float* B, int64_t n) {
        const int64_t chunk = 1 << 14;
        const int64_t chunks = (n + chunk - 1) / chunk;
        pool_.parallel_for(chunks, [&](int64_t c, int) {
            const int64_t i0 = c * chunk;
            detail::gelu_gate(isa_, A + i0, B + i0, std::min(chunk, n - i0));
        });
    }

    // O = softmax(Q·Kᵀ + bias, keys masked) · V for each head; scores are NOT scaled by 1/√D (the reference
    // folds the scale into the trained query weights). Softmax in fp32. Queries go in blocks of kQueryBlock
    // rows so a block's scores [kQueryBlock, Tk] stay in the core's L2 cache (a whole head's [N, N] scores,
    // 16 MB at N = 2048, would stream through memory three times). With fewer than kPackedMinQueries
    // queries (decode steps: one) a task is a head, and detail::dot_keys and detail::weighted_rows read its
    // keys and values in place. With more (the encoder) and AVX2 or AVX-512 a task is a head too: its keys
    // and values are packed once for detail::sgemm_packed, then its query blocks run (in int8 mode:
    // attention_int8); without AVX2 a task is a (head, query block), on Eigen.
    static constexpr int64_t kQueryBlock = 64, kPackedMinQueries = 16;
    void attention(const AttentionArgs<float>& args) {
        const AttentionArgs<float> a = with_default_strides(args);
        // What the model asks of a backend: one sequence (B = 1), the bias as [H, Lq, Lk], causality by
        // the cache length (the CUDA kernels also take batches, strided biases and a causal flag).
        if (a.B != 1 || a.causal || a.bias_row != a.Lk || a.bias_head != int64_t(a.Lq) * a.Lk || a.D < 1)
            detail::fail("CpuBackend::attention: takes B = 1, no causal flag, a [H, Lq, Lk] bias and D >= 1");
        const int64_t Tq = a.Lq, Tk = a.Lk, D = a.D, block = std::min(Tq, kQueryBlock);
        if (Tq < kPackedMinQueries) return attention_few_queries(a);
        if (int8_attention_) return attention_int8(a);
        reserve(scratch_, block * Tk);
        if (isa_ != CpuIsa::Generic) {
            reserve(pack_, detail::sgemm_packed_floats(isa_, Tk, D));
            reserve(pack_v_, detail::sgemm_packed_floats(isa_, D, Tk));
            pool_.parallel_for(a.H, [&](int64_t h, int worker) {
                float *keys = pack_[size_t(worker)].data(), *values = pack_v_[size_t(worker)].data();
                float* scores = scratch_[size_t(worker)].data();
                detail::pack_b_all(isa_, a.k + h * D, a.k_row, false, Tk, D, keys);
                detail::pack_b_all(isa_, a.v + h * D, a.v_row, true, D, Tk, values);
                for (int64_t i0 = 0; i0 < Tq; i0 += block) {
                    const int64_t m = std::min(block, Tq - i0);
                    // scores = torch.matmul(query_states, key_states.transpose(3, 2))
                    detail::sgemm_packed(isa_, m, Tk, D, a.q + i0 * a.q_row + h * D, a.q_row, keys, scores, Tk, false);
                    bias_mask_softmax(a, h, i0, m, scores);
                    // attn_output = torch.matmul(attn_weights, value_states)
                    detail::sgemm_packed(isa_, m, D, Tk, scores, Tk, values, a.o + i0 * a.o_row + h * D, a.o_row, false);
                }
            });
            return;
        }
        using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
        using Stride = Eigen::OuterStride<>;
        const int64_t blocks = (Tq + block - 1) / block;
        pool_.parallel_for(int64_t(a.H) * blocks, [&](int64_t task, int worker) {
            const int64_t h = task / blocks, i0 = (task % blocks) * block, m = std::min(block, Tq - i0);
            Eigen::Map<const RowMat, 0, Stride> q(a.q + i0 * a.q_row + h * D, m, D, Stride(a.q_row));
            Eigen::Map<const RowMat, 0, Stride> k(a.k + h * D, Tk, D, Stride(a.k_row));
            Eigen::Map<const RowMat, 0, Stride> v(a.v + h * D, Tk, D, Stride(a.v_row));
            Eigen::Map<RowMat, 0, Stride> o(a.o + i0 * a.o_row + h * D, m, D, Stride(a.o_row));
            Eigen::Map<RowMat> scores(scratch_[size_t(worker)].data(), m, Tk);  // [m, Tk]
            scores.noalias() = q * k.transpose();
            bias_mask_softmax(a, h, i0, m, scores.data());
            o.noalias() = scores * v;  // [m, D]
        });
    }

    // Y[n, H] (=|+=) table[ids[i], :]
    void embed(const Weight& table, const int64_t* ids, int64_t n, float* Y, Write mode = Write::Overwrite) {
        const int64_t H = table.cols();
        for (int64_t i = 0; i < n; ++i) {
            if (ids[i] < 0 || ids[i] >= table.rows())
                detail::fail("embedding '", table.name, "': index ", ids[i], " is outside [0, ", table.rows(), ")");
            const float* src = table.data + ids[i] * H;
            float* dst = Y + i * H;
            if (mode == Write::Overwrite) std::copy(src, src + H, dst);
            else
                for (int64_t j = 0; j < H; ++j) dst[j] += src[j];
        }
    }

    // Y[H] = table[*token]: the decoder's embedding of a token chosen by argmax().
    void embed_token(const Weight& table, const int32_t* token, float* Y) {
        const int64_t id = *token;
        embed(table, &id, 1, Y);
    }

    // *out = the index of the first maximum of X[n] (torch.argmax's tie rule), or -1 when the row holds a
    // NaN or an infinity (kNonFiniteLogits: generate() reports it) — the CUDA kernel's rule.
    void argmax(const float* X, int64_t n, int32_t* out) {
        int64_t best = 0;
        for (int64_t i = 0; i < n; ++i) {
            if (!std::isfinite(X[i])) {
                *out = kNonFiniteLogits;
                return;
            }
            if (X[i] > X[best]) best = i;
        }
        *out = int32_t(best);
    }

    // Host memory is the backend's memory: transfers are copies.
    template <class T>
    void upload(T* dst, const T* src, int64_t n) { std::copy(src, src + n, dst); }
    template <class T>
    void download(T* dst, const T* src, int64_t n) { std::copy(src, src + n, dst); }
    template <class T>
    void copy(T* dst, const T* src, int64_t n) { std::copy(src, src + n, dst); }

    void add_rows(float* Y, const float* X, int64_t n) {
        Eigen::Map<Eigen::ArrayXf>(Y, n) += Eigen::Map<const Eigen::ArrayXf>(X, n);
    }

    // out[heads, 1, q + 1]: the decoder's relative position bias of the query at position q (host code).
    void relative_position_bias(const Weight& table, int num_buckets, int max_distance, int64_t q, float* out) {
        relative_position_bias_host(table, num_buckets, max_distance, q, out);
    }

protected:
    detail::ThreadPool& pool() { return pool_; }

    // Y [M, N] in slices of whole panels of nr columns, one per thread (one slice for a small product): f(n0, n)
    // writes columns [n0, n0 + n), then the bias is added to them.
    template <class F>
    void by_panel_slices(int64_t M, int64_t N, int64_t K, int64_t panels, int64_t nr, float* Y, const Weight* bias, F&& f) {
        const int64_t slices = M * N * K < 64 * 1024 ? 1 : std::min<int64_t>(panels, pool_.size());
        const int64_t step = (panels + slices - 1) / slices * nr;
        pool_.parallel_for(slices, [&](int64_t s, int) {
            const int64_t n0 = s * step, n = std::min(step, N - n0);
            if (n <= 0) return;
            f(n0, n);
            if (bias)
                for (int64_t m = 0; m < M; ++m)
                    for (int64_t j = 0; j < n; ++j) Y[m * N + n0 + j] += bias->data[n0 + j];
        });
    }

    // attention() of a few queries with the keys split into fixed chunks of kKeyChunk over the threads, every
    // head of a block of kKeyBlock keys in turn (the block's rows, contiguous in memory, read once): the
    // cross-attention of CpuInt8Backend's decode steps over its int8 K/V (codes biased by 128; row j scaled by
    // k_scale[j] and v_scale[j]). Scores: each query's head quantised per row (signed codes), then
    // detail::dot_codes (int32), times both scales; the softmax weights are multiplied by the value scales and
    // the values widened to fp32. The output adds the chunks' partial sums in chunk order, so its bits do not
    // depend on the thread count.
    static constexpr int64_t kKeyChunk = 256, kKeyBlock = 16;
    void attention_by_key_chunks(const AttentionArgs<float, uint8_t>& a, const float* k_scale, const float* v_scale) {
        const int64_t Tq = a.Lq, Tk = a.Lk, D = a.D, H = a.H, I = H * D, ldq = detail::int8_row_bytes(D);
        const int64_t chunks = (Tk + kKeyChunk - 1) / kKeyChunk;
        if (int64_t(key_scores_.size()) < H * Tq * Tk) key_scores_ = detail::AlignedFloats(size_t(H * Tq * Tk));
        if (int64_t(key_partials_.size()) < chunks * Tq * I) key_partials_ = detail::AlignedFloats(size_t(chunks * Tq * I));
        query_codes_.resize(size_t(Tq * H * ldq));
        query_scales_.resize(size_t(Tq * H));
        float* scores = key_scores_.data();      // [H, Tq, Tk]
        float* partial = key_partials_.data();   // [chunks, Tq, I]
        int8_t* q8 = reinterpret_cast<int8_t*>(query_codes_.data());  // [Tq, H, ldq]: signed codes
        for (int64_t i = 0; i < Tq; ++i)
            for (int64_t h = 0; h < H; ++h) {
                uint8_t* code = query_codes_.data() + (i * H + h) * ldq;
                detail::quantise_rows(int8_isa_, a.q + i * a.q_row + h * D, D, 1, D, code, ldq, &query_scales_[size_t(i * H + h)]);
                for (int64_t d = 0; d < D; ++d) code[d] ^= 0x80u;  // biased by 128 → signed
            }
        auto blocks = [&](int64_t c, auto&& f) {  // f(first key, keys) for each block of chunk c
            const int64_t j1 = std::min(Tk, (c + 1) * kKeyChunk);
            for (int64_t j = c * kKeyChunk; j < j1; j += kKeyBlock) f(j, std::min(kKeyBlock, j1 - j));
        };
        pool_.parallel_for(chunks, [&](int64_t c, int) {
            int32_t dots[kKeyBlock];
            blocks(c, [&](int64_t j, int64_t n) {
                for (int64_t h = 0; h < H; ++h)
                    for (int64_t i = 0; i < Tq; ++i) {
                        detail::dot_codes(int8_isa_, q8 + (i * H + h) * ldq, D, a.k + j * a.k_row + h * D, a.k_row, n, dots);
                        const float sq = query_scales_[size_t(i * H + h)];
                        float* out = scores + (h * Tq + i) * Tk + j;
                        for (int64_t t = 0; t < n; ++t) out[t] = float(dots[t]) * sq * k_scale[j + t];
                    }
            });
        });
        pool_.parallel_for(H, [&](int64_t h, int) {
            bias_mask_softmax(a, h, 0, Tq, scores + h * Tq * Tk);
            for (int64_t i = 0; i < Tq; ++i)
                for (int64_t j = 0; j < Tk; ++j) scores[(h * Tq + i) * Tk + j] *= v_scale[j];
        });
        pool_.parallel_for(chunks, [&](int64_t c, int) {
            blocks(c, [&](int64_t j, int64_t n) {
                for (int64_t h = 0; h < H; ++h)
                    for (int64_t i = 0; i < Tq; ++i)
                        detail::weighted_rows(isa_, scores + (h * Tq + i) * Tk + j, n, a.v + j * a.v_row + h * D, a.v_row,
                                              D, partial + (c * Tq + i) * I + h * D, j > c * kKeyChunk);
            });
        });
        for (int64_t i = 0; i < Tq; ++i)
            for (int64_t e = 0; e < I; ++e) {
                float sum = partial[i * I + e];
                for (int64_t c = 1; c < chunks; ++c) sum += partial[(c * Tq + i) * I + e];
                a.o[i * a.o_row + e] = sum;
            }
    }

private:
    // attention() of a few queries (decode steps): keys and values read in place, a head per task.
    void attention_few_queries(const AttentionArgs<float>& a) {
        const int64_t Tq = a.Lq, Tk = a.Lk, D = a.D;
        reserve(scratch_, Tq * Tk);
        pool_.parallel_for(a.H, [&](int64_t h, int worker) {
            float* scores = scratch_[size_t(worker)].data();
            for (int64_t i = 0; i < Tq; ++i)
                detail::dot_keys(isa_, a.q + i * a.q_row + h * D, D, a.k + h * D, a.k_row, Tk, scores + i * Tk);
            bias_mask_softmax(a, h, 0, Tq, scores);
            for (int64_t i = 0; i < Tq; ++i)
                detail::weighted_rows(isa_, scores + i * Tk, Tk, a.v + h * D, a.v_row, D, a.o + i * a.o_row + h * D);
        });
    }

    // attention() of many queries in int8 (Int8Layers::attention): per head, K [Tk, D] quantised per key and V
    // per channel (panels, as weights are), then per block of queries: Q quantised per row, scores = Q·Kᵀ in
    // int8, bias, mask and softmax in fp32, P quantised per row (unsigned, 8 bits), O = P·V in int8.
    struct Int8AttentionScratch {
        detail::AlignedArray<int8_t> keys, values;
        std::vector<float> key_scale, value_scale, q_scale, p_scale;
        std::vector<int32_t> key_bias, value_bias;
        detail::AlignedArray<uint8_t> q, p;
    };
    void attention_int8(const AttentionArgs<float>& a) {
        const int64_t Tq = a.Lq, Tk = a.Lk, D = a.D, block = std::min(Tq, kQueryBlock);
        const int64_t ldq = detail::int8_row_bytes(D), ldp = detail::int8_row_bytes(Tk);
        reserve(scratch_, block * Tk);
        if (int64_t(int8_attention_scratch_.size()) < pool_.size()) int8_attention_scratch_.resize(size_t(pool_.size()));
        auto fit = [](auto& v, int64_t n) {
            if (int64_t(v.size()) < n) v = std::remove_reference_t<decltype(v)>(size_t(n));
        };
        pool_.parallel_for(a.H, [&](int64_t h, int worker) {
            Int8AttentionScratch& w = int8_attention_scratch_[size_t(worker)];
            fit(w.keys, detail::int8_panel_bytes(Tk, D));
            fit(w.values, detail::int8_panel_bytes(D, Tk));
            fit(w.key_scale, detail::int8_panel_rows(Tk));
            fit(w.key_bias, detail::int8_panel_rows(Tk));
            fit(w.value_scale, detail::int8_panel_rows(D));
            fit(w.value_bias, detail::int8_panel_rows(D));
            fit(w.q, block * ldq);
            fit(w.p, block * ldp);
            fit(w.q_scale, block);
            fit(w.p_scale, block);
            const int64_t key_panels = (Tk + detail::kI8Nr - 1) / detail::kI8Nr, value_panels = (D + detail::kI8Nr - 1) / detail::kI8Nr;
            detail::quantise_panels(int8_isa_, a.k + h * D, a.k_row, 1, Tk, D, 0, key_panels, true, w.keys.data(),
                                    w.key_scale.data(), w.key_bias.data());
            detail::quantise_panels(int8_isa_, a.v + h * D, 1, a.v_row, D, Tk, 0, value_panels, false, w.values.data(),
                                    w.value_scale.data(), w.value_bias.data());
            const detail::Int8Panels keys{Tk, (D + 3) / 4 * 4, w.keys.data(), w.key_scale.data(), w.key_bias.data()};
            const detail::Int8Panels values{D, (Tk + 3) / 4 * 4, w.values.data(), w.value_scale.data(), w.value_bias.data()};
            float* scores = scratch_[size_t(worker)].data();
            for (int64_t i0 = 0; i0 < Tq; i0 += block) {
                const int64_t m = std::min(block, Tq - i0);
                detail::quantise_rows(int8_isa_, a.q + i0 * a.q_row + h * D, a.q_row, m, D, w.q.data(), ldq, w.q_scale.data());
                detail::igemm(int8_isa_, m, w.q.data(), ldq, w.q_scale.data(), keys, 0, Tk, scores, Tk, false);
                bias_mask_softmax(a, h, i0, m, scores);
                detail::quantise_rows<true>(int8_isa_, scores, Tk, m, Tk, w.p.data(), ldp, w.p_scale.data());
                detail::igemm(int8_isa_, m, w.p.data(), ldp, w.p_scale.data(), values, 0, D, a.o + i0 * a.o_row + h * D,
                              a.o_row, false);
            }
        });
    }

    const uint16_t* own_bf16(const Weight& W) const {
        return W.index >= 0 && size_t(W.index) < bf16_.size() ? static_cast<const uint16_t*>(bf16_[size_t(W.index)].get())
                                                              : nullptr;
    }
    const detail::Int8Matrix* int8(const Weight& W) const {
        return W.index >= 0 && size_t(W.index) < int8_.size() && int8_[size_t(W.index)].n ? &int8_[size_t(W.index)] : nullptr;
    }

    // linear() with W's int8 panels: X quantised per row (in row chunks over the threads), then slices of
    // whole panels, one per thread.
    void linear_int8(const float* X, int64_t M, const Weight& W, const detail::Int8Matrix& q, float* Y, bool accumulate,
                     const Weight* bias) {
        if (q.source != W.data || q.n != W.rows() || q.k != W.cols())
            detail::fail("CpuBackend: '", W.name, "' is not the weight quantised at its index ", W.index);
        const int64_t N = q.n, K = q.k, ldq = detail::int8_row_bytes(K);
        if (int64_t(qx_.size()) < M * ldq) qx_.resize(size_t(M * ldq));
        if (int64_t(sx_.size()) < M) sx_.resize(size_t(M));
        const int64_t chunk = 64, chunks = (M + chunk - 1) / chunk;
        pool_.parallel_for(chunks, [&](int64_t c, int) {
            const int64_t m0 = c * chunk;
            detail::quantise_rows(int8_isa_, X + m0 * K, K, std::min(chunk, M - m0), K, qx_.data() + m0 * ldq, ldq,
                                  sx_.data() + m0);
        });
        const detail::Int8Panels panels = q.view();
        by_panel_slices(M, N, K, panels.panel_count(), detail::kI8Nr, Y, bias, [&](int64_t n0, int64_t n) {
            detail::igemm(int8_isa_, M, qx_.data(), ldq, sx_.data(), panels, n0, n, Y + n0, N, accumulate);
        });
    }

    // Query rows i0 .. i0 + m of head h: scores [m, Lk] += bias; masked keys; softmax, in fp32.
    template <class KV>
    void bias_mask_softmax(const AttentionArgs<float, KV>& a, int64_t h, int64_t i0, int64_t m, float* scores) const {
        const int64_t Tk = a.Lk;
        const float lowest = std::numeric_limits<float>::lowest();
        for (int64_t i = 0; i < m; ++i) {
            float* row = scores + i * Tk;
            if (a.bias) {
                const float* bias = a.bias + (h * a.Lq + i0 + i) * Tk;
                for (int64_t j = 0; j < Tk; ++j) row[j] += bias[j];
            }
            // The reference adds finfo(float32).min to masked scores (then clamps at min): exp → 0.
            if (a.key_mask)
                for (int64_t j = 0; j < Tk; ++j)
                    if (a.key_mask[j] == 0.0f) row[j] = lowest;
            // attn_weights = nn.functional.softmax(scores.float(), dim=-1)
            detail::softmax_row(isa_, row, Tk);
        }
    }

    // Gives every worker a buffer of at least n floats in `per_worker`.
    void reserve(std::vector<detail::AlignedFloats>& per_worker, int64_t n) {
        if (int64_t(per_worker.size()) < pool_.size() || int64_t(per_worker[0].size()) < n) {
            per_worker.clear();
            for (int i = 0; i < pool_.size(); ++i) per_worker.emplace_back(size_t(n));
        }
    }

    CpuIsa isa_;
    Int8Isa int8_isa_;
    detail::ThreadPool pool_;
    std::vector<detail::Int8Matrix> int8_;  // by Weight::index: the quantised weights (n = 0: fp32)
    std::vector<detail::HugePageBytes> bf16_; // by Weight::index: int8 mode's BF16 copy of a wider decode matrix
    bool int8_attention_ = false;             // Int8Layers::attention
    std::vector<Int8AttentionScratch> int8_attention_scratch_;  // per worker
    std::vector<uint8_t> qx_;               // a linear's quantised input rows
    std::vector<float> sx_;                 // and their scales
    std::vector<detail::AlignedFloats> scratch_, pack_, pack_v_;  // per worker: scores, packed B (keys), packed values
    detail::AlignedFloats key_scores_, key_partials_;             // attention_by_key_chunks
    std::vector<uint8_t> query_codes_;                            // and its queries' codes
    std::vector<float> query_scales_;
};

static_assert(Backend<CpuBackend>, "CpuBackend must provide every primitive of the Backend concept");

// The int8 mode as a pipeline runs it: CpuBackend with Dtype::Int8, and the decoder's cross-attention K/V kept
// in int8 (CrossScalar: codes biased by 128, as quantise_rows stores activations), one scale per row (max |row|
// / 127 over the row's `inner` values, all heads; rounded to nearest). A decode step reads every layer's cross
// K/V once per token — 2 · layers · patches · inner values, 148 MB in fp32 for the base model at 2009 patches,
// more than its int8 weights — so a quarter of the bytes is most of what decoding gains beyond the weights. The
// scores are int8 dot products (the query quantised per head; vpdpbusd, or vpmaddwd on AVX2), softmax and the
// weighted sum of values in fp32.
//
// The scales live beside the values in the buffer alloc_cross() makes; linear() and attention() are given
// pointers into it, so the backend keeps a list of the buffers it made (alive ones only) to find them.
struct CpuInt8Backend : CpuBackend {
    using CrossScalar = uint8_t;  // int8 codes + 128
    struct CrossRows {
        detail::AlignedArray<uint8_t> values;
        std::vector<float> scales;  // one per row of `width` values (set by the linear() that writes them)
        int64_t width = 0;
    };
    // n int8 values and their rows' scales; moved, not copied (the model keeps it while it uses it).
    class CrossBuffer {
    public:
        CrossBuffer() = default;
        uint8_t* data() { return rows_ ? rows_->values.data() : nullptr; }
        const uint8_t* data() const { return rows_ ? rows_->values.data() : nullptr; }
        size_t size() const { return rows_ ? rows_->values.size() : 0; }

    private:
        friend struct CpuInt8Backend;
        explicit CrossBuffer(size_t n) : rows_(std::make_shared<CrossRows>()) { rows_->values = detail::AlignedArray<uint8_t>(n); }
        std::shared_ptr<CrossRows> rows_;
    };

    // options.dtype is taken as Int8.
    explicit CpuInt8Backend(const Checkpoint& c, CpuOptions options = {}) : CpuBackend(c, with_int8(options)) {}
    explicit CpuInt8Backend(CpuOptions options = {}) : CpuBackend(with_int8(options)) {}

    CrossBuffer alloc_cross(size_t n) {
        std::erase_if(cross_, [](const std::weak_ptr<CrossRows>& w) { return w.expired(); });
        CrossBuffer b(n);
        cross_.push_back(b.rows_);
        return b;
    }

    using CpuBackend::linear;
    // Y[M, N] = X · Wᵀ quantised per row into a buffer from alloc_cross() (the cross K/V projections), through
    // fp32 rows in blocks of kRows. A row holding NaN or infinity gets a NaN scale (its attention is NaN).
    void linear(const float* X, int64_t M, const Weight& W, uint8_t* Y, Write mode = Write::Overwrite,
                const Weight* bias = nullptr) {
        if (mode != Write::Overwrite) detail::fail("CpuInt8Backend: an int8 output is written, not accumulated");
        const int64_t N = W.rows(), K = W.cols(), ldq = detail::int8_row_bytes(N);
        CrossRows& rows = *find_rows(Y, N, M, "linear");
        const int64_t r0 = (Y - rows.values.data()) / N;
        const int64_t block = std::min(M, kRows);
        if (int64_t(rows_.size()) < block * N) rows_ = detail::AlignedFloats(size_t(block * N));
        if (int64_t(codes_.size()) < block * ldq) codes_.resize(size_t(block * ldq));
        for (int64_t m0 = 0; m0 < M; m0 += kRows) {
            const int64_t m = std::min(kRows, M - m0);
            CpuBackend::linear(X + m0 * K, m, W, rows_.data(), Write::Overwrite, bias);
            pool().parallel_for(m, [&](int64_t i, int) {  // rows padded to ldq in codes_, then copied
                uint8_t* code = codes_.data() + i * ldq;
                detail::quantise_rows(int8_isa(), rows_.data() + i * N, N, 1, N, code, ldq, &rows.scales[size_t(r0 + m0 + i)]);
                std::memcpy(Y + (m0 + i) * N, code, size_t(N));
            });
        }
    }

    using CpuBackend::attention;
    // `rows` rows of `width` values of a buffer from alloc_cross() as fp32, (code − 128) · scale: for reading
    // the cross keys on the host (detail::cross_to_host; attention maps).
    void cross_to_host(float* dst, const uint8_t* src, int64_t rows, int64_t width) {
        const CrossRows& r = *find_rows(src, width, rows, "cross_to_host");
        const float* scale = r.scales.data() + (src - r.values.data()) / width;
        for (int64_t i = 0; i < rows; ++i)
            for (int64_t j = 0; j < width; ++j) dst[i * width + j] = (float(src[i * width + j]) - 128.0f) * scale[i];
    }

    // A decode step's cross-attention: fp32 queries against int8 keys and values (buffers from alloc_cross()).
    void attention(const AttentionArgs<float, uint8_t>& args) {
        const AttentionArgs<float, uint8_t> a = with_default_strides(args);
        if (a.B != 1 || a.causal || a.Lq >= kPackedMinQueries || a.bias || a.D < 1)
            detail::fail("CpuInt8Backend::attention: int8 keys take B = 1, fewer than ", kPackedMinQueries,
                         " queries, no bias, no causal flag");
        const int64_t I = int64_t(a.H) * a.D;
        if (a.k_row != I || a.v_row != I)
            detail::fail("CpuInt8Backend::attention: int8 keys and values are rows of ", I, " values");
        const CrossRows& k = *find_rows(a.k, I, a.Lk, "attention's keys");
        const CrossRows& v = *find_rows(a.v, I, a.Lk, "attention's values");
        attention_by_key_chunks(a, k.scales.data() + (a.k - k.values.data()) / I,
                                v.scales.data() + (a.v - v.values.data()) / I);
    }

private:
    static constexpr int64_t kRows = 256;
    static CpuOptions with_int8(CpuOptions o) {
        o.dtype = Dtype::Int8;
        return o;
    }
    // The buffer from alloc_cross() holding `rows` rows of `width` values from p (a row boundary); the first
    // write of a buffer sets its width.
    std::shared_ptr<CrossRows> find_rows(const uint8_t* p, int64_t width, int64_t rows, const char* what) {
        for (const std::weak_ptr<CrossRows>& w : cross_) {
            std::shared_ptr<CrossRows> r = w.lock();
            if (!r || p < r->values.data() || p >= r->values.data() + r->values.size()) continue;
            const int64_t offset = p - r->values.data();
            if (r->width == 0) {
                r->width = width;
                r->scales.assign(r->values.size() / size_t(width), std::numeric_limits<float>::quiet_NaN());
            }
            if (r->width != width || offset % width || offset / width + rows > int64_t(r->scales.size()))
                detail::fail("CpuInt8Backend::", what, ": ", rows, " rows of ", width, " values at row ", offset / width,
                             " do not fit its cross K/V buffer (", r->scales.size(), " rows of ", r->width, ")");
            return r;
        }
        detail::fail("CpuInt8Backend::", what, ": int8 rows that alloc_cross() did not make");
    }

    std::vector<std::weak_ptr<CrossRows>> cross_;  // the buffers alloc_cross() made
    detail::AlignedFloats rows_;                   // linear()'s fp32 rows before quantising
    std::vector<uint8_t> codes_;                   // and their biased codes
};

static_assert(Backend<CpuInt8Backend>, "CpuInt8Backend must provide every primitive of the Backend concept");

// The bf16 mode (Dtype::Bf16), for parity and debugging: what CudaBackendBf16 computes and what transformers
// computes with torch_dtype=bfloat16, on the CPU. Weights are rounded to bf16 (nearest even, as torch's .to()
// rounds them; a BF16 checkpoint's values as stored), a linear's input is rounded to bf16 (a no-op for the
// activations, which already are; the patch pixels enter this way, as the reference casts them), and every
// activation a primitive writes is rounded to bf16 once: a linear's output with its bias or residual, a norm's,
// the gated GELU's, attention's, a sum's. Products, sums, norm statistics and softmax stay fp32, as on the GPU.
// The values are held in fp32 storage — each one bf16-representable, so the arithmetic is exactly that of bf16
// operands with fp32 accumulation. The products run on whichever is faster here (CpuOptions::bf16_isa,
// host_bf16_isa()): vdpbf16ps on weights packed at construction (backend/cpu_bf16.hpp; twice fp32 FMA's rate on
// AMD Zen 4), or the fp32 kernels on the rounded values (Intel, where vdpbf16ps runs at half fp32's rate).
struct CpuBf16Backend : CpuBackend {
    static constexpr bool bf16_values = true;  // every activation and weight it multiplies is a bf16 value

    // options.dtype is ignored. The weights (a checkpoint's, or a list whose weights[i]->index is i)
    // must outlive the backend; those not stored as BF16 are rounded here, into copies of its own.
    // With Bf16Isa::Avx512Bf16 the linear layers' weights (every 2-D weight of a list) are packed for it too.
    explicit CpuBf16Backend(const Checkpoint& c, CpuOptions options = {}) : CpuBf16Backend(options) {
        std::vector<const Weight*> all;
        c.for_each([&](const Weight& w) { all.push_back(&w); });
        round_weights(all);
        std::vector<const Weight*> linear = int8_weights(c, {});
        linear.push_back(&c.vision().patch_projection_weight);
        pack(linear);
    }
    explicit CpuBf16Backend(std::span<const Weight* const> weights, CpuOptions options = {}) : CpuBf16Backend(options) {
        adopt(weights);
    }

    // Takes these weights too (weights[i]->index past the ones it has): rounded, and the 2-D ones packed.
    void adopt(std::span<const Weight* const> weights) {
        round_weights(weights);
        std::vector<const Weight*> matrices;
        for (const Weight* w : weights)
            if (w->shape.size() == 2) matrices.push_back(w);
        pack(matrices);
    }

    Bf16Isa bf16_isa() const { return bf16_isa_; }
    std::string describe() const {
        return CpuBackend::describe() + ", bf16 weights and activations, bf16 products " + isa_name(bf16_isa_);
    }
    int bytes_per_value(const Weight& W) const { return CpuBackend::bytes_per_value(rounded(W)); }

    void linear(const float* X, int64_t M, const Weight& W, float* Y, Write mode = Write::Overwrite,
                const Weight* bias = nullptr) {
        const int64_t K = W.cols();
        if (!all_bf16(X, M * K)) {
            if (int64_t(input_.size()) < M * K) input_ = detail::AlignedFloats(size_t(M * K));
            std::copy(X, X + M * K, input_.data());
            round_bf16(input_.data(), M * K);
            X = input_.data();
        }
        if (const detail::Bf16Panels* p = panels(W); p && M > detail::kGemvMaxRows) {
            linear_bf16(X, M, *p, Y, mode == Write::Accumulate, bias ? &rounded(*bias) : nullptr);
        } else {
            CpuBackend::linear(X, M, rounded(W), Y, mode, bias ? &rounded(*bias) : nullptr);
        }
        round_bf16(Y, M * W.rows());
    }
    void rms_norm(const float* X, int64_t M, const Weight& w, float eps, float* Y) {
        CpuBackend::rms_norm(X, M, rounded(w), eps, Y);
        round_bf16(Y, M * w.rows());
    }
    void gelu_gate(float* A, const float* B, int64_t n) {
        CpuBackend::gelu_gate(A, B, n);
        round_bf16(A, n);
    }
    void attention(const AttentionArgs<float>& args) {
        CpuBackend::attention(args);
        const AttentionArgs<float> a = with_default_strides(args);  // B = 1 (CpuBackend::attention checked)
        for (int64_t i = 0; i < a.Lq; ++i) round_bf16(a.o + i * a.o_row, int64_t(a.H) * a.D);
    }
    void embed(const Weight& table, const int64_t* ids, int64_t n, float* Y, Write mode = Write::Overwrite) {
        CpuBackend::embed(rounded(table), ids, n, Y, mode);
        if (mode == Write::Accumulate) round_bf16(Y, n * table.cols());
    }
    void embed_token(const Weight& table, const int32_t* token, float* Y) { CpuBackend::embed_token(rounded(table), token, Y); }
    void add_rows(float* Y, const float* X, int64_t n) {
        CpuBackend::add_rows(Y, X, n);
        round_bf16(Y, n);
    }
    void relative_position_bias(const Weight& table, int num_buckets, int max_distance, int64_t q, float* out) {
        CpuBackend::relative_position_bias(rounded(table), num_buckets, max_distance, q, out);
    }

private:
    // A weight's rounded values: fp32 for the GEMMs and norms, BF16 bits for the GEMVs of decode steps.
    struct Rounded {
        const float* source = nullptr;  // the weight's own values these round
        Weight w;                       // a view of them (name, shape and index of the original)
        detail::AlignedFloats values;
        detail::HugePageBytes bf16;
    };
    static CpuOptions with_f32(CpuOptions o) {  // the base's fp32 kernels multiply the rounded values
        o.dtype = Dtype::F32;
        return o;
    }
    explicit CpuBf16Backend(const CpuOptions& options) : CpuBackend(with_f32(options)), bf16_isa_(options.bf16_isa) {
        if (int(bf16_isa_) > int(host_bf16_isa()))
            detail::fail("CpuBf16Backend: this CPU does not run ", isa_name(bf16_isa_), " products (it runs ",
                         isa_name(host_bf16_isa()), ")");
    }
    // Packs these weights' rounded values for vdpbf16ps (with Bf16Isa::Avx512Bf16), threads over the panels.
    void pack(std::span<const Weight* const> weights) {
        if (bf16_isa_ != Bf16Isa::Avx512Bf16) return;
        for (const Weight* w : weights) {
            if (w->index < 0) detail::fail("CpuBf16Backend: '", w->name, "' has no index");
            if (size_t(w->index) >= panels_.size()) panels_.resize(size_t(w->index) + 1);
            detail::Bf16Panels& p = panels_[size_t(w->index)];
            p = detail::Bf16Panels(rounded(*w).data, w->rows(), w->cols());
            pool().parallel_for(p.panel_count(), [&](int64_t i, int) { p.pack(i, i + 1); });
        }
    }
    const detail::Bf16Panels* panels(const Weight& W) const {
        if (W.index < 0 || size_t(W.index) >= panels_.size() || !panels_[size_t(W.index)].source) return nullptr;
        const detail::Bf16Panels& p = panels_[size_t(W.index)];
        if (p.source != rounded(W).data) detail::fail("CpuBf16Backend: '", W.name, "' is not the weight packed at its index ", W.index);
        return &p;
    }
    // linear() with W's panels: X as bf16 pairs, then slices of whole panels, one per thread.
    void linear_bf16(const float* X, int64_t M, const detail::Bf16Panels& W, float* Y, bool accumulate, const Weight* bias) {
#ifdef PIX2STRUCT_X86_KERNELS
        const int64_t N = W.n, K = W.k, lda = detail::bf16_row_elements(K);
        if (int64_t(pairs_.size()) < M * lda) pairs_.resize(size_t(M * lda));
        const int64_t chunk = 64, chunks = (M + chunk - 1) / chunk;
        pool().parallel_for(chunks, [&](int64_t c, int) {
            const int64_t m0 = c * chunk;
            detail::bf16_rows(X + m0 * K, K, std::min(chunk, M - m0), K, pairs_.data() + m0 * lda, lda);
        });
        by_panel_slices(M, N, K, W.panel_count(), detail::kBfNr, Y, bias, [&](int64_t n0, int64_t n) {
            detail::bgemm(M, pairs_.data(), lda, W, n0, n, Y + n0, N, accumulate);
        });
#else
        (void)X, (void)M, (void)W, (void)Y, (void)accumulate, (void)bias;
        detail::fail("CpuBf16Backend: AVX512-BF16 products on a CPU without them");
#endif
    }
    static bool stored_bf16(const Weight& w) { return w.source && w.source->dtype == DType::BF16; }
    static bool all_bf16(const float* x, int64_t n) {
        for (int64_t i = 0; i < n; ++i)
            if (std::bit_cast<uint32_t>(x[i]) & 0xffffu) return false;
        return true;
    }
    // x[n] = its values rounded to bf16, in chunks over the threads.
    void round_bf16(float* x, int64_t n) {
        const int64_t chunk = 1 << 15, chunks = (n + chunk - 1) / chunk;
        pool().parallel_for(chunks, [&](int64_t c, int) {
            for (int64_t i = c * chunk, end = std::min(n, i + chunk); i < end; ++i) x[i] = bf16_to_float(float_to_bf16(x[i]));
        });
    }

    void round_weights(std::span<const Weight* const> weights) {
        for (const Weight* w : weights) {
            if (stored_bf16(*w)) continue;  // its fp32 view holds the stored bf16 values exactly
            if (!w->data) detail::fail("CpuBf16Backend: '", w->name, "' has no fp32 view");
            if (w->index < 0) detail::fail("CpuBf16Backend: '", w->name, "' has no index");
            if (size_t(w->index) >= rounded_.size()) rounded_.resize(size_t(w->index) + 1);
            Rounded& r = rounded_[size_t(w->index)];
            const size_t n = size_t(w->size());
            r.source = w->data;
            r.w = *w;
            r.values = detail::AlignedFloats(n);
            std::vector<uint16_t> h(n);
            for (size_t i = 0; i < n; ++i) {
                h[i] = float_to_bf16(w->data[i]);
                r.values.data()[i] = bf16_to_float(h[i]);
            }
            r.bf16 = detail::huge_page_copy(std::as_bytes(std::span(h)));
            r.w.data = r.values.data();
            r.w.bf16 = static_cast<const uint16_t*>(r.bf16.get());
        }
    }
    // The weight to multiply by: W's rounded copy, or W itself when it is stored as BF16.
    const Weight& rounded(const Weight& W) const {
        if (W.index >= 0 && size_t(W.index) < rounded_.size() && rounded_[size_t(W.index)].source) {
            const Rounded& r = rounded_[size_t(W.index)];
            if (r.source != W.data) detail::fail("CpuBf16Backend: '", W.name, "' is not the weight rounded at its index ", W.index);
            return r.w;
        }
        if (!stored_bf16(W)) detail::fail("CpuBf16Backend: '", W.name, "' was not rounded to bf16 when the backend was made");
        return W;
    }

    Bf16Isa bf16_isa_;
    std::vector<Rounded> rounded_;               // by Weight::index: the copies of weights not stored as BF16
    std::vector<detail::Bf16Panels> panels_;     // by Weight::index: packed for vdpbf16ps (Bf16Isa::Avx512Bf16)
    detail::AlignedFloats input_;                // a linear's input rounded to bf16
    std::vector<uint16_t> pairs_;                // and as bf16 pairs
};

static_assert(Backend<CpuBf16Backend>, "CpuBf16Backend must provide every primitive of the Backend concept");

}  // namespace pix2struct
