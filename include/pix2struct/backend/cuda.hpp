// pix2struct/backend/cuda.hpp — the CUDA backends: CpuBackend's primitives on an NVIDIA GPU (sm_80+), with
// fp32 activations (CudaBackend, exact fp32 arithmetic) or bf16 ones (CudaBackendBf16, as HF run with
// torch_dtype=bfloat16: bf16 weights and activations, fp32 accumulation, statistics and softmax).
//
//   const pix2struct::Checkpoint ckpt = pix2struct::Checkpoint::load(dir);
//   pix2struct::CudaBackend gpu(ckpt);        // uploads every weight once; throws pix2struct::Error when
//                                             // there is no CUDA device or not enough free GPU memory
//   pix2struct::ForConditionalGeneration<pix2struct::CudaBackend> model(ckpt, gpu);     // or CudaBackendBf16
//   pix2struct::GenerateResult r = model.generate(patches.flattened, patches.mask);
//
// The blocks of nn/ and model/ are the same templates the CPU runs; this header supplies the members of
// the Backend concept (backend/backend.hpp) on device pointers, each one launch (or two) of kernels/*.cuh:
//   linear      kernels::matmul<T, T>   bias and the residual add (Write::Accumulate) fused
//   rms_norm    kernels::rms_norm<T, T>
//   gelu_gate   kernels::gelu_gate              add_rows  kernels::add
//   attention   kernels::attention (d_kv = 64, many queries), kernels::attention_decode (one query: split-K
//               over the cache), kernels::attention_any_dim (any other d_kv, e.g. the tiny test models)
//   embed       kernels::embedding_gather (ids checked on the host, then copied to the device)
//   embed_token kernels::embedding_gather of one id in device memory (clamped to the table, not checked)
//   argmax      kernels::argmax (the greedy token, written to device memory for embed_token)
//   relative_position_bias   kernels::relative_position_bias (the decoder's bias, on the device)
// Include it from a .cu file compiled by nvcc: it launches kernels. The CPU build never includes it.
//
// Weights. Every Weight of the checkpoint is uploaded at construction into one device allocation, as fp32
// (the float view, or the stored tensor converted when the checkpoint was loaded without float views);
// tensors stored as BF16 also keep their bytes in a second allocation (device_weight_bf16(); the fp32 path
// never reads them). The bf16 path multiplies by those bf16 copies (a BF16 file's bytes unchanged; other
// files' weights rounded to bf16, to nearest even, at upload) and reads the fp32 copies for what the
// kernels take in fp32: norm weights, biases, embedding tables, the relative position table. cudaMemGetInfo
// is checked first: the weights plus CudaOptions::headroom_bytes for activations must fit in the free
// memory. The copies' pointers are a table indexed by Weight::index (no lookup per call); a Weight that is
// not the one uploaded at its index (another checkpoint's) is an error.
//
// Buffers are managed memory (cudaMallocManaged), zeroed. The blocks move what the host prepares or reads
// (patch pixels, the patch mask, token ids, logits, chosen tokens) with upload()/download()/copy():
// cudaMemcpyAsync on stream(), ordered with the kernels; being managed, buffers can also be read on the
// host directly after synchronize() (tests do), the pages migrating on demand.
//
// Synchronisation. With CudaOptions::synchronous (the default) every primitive waits for its stream
// before returning, so host code between primitives — what the blocks assume — sees finished results;
// this costs a launch + wait per primitive (~200 per decode step at the base shape). With synchronous =
// false the primitives only enqueue on stream(): the caller must call synchronize() before the host
// reads or writes a buffer that queued work touches (bench/gpu/bench_e2e_gpu.cu does this around its
// decode loop; ForConditionalGeneration::generate does not, so use it only with the synchronous mode).
//
// Arithmetic (CudaBackend): fp32 inputs, fp32 accumulation, exact FMA (no TF32 unless
// CudaOptions::fp32_mode says so), fp32 softmax — the same math as CpuBackend up to summation order.
// CudaBackendBf16: bf16 inputs on tensor cores, fp32 accumulation, each output (with its fused bias or
// residual) rounded to bf16 once; the reference rounds a linear's output and then its residual sum, so
// results differ from it by bf16 rounding steps, not by a different computation.
#pragma once

