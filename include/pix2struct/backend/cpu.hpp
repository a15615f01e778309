// pix2struct/backend/cpu.hpp — the CPU backend: fp32 arithmetic on Eigen, threads of our own.
//
// CpuBackend supplies every primitive of the Backend concept (backend/backend.hpp lists them, with their
// formulas) on host memory: Scalar = float, buffers are 64-byte aligned host arrays, ids are host vectors.
// tests/test_backend_ops.cpp checks each against float64.
//
// Threads: Eigen is single-threaded here (no OpenMP), so the backend splits work itself over a small pool
// owned by the backend (no global state): a linear layer splits the output features N into one slice per
// thread (each slice is an Eigen GEMM, or a GEMV when M = 1 — the decode step), attention splits heads.
//
// SIMD: Eigen's code is compiled for the flags of the including file; our kernels (the decode step's BF16
// GEMV) are compiled for AVX-512 and AVX2 whatever the flags and chosen at run time (backend/cpu_isa.hpp).
#pragma once

// Warnings that are not ours, silenced for these headers only (an app may see Eigen through -I, e.g. from
// pkg-config): Eigen 3.4's unused variables in its AVX code and (clang -Wpedantic) a C99 compound literal
// in Eigen/Half.h, and GCC 12's AVX-512 intrinsics warning about
// their own _mm512_undefined_* placeholders once inlined into Eigen (GCC bug 105593, fixed in 12.3).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-variable"
#if defined(__clang__)
#pragma clang diagnostic ignored "-Wc99-extensions"
#else
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#include <Eigen/Core>
#pragma GCC diagnostic pop
#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <system_error>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "pix2struct/backend/backend.hpp"
#include "pix2struct/backend/cpu_isa.hpp"
#include "pix2struct/error.hpp"
#include "pix2struct/nn/relative_position.hpp"
#include "pix2struct/weights.hpp"

namespace pix2struct {

namespace detail {

// A fixed pool: parallel_for(n, f) runs f(i, worker) for i in [0, n) on the calling thread (worker 0) and
// the pool's threads (workers 1..size-1) and returns when all are done. Workers sleep between calls. One
// pool per backend; not reentrant.
class ThreadPool {
public:
    explicit ThreadPool(int threads) {
        try {
            for (int i = 1; i < std::max(1, threads); ++i) workers_.emplace_back([this, i] { work(i); });
        } catch (const std::system_error& e) {  // the system refused a thread: join those started, then say so
            const size_t started = workers_.size() + 1;
            shutdown();
            detail::fail("cannot start ", threads, " threads (", started, " started): ", e.what());
        }
    }
    ~ThreadPool() { shutdown(); }
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int size() const { return int(workers_.size()) + 1; }

    template <class F>
    void parallel_for(int64_t n, F&& f) {
        if (n <= 0) return;
        if (workers_.empty() || n == 1) {
            for (int64_t i = 0; i < n; ++i) f(i, 0);
            return;
        }
        // The task is called through a plain function pointer and f's address (f outlives the call): no
        // std::function, whose captures would be heap-allocated on every call (every linear of every step).
        using Fn = std::remove_reference_t<F>;
        {
            std::lock_guard lock(mutex_);
            task_ = const_cast<void*>(static_cast<const void*>(std::addressof(f)));
            call_ = [](void* task, int64_t i, int worker) { (*static_cast<Fn*>(task))(i, worker); };
            count_ = n;
            next_.store(0);
            pending_ = int(workers_.size());
            ++generation_;
        }
        wake_.notify_all();
        run_tasks(0);
        std::unique_lock lock(mutex_);
        done_.wait(lock, [this] { return pending_ == 0; });
        task_ = nullptr;
    }

private:
    void shutdown() {
        {
            std::lock_guard lock(mutex_);
            stop_ = true;
            ++generation_;
        }
        wake_.notify_all();
        for (auto& t : workers_) t.join();
        workers_.clear();
    }

    void run_tasks(int worker) {
        for (int64_t i; (i = next_.fetch_add(1)) < count_;) call_(task_, i, worker);
    }
    void work(int worker) {
        uint64_t seen = 0;
        for (;;) {
            {
                std::unique_lock lock(mutex_);
                wake_.wait(lock, [&] { return generation_ != seen; });
                seen = generation_;
                if (stop_) return;
            }
            run_tasks(worker);
            {
                std::lock_guard lock(mutex_);
                if (--pending_ == 0) done_.notify_one();
            }
        }
    }

