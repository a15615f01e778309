// bench/gpu/bench_kernels.cu — our CUDA kernels beside their yardsticks, measured in the same run.
//
//   GEMM  Y = X·Wᵀ at the encoder shapes (base M=2048: 2048x768x768, 2048x2048x768, 2048x768x2048; large:
//         2048x1536x1536, 2048x3968x1536, 2048x1536x3968), TFLOP/s of ours beside cuBLAS (cublasGemmEx),
//         bf16 (fp32 accumulate) and fp32 (ours exact SIMT and TF32; cuBLAS fp32 and TF32); the fused
//         gated-GELU MLP beside two cuBLAS GEMMs; the relative difference ours vs cuBLAS as a sanity check.
//   Attention  encoder self-attention N=2048 (and 4096), 12 heads, d=64, key padding mask, TFLOP/s
//         (4·N²·d·H); PyTorch SDPA is the yardstick (bench/gpu/sdpa.py, same shapes).
//   Decode  GEMV (M=1) and split-K decode attention in GB/s of weights / K,V read, beside a
//         device-to-device cudaMemcpy (bytes read + written) — inputs rotated over > L2 so they come from HBM.
// Each figure: median of 30 timed runs (cudaEvent) after 5 warm-ups, on random (never zero) data.
#include <CLI/CLI.hpp>
#include <cublas_v2.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <memory>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "pix2struct/kernels/attention.cuh"
#include "pix2struct/kernels/embed.cuh"
#include "pix2struct/kernels/matmul.cuh"
#include "pix2struct/kernels/rms_norm.cuh"
#include "pix2struct/version.hpp"

#include "bench_util.cuh"

namespace k = pix2struct::kernels;
using k::bf16;

namespace {

__global__ void fill_kernel(float* f, bf16* h, int64_t n, uint32_t seed, float scale) {
    for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
        uint32_t x = uint32_t(i) * 2654435761u ^ seed;
        x ^= x >> 16, x *= 0x7feb352du, x ^= x >> 15, x *= 0x846ca68bu, x ^= x >> 16;
        const float v = scale * (float(x) / 4294967296.f * 2.f - 1.f);
        if (f) f[i] = v;
        if (h) h[i] = __float2bfloat16_rn(v);
    }
}

template <class T>
struct Buf {
    T* p = nullptr;
    int64_t n = 0;
    explicit Buf(int64_t count, float scale = 1.f) : n(count) {
        PIX2STRUCT_CUDA_CHECK(cudaMalloc(&p, std::max<int64_t>(n, 1) * sizeof(T)));
        static uint32_t seed = 1;
        if constexpr (std::is_same_v<T, float>) fill_kernel<<<1024, 256>>>(p, nullptr, n, seed++ * 7919u, scale);
        else fill_kernel<<<1024, 256>>>(nullptr, p, n, seed++ * 7919u, scale);
        k::check_launch("fill");
    }
    Buf(const Buf&) = delete;
    ~Buf() { cudaFree(p); }
};

// Median time in ms of f(rep) over `reps` runs after `warmup`, each bracketed by events.
double median_ms(const std::function<void(int)>& f, int warmup = 5, int reps = 30) {
    for (int i = 0; i < warmup; ++i) f(i);
    std::vector<cudaEvent_t> ev(2 * reps);
    for (auto& e : ev) PIX2STRUCT_CUDA_CHECK(cudaEventCreate(&e));
    for (int r = 0; r < reps; ++r) {
        PIX2STRUCT_CUDA_CHECK(cudaEventRecord(ev[2 * r]));
        f(warmup + r);
        PIX2STRUCT_CUDA_CHECK(cudaEventRecord(ev[2 * r + 1]));
    }
    PIX2STRUCT_CUDA_CHECK(cudaDeviceSynchronize());
    std::vector<float> ms(reps);
    for (int r = 0; r < reps; ++r) PIX2STRUCT_CUDA_CHECK(cudaEventElapsedTime(&ms[r], ev[2 * r], ev[2 * r + 1]));
    for (auto& e : ev) cudaEventDestroy(e);
    std::sort(ms.begin(), ms.end());
    return ms[reps / 2];
}