#ifndef __CUDACC__
#error "pix2struct/backend/cuda.hpp launches CUDA kernels: include it from a .cu file compiled by nvcc"
#endif

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "pix2struct/kernels/attention.cuh"
#include "pix2struct/kernels/common.cuh"
#include "pix2struct/kernels/embed.cuh"
#include "pix2struct/kernels/matmul.cuh"
#include "pix2struct/kernels/rms_norm.cuh"
#include "pix2struct/backend/backend.hpp"
#include "pix2struct/error.hpp"
#include "pix2struct/weights.hpp"

namespace pix2struct {

struct CudaOptions {
    int device = 0;                                  // CUDA device ordinal
    bool synchronous = true;                         // wait for the stream after every primitive (see above)
    kernels::Fp32Mode fp32_mode = kernels::Fp32Mode::Exact;  // TF32: tensor cores for fp32 matmuls (~1e-3)
    bool keep_bf16 = true;                           // keep the BF16 bytes of BF16 tensors on the device too
    size_t headroom_bytes = size_t(512) << 20;       // free memory required beyond the weights
    // Record the decode step as a CUDA graph per position and batch, and replay it (graph() below):
    // one launch per step instead of ~200. Off until the device tests have checked it on a GPU.
    bool graphs = false;
};

namespace detail {

// n elements of managed memory, zeroed by the backend that allocates them; move-only.
template <class T>
class ManagedArray {
public:
    ManagedArray() = default;
    explicit ManagedArray(size_t n) : n_(n) {
        if (n) PIX2STRUCT_CUDA_CHECK(cudaMallocManaged(&p_, n * sizeof(T), cudaMemAttachGlobal));
    }
    ManagedArray(ManagedArray&& o) noexcept : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
    ManagedArray& operator=(ManagedArray&& o) noexcept {
        std::swap(p_, o.p_);
        std::swap(n_, o.n_);
        return *this;
    }
    ManagedArray(const ManagedArray&) = delete;
    ManagedArray& operator=(const ManagedArray&) = delete;
    ~ManagedArray() {
        if (p_) cudaFree(p_);  // waits for queued work; a failure here cannot be reported
    }
    T* data() { return p_; }
    const T* data() const { return p_; }
    size_t size() const { return n_; }

private:
    T* p_ = nullptr;
    size_t n_ = 0;
};
using ManagedFloats = ManagedArray<float>;

// A device allocation of raw bytes, grown on demand (never on the hot path once sized).
class DeviceBytes {
public:
    DeviceBytes() = default;
    DeviceBytes(const DeviceBytes&) = delete;
    DeviceBytes& operator=(const DeviceBytes&) = delete;
    ~DeviceBytes() {
        if (p_) cudaFree(p_);
    }
    void* data() const { return p_; }
    size_t size() const { return n_; }
    // Makes room for `bytes`; the old contents are dropped. Waits for `stream` first (queued work may use it).
    void reserve(size_t bytes, cudaStream_t stream) {
        if (bytes <= n_) return;
        PIX2STRUCT_CUDA_CHECK(cudaStreamSynchronize(stream));
        if (p_) PIX2STRUCT_CUDA_CHECK(cudaFree(p_));
        p_ = nullptr;
        n_ = 0;
        PIX2STRUCT_CUDA_CHECK(cudaMalloc(&p_, bytes));
        n_ = bytes;
    }

private:
    void* p_ = nullptr;
    size_t n_ = 0;
};

inline double mib(size_t bytes) { return double(bytes) / double(1 << 20); }

}  // namespace detail

// T: the activation type, float (CudaBackend) or kernels::bf16 (CudaBackendBf16).
template <class T>
class BasicCudaBackend {
public:
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, kernels::bf16>, "activations are float or bf16");
    using Scalar = T;
    using Buffer = detail::ManagedArray<T>;      // n Scalars
    using FloatBuffer = detail::ManagedFloats;   // n floats (masks, position bias)
    using IdBuffer = detail::ManagedArray<int32_t>;  // n token ids

