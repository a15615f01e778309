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
#pragma once

#include "pix2struct/backend/cpu_kernels.hpp"  // first: it includes <immintrin.h> (see there)

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
    // Split over N: each thread owns a column slice of Y. A decode step's few rows: detail::gemv over the
    // BF16 copy (Weight::bf16) or the fp32 rows; more rows: detail::sgemm (Eigen's GEMM on a CPU without AVX2).
    void linear(const float* X, int64_t M, const Weight& W, float* Y, Write mode = Write::Overwrite,
                const Weight* bias = nullptr) {
        const int64_t N = W.rows(), K = W.cols();
        const bool accumulate = mode == Write::Accumulate;
        const bool gemv = M <= detail::kGemvMaxRows && !bias && (W.bf16 || isa_ != CpuIsa::Generic);
        if (gemv) {  // slices of ≥ 64 output features, one per thread
            int64_t slices = std::min<int64_t>(std::max<int64_t>(1, N / 64), pool_.size());
            if (M * N * K < 64 * 1024) slices = 1;  // too small to be worth a wake-up
            const int64_t step = (N + slices - 1) / slices;
            pool_.parallel_for(slices, [&](int64_t s, int) {
                const int64_t n0 = s * step, n1 = std::min(N, n0 + step);
                if (W.bf16) detail::gemv(isa_, X, K, M, W.bf16, K, n0, n1, K, Y, N, accumulate);
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
    // and values are packed once for detail::sgemm_packed, then its query blocks run; without AVX2 a task is
    // a (head, query block), on Eigen.
    static constexpr int64_t kQueryBlock = 64, kPackedMinQueries = 16;
    void attention(const AttentionArgs<float>& args) {
        const AttentionArgs<float> a = with_default_strides(args);
        // What the model asks of a backend: one sequence (B = 1), the bias as [H, Lq, Lk], causality by
        // the cache length (the CUDA kernels also take batches, strided biases and a causal flag).
        if (a.B != 1 || a.causal || a.bias_row != a.Lk || a.bias_head != int64_t(a.Lq) * a.Lk || a.D < 1)
            detail::fail("CpuBackend::attention: takes B = 1, no causal flag, a [H, Lq, Lk] bias and D >= 1");
        const int64_t Tq = a.Lq, Tk = a.Lk, D = a.D, block = std::min(Tq, kQueryBlock);
        reserve(scratch_, block * Tk);
        if (isa_ != CpuIsa::Generic && Tq >= kPackedMinQueries) {
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
        if (Tq < kPackedMinQueries) {  // few queries: keys and values read in place, a head per task
            pool_.parallel_for(a.H, [&](int64_t h, int worker) {
                float* scores = scratch_[size_t(worker)].data();
                for (int64_t i = 0; i < Tq; ++i)
                    detail::dot_keys(isa_, a.q + i * a.q_row + h * D, D, a.k + h * D, a.k_row, Tk, scores + i * Tk);
                bias_mask_softmax(a, h, 0, Tq, scores);
                for (int64_t i = 0; i < Tq; ++i)
                    detail::weighted_rows(isa_, scores + i * Tk, Tk, a.v + h * D, a.v_row, D, a.o + i * a.o_row + h * D);
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

private:
    // Query rows i0 .. i0 + m of head h: scores [m, Lk] += bias; masked keys; softmax, in fp32.
    void bias_mask_softmax(const AttentionArgs<float>& a, int64_t h, int64_t i0, int64_t m, float* scores) const {
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
    detail::ThreadPool pool_;
    std::vector<detail::AlignedFloats> scratch_, pack_, pack_v_;  // per worker: scores, packed B (keys), packed values
};

static_assert(Backend<CpuBackend>, "CpuBackend must provide every primitive of the Backend concept");

}  // namespace pix2struct
