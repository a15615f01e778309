// tests/gpu/test_kernels.cu — every CUDA kernel of kernels/ against a float64 CPU reference.
//
// Fresh random inputs on every run (the seed is printed with each failure), many shapes including
// ragged ones (M, N, K, Lq, Lk not multiples of the tiles), outputs poisoned with NaN before each run
// so that an unwritten element fails. Error measure: ‖out − ref‖ / ‖ref‖. Tolerances: fp32 exact 1e-5,
// TF32 2e-3, bf16 outputs 1e-2 (bf16 inputs are rounded first and the reference uses the rounded values,
// so only accumulation and output rounding count).
// Without a CUDA device every case prints "SKIPPED: no CUDA device" (CTest reports the test skipped).
#include <doctest/doctest.h>

#include <cmath>
#include <array>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "pix2struct/kernels/attention.cuh"
#include "pix2struct/kernels/embed.cuh"
#include "pix2struct/kernels/matmul.cuh"
#include "pix2struct/kernels/rms_norm.cuh"

#include "gpu_test.cuh"

namespace k = pix2struct::kernels;
using k::bf16;

namespace {

// ---------------------------------------------------------------------------------------------
// Host helpers
// ---------------------------------------------------------------------------------------------
template <class T>
T from_f(float x) {
    if constexpr (std::is_same_v<T, bf16>) return __float2bfloat16_rn(x);
    else return x;
}
template <class T>
float to_f(T x) {
    if constexpr (std::is_same_v<T, bf16>) return __bfloat162float(x);
    else return x;
}
template <class T>
const char* type_name() {
    return std::is_same_v<T, bf16> ? "bf16" : "f32";
}

struct Rng {
    uint32_t seed;
    std::mt19937 gen;
    Rng() : seed(std::random_device{}()), gen(seed) {}
    float uniform(float lo = -1.f, float hi = 1.f) { return std::uniform_real_distribution<float>(lo, hi)(gen); }
    int integer(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(gen); }
};

// Random values of type T; `ref` gets them back as float (already rounded for bf16).
template <class T>
std::vector<T> random_vec(Rng& rng, size_t n, std::vector<float>& ref, float lo = -1.f, float hi = 1.f) {
    std::vector<T> v(n);
    ref.resize(n);
    for (size_t i = 0; i < n; ++i) {
        v[i] = from_f<T>(rng.uniform(lo, hi));
        ref[i] = to_f(v[i]);
    }
    return v;
}

template <class T>
struct DeviceBuffer {
    T* ptr = nullptr;
    size_t n = 0;
    explicit DeviceBuffer(size_t count) : n(count) {
        PIX2STRUCT_CUDA_CHECK(cudaMalloc(&ptr, std::max<size_t>(n, 1) * sizeof(T)));
    }
    explicit DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size()) {
        PIX2STRUCT_CUDA_CHECK(cudaMemcpy(ptr, host.data(), n * sizeof(T), cudaMemcpyHostToDevice));
    }
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;
    ~DeviceBuffer() { cudaFree(ptr); }
    void poison() { PIX2STRUCT_CUDA_CHECK(cudaMemset(ptr, 0xFF, n * sizeof(T))); }  // NaN in f32 and bf16
    std::vector<float> download() const {
        std::vector<T> host(n);
        PIX2STRUCT_CUDA_CHECK(cudaDeviceSynchronize());
        PIX2STRUCT_CUDA_CHECK(cudaMemcpy(host.data(), ptr, n * sizeof(T), cudaMemcpyDeviceToHost));
        std::vector<float> out(n);
        for (size_t i = 0; i < n; ++i) {
            if constexpr (std::is_same_v<T, int32_t>) out[i] = float(host[i]);
            else out[i] = to_f(host[i]);
        }
        return out;
    }
};

struct Compare {
    double rel = 0;
    size_t nan = 0;
};
Compare compare(const std::vector<float>& out, const std::vector<double>& ref) {
    REQUIRE(out.size() == ref.size());
    double num = 0, den = 0;
    Compare c;
    for (size_t i = 0; i < out.size(); ++i) {
        if (!std::isfinite(out[i])) {
            ++c.nan;
            continue;
        }
        num += (out[i] - ref[i]) * (out[i] - ref[i]);
        den += ref[i] * ref[i];
    }
    c.rel = std::sqrt(num / std::max(den, 1e-300));
    return c;
}
#define CHECK_CLOSE(out, ref, tol)                          \
    do {                                                    \
        const Compare c_ = compare((out), (ref));           \
        CHECK_MESSAGE(c_.nan == 0, "unwritten/NaN: ", c_.nan); \
        CHECK_MESSAGE(c_.rel <= (tol), "rel error ", c_.rel, " > ", (tol)); \
    } while (0)