    // Picks the device, checks free memory and uploads every weight of `checkpoint` (which must outlive
    // the backend: the primitives are given its Weights).
    explicit BasicCudaBackend(const Checkpoint& checkpoint, const CudaOptions& options = {})
        : options_(options) {
        std::vector<const Weight*> all;  // in checkpoint order: all[i]->index == i
        checkpoint.for_each([&](const Weight& w) { all.push_back(&w); });
        open_and_upload(all, checkpoint.dir().string());
    }
    // The same for a list of weights that is not a checkpoint's (weights[i]->index must be i), e.g. a test's.
    explicit BasicCudaBackend(std::span<const Weight* const> weights, const CudaOptions& options = {})
        : options_(options) {
        open_and_upload(std::vector<const Weight*>(weights.begin(), weights.end()), "weights");
    }
    BasicCudaBackend(const BasicCudaBackend&) = delete;
    BasicCudaBackend& operator=(const BasicCudaBackend&) = delete;
    ~BasicCudaBackend() { release(); }

    // ---- the Backend concept (backend/backend.hpp) ----------------------------------------------

    // n Scalars (alloc) or n floats (alloc_float) of zeroed managed memory (allocated once per model or
    // session by the blocks).
    Buffer alloc(size_t n) { return zeroed<Buffer>(n); }
    FloatBuffer alloc_float(size_t n) { return zeroed<FloatBuffer>(n); }
    IdBuffer alloc_ids(size_t n) { return zeroed<IdBuffer>(n); }

    // Y[M, N] (=|+=) X[M, K] · Wᵀ (+ bias[N]); W [N, K] as stored (torch nn.Linear).
    void linear(const T* X, int64_t M, const Weight& W, T* Y, Write mode = Write::Overwrite,
                const Weight* bias = nullptr) {
        kernels::MatmulArgs<T, T> a;
        a.x = X;
        a.w = matmul_weight(W);
        a.y = Y;
        a.M = M;
        a.N = W.rows();
        a.K = W.cols();
        if (bias) {
            if (bias->size() != a.N)
                detail::fail("linear '", W.name, "': bias '", bias->name, "' has ", bias->size(), " values for ", a.N,
                             " outputs");
            a.bias = device_weight(*bias);
        }
        if (mode == Write::Accumulate) a.residual = Y;  // Y += X·Wᵀ: the kernel reads Y before it writes it
        kernels::matmul(a, stream_, options_.fp32_mode);
        done();
    }

    // Y[M, H] = w ⊙ X / sqrt(mean(X², row) + eps), statistics in fp32.
    void rms_norm(const T* X, int64_t M, const Weight& w, float eps, T* Y) {
        kernels::rms_norm(X, device_weight(w), Y, M, w.rows(), eps, stream_);
        done();
    }

    // A[n] = gelu_new(A) ⊙ B
    void gelu_gate(T* A, const T* B, int64_t n) {
        kernels::gelu_gate(A, B, n, stream_);
        done();
    }

    // O = softmax(Q·Kᵀ + bias, masked keys → weight 0) · V per head, no 1/√D.
    void attention(const AttentionArgs<T>& a) {
        const bool fast = a.D == kernels::kHeadDim && kernels::aligned16(a.q) && kernels::aligned16(a.k) &&
                          kernels::aligned16(a.v) && kernels::aligned16(a.o) && a.q_row % kVec == 0 &&
                          a.k_row % kVec == 0 && a.v_row % kVec == 0 && a.o_row % kVec == 0;
        if (!fast) {
            kernels::attention_any_dim(a, stream_);
        } else if (a.Lq == 1) {
            // Room for the most splits any cache length can ask for: sized once per head count (recorded
            // graphs name the old workspace: a larger one drops them).
            const size_t need = kernels::attention_decode_max_workspace_bytes(a.B, a.H);
            if (need > decode_workspace_.size()) clear_graphs();
            decode_workspace_.reserve(need, stream_);
            kernels::attention_decode(a, decode_workspace_.data(), decode_workspace_.size(), stream_);
        } else {
            kernels::attention(a, stream_);
        }
        done();
    }