template <class T>
double rel_diff(const T* a, const T* b, int64_t n) {
    std::vector<T> ha(n), hb(n);
    PIX2STRUCT_CUDA_CHECK(cudaDeviceSynchronize());
    PIX2STRUCT_CUDA_CHECK(cudaMemcpy(ha.data(), a, n * sizeof(T), cudaMemcpyDeviceToHost));
    PIX2STRUCT_CUDA_CHECK(cudaMemcpy(hb.data(), b, n * sizeof(T), cudaMemcpyDeviceToHost));
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; ++i) {
        double x, y;
        if constexpr (std::is_same_v<T, bf16>) x = __bfloat162float(ha[i]), y = __bfloat162float(hb[i]);
        else x = ha[i], y = hb[i];
        if (!std::isfinite(x)) return INFINITY;
        num += (x - y) * (x - y), den += y * y;
    }
    return std::sqrt(num / std::max(den, 1e-300));
}

// cuBLAS Y[M,N] (row-major) = X[M,K] · W[N,K]ᵀ: column-major Yᵀ = W·Xᵀ, i.e. op(A)=Wᵀ-of-col-major.
void cublas_linear(cublasHandle_t h, const void* x, const void* w, void* y, int M, int N, int K, cudaDataType t,
                   cublasComputeType_t compute) {
    const float alpha = 1.f, beta = 0.f;
    CUBLAS_CHECK(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &alpha, w, t, K, x, t, K, &beta, y, t, N, compute,
                              CUBLAS_GEMM_DEFAULT));
}

struct Row {
    std::string what;
    double ours, yard;  // rates
    const char* unit;
    std::string yard_name;
    double diff;
};
std::vector<Row> rows;

void print_row(const Row& r) {
    std::printf("%-44s ours %8.1f %-8s %-14s %8.1f   ratio %5.2f   diff %.1e\n", r.what.c_str(), r.ours, r.unit,
                r.yard_name.c_str(), r.yard, r.yard > 0 ? r.ours / r.yard : 0.0, r.diff);
    std::fflush(stdout);
    rows.push_back(r);
}

void bench_gemm(cublasHandle_t h, int M, int N, int K) {
    const double flop = 2.0 * M * N * K;
    char name[64];
    {  // bf16: the planned path, then each tensor-core tile forced (to tune plan_matmul's choice)
        Buf<bf16> x(int64_t(M) * K), w(int64_t(N) * K), y(int64_t(M) * N), yc(int64_t(M) * N);
        k::MatmulArgs<bf16, bf16> a;
        a.x = x.p, a.w = w.p, a.y = y.p, a.M = M, a.N = N, a.K = K, a.ldx = K, a.ldy = N;
        const double t = median_ms([&](int) { k::matmul(a); });
        const double tc =
            median_ms([&](int) { cublas_linear(h, x.p, w.p, yc.p, M, N, K, CUDA_R_16BF, CUBLAS_COMPUTE_32F); });
        const k::MatmulPlan plan = k::plan_matmul(M, N, K, 2, true, k::sm_count());
        std::snprintf(name, sizeof name, "gemm bf16  %dx%dx%d [%s]", M, N, K,
                      plan.path == k::MatmulPath::TensorCoreLarge ? "large" : "small");
        print_row({name, flop / t / 1e9, flop / tc / 1e9, "TFLOP/s", "cuBLAS", rel_diff(y.p, yc.p, int64_t(M) * N)});
        for (auto [path, label] : {std::pair{k::MatmulPath::TensorCoreLarge, "large"},
                                   std::pair{k::MatmulPath::TensorCoreSmall, "small"}}) {
            const k::MatmulPlan forced = k::matmul_plan_for(path, M, N);
            const double tf = median_ms([&](int) { k::detail::matmul_with_plan(a, forced, nullptr); });
            std::snprintf(name, sizeof name, "  forced %s tile %dx%dx%d", label, M, N, K);
            print_row({name, flop / tf / 1e9, flop / tc / 1e9, "TFLOP/s", "cuBLAS", rel_diff(y.p, yc.p, int64_t(M) * N)});
        }
    }
    {  // fp32: exact SIMT and TF32 beside cuBLAS fp32 and TF32
        Buf<float> x(int64_t(M) * K), w(int64_t(N) * K), y(int64_t(M) * N), yc(int64_t(M) * N);
        k::MatmulArgs<float, float> a;
        a.x = x.p, a.w = w.p, a.y = y.p, a.M = M, a.N = N, a.K = K;
        double t = median_ms([&](int) { k::matmul(a); }, 2, 10);
        double tc = median_ms([&](int) { cublas_linear(h, x.p, w.p, yc.p, M, N, K, CUDA_R_32F, CUBLAS_COMPUTE_32F); },
                              2, 10);
        std::snprintf(name, sizeof name, "gemm fp32  %dx%dx%d", M, N, K);
        print_row({name, flop / t / 1e9, flop / tc / 1e9, "TFLOP/s", "cuBLAS fp32", rel_diff(y.p, yc.p, int64_t(M) * N)});
        t = median_ms([&](int) { k::matmul(a, nullptr, k::Fp32Mode::TF32); });
        tc = median_ms([&](int) {
            cublas_linear(h, x.p, w.p, yc.p, M, N, K, CUDA_R_32F, CUBLAS_COMPUTE_32F_FAST_TF32);
        });
        std::snprintf(name, sizeof name, "gemm tf32  %dx%dx%d", M, N, K);
        print_row({name, flop / t / 1e9, flop / tc / 1e9, "TFLOP/s", "cuBLAS tf32", rel_diff(y.p, yc.p, int64_t(M) * N)});
    }
}