double gelu_new_ref(double x) {
    return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
}

// ---------------------------------------------------------------------------------------------
// Matmul
// ---------------------------------------------------------------------------------------------
enum Epi { kPlain, kBias, kResidual, kBiasResidual, kGated, kEpiCount };
const char* epi_name(int e) {
    static const char* names[] = {"plain", "bias", "residual", "bias+residual", "gated"};
    return names[e];
}

// pad_x / pad_y: extra elements per row of X / Y (row strides ldx = K + pad_x, ldy = N + pad_y); the
// padding of Y must stay untouched (NaN).
template <class TIn, class TOut>
void run_matmul(Rng& rng, int64_t M, int64_t N, int64_t K, int epi, k::Fp32Mode mode, double tol, int64_t pad_x = 0,
                int64_t pad_y = 0, bool in_place = false) {
    INFO("matmul ", type_name<TIn>(), "->", type_name<TOut>(), (mode == k::Fp32Mode::TF32 ? " tf32" : ""), " M=", M,
         " N=", N, " K=", K, " ", epi_name(epi), " pad_x=", pad_x, " pad_y=", pad_y, (in_place ? " in place" : ""), " seed=", rng.seed);
    const int64_t ldx = K + pad_x, ldy = N + pad_y;
    std::vector<float> xr, wr, ur, br, rr;
    DeviceBuffer<TIn> x(random_vec<TIn>(rng, M * ldx, xr));
    DeviceBuffer<TIn> w(random_vec<TIn>(rng, N * K, wr));
    const bool gated = epi == kGated, bias = epi == kBias || epi == kBiasResidual,
               resid = epi == kResidual || epi == kBiasResidual;
    DeviceBuffer<TIn> u(gated ? random_vec<TIn>(rng, N * K, ur) : std::vector<TIn>{});
    DeviceBuffer<float> b(bias ? random_vec<float>(rng, N, br) : std::vector<float>{});
    DeviceBuffer<TOut> r(resid ? random_vec<TOut>(rng, M * ldy, rr) : std::vector<TOut>{});
    DeviceBuffer<TOut> y(M * ldy);
    y.poison();
    if (in_place && resid)  // Y holds the residual on entry: x += f(x)
        PIX2STRUCT_CUDA_CHECK(cudaMemcpy(y.ptr, r.ptr, M * ldy * sizeof(TOut), cudaMemcpyDeviceToDevice));
    k::MatmulArgs<TIn, TOut> a;
    a.x = x.ptr, a.w = w.ptr, a.y = y.ptr, a.M = M, a.N = N, a.K = K;
    if (pad_x) a.ldx = ldx;
    if (pad_y) a.ldy = ldy;
    if (gated) a.w_up = u.ptr;
    if (bias) a.bias = b.ptr;
    if (resid) a.residual = in_place ? y.ptr : r.ptr;
    k::matmul(a, nullptr, mode);
    const std::vector<float> full = y.download();

    std::vector<float> out(M * N);
    std::vector<double> ref(M * N);
    size_t pad_written = 0;
    for (int64_t m = 0; m < M; ++m) {
        for (int64_t n = 0; n < N; ++n) {
            double h = 0, g = 0;
            for (int64_t kk = 0; kk < K; ++kk) {
                h += double(xr[m * ldx + kk]) * wr[n * K + kk];
                if (gated) g += double(xr[m * ldx + kk]) * ur[n * K + kk];
            }
            double v = gated ? gelu_new_ref(h) * g : h;
            if (bias) v += br[n];
            if (resid) v += rr[m * ldy + n];
            ref[m * N + n] = v;
            out[m * N + n] = full[m * ldy + n];
        }
        if (!in_place)
            for (int64_t n = N; n < ldy; ++n) pad_written += !std::isnan(full[m * ldy + n]);
    }
    CHECK_MESSAGE(pad_written == 0, "elements written outside Y's rows: ", pad_written);
    CHECK_CLOSE(out, ref, tol);
}