    // Y[n, H] (=|+=) table[ids[i]]. `ids` are host memory (the blocks keep them in std::vector).
    void embed(const Weight& table, const int64_t* ids, int64_t n, T* Y, Write mode = Write::Overwrite) {
        const int64_t V = table.rows(), H = table.cols();
        ids_host_.resize(size_t(n));
        for (int64_t i = 0; i < n; ++i) {
            if (ids[i] < 0 || ids[i] >= V)
                detail::fail("embedding '", table.name, "': index ", ids[i], " is outside [0, ", V, ")");
            ids_host_[size_t(i)] = int32_t(ids[i]);
        }
        ids_device_.reserve(size_t(n) * sizeof(int32_t), stream_);
        // From pageable memory: staged by the driver before the call returns, so ids_host_ may change after.
        PIX2STRUCT_CUDA_CHECK(cudaMemcpyAsync(ids_device_.data(), ids_host_.data(), size_t(n) * sizeof(int32_t),
                                              cudaMemcpyHostToDevice, stream_));
        kernels::embedding_gather(device_weight(table), V, static_cast<const int32_t*>(ids_device_.data()), Y, n, H,
                                  mode == Write::Accumulate, stream_);
        done();
    }

    // Y[H] = table[*token], the id read on the device (argmax() wrote it): ids outside the table are
    // clamped by the kernel, not reported.
    void embed_token(const Weight& table, const int32_t* token, T* Y) {
        kernels::embedding_gather(device_weight(table), table.rows(), token, Y, 1, table.cols(), false, stream_);
        done();
    }

    // *out = the index of the first maximum of X[n] (kNonFiniteLogits if X holds NaN/inf), on the device.
    void argmax(const T* X, int64_t n, int32_t* out) {
        kernels::argmax(X, 1, n, out, stream_);
        done();
    }

    // Y[n] += X[n]
    void add_rows(T* Y, const T* X, int64_t n) {
        kernels::add(Y, X, n, stream_);
        done();
    }

    // out[heads, 1, q + 1]: the decoder's relative position bias of the query at position q, computed on
    // the device from the fp32 table [buckets, heads] (no host work in the decode step).
    void relative_position_bias(const Weight& table, int num_buckets, int max_distance, int64_t q, float* out) {
        kernels::relative_position_bias(device_weight(table), num_buckets, max_distance, int(table.cols()), 1,
                                        int(q + 1), int(q), out, stream_);
        done();
    }

    // ---- transfers (detail::to_backend / to_host / within_backend use them) ------------------------

    // n elements host → buffer, buffer → host, buffer → buffer, ordered on stream() like the kernels (so
    // they are right in the asynchronous mode too, where the host must not touch managed memory that queued
    // work uses). download() waits for the stream: the host reads dst next.
    template <class E>
    void upload(E* dst, const E* src, int64_t n) {
        transfer(dst, src, n);
        done();
    }
    template <class E>
    void download(E* dst, const E* src, int64_t n) {
        if (recording_) detail::fail("CUDA backend: download() inside a recorded graph");
        transfer(dst, src, n);
        synchronize();
    }
    template <class E>
    void copy(E* dst, const E* src, int64_t n) {
        // activations by a kernel (a graph can record it whatever the memory is), anything else by memcpy
        if constexpr (std::is_same_v<E, float> || std::is_same_v<E, kernels::bf16>) kernels::convert(src, dst, n, stream_);
        else transfer(dst, src, n);
        done();
    }

    // ---- CUDA graphs ------------------------------------------------------------------------------