    std::vector<std::thread> workers_;
    std::mutex mutex_;
    std::condition_variable wake_, done_;
    void* task_ = nullptr;                          // the caller's f
    void (*call_)(void*, int64_t, int) = nullptr;  // calls it
    std::atomic<int64_t> next_{0};
    int64_t count_ = 0;
    int pending_ = 0;
    uint64_t generation_ = 0;
    bool stop_ = false;
};

// 64-byte aligned float storage (Eigen and AVX-512 like aligned rows).
class AlignedFloats {
public:
    AlignedFloats() = default;
    explicit AlignedFloats(size_t n) : n_(n) {
        if (n) {
            p_ = static_cast<float*>(::operator new[](n * sizeof(float), std::align_val_t(64)));
            std::fill(p_, p_ + n, 0.0f);
        }
    }
    AlignedFloats(AlignedFloats&& o) noexcept : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
    AlignedFloats& operator=(AlignedFloats&& o) noexcept {
        std::swap(p_, o.p_);
        std::swap(n_, o.n_);
        return *this;
    }
    ~AlignedFloats() {
        if (p_) ::operator delete[](p_, std::align_val_t(64));
    }
    float* data() { return p_; }
    const float* data() const { return p_; }
    size_t size() const { return n_; }

private:
    float* p_ = nullptr;
    size_t n_ = 0;
};

}  // namespace detail

namespace detail {

// Y[m, n] (=|+=) Σ_k W[n, k] · X[m, k] for the M rows of X [M, K] and n in [n0, n1), Y [M, N]; W stored as
// BF16 [N, K] (the checkpoint's bytes). Decode steps (M = one row per sequence of the batch, a handful) are
// memory-bound: reading the stored BF16 instead of the fp32 copy halves the bytes, and each weight row is
// read from memory once for all M rows (it stays in L1 while they pass over it). BF16 → fp32 is exact (a
// 16-bit shift), so the arithmetic is the same fp32 dot product as with the copy, in the same order for
// every row whatever M is: a sequence gets the same logits alone or in a batch.
inline constexpr int64_t kGemvMaxRows = 16;  // up to here the BF16 path beats an fp32 GEMM (bytes vs FLOPs)

#ifdef PIX2STRUCT_X86_KERNELS
// Rows [0, R) of X against one weight row w: AVX-512, R ≤ 8 (two accumulators per row: 16 registers).
PIX2STRUCT_AVX512 inline __m512 load_bf16x16(const uint16_t* p) {
    return _mm512_castsi512_ps(
        _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), 16));
}
template <int R>
PIX2STRUCT_AVX512 inline void dot_rows_bf16_avx512(const float* X, int64_t K, const uint16_t* w,
                                                   const uint16_t* prefetch_row, float* out) {
    __m512 s0[R], s1[R];
    for (int r = 0; r < R; ++r) s0[r] = s1[r] = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 32 <= K; k += 32) {  // one 64-byte line of the row per iteration
        if (prefetch_row) _mm_prefetch(reinterpret_cast<const char*>(prefetch_row + k), _MM_HINT_T0);
        const __m512 w0 = load_bf16x16(w + k), w1 = load_bf16x16(w + k + 16);
        for (int r = 0; r < R; ++r) {
            s0[r] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(X + r * K + k), s0[r]);
            s1[r] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(X + r * K + k + 16), s1[r]);
        }
    }
    for (; k + 16 <= K; k += 16) {
        const __m512 w0 = load_bf16x16(w + k);
        for (int r = 0; r < R; ++r) s0[r] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(X + r * K + k), s0[r]);
    }
    for (int r = 0; r < R; ++r) {
        float t = _mm512_reduce_add_ps(_mm512_add_ps(s0[r], s1[r]));
        for (int64_t j = k; j < K; ++j) t += bf16_to_float(w[j]) * X[r * K + j];
        out[r] = t;
    }
}