struct Shape {
    int64_t M, N, K;
};
// GEMV (M <= 4), SIMT and both tensor-core tiles, aligned and ragged in every dimension.
const std::vector<Shape> kMatmulShapes = {
    {1, 64, 64},    {1, 100, 200},  {3, 77, 72},     {4, 130, 520},   {5, 9, 8},      {16, 16, 16},
    {64, 64, 64},   {65, 63, 40},   {100, 130, 136}, {129, 257, 264}, {200, 96, 768}, {257, 300, 1000},
    {33, 48, 13},   {70, 50, 36},   {1, 33, 13},
};
}  // namespace

TEST_CASE("matmul fp32 exact and TF32 against float64") {
    SKIP_WITHOUT_GPU();
    Rng rng;
    int i = 0;
    for (const Shape& s : kMatmulShapes) {
        run_matmul<float, float>(rng, s.M, s.N, s.K, i % kEpiCount, k::Fp32Mode::Exact, 1e-5);
        run_matmul<float, float>(rng, s.M, s.N, s.K, (i + 2) % kEpiCount, k::Fp32Mode::TF32, 2e-3);
        ++i;
    }
    for (int e = 0; e < kEpiCount; ++e) {
        run_matmul<float, float>(rng, 96, 80, 64, e, k::Fp32Mode::Exact, 1e-5);
        run_matmul<float, float>(rng, 96, 80, 64, e, k::Fp32Mode::TF32, 2e-3);
    }
}

TEST_CASE("matmul bf16 -> bf16 and bf16 -> fp32 against float64") {
    SKIP_WITHOUT_GPU();
    Rng rng;
    int i = 0;
    for (const Shape& s : kMatmulShapes) {
        run_matmul<bf16, bf16>(rng, s.M, s.N, s.K, i % kEpiCount, k::Fp32Mode::Exact, 1e-2);
        run_matmul<bf16, float>(rng, s.M, s.N, s.K, (i + 1) % kEpiCount, k::Fp32Mode::Exact, 1e-5);
        ++i;
    }
    for (int e = 0; e < kEpiCount; ++e) {
        run_matmul<bf16, bf16>(rng, 130, 200, 96, e, k::Fp32Mode::Exact, 1e-2);
        run_matmul<bf16, float>(rng, 2, 200, 96, e, k::Fp32Mode::Exact, 1e-5);
    }
    // Row strides: X padded (aligned: tensor cores; odd: SIMT fallback), Y padded (a K/V cache slot).
    run_matmul<bf16, bf16>(rng, 100, 72, 64, kResidual, k::Fp32Mode::Exact, 1e-2, 8, 24);
    run_matmul<bf16, float>(rng, 100, 72, 64, kBias, k::Fp32Mode::Exact, 1e-5, 3, 5);
    run_matmul<bf16, bf16>(rng, 3, 72, 64, kGated, k::Fp32Mode::Exact, 1e-2, 8, 8);
    run_matmul<float, float>(rng, 70, 40, 36, kBiasResidual, k::Fp32Mode::TF32, 2e-3, 4, 7);
    run_matmul<float, float>(rng, 70, 40, 36, kPlain, k::Fp32Mode::Exact, 1e-5, 1, 1);
    // In place: Y = Y + X·Wᵀ (the residual stream), on every path.
    run_matmul<bf16, bf16>(rng, 130, 200, 96, kResidual, k::Fp32Mode::Exact, 1e-2, 0, 0, true);
    run_matmul<bf16, float>(rng, 2, 200, 96, kBiasResidual, k::Fp32Mode::Exact, 1e-5, 0, 0, true);
    run_matmul<float, float>(rng, 65, 63, 40, kResidual, k::Fp32Mode::Exact, 1e-5, 0, 0, true);
    // Grids large enough for the 128x128 tile (>= 2 blocks per SM), plain and gated.
    run_matmul<bf16, bf16>(rng, 2048, 2176, 64, kResidual, k::Fp32Mode::Exact, 1e-2);
    run_matmul<bf16, float>(rng, 2047, 2200, 72, kGated, k::Fp32Mode::Exact, 1e-5);
    run_matmul<float, float>(rng, 2048, 2176, 32, kBias, k::Fp32Mode::TF32, 2e-3);
}