    // Runs f(), a sequence of this backend's primitives, or replays it. With CudaOptions::graphs, the first
    // call for a `key` records the launches f() makes into a CUDA graph (stream capture) and launches it;
    // later calls with the same key launch the recorded graph WITHOUT running f: one launch instead of one
    // per primitive, and no host work. Returns whether f ran; when it did not, the caller applies f's
    // host-side effects itself. The key must name everything the launches depend on (sizes, positions,
    // buffers: ForConditionalGeneration keys its decode step with its buffers' ids, rows and position).
    // f() must not move data from or to the host (capture forbids it), and must give the same result when
    // run again (it is, after a failed recording: graphs are then switched off, graph_error() says why, and
    // f() runs eagerly).
    template <class F>
    bool graph(const std::vector<int64_t>& key, F&& f) {
        if (!options_.graphs) {
            f();
            return true;
        }
        if (const auto it = graphs_.find(key); it != graphs_.end()) {
            PIX2STRUCT_CUDA_CHECK(cudaGraphLaunch(it->second, stream_));
            done();
            return false;
        }
        if (graphs_.size() >= kMaxGraphs) clear_graphs();
        cudaGraph_t g = nullptr;
        try {
            PIX2STRUCT_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
            recording_ = true;
            f();
            recording_ = false;
            PIX2STRUCT_CUDA_CHECK(cudaStreamEndCapture(stream_, &g));
            cudaGraphExec_t exec = nullptr;
            PIX2STRUCT_CUDA_CHECK(cudaGraphInstantiate(&exec, g, 0));
            cudaGraphDestroy(g);
            graphs_.emplace(key, exec);
            PIX2STRUCT_CUDA_CHECK(cudaGraphLaunch(exec, stream_));
        } catch (const std::exception& e) {
            // End the capture if it is still open, drop what it made, and run f() as usual from now on.
            recording_ = false;
            cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
            if (cudaStreamIsCapturing(stream_, &status) == cudaSuccess && status != cudaStreamCaptureStatusNone) {
                cudaGraph_t partial = nullptr;
                cudaStreamEndCapture(stream_, &partial);
                if (partial) cudaGraphDestroy(partial);
            }
            if (g) cudaGraphDestroy(g);
            (void)cudaGetLastError();
            graph_error_ = e.what();
            options_.graphs = false;
            clear_graphs();
            f();
        }
        done();
        return true;
    }
    void set_graphs(bool on) {
        options_.graphs = on;
        if (!on) clear_graphs();
    }
    size_t graph_count() const { return graphs_.size(); }
    const std::string& graph_error() const { return graph_error_; }  // why recording was switched off, or empty
    void clear_graphs() noexcept {
        for (auto& [key, exec] : graphs_) cudaGraphExecDestroy(exec);
        graphs_.clear();
    }

    // ---- beyond the concept -----------------------------------------------------------------------

    // Index of the first maximum of logits[V] (kNonFiniteLogits if they hold NaN/inf), computed on the device:
    // the host receives 4 bytes instead of reading V managed floats. Waits for the stream.
    int64_t argmax(const T* logits, int64_t V) {
        argmax_device_.reserve(sizeof(int32_t), stream_);
        argmax(logits, V, static_cast<int32_t*>(argmax_device_.data()));
        int32_t best = 0;
        PIX2STRUCT_CUDA_CHECK(cudaMemcpyAsync(&best, argmax_device_.data(), sizeof(best), cudaMemcpyDeviceToHost, stream_));
        synchronize();
        return best;
    }


    // Waits for everything queued on stream() (the asynchronous mode's fence before host access).
    void synchronize() { PIX2STRUCT_CUDA_CHECK(cudaStreamSynchronize(stream_)); }
    cudaStream_t stream() const { return stream_; }
    bool synchronous() const { return options_.synchronous; }
    void set_synchronous(bool on) {
        if (!on && !concurrent_managed_)
            detail::fail("CUDA backend: ", device_name_, " has no concurrent managed access, so the host may not ",
                         "touch managed buffers while kernels run: only the synchronous mode is available");
        synchronize();
        options_.synchronous = on;
    }
    const std::string& device_name() const { return device_name_; }
    // For logs: the GPU and the arithmetic.
    std::string describe() const { return "CUDA on " + device_name_ + (std::is_same_v<T, float> ? ", fp32" : ", bf16"); }
    int device() const { return options_.device; }
    size_t weight_bytes() const { return f32_bytes_ + bf16_bytes_; }

    // Device copies of a weight of the checkpoint: fp32, and bf16 — the stored bytes of a BF16 tensor
    // (with CudaOptions::keep_bf16), or on the bf16 path every weight rounded to bf16 (null otherwise).
    const float* device_weight(const Weight& w) const { return find(w).f32; }
    const kernels::bf16* device_weight_bf16(const Weight& w) const { return find(w).bf16; }
    // The copy linear() multiplies by: fp32, or bf16 on the bf16 path (every weight has one there).
    const T* matmul_weight(const Weight& w) const {
        if constexpr (std::is_same_v<T, float>) return device_weight(w);
        else return device_weight_bf16(w);
    }

private:
    struct DeviceWeight {
        const Weight* host = nullptr;  // the weight these copies are of
        const float* f32 = nullptr;
        const kernels::bf16* bf16 = nullptr;
    };

    void release() noexcept {
        if (stream_) cudaStreamSynchronize(stream_);
        clear_graphs();
        if (f32_arena_) cudaFree(f32_arena_);
        if (bf16_arena_) cudaFree(bf16_arena_);
        if (stream_) cudaStreamDestroy(stream_);
        f32_arena_ = bf16_arena_ = nullptr;
        stream_ = nullptr;
    }