// Gated-GELU MLP input products: ours fused (both weights, one kernel) vs cuBLAS's two GEMMs (no GELU).
void bench_gated(cublasHandle_t h, int M, int N, int K) {
    const double flop = 2.0 * 2.0 * M * N * K;
    Buf<bf16> x(int64_t(M) * K), w0(int64_t(N) * K), w1(int64_t(N) * K), y(int64_t(M) * N), y0(int64_t(M) * N),
        y1(int64_t(M) * N);
    k::MatmulArgs<bf16, bf16> a;
    a.x = x.p, a.w = w0.p, a.w_up = w1.p, a.y = y.p, a.M = M, a.N = N, a.K = K;
    const double t = median_ms([&](int) { k::matmul(a); });
    const double tc = median_ms([&](int) {
        cublas_linear(h, x.p, w0.p, y0.p, M, N, K, CUDA_R_16BF, CUBLAS_COMPUTE_32F);
        cublas_linear(h, x.p, w1.p, y1.p, M, N, K, CUDA_R_16BF, CUBLAS_COMPUTE_32F);
    });
    char name[64];
    std::snprintf(name, sizeof name, "gated-gelu bf16 %dx%dx%d (x2)", M, N, K);
    print_row({name, flop / t / 1e9, flop / tc / 1e9, "TFLOP/s", "cuBLAS 2 GEMM", 0.0});
}

template <class T>
void bench_attention(int N, int H, const char* tname) {
    const int64_t HD = int64_t(H) * 64;
    Buf<T> q(N * HD), kk(N * HD), v(N * HD), o(N * HD);
    std::vector<float> mask(N, 1.f);
    for (int j = N - N / 8; j < N; ++j) mask[j] = 0.f;  // 1/8 padding, as a typical image leaves
    float* maskd;
    PIX2STRUCT_CUDA_CHECK(cudaMalloc(&maskd, N * sizeof(float)));
    PIX2STRUCT_CUDA_CHECK(cudaMemcpy(maskd, mask.data(), N * sizeof(float), cudaMemcpyHostToDevice));
    k::AttentionArgs<T> a;
    a.q = q.p, a.k = kk.p, a.v = v.p, a.o = o.p, a.H = H, a.Lq = N, a.Lk = N, a.key_mask = maskd;
    const double t = median_ms([&](int) { k::attention(a); }, 3, std::is_same_v<T, float> ? 10 : 30);
    const double flop = 4.0 * N * N * 64 * H;
    char name[64];
    std::snprintf(name, sizeof name, "attention %s N=%d H=%d d=64 mask", tname, N, H);
    print_row({name, flop / t / 1e9, 0.0, "TFLOP/s", "(sdpa.py)", 0.0});
    cudaFree(maskd);
}

double copy_gbs() {
    const int64_t bytes = int64_t(1) << 30;
    void *a, *b;
    PIX2STRUCT_CUDA_CHECK(cudaMalloc(&a, bytes));
    PIX2STRUCT_CUDA_CHECK(cudaMalloc(&b, bytes));
    PIX2STRUCT_CUDA_CHECK(cudaMemset(a, 1, bytes));
    const double t = median_ms([&](int) { PIX2STRUCT_CUDA_CHECK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice)); }, 3, 20);
    cudaFree(a);
    cudaFree(b);
    return 2.0 * bytes / t / 1e6;  // read + written
}