// ---------------------------------------------------------------------------------------------
// Attention
// ---------------------------------------------------------------------------------------------
namespace {
struct AttnCase {
    int B, H, Lq, Lk;
    bool mask, bias, causal, fused_qkv;
};

// Reference on [B, L, H·D] (row stride ld) inputs.
std::vector<double> attention_ref(const AttnCase& c, const std::vector<float>& q, int64_t q_ld, int64_t q_off,
                                  const std::vector<float>& kv, int64_t kv_ld, int64_t k_off, int64_t v_off,
                                  const std::vector<float>& mask, const std::vector<float>& bias, int D = 64) {
    std::vector<double> out(size_t(c.B) * c.Lq * c.H * D, 0.0);
    std::vector<double> s(c.Lk);
    for (int b = 0; b < c.B; ++b)
        for (int h = 0; h < c.H; ++h)
            for (int i = 0; i < c.Lq; ++i) {
                double mx = -INFINITY;
                for (int j = 0; j < c.Lk; ++j) {
                    bool ok = !c.mask || mask[size_t(b) * c.Lk + j] != 0.f;
                    if (c.causal && j > i + (c.Lk - c.Lq)) ok = false;
                    if (!ok) {
                        s[j] = -INFINITY;
                        continue;
                    }
                    double acc = 0;
                    for (int d = 0; d < D; ++d)
                        acc += double(q[(size_t(b) * c.Lq + i) * q_ld + q_off + h * D + d]) *
                               kv[(size_t(b) * c.Lk + j) * kv_ld + k_off + h * D + d];
                    if (c.bias) acc += bias[(size_t(h) * c.Lq + i) * c.Lk + j];
                    s[j] = acc;
                    mx = std::max(mx, acc);
                }
                if (mx == -INFINITY) continue;  // no visible key: zeros
                double sum = 0;
                for (int j = 0; j < c.Lk; ++j) sum += (s[j] = s[j] == -INFINITY ? 0.0 : std::exp(s[j] - mx));
                for (int d = 0; d < D; ++d) {
                    double acc = 0;
                    for (int j = 0; j < c.Lk; ++j)
                        if (s[j] != 0.0) acc += s[j] * kv[(size_t(b) * c.Lk + j) * kv_ld + v_off + h * D + d];
                    out[((size_t(b) * c.Lq + i) * c.H + h) * D + d] = acc / sum;
                }
            }
    return out;
}

// decode: one query per head through attention_decode (Lq must be 1). any_dim > 0: attention_any_dim with
// that head dim instead.
template <class T>
void run_attention(Rng& rng, const AttnCase& c, bool decode, double tol, int any_dim = 0) {
    INFO("attention", (decode ? "_decode " : " "), type_name<T>(), " B=", c.B, " H=", c.H, " Lq=", c.Lq, " Lk=", c.Lk,
         " mask=", c.mask, " bias=", c.bias, " causal=", c.causal, " fused=", c.fused_qkv, " any_dim=", any_dim,
         " seed=", rng.seed);
    const int D = any_dim > 0 ? any_dim : 64;
    const int64_t HD = int64_t(c.H) * D;
    // Q in its own [B, Lq, H·64] buffer, or (fused, self-attention) Q,K,V interleaved [B, L, 3·H·64].
    const int64_t q_ld = c.fused_qkv ? 3 * HD : HD, kv_ld = c.fused_qkv ? 3 * HD : 2 * HD;
    std::vector<float> qr, kvr, maskr, biasr;
    std::vector<T> qh = random_vec<T>(rng, size_t(c.B) * c.Lq * q_ld, qr);
    std::vector<T> kvh = c.fused_qkv ? qh : random_vec<T>(rng, size_t(c.B) * c.Lk * kv_ld, kvr);
    if (c.fused_qkv) kvr = qr;
    DeviceBuffer<T> qd(qh), kvd(kvh);
    maskr.assign(size_t(c.B) * c.Lk, 1.f);
    if (c.mask)
        for (int b = 0; b < c.B; ++b) {
            const int real = std::max(1, c.Lk - rng.integer(0, c.Lk / 3 + 1) - b);  // padding at the end
            for (int j = real; j < c.Lk; ++j) maskr[size_t(b) * c.Lk + j] = 0.f;
            if (c.Lk > 8) maskr[size_t(b) * c.Lk + rng.integer(0, real - 1)] = 0.f;  // and one hole
            bool any = false;
            for (int j = 0; j < c.Lk; ++j) any |= maskr[size_t(b) * c.Lk + j] != 0.f;
            if (!any) maskr[size_t(b) * c.Lk] = 1.f;
        }
    DeviceBuffer<float> maskd(maskr);
    if (c.bias) random_vec<float>(rng, size_t(c.H) * c.Lq * c.Lk, biasr, -3.f, 3.f);
    DeviceBuffer<float> biasd(biasr);
    DeviceBuffer<T> od(size_t(c.B) * c.Lq * HD);
    od.poison();

    k::AttentionArgs<T> a;
    const int64_t k_off = c.fused_qkv ? HD : 0, v_off = c.fused_qkv ? 2 * HD : HD;
    a.q = qd.ptr, a.k = kvd.ptr + k_off, a.v = kvd.ptr + v_off, a.o = od.ptr;
    a.B = c.B, a.H = c.H, a.Lq = c.Lq, a.Lk = c.Lk;
    a.q_row = q_ld, a.k_row = kv_ld, a.v_row = kv_ld;
    if (c.mask) a.key_mask = maskd.ptr;
    if (c.bias) a.bias = biasd.ptr;
    a.causal = c.causal;
    if (any_dim > 0) {
        a.D = D;
        k::attention_any_dim(a);
    } else if (decode) {
        const size_t ws = k::attention_decode_workspace_bytes(c.B, c.H, c.Lk);
        DeviceBuffer<unsigned char> work(ws);
        work.poison();
        k::attention_decode(a, work.ptr, ws);
        PIX2STRUCT_CUDA_CHECK(cudaDeviceSynchronize());
    } else {
        k::attention(a);
    }
    const std::vector<float> out = od.download();
    const std::vector<double> ref = attention_ref(c, qr, q_ld, 0, kvr, kv_ld, k_off, v_off, maskr, biasr, D);
    CHECK_CLOSE(out, ref, tol);
}

const std::vector<AttnCase> kAttnCases = {
    // B, H, Lq, Lk, mask, bias, causal, fused
    {1, 1, 64, 64, false, false, false, false},     {1, 2, 200, 200, true, false, false, false},  // encoder
    {2, 3, 130, 130, true, false, false, true},     {1, 4, 19, 19, false, true, true, false},     // decoder self
    {1, 2, 5, 70, false, true, true, false},        {2, 2, 17, 300, true, false, false, false},   // cross
    {1, 2, 1, 1, false, false, false, false},       {1, 3, 100, 7, true, true, false, false},
    {1, 12, 1000, 1000, true, false, false, true},  {1, 2, 129, 129, false, true, true, true},
};
const std::vector<AttnCase> kDecodeCases = {
    {1, 12, 1, 1, false, false, false, false},   {1, 12, 1, 7, false, true, false, false},
    {1, 4, 1, 64, true, false, false, false},    {1, 4, 1, 65, false, false, false, false},
    {2, 3, 1, 300, true, true, false, false},    {1, 12, 1, 2048, true, false, false, false},
    {1, 2, 1, 4100, true, true, false, false},
};
}  // namespace