// The same with AVX2 + FMA: R ≤ 4 (two 8-wide accumulators per row of the 16 registers).
PIX2STRUCT_AVX2 inline __m256 load_bf16x8(const uint16_t* p) {
    return _mm256_castsi256_ps(
        _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 16));
}
PIX2STRUCT_AVX2 inline float reduce_add_avx2(__m256 v) {
    const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));
}
template <int R>
PIX2STRUCT_AVX2 inline void dot_rows_bf16_avx2(const float* X, int64_t K, const uint16_t* w,
                                               const uint16_t* prefetch_row, float* out) {
    __m256 s0[R], s1[R];
    for (int r = 0; r < R; ++r) s0[r] = s1[r] = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 16 <= K; k += 16) {
        if (prefetch_row && k % 32 == 0) _mm_prefetch(reinterpret_cast<const char*>(prefetch_row + k), _MM_HINT_T0);
        const __m256 w0 = load_bf16x8(w + k), w1 = load_bf16x8(w + k + 8);
        for (int r = 0; r < R; ++r) {
            s0[r] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(X + r * K + k), s0[r]);
            s1[r] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(X + r * K + k + 8), s1[r]);
        }
    }
    for (int r = 0; r < R; ++r) {
        float t = reduce_add_avx2(_mm256_add_ps(s0[r], s1[r]));
        for (int64_t j = k; j < K; ++j) t += bf16_to_float(w[j]) * X[r * K + j];
        out[r] = t;
    }
}
#endif

// One weight row against up to 8 rows of X, with the kernel for `isa`: returns how many rows it took.
inline int dot_rows_bf16(CpuIsa isa, const float* X, int rows, int64_t K, const uint16_t* w,
                         const uint16_t* prefetch_row, float* out) {
#ifdef PIX2STRUCT_X86_KERNELS
    if (isa == CpuIsa::Avx512) {
        switch (rows) {
            case 1: dot_rows_bf16_avx512<1>(X, K, w, prefetch_row, out); return 1;
            case 2: dot_rows_bf16_avx512<2>(X, K, w, prefetch_row, out); return 2;
            case 3: dot_rows_bf16_avx512<3>(X, K, w, prefetch_row, out); return 3;
            case 4: dot_rows_bf16_avx512<4>(X, K, w, prefetch_row, out); return 4;
            case 5: dot_rows_bf16_avx512<5>(X, K, w, prefetch_row, out); return 5;
            case 6: dot_rows_bf16_avx512<6>(X, K, w, prefetch_row, out); return 6;
            case 7: dot_rows_bf16_avx512<7>(X, K, w, prefetch_row, out); return 7;
            default: dot_rows_bf16_avx512<8>(X, K, w, prefetch_row, out); return 8;
        }
    }
    if (isa == CpuIsa::Avx2) {
        switch (rows) {
            case 1: dot_rows_bf16_avx2<1>(X, K, w, prefetch_row, out); return 1;
            case 2: dot_rows_bf16_avx2<2>(X, K, w, prefetch_row, out); return 2;
            case 3: dot_rows_bf16_avx2<3>(X, K, w, prefetch_row, out); return 3;
            default: dot_rows_bf16_avx2<4>(X, K, w, prefetch_row, out); return 4;
        }
    }
#endif
    (void)prefetch_row;
    float t = 0;
    for (int64_t k = 0; k < K; ++k) t += bf16_to_float(w[k]) * X[k];
    out[0] = t;
    return 1;
}

inline void gemv_bf16(CpuIsa isa, const float* X, int64_t M, const uint16_t* W, int64_t n0, int64_t n1, int64_t K,
                      float* Y, int64_t ldy, bool accumulate) {
    float dots[8];
    for (int64_t n = n0; n < n1; ++n) {
        const uint16_t* w = W + n * K;
        // A software prefetch of the row kPrefetchRows ahead: rows are short streams (K·2 bytes) the
        // hardware prefetcher ramps up on too late. Measured on this machine (2 threads, 300 MB of bf16
        // rows, noisy): 4 rows/pass without prefetch 13-20 GB/s, 4 rows + prefetch 16-21, this 19-23.
        constexpr int64_t kPrefetchRows = 4;
        const uint16_t* ahead = n + kPrefetchRows < n1 ? w + kPrefetchRows * K : nullptr;
        for (int64_t m0 = 0; m0 < M;) {
            const int rows = dot_rows_bf16(isa, X + m0 * K, int(std::min<int64_t>(8, M - m0)), K, w, ahead, dots);
            ahead = nullptr;  // once per weight row
            for (int r = 0; r < rows; ++r) {
                float& y = Y[(m0 + r) * ldy + n];
                y = accumulate ? y + dots[r] : dots[r];
            }
            m0 += rows;
        }
    }
}

}  // namespace detail