// Decode GEMV: M=1, weights rotated over >= 256 MB so every run streams them from HBM.
void bench_gemv(int N, int K, bool gated, double copy) {
    const int64_t wbytes = int64_t(N) * K * 2 * (gated ? 2 : 1);
    const int sets = int(std::max<int64_t>(1, (int64_t(256) << 20) / wbytes));
    std::vector<std::unique_ptr<Buf<bf16>>> w0, w1;
    for (int s = 0; s < sets; ++s) {
        w0.push_back(std::make_unique<Buf<bf16>>(int64_t(N) * K));
        if (gated) w1.push_back(std::make_unique<Buf<bf16>>(int64_t(N) * K));
    }
    Buf<bf16> x(K), y(N);
    k::MatmulArgs<bf16, bf16> a;
    a.x = x.p, a.y = y.p, a.M = 1, a.N = N, a.K = K;
    const double t = median_ms([&](int r) {
        a.w = w0[r % sets]->p;
        if (gated) a.w_up = w1[r % sets]->p;
        k::matmul(a);
    });
    char name[64];
    std::snprintf(name, sizeof name, "gemv bf16 M=1 N=%d K=%d%s", N, K, gated ? " gated" : "");
    print_row({name, wbytes / t / 1e6, copy, "GB/s", "D2D copy", 0.0});
}

template <class T>
void bench_decode_attention(int H, int Lk, const char* tname, double copy) {
    const int64_t kvbytes = int64_t(2) * Lk * H * 64 * sizeof(T);
    const int sets = int(std::max<int64_t>(1, (int64_t(256) << 20) / kvbytes));
    std::vector<std::unique_ptr<Buf<T>>> kv;
    for (int s = 0; s < sets; ++s) kv.push_back(std::make_unique<Buf<T>>(2 * int64_t(Lk) * H * 64));
    Buf<T> q(H * 64), o(H * 64);
    const size_t ws = k::attention_decode_workspace_bytes(1, H, Lk);
    Buf<float> work(int64_t(ws / sizeof(float)) + 1);
    k::AttentionArgs<T> a;
    a.q = q.p, a.o = o.p, a.H = H, a.Lq = 1, a.Lk = Lk;
    const double t = median_ms([&](int r) {
        a.k = kv[r % sets]->p, a.v = kv[r % sets]->p + int64_t(Lk) * H * 64;
        k::attention_decode(a, work.p, ws);
    });
    char name[64];
    std::snprintf(name, sizeof name, "decode attention %s H=%d Lk=%d", tname, H, Lk);
    print_row({name, kvbytes / t / 1e6, copy, "GB/s", "D2D copy", 0.0});
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"Our CUDA kernels (GEMM, attention, norms) beside cuBLAS and the device's ceilings, at the model's shapes."};
    app.set_version_flag("--version", std::string("pix2struct ") + PIX2STRUCT_VERSION)->trigger_on_parse();
    CLI11_PARSE(app, argc, argv);
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
        std::printf("SKIPPED: no CUDA device\n");
        return 0;
    }
    try {
        cudaDeviceProp prop{};
        PIX2STRUCT_CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
        std::printf("device: %s, %d SMs, L2 %d MB\n\n", prop.name, prop.multiProcessorCount, prop.l2CacheSize >> 20);
        cublasHandle_t h;
        CUBLAS_CHECK(cublasCreate(&h));
        for (auto [M, N, K] : std::vector<std::array<int, 3>>{
                 {2048, 768, 768}, {2048, 2048, 768}, {2048, 768, 2048},        // base encoder
                 {2048, 1536, 1536}, {2048, 3968, 1536}, {2048, 1536, 3968}}) // large encoder
            bench_gemm(h, M, N, K);
        bench_gated(h, 2048, 2048, 768);
        bench_gated(h, 2048, 3968, 1536);
        bench_attention<bf16>(2048, 12, "bf16");
        bench_attention<bf16>(4096, 12, "bf16");
        bench_attention<float>(2048, 12, "fp32");
        const double copy = copy_gbs();
        std::printf("device-to-device copy: %.0f GB/s (read + written)\n", copy);
        bench_gemv(768, 768, false, copy);
        bench_gemv(2048, 768, true, copy);
        bench_gemv(768, 2048, false, copy);
        bench_gemv(50244, 768, false, copy);
        bench_gemv(3968, 1536, true, copy);
        bench_decode_attention<bf16>(12, 2048, "bf16", copy);
        bench_decode_attention<bf16>(24, 2048, "bf16", copy);
        bench_decode_attention<float>(12, 2048, "fp32", copy);
        cublasDestroy(h);
        std::printf("\n== summary (ours vs yardstick) ==\n");
        for (const Row& r : rows) print_row(r);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_kernels: %s\n", e.what());
        return 1;
    }
    return 0;
}