TEST_CASE("attention fp32 and bf16 against float64") {
    SKIP_WITHOUT_GPU();
    Rng rng;
    for (const AttnCase& c : kAttnCases) {
        run_attention<float>(rng, c, false, 1e-5);
        run_attention<bf16>(rng, c, false, 1e-2);
    }
}

TEST_CASE("attention_any_dim (head dims other than 64) fp32 and bf16 against float64") {
    SKIP_WITHOUT_GPU();
    Rng rng;
    for (int D : {24, 32, 7, 64, 80})
        for (const AttnCase& c : kAttnCases) {
            if (int64_t(c.Lq) * c.H > 4000) continue;  // one block per row: keep the float64 reference quick
            run_attention<float>(rng, c, false, 1e-5, D);
            run_attention<bf16>(rng, c, false, 1e-2, D);
        }
    for (const AttnCase& c : kDecodeCases) run_attention<float>(rng, c, false, 1e-5, 32);
}

TEST_CASE("attention_decode (split-K over a K/V cache) fp32 and bf16 against float64") {
    SKIP_WITHOUT_GPU();
    Rng rng;
    for (const AttnCase& c : kDecodeCases) {
        run_attention<float>(rng, c, true, 1e-5);
        run_attention<bf16>(rng, c, true, 1e-2);
    }
}