    void done() {
        if (options_.synchronous && !recording_) PIX2STRUCT_CUDA_CHECK(cudaStreamSynchronize(stream_));
    }

    // cudaMemcpyDefault: the pointers say where they live (managed, device or pageable host memory).
    template <class E>
    void transfer(E* dst, const E* src, int64_t n) {
        if (n > 0) PIX2STRUCT_CUDA_CHECK(cudaMemcpyAsync(dst, src, size_t(n) * sizeof(E), cudaMemcpyDefault, stream_));
    }

    template <class Buf>
    Buf zeroed(size_t n) {
        Buf b(n);
        if (n) {
            PIX2STRUCT_CUDA_CHECK(cudaMemsetAsync(b.data(), 0, n * sizeof(*b.data()), stream_));
            PIX2STRUCT_CUDA_CHECK(cudaStreamSynchronize(stream_));
        }
        return b;
    }

    // The copies of w: its row of the table (Weight::index), checked to be of this very weight.
    const DeviceWeight& find(const Weight& w) const {
        if (w.index < 0 || size_t(w.index) >= weights_.size() || weights_[size_t(w.index)].host != &w)
            detail::fail("CUDA backend: weight '", w.name, "' was not uploaded: it is not part of the checkpoint the ",
                         "backend was constructed with");
        return weights_[size_t(w.index)];
    }

    void open_device() {
        int count = 0;
        const cudaError_t err = cudaGetDeviceCount(&count);
        if (err != cudaSuccess || count == 0) {
            (void)cudaGetLastError();  // clear the error so that later calls do not report it
            detail::fail("CUDA backend: no CUDA device is available (",
                         err != cudaSuccess ? cudaGetErrorString(err) : "the driver reports 0 devices", ")");
        }
        if (options_.device < 0 || options_.device >= count)
            detail::fail("CUDA backend: device ", options_.device, " does not exist (", count, " device",
                         count > 1 ? "s" : "", " found)");
        PIX2STRUCT_CUDA_CHECK(cudaSetDevice(options_.device));
        cudaDeviceProp prop{};
        PIX2STRUCT_CUDA_CHECK(cudaGetDeviceProperties(&prop, options_.device));
        device_name_ = std::string(prop.name) + " (device " + std::to_string(options_.device) + ")";
        if (prop.major < 8)
            detail::fail("CUDA backend: ", device_name_, " is compute capability ", prop.major, ".", prop.minor,
                         "; the kernels need 8.0 or newer");
        int managed = 0, concurrent = 0;
        PIX2STRUCT_CUDA_CHECK(cudaDeviceGetAttribute(&managed, cudaDevAttrManagedMemory, options_.device));
        PIX2STRUCT_CUDA_CHECK(cudaDeviceGetAttribute(&concurrent, cudaDevAttrConcurrentManagedAccess, options_.device));
        if (!managed) detail::fail("CUDA backend: ", device_name_, " does not support managed memory");
        concurrent_managed_ = concurrent != 0;
        if (!options_.synchronous && !concurrent_managed_)
            detail::fail("CUDA backend: ", device_name_, " has no concurrent managed access, so the host may not ",
                         "touch managed buffers while kernels run: use CudaOptions::synchronous = true");
        PIX2STRUCT_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    }

    void open_and_upload(const std::vector<const Weight*>& all, const std::string& what) {
        try {
            open_device();
            upload(all, what);
        } catch (...) {
            release();
            throw;
        }
    }