struct CpuBackend {
    using Scalar = float;                      // activations are fp32
    using Buffer = detail::AlignedFloats;      // n Scalars
    using FloatBuffer = detail::AlignedFloats; // n floats (masks, position bias)
    using IdBuffer = std::vector<int32_t>;     // n token ids
    static constexpr bool reads_host_weights = true;  // Weight::data, and Weight::bf16 in decode steps

    // `isa`: the widest kernels to use (default: what this CPU runs; a wider one than that is refused).
    explicit CpuBackend(int threads = 0, CpuIsa isa = host_isa())
        : isa_(isa), pool_(threads > 0 ? threads : int(std::max(1u, std::thread::hardware_concurrency()))) {
        if (int(isa) > int(host_isa()))
            detail::fail("CpuBackend: this CPU does not run ", isa_name(isa), " kernels (it runs ", isa_name(host_isa()), ")");
    }

    int threads() const { return pool_.size(); }
    CpuIsa isa() const { return isa_; }
    Buffer alloc(size_t n) const { return Buffer(n); }
    FloatBuffer alloc_float(size_t n) const { return FloatBuffer(n); }
    IdBuffer alloc_ids(size_t n) const { return IdBuffer(n); }

    // Y[M, N] (=|+=) X[M, K] · Wᵀ (+ bias[N]).  W: [N, K] row-major (torch nn.Linear).
    // Split over N: each thread owns a column slice of Y (a GEMM; for a decode step's few rows and BF16
    // weights, detail::gemv_bf16).
    void linear(const float* X, int64_t M, const Weight& W, float* Y, Write mode = Write::Overwrite,
                const Weight* bias = nullptr) {
        using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
        using Stride = Eigen::OuterStride<>;
        const int64_t N = W.rows(), K = W.cols();
        // Slices of ≥ 64 output features; a handful per thread for balance.
        const int64_t min_slice = 64;
        const uint16_t* bf16 = (M <= detail::kGemvMaxRows && !bias) ? W.bf16 : nullptr;
        const bool bf16_gemv = bf16 != nullptr;
        int64_t slices = std::min<int64_t>(std::max<int64_t>(1, N / min_slice), int64_t(pool_.size()) * (M == 1 || bf16_gemv ? 1 : 2));
        if (M * N * K < 64 * 1024) slices = 1;  // too small to be worth a wake-up
        const int64_t step = (N + slices - 1) / slices;
        pool_.parallel_for(slices, [&](int64_t s, int) {
            const int64_t n0 = s * step, n = std::min(step, N - n0);
            if (n <= 0) return;
            if (bf16_gemv) {
                detail::gemv_bf16(isa_, X, M, bf16, n0, n0 + n, K, Y, N, mode == Write::Accumulate);
                return;
            }
            Eigen::Map<const RowMat> x(X, M, K);
            Eigen::Map<const RowMat> w(W.data + n0 * K, n, K);
            Eigen::Map<RowMat, 0, Stride> y(Y + n0, M, n, Stride(N));
            if (M == 1) {
                // GEMV: y = W x; Eigen's row-major matrix × vector kernel.
                Eigen::Map<const Eigen::VectorXf> xv(X, K);
                Eigen::Map<Eigen::RowVectorXf> yv(Y + n0, n);
                if (mode == Write::Overwrite) yv.noalias() = (w * xv).transpose();
                else yv.noalias() += (w * xv).transpose();
            } else {
                if (mode == Write::Overwrite) y.noalias() = x * w.transpose();
                else y.noalias() += x * w.transpose();
            }
            if (bias) {
                Eigen::Map<const Eigen::RowVectorXf> b(bias->data + n0, n);
                y.rowwise() += b;
            }
        });
    }

    // Y[M, H] = w ⊙ X / sqrt(mean(X²) + eps). The mean is taken in fp32 (the reference casts to fp32).
    void rms_norm(const float* X, int64_t M, const Weight& w, float eps, float* Y) {
        const int64_t H = w.rows();
        Eigen::Map<const Eigen::ArrayXf> g(w.data, H);
        for (int64_t i = 0; i < M; ++i) {
            Eigen::Map<const Eigen::ArrayXf> x(X + i * H, H);
            Eigen::Map<Eigen::ArrayXf> y(Y + i * H, H);
            const float variance = x.square().mean();
            y = g * (x * (1.0f / std::sqrt(variance + eps)));
        }
    }