// ---------------------------------------------------------------------------------------------
// RMSNorm
// ---------------------------------------------------------------------------------------------
namespace {
template <class TIn, class TOut>
void run_rms_norm(Rng& rng, int64_t rows, int64_t cols, double tol) {
    INFO("rms_norm ", type_name<TIn>(), "->", type_name<TOut>(), " [", rows, ", ", cols, "] seed=", rng.seed);
    std::vector<float> xr, wr;
    DeviceBuffer<TIn> x(random_vec<TIn>(rng, rows * cols, xr, -2.f, 2.f));
    DeviceBuffer<float> w(random_vec<float>(rng, cols, wr, 0.f, 2.f));
    DeviceBuffer<TOut> y(rows * cols);
    y.poison();
    const float eps = 1e-6f;
    k::rms_norm(x.ptr, w.ptr, y.ptr, rows, cols, eps);
    const std::vector<float> out = y.download();
    std::vector<double> ref(rows * cols);
    for (int64_t r = 0; r < rows; ++r) {
        double ss = 0;
        for (int64_t c = 0; c < cols; ++c) ss += double(xr[r * cols + c]) * xr[r * cols + c];
        const double inv = 1.0 / std::sqrt(ss / cols + eps);
        for (int64_t c = 0; c < cols; ++c) ref[r * cols + c] = wr[c] * xr[r * cols + c] * inv;
    }
    CHECK_CLOSE(out, ref, tol);
}
}  // namespace

TEST_CASE("rms_norm every type pair against float64") {
    SKIP_WITHOUT_GPU();
    Rng rng;
    for (auto [rows, cols] : std::vector<std::pair<int64_t, int64_t>>{{1, 768}, {37, 100}, {129, 1536}, {5, 8}, {3, 13}}) {
        run_rms_norm<float, float>(rng, rows, cols, 1e-5);
        run_rms_norm<bf16, float>(rng, rows, cols, 1e-5);
        run_rms_norm<float, bf16>(rng, rows, cols, 1e-2);
        run_rms_norm<bf16, bf16>(rng, rows, cols, 1e-2);
    }
}