    // One fp32 allocation (and one bf16) for every weight, each at a 256-byte boundary. `what` names them in
    // errors (the checkpoint's folder).
    void upload(const std::vector<const Weight*>& all, const std::string& what) {
        for (size_t i = 0; i < all.size(); ++i)
            if (all[i]->index != int(i))
                detail::fail("CUDA backend: weight '", all[i]->name, "' has index ", all[i]->index, " at place ", i,
                             " of the weights to upload");
        weights_.assign(all.size(), DeviceWeight{});
        auto padded = [](size_t bytes) { return (bytes + 255) / 256 * 256; };
        auto stored_bf16 = [](const Weight* w) { return w->source && w->source->dtype == DType::BF16; };
        auto has_bf16 = [&](const Weight* w) { return kBf16 || (options_.keep_bf16 && stored_bf16(w)); };
        size_t f32 = 0, b16 = 0;
        for (const Weight* w : all) {
            f32 += padded(size_t(w->size()) * sizeof(float));
            if (has_bf16(w)) b16 += padded(size_t(w->size()) * 2);
        }
        size_t free_bytes = 0, total_bytes = 0;
        PIX2STRUCT_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
        if (f32 + b16 + options_.headroom_bytes > free_bytes)
            detail::fail(what, ": the weights need ", detail::mib(f32 + b16), " MiB of GPU memory (fp32 ",
                         detail::mib(f32), " MiB + bf16 ", detail::mib(b16), " MiB) plus ",
                         detail::mib(options_.headroom_bytes), " MiB for activations, but ", device_name_, " has ",
                         detail::mib(free_bytes), " MiB free of ", detail::mib(total_bytes), " MiB");
        PIX2STRUCT_CUDA_CHECK(cudaMalloc(&f32_arena_, std::max<size_t>(f32, 256)));
        if (b16) PIX2STRUCT_CUDA_CHECK(cudaMalloc(&bf16_arena_, b16));
        f32_bytes_ = f32;
        bf16_bytes_ = b16;

        std::vector<float> staging;
        std::vector<kernels::bf16> rounded;
        size_t f_off = 0, b_off = 0;
        for (const Weight* w : all) {
            const size_t n = size_t(w->size());
            const float* src = w->data;
            if (!src) {
                if (!w->source)
                    detail::fail(what, ": weight '", w->name, "' has neither a float view nor a stored tensor");
                staging.resize(n);
                w->source->to_float(staging.data());
                src = staging.data();
            }
            DeviceWeight d{.host = w};
            float* f = reinterpret_cast<float*>(static_cast<char*>(f32_arena_) + f_off);
            PIX2STRUCT_CUDA_CHECK(cudaMemcpy(f, src, n * sizeof(float), cudaMemcpyHostToDevice));
            d.f32 = f;
            f_off += padded(n * sizeof(float));
            if (has_bf16(w)) {
                auto* h = reinterpret_cast<kernels::bf16*>(static_cast<char*>(bf16_arena_) + b_off);
                const void* bytes = w->source ? w->source->bytes.data() : nullptr;
                if (!stored_bf16(w)) {  // the bf16 path: round the fp32 values to nearest even, as torch's .to()
                    rounded.resize(n);
                    for (size_t i = 0; i < n; ++i) rounded[i] = __float2bfloat16_rn(src[i]);
                    bytes = rounded.data();
                }
                PIX2STRUCT_CUDA_CHECK(cudaMemcpy(h, bytes, n * 2, cudaMemcpyHostToDevice));
                d.bf16 = h;
                b_off += padded(n * 2);
            }
            weights_.at(size_t(w->index)) = d;
        }
    }

    static constexpr bool kBf16 = std::is_same_v<T, kernels::bf16>;
    static constexpr int64_t kVec = 16 / int64_t(sizeof(T));  // elements per 16-byte load

    CudaOptions options_;
    std::string device_name_;
    bool concurrent_managed_ = false;
    cudaStream_t stream_ = nullptr;
    void* f32_arena_ = nullptr;
    void* bf16_arena_ = nullptr;
    size_t f32_bytes_ = 0, bf16_bytes_ = 0;
    std::vector<DeviceWeight> weights_;  // indexed by Weight::index
    detail::DeviceBytes decode_workspace_, ids_device_, argmax_device_;
    std::vector<int32_t> ids_host_;
    bool recording_ = false;  // inside graph()'s stream capture: no waits
    static constexpr size_t kMaxGraphs = 512;  // recorded graphs kept (all dropped when full)
    std::map<std::vector<int64_t>, cudaGraphExec_t> graphs_;
    std::string graph_error_;
};

using CudaBackend = BasicCudaBackend<float>;              // fp32 activations, exact fp32 arithmetic
using CudaBackendBf16 = BasicCudaBackend<kernels::bf16>;  // bf16 activations and weights, fp32 accumulation

static_assert(Backend<CudaBackend>, "CudaBackend must provide every primitive of the Backend concept");
static_assert(Backend<CudaBackendBf16>, "CudaBackendBf16 must provide every primitive of the Backend concept");

}  // namespace pix2struct