    // A[n] = gelu_new(A) ⊙ B with gelu_new(a) = 0.5·a·(1 + tanh(√(2/π)·(a + 0.044715·a³))) (the tanh form,
    // transformers' NewGELUActivation). Eigen's vectorised tanh.
    void gelu_gate(float* A, const float* B, int64_t n) {
        const int64_t chunk = 1 << 14;
        const int64_t chunks = (n + chunk - 1) / chunk;
        pool_.parallel_for(chunks, [&](int64_t c, int) {
            const int64_t i0 = c * chunk, m = std::min(chunk, n - i0);
            Eigen::Map<Eigen::ArrayXf> a(A + i0, m);
            Eigen::Map<const Eigen::ArrayXf> b(B + i0, m);
            const float k = 0.7978845608028654f;  // sqrt(2/π)
            a = (0.5f * a * (1.0f + (k * (a + 0.044715f * a.cube())).tanh())) * b;
        });
    }

    // O = softmax(Q·Kᵀ + bias, keys masked) · V for each head; scores are NOT scaled by 1/√D (the reference
    // folds the scale into the trained query weights). Softmax in fp32. Work is split into (head, block of
    // kQueryBlock query rows) tasks so a block's scores [kQueryBlock, Tk] stay in the core's L2 cache
    // (a whole head's [N, N] scores, 16 MB at N = 2048, would stream through memory three times).
    static constexpr int64_t kQueryBlock = 64;
    void attention(const AttentionArgs<float>& args) {
        using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
        using Stride = Eigen::OuterStride<>;
        const AttentionArgs<float> a = with_default_strides(args);
        // What the model asks of a backend: one sequence (B = 1), the bias as [H, Lq, Lk], causality by
        // the cache length (the CUDA kernels also take batches, strided biases and a causal flag).
        if (a.B != 1 || a.causal || a.bias_row != a.Lk || a.bias_head != int64_t(a.Lq) * a.Lk || a.D < 1)
            detail::fail("CpuBackend::attention: takes B = 1, no causal flag, a [H, Lq, Lk] bias and D >= 1");
        const int64_t Tq = a.Lq, Tk = a.Lk, D = a.D;
        const int64_t block = std::min(Tq, kQueryBlock);
        const int64_t need = block * Tk;
        if (int64_t(scratch_.size()) < pool_.size() || int64_t(scratch_[0].size()) < need) {
            scratch_.clear();
            for (int i = 0; i < pool_.size(); ++i) scratch_.emplace_back(size_t(need));
        }
        const int64_t blocks = (Tq + block - 1) / block;
        pool_.parallel_for(int64_t(a.H) * blocks, [&](int64_t task, int worker) {
            const int64_t h = task / blocks, i0 = (task % blocks) * block, m = std::min(block, Tq - i0);
            Eigen::Map<const RowMat, 0, Stride> q(a.q + i0 * a.q_row + h * D, m, D, Stride(a.q_row));
            Eigen::Map<const RowMat, 0, Stride> k(a.k + h * D, Tk, D, Stride(a.k_row));
            Eigen::Map<const RowMat, 0, Stride> v(a.v + h * D, Tk, D, Stride(a.v_row));
            Eigen::Map<RowMat, 0, Stride> o(a.o + i0 * a.o_row + h * D, m, D, Stride(a.o_row));
            Eigen::Map<RowMat> scores(scratch_[size_t(worker)].data(), m, Tk);  // [m, Tk]
            // scores = torch.matmul(query_states, key_states.transpose(3, 2))
            scores.noalias() = q * k.transpose();
            if (a.bias) scores += Eigen::Map<const RowMat>(a.bias + (h * Tq + i0) * Tk, m, Tk);
            if (a.key_mask) {
                // The reference adds finfo(float32).min to masked scores (then clamps at min): exp → 0.
                const float lowest = std::numeric_limits<float>::lowest();
                for (int64_t j = 0; j < Tk; ++j)
                    if (a.key_mask[j] == 0.0f) scores.col(j).setConstant(lowest);
            }
            // attn_weights = nn.functional.softmax(scores.float(), dim=-1)
            for (int64_t i = 0; i < m; ++i) {
                auto row = scores.row(i).array();
                const float mx = row.maxCoeff();
                row = (row - mx).exp();
                row /= row.sum();
            }
            // attn_output = torch.matmul(attn_weights, value_states)
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

private:
    CpuIsa isa_;
    detail::ThreadPool pool_;
    std::vector<detail::AlignedFloats> scratch_;
};

static_assert(Backend<CpuBackend>, "CpuBackend must provide every primitive of the Backend concept");

}  // namespace pix2struct