// ---------------------------------------------------------------------------------------------
// Embeddings, conversions, argmax
// ---------------------------------------------------------------------------------------------
TEST_CASE("embedding_gather, split_patches, add_position_embeddings against the CPU") {
    SKIP_WITHOUT_GPU();
    Rng rng;
    INFO("seed=", rng.seed);
    const int64_t V = 300, H = 72, n = 45;
    std::vector<float> tr, basef;
    DeviceBuffer<bf16> table(random_vec<bf16>(rng, V * H, tr));
    std::vector<int32_t> ids(n);
    for (auto& id : ids) id = rng.integer(0, int(V) - 1);
    DeviceBuffer<int32_t> idd(ids);
    {
        DeviceBuffer<float> out(n * H);
        out.poison();
        k::embedding_gather(table.ptr, V, idd.ptr, out.ptr, n, H);
        std::vector<double> ref(n * H);
        for (int64_t i = 0; i < n; ++i)
            for (int64_t h = 0; h < H; ++h) ref[i * H + h] = tr[ids[i] * H + h];
        CHECK_CLOSE(out.download(), ref, 0.0);
        // accumulate onto existing values
        DeviceBuffer<float> acc(random_vec<float>(rng, n * H, basef));
        k::embedding_gather(table.ptr, V, idd.ptr, acc.ptr, n, H, true);
        for (int64_t i = 0; i < n * H; ++i) ref[i] += basef[i];
        CHECK_CLOSE(acc.download(), ref, 1e-6);
    }
    {
        // Patches [N, 2 + P]: 1-based row/col ids (0 for padding rows), then pixels.
        const int64_t N = 37, P = 48, S = 64;
        std::vector<float> flat(N * (P + 2)), pix;
        random_vec<float>(rng, N * P, pix);
        std::vector<int> rid(N), cid(N);
        for (int64_t i = 0; i < N; ++i) {
            rid[i] = i < 30 ? rng.integer(1, S - 1) : 0;
            cid[i] = i < 30 ? rng.integer(1, S - 1) : 0;
            flat[i * (P + 2)] = float(rid[i]);
            flat[i * (P + 2) + 1] = float(cid[i]);
            for (int64_t p = 0; p < P; ++p) flat[i * (P + 2) + 2 + p] = pix[i * P + p];
        }
        DeviceBuffer<float> flatd(flat);
        DeviceBuffer<bf16> pixd(N * P);
        DeviceBuffer<int32_t> idsd(N * 2);
        pixd.poison();
        idsd.poison();
        k::split_patches(flatd.ptr, N, P, pixd.ptr, idsd.ptr);
        std::vector<double> pref(N * P), iref(N * 2);
        for (int64_t i = 0; i < N * P; ++i) pref[i] = __bfloat162float(__float2bfloat16_rn(pix[i]));
        for (int64_t i = 0; i < N; ++i) iref[2 * i] = rid[i], iref[2 * i + 1] = cid[i];
        CHECK_CLOSE(pixd.download(), pref, 0.0);
        CHECK_CLOSE(idsd.download(), iref, 0.0);

        std::vector<float> rowr, colr, xr;
        DeviceBuffer<float> rowt(random_vec<float>(rng, S * H, rowr)), colt(random_vec<float>(rng, S * H, colr));
        DeviceBuffer<bf16> x(random_vec<bf16>(rng, N * H, xr));
        k::add_position_embeddings(x.ptr, rowt.ptr, colt.ptr, S, idsd.ptr, N, H);
        std::vector<double> xref(N * H);
        for (int64_t i = 0; i < N; ++i)
            for (int64_t h = 0; h < H; ++h)
                xref[i * H + h] = double(xr[i * H + h]) + rowr[rid[i] * H + h] + colr[cid[i] * H + h];
        CHECK_CLOSE(x.download(), xref, 1e-2);
    }
}

TEST_CASE("gelu_gate and add against float64") {
    SKIP_WITHOUT_GPU();
    Rng rng;
    INFO("seed=", rng.seed);
    for (int64_t n : {1, 7, 1000, 4096 + 3}) {
        std::vector<float> ar, br;
        DeviceBuffer<float> a(random_vec<float>(rng, n, ar, -4.f, 4.f)), b(random_vec<float>(rng, n, br, -2.f, 2.f));
        k::gelu_gate(a.ptr, b.ptr, n);
        std::vector<double> ref(n);
        for (int64_t i = 0; i < n; ++i) ref[i] = gelu_new_ref(ar[i]) * br[i];
        CHECK_CLOSE(a.download(), ref, 1e-6);
        std::vector<float> yr, xr;
        DeviceBuffer<bf16> y(random_vec<bf16>(rng, n, yr)), x(random_vec<bf16>(rng, n, xr));
        k::add(y.ptr, x.ptr, n);
        for (int64_t i = 0; i < n; ++i) ref[i] = double(yr[i]) + xr[i];
        CHECK_CLOSE(y.download(), ref, 1e-2);
    }
}

TEST_CASE("convert and argmax against the CPU") {
    SKIP_WITHOUT_GPU();
    Rng rng;
    INFO("seed=", rng.seed);
    const int64_t n = 1000 + rng.integer(0, 100);
    std::vector<float> xr;
    DeviceBuffer<float> x(random_vec<float>(rng, n, xr, -100.f, 100.f));
    DeviceBuffer<bf16> xb(n);
    DeviceBuffer<float> back(n);
    xb.poison();
    back.poison();
    k::convert(x.ptr, xb.ptr, n);
    k::convert(xb.ptr, back.ptr, n);
    std::vector<double> ref(n);
    for (int64_t i = 0; i < n; ++i) ref[i] = __bfloat162float(__float2bfloat16_rn(xr[i]));
    CHECK_CLOSE(xb.download(), ref, 0.0);
    CHECK_CLOSE(back.download(), ref, 0.0);

    for (int64_t V : {1, 7, 1000, 50244}) {
        const int64_t rows = 3;
        std::vector<float> lr;
        std::vector<float> logits = random_vec<float>(rng, rows * V, lr, -5.f, 5.f);
        std::vector<double> expect(rows);
        for (int64_t r = 0; r < rows; ++r) {
            if (V > 2) {  // a tie: the first index must win
                const int64_t a = rng.integer(0, int(V) - 2), b = rng.integer(int(a) + 1, int(V) - 1);
                logits[r * V + a] = logits[r * V + b] = 6.f;
            }
            int64_t best = 0;
            for (int64_t j = 1; j < V; ++j)
                if (logits[r * V + j] > logits[r * V + best]) best = j;
            expect[r] = double(best);
        }
        DeviceBuffer<float> ld(logits);
        DeviceBuffer<int32_t> out(rows);
        out.poison();
        k::argmax(ld.ptr, rows, V, out.ptr);
        INFO("argmax V=", V);
        CHECK_CLOSE(out.download(), expect, 0.0);
        // bf16 logits (the same values rounded: ties stay ties at 6.0)
        std::vector<bf16> lb(rows * V);
        for (int64_t i = 0; i < rows * V; ++i) lb[i] = __float2bfloat16_rn(logits[i]);
        for (int64_t r = 0; r < rows; ++r) {
            int64_t best = 0;
            for (int64_t j = 1; j < V; ++j)
                if (__bfloat162float(lb[r * V + j]) > __bfloat162float(lb[r * V + best])) best = j;
            expect[r] = double(best);
        }
        DeviceBuffer<bf16> lbd(lb);
        out.poison();
        k::argmax(lbd.ptr, rows, V, out.ptr);
        CHECK_CLOSE(out.download(), expect, 0.0);
        // A row holding NaN, +inf or -inf anywhere gives -1 (kNonFiniteLogits); the others are unchanged.
        const int64_t at = rng.integer(0, int(V) - 1);
        logits[0 * V + at] = NAN;
        logits[1 * V + at] = INFINITY;
        if (V > 1) logits[2 * V + (at + 1) % V] = -INFINITY;
        DeviceBuffer<float> lnf(logits);
        out.poison();
        k::argmax(lnf.ptr, rows, V, out.ptr);
        const std::vector<float> got = out.download();
        CHECK(got[0] == -1.f);
        CHECK(got[1] == -1.f);
        if (V > 1) CHECK(got[2] == -1.f);
    }
}



TEST_CASE("relative_position_bias against the reference bucketing") {
    SKIP_WITHOUT_GPU();
    Rng rng;
    INFO("seed=", rng.seed);
    const int buckets = 32, max_distance = 128, H = 12;
    std::vector<float> tr;
    DeviceBuffer<bf16> table(random_vec<bf16>(rng, buckets * H, tr));
    // Whole-sequence (Lq = Lk = 300, past max_distance) and one decode step at position 250.
    for (auto [Lq, Lk, offset] : std::vector<std::array<int, 3>>{{300, 300, 0}, {1, 251, 250}, {7, 20, 13}}) {
        INFO("Lq=", Lq, " Lk=", Lk, " offset=", offset);
        DeviceBuffer<float> out(int64_t(H) * Lq * Lk);
        out.poison();
        k::relative_position_bias(table.ptr, buckets, max_distance, H, Lq, Lk, offset, out.ptr);
        std::vector<double> ref(out.n);
        for (int h = 0; h < H; ++h)
            for (int i = 0; i < Lq; ++i)
                for (int j = 0; j < Lk; ++j)
                    ref[(size_t(h) * Lq + i) * Lk + j] = tr[pix2struct::relative_position_bucket(j - (offset + i), false, buckets, max_distance) * H + h];
        CHECK_CLOSE(out.download(), ref, 0.0);
    }
}

TEST_CASE("launchers reject bad arguments with pix2struct::Error") {
    SKIP_WITHOUT_GPU();
    k::MatmulArgs<float, float> a;
    a.M = 4, a.N = 0, a.K = 8;
    CHECK_THROWS_AS(k::matmul(a), pix2struct::Error);
    k::AttentionArgs<bf16> att;  // no pointers
    att.Lq = att.Lk = 4;
    CHECK_THROWS_AS(k::attention(att), pix2struct::Error);
    CHECK_THROWS_WITH(PIX2STRUCT_CUDA_CHECK(cudaMemcpy(nullptr, nullptr, 1 << 20, cudaMemcpyDeviceToDevice)),
                      doctest::Contains("cudaMemcpy"));
}
