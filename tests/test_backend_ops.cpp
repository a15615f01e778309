// Every primitive of the Backend concept (backend/backend.hpp) on the CPU backend — its kernel variants
// included: Eigen GEMM and GEMV, the BF16 GEMV of the decode step (1 to 16 rows; AVX-512, AVX2 and generic
// kernels, each this CPU runs), bias and accumulation,
// 1 and 2 threads (attention: the same bits) — against one float64 evaluation of the primitive's formula, over a table of shapes with
// the awkward ones (one row, odd widths, d_kv 24/32/64/128, the large model's 1536/3968 widths, a mask that
// pads every key but one). In the spirit of llama.cpp's test-backend-ops.
//
// Error measure: |ours - ref| per element against a bound that scales with the magnitudes summed into it
// (Σ|terms|), so a long dot product is held to the same relative standard as a short one.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "pix2struct/backend/cpu.hpp"
#include "pix2struct/nn/position_bucket.hpp"

using namespace pix2struct;

namespace {

constexpr double kF32 = 1e-5;  // allowed error relative to the summed magnitudes (fp32 arithmetic)

struct Rng {
    std::mt19937 gen{20261130};
    std::vector<float> normal(size_t n, float scale = 1.f) {
        std::normal_distribution<float> d(0.f, scale);
        std::vector<float> v(n);
        for (float& x : v) x = d(gen);
        return v;
    }
};

// A weight [rows, cols] in float, optionally also stored as BF16 with its Weight::bf16 copy (values rounded
// so both views agree).
struct TestWeight {
    std::vector<float> values;
    std::vector<uint16_t> bf16;
    TensorView view;
    Weight w;
    TestWeight(std::vector<float> v, std::vector<int64_t> shape, bool as_bf16) : values(std::move(v)) {
        if (as_bf16) {
            bf16.resize(values.size());
            for (size_t i = 0; i < values.size(); ++i) {
                bf16[i] = float_to_bf16(values[i]);
                values[i] = bf16_to_float(bf16[i]);
            }
            view.name = std::string("w");  // not operator=(const char*): GCC 12 -Wrestrict false positive
            view.dtype = DType::BF16;
            view.shape = shape;
            view.bytes = std::as_bytes(std::span(bf16));
        }
        w.name = std::string("w");
        w.shape = std::move(shape);
        w.data = values.data();
        w.source = as_bf16 ? &view : nullptr;
        w.bf16 = as_bf16 ? bf16.data() : nullptr;  // as Checkpoint::load gives a decode matrix
    }
    TestWeight(const TestWeight&) = delete;
};

// Largest |ours - ref| / bound over the elements.
double worst(const std::vector<float>& ours, const std::vector<double>& ref, const std::vector<double>& bound) {
    double w = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
        const double e = std::fabs(double(ours[i]) - ref[i]);
        w = std::max(w, std::isfinite(ours[i]) ? e / std::max(bound[i], 1e-30) : INFINITY);
    }
    return w;
}

}  // namespace

TEST_CASE("backend ops: linear (GEMM, GEMV, BF16 GEMV 1-16 rows on every SIMD set, bias, accumulate, 1 and 2 threads)") {
    struct Shape { int64_t M, K, N; };
    const Shape shapes[] = {{1, 1, 1}, {1, 64, 64}, {3, 17, 5}, {2, 768, 64}, {8, 130, 67}, {16, 256, 96},
                            {17, 128, 96}, {5, 1536, 260}, {1, 3968, 129}, {64, 96, 1536}, {9, 33, 3968},
                            {40, 700, 70}, {300, 257, 33}};  // GEMM: K blocks of 256, > 240-row blocks, tails
    Rng rng;
    int cases = 0;
    std::vector<CpuIsa> isas;  // every kernel set this CPU runs (the BF16 GEMV has one per set)
    for (int i = 0; i <= int(host_isa()); ++i) isas.push_back(CpuIsa(i));
    MESSAGE("SIMD sets tested: ", isas.size(), " (widest: ", std::string(isa_name(host_isa())), ")");
    for (CpuIsa isa : isas)
    for (int threads : {1, 2}) {
        for (const Shape& s : shapes)
            for (bool bf16 : {false, true})
                for (bool with_bias : {false, true})
                    for (Write mode : {Write::Overwrite, Write::Accumulate}) {
                        CpuBackend cpu(threads, isa);
                        const std::string isa_label = isa_name(isa);
                        CAPTURE(isa_label); CAPTURE(threads); CAPTURE(s.M); CAPTURE(s.K); CAPTURE(s.N); CAPTURE(bf16); CAPTURE(with_bias);
                        CAPTURE(mode == Write::Accumulate);
                        const TestWeight W(rng.normal(size_t(s.N * s.K), 1.f / std::sqrt(float(s.K))), {s.N, s.K}, bf16);
                        const TestWeight b(rng.normal(size_t(s.N)), {s.N}, false);
                        const std::vector<float> X = rng.normal(size_t(s.M * s.K));
                        std::vector<float> Y = rng.normal(size_t(s.M * s.N));
                        std::vector<double> ref(Y.size()), bound(Y.size());
                        for (int64_t m = 0; m < s.M; ++m)
                            for (int64_t n = 0; n < s.N; ++n) {
                                double acc = 0, mag = 0;
                                for (int64_t k = 0; k < s.K; ++k) {
                                    const double t = double(W.values[size_t(n * s.K + k)]) * X[size_t(m * s.K + k)];
                                    acc += t, mag += std::fabs(t);
                                }
                                const size_t i = size_t(m * s.N + n);
                                if (with_bias) acc += b.values[size_t(n)], mag += std::fabs(b.values[size_t(n)]);
                                if (mode == Write::Accumulate) acc += Y[i], mag += std::fabs(Y[i]);
                                ref[i] = acc;
                                bound[i] = kF32 * mag;
                            }
                        cpu.linear(X.data(), s.M, W.w, Y.data(), mode, with_bias ? &b.w : nullptr);
                        CHECK(worst(Y, ref, bound) <= 1.0);
                        ++cases;
                    }
    }
    CHECK(cases == int(isas.size()) * 2 * 13 * 8);
}

TEST_CASE("backend ops: rms_norm, gelu_gate, add_rows") {
    CpuBackend cpu(2);
    Rng rng;
    for (int64_t M : {1, 7})
        for (int64_t H : {1, 64, 1536, 1537}) {
            CAPTURE(M); CAPTURE(H);
            const TestWeight g(rng.normal(size_t(H)), {H}, false);
            const std::vector<float> X = rng.normal(size_t(M * H), 3.f);
            std::vector<float> Y(X.size());
            std::vector<double> ref(X.size()), bound(X.size());
            for (int64_t m = 0; m < M; ++m) {
                double ss = 0;
                for (int64_t h = 0; h < H; ++h) ss += double(X[size_t(m * H + h)]) * X[size_t(m * H + h)];
                const double inv = 1.0 / std::sqrt(ss / double(H) + 1e-6);
                for (int64_t h = 0; h < H; ++h) {
                    const size_t i = size_t(m * H + h);
                    ref[i] = g.values[size_t(h)] * (X[i] * inv);
                    bound[i] = kF32 * (std::fabs(ref[i]) + 1e-3);
                }
            }
            cpu.rms_norm(X.data(), M, g.w, 1e-6f, Y.data());
            CHECK(worst(Y, ref, bound) <= 1.0);
        }
    for (int64_t n : {1, 17, 3 * 3968, 40000}) {
        CAPTURE(n);
        std::vector<float> A = rng.normal(size_t(n), 3.f);
        const std::vector<float> B = rng.normal(size_t(n));
        std::vector<double> ref(static_cast<size_t>(n)), bound(static_cast<size_t>(n));
        for (size_t i = 0; i < size_t(n); ++i) {
            const double a = A[i];
            ref[i] = 0.5 * a * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (a + 0.044715 * a * a * a))) * B[i];
            bound[i] = 1e-5 * (std::fabs(a * B[i]) + 1e-3);
        }
        cpu.gelu_gate(A.data(), B.data(), n);
        CHECK(worst(A, ref, bound) <= 1.0);

        std::vector<float> Y = rng.normal(size_t(n));
        const std::vector<float> X = rng.normal(size_t(n));
        for (size_t i = 0; i < size_t(n); ++i) ref[i] = double(Y[i]) + X[i], bound[i] = kF32 * (std::fabs(Y[i]) + std::fabs(X[i]));
        cpu.add_rows(Y.data(), X.data(), n);
        CHECK(worst(Y, ref, bound) <= 1.0);
    }
}

TEST_CASE("backend ops: attention (every SIMD set; d_kv 24/32/64/128, one query and many, masks with one real key, bias, 1 = 2 threads)") {
    struct Shape { int Lq, Lk, H, D; };
    const Shape shapes[] = {{1, 1, 1, 24}, {1, 1000, 2, 64}, {5, 7, 3, 32}, {64, 64, 2, 128},
                            {130, 130, 24, 64}, {1, 2048, 12, 64}, {65, 3, 1, 24}, {40, 700, 2, 64}, {17, 300, 3, 24}};
    Rng rng;
    for (int i = 0; i <= int(host_isa()); ++i) {
        const CpuIsa isa = CpuIsa(i);
        const std::string isa_label = isa_name(isa);
        CpuBackend one(1, isa), two(2, isa);
        for (const Shape& s : shapes)
            for (int mask_kind : {0, 1, 2})  // none, every third key padded, all keys padded but one
                for (bool with_bias : {false, true}) {
                    CAPTURE(isa_label); CAPTURE(s.Lq); CAPTURE(s.Lk); CAPTURE(s.H); CAPTURE(s.D); CAPTURE(mask_kind);
                    CAPTURE(with_bias);
                    const int64_t I = int64_t(s.H) * s.D, ld = I + 8;  // strided rows
                    const std::vector<float> q = rng.normal(size_t(s.Lq * ld), 0.3f), k = rng.normal(size_t(s.Lk * ld), 0.3f),
                                             v = rng.normal(size_t(s.Lk * ld));
                    const std::vector<float> bias = rng.normal(size_t(int64_t(s.H) * s.Lq * s.Lk));
                    std::vector<float> mask(size_t(s.Lk), 1.f);
                    const int keep = s.Lk / 2;
                    for (int j = 0; j < s.Lk; ++j)
                        if ((mask_kind == 1 && j % 3 == 1) || (mask_kind == 2 && j != keep)) mask[size_t(j)] = 0.f;
                    std::vector<float> o(size_t(s.Lq * I), NAN);
                    std::vector<double> ref(o.size()), bound(o.size());
                    for (int h = 0; h < s.H; ++h)
                        for (int i = 0; i < s.Lq; ++i) {
                            std::vector<double> p(size_t(s.Lk));
                            double mx = -INFINITY;
                            for (int j = 0; j < s.Lk; ++j) {
                                double d = 0;
                                for (int e = 0; e < s.D; ++e)
                                    d += double(q[size_t(i * ld + h * s.D + e)]) * k[size_t(j * ld + h * s.D + e)];
                                if (with_bias) d += bias[size_t((int64_t(h) * s.Lq + i) * s.Lk + j)];
                                p[size_t(j)] = mask_kind && mask[size_t(j)] == 0.f ? -INFINITY : d;
                                mx = std::max(mx, p[size_t(j)]);
                            }
                            double sum = 0;
                            for (double& x : p) sum += (x = std::exp(x - mx));
                            for (int e = 0; e < s.D; ++e) {
                                double acc = 0, mag = 0;
                                for (int j = 0; j < s.Lk; ++j) {
                                    const double t = p[size_t(j)] / sum * v[size_t(j * ld + h * s.D + e)];
                                    acc += t, mag += std::fabs(t);
                                }
                                const size_t idx = size_t(int64_t(i) * I + h * s.D + e);
                                ref[idx] = acc;
                                bound[idx] = 1e-4 * (mag + 1e-4);  // fp32 softmax: exp and sum in float
                            }
                        }
                    AttentionArgs<float> args{.q = q.data(), .k = k.data(), .v = v.data(), .o = o.data(), .H = s.H,
                                              .Lq = s.Lq, .Lk = s.Lk, .D = s.D, .q_row = ld, .k_row = ld,
                                              .v_row = ld, .o_row = I, .key_mask = mask_kind ? mask.data() : nullptr,
                                              .bias = with_bias ? bias.data() : nullptr};
                    one.attention(args);
                    CHECK(worst(o, ref, bound) <= 1.0);
                    std::vector<float> o2(o.size(), NAN);
                    args.o = o2.data();
                    two.attention(args);
                    CHECK(o2 == o);  // the same bits whatever the thread count
                }
    }
}

TEST_CASE("backend ops: embed, embed_token, argmax (NaN/inf: kNonFiniteLogits), relative_position_bias") {
    CpuBackend cpu(2);
    Rng rng;
    const int64_t V = 37, H = 24;
    const TestWeight table(rng.normal(size_t(V * H)), {V, H}, false);
    const std::vector<int64_t> ids{0, V - 1, 5, 5, 17};
    for (Write mode : {Write::Overwrite, Write::Accumulate}) {
        std::vector<float> Y = rng.normal(ids.size() * size_t(H));
        const std::vector<float> before = Y;
        cpu.embed(table.w, ids.data(), int64_t(ids.size()), Y.data(), mode);
        int wrong = 0;
        for (size_t r = 0; r < ids.size(); ++r)
            for (int64_t c = 0; c < H; ++c) {
                const float want = table.values[size_t(ids[r] * H + c)] + (mode == Write::Accumulate ? before[r * H + c] : 0.f);
                wrong += Y[r * H + c] != want;
            }
        CHECK(wrong == 0);
    }
    const int64_t bad = V;
    std::vector<float> Y(static_cast<size_t>(H));
    CHECK_THROWS_WITH_AS(cpu.embed(table.w, &bad, 1, Y.data()), doctest::Contains("outside [0, 37)"), Error);
    const int32_t token = 11;
    cpu.embed_token(table.w, &token, Y.data());
    CHECK(std::memcmp(Y.data(), table.values.data() + 11 * H, size_t(H) * sizeof(float)) == 0);

    auto argmax = [&](std::vector<float> x) {
        int32_t t = 12345;
        cpu.argmax(x.data(), int64_t(x.size()), &t);
        return t;
    };
    for (int64_t n : {1, 2, 50244}) {
        std::vector<float> x = rng.normal(size_t(n));
        x[size_t(n / 2)] = 100.f;
        CHECK(argmax(x) == n / 2);
    }
    CHECK(argmax({-3.f, 2.f, 7.f, 7.f, 1.f}) == 2);  // ties: the first, as torch.argmax
    CHECK(argmax({-1e30f, -2e30f}) == 0);
    CHECK(argmax({1.f, NAN, 3.f}) == kNonFiniteLogits);
    CHECK(argmax({1.f, INFINITY, 3.f}) == kNonFiniteLogits);
    CHECK(argmax({1.f, 2.f, -INFINITY}) == kNonFiniteLogits);

    // The decoder's bias of query q against keys 0..q: table[bucket(k - q), h], laid out [heads, 1, q + 1].
    const int buckets = 32, max_distance = 128, heads = 12;
    const TestWeight rel(rng.normal(size_t(buckets * heads)), {buckets, heads}, false);
    for (int64_t q : {0, 1, 15, 16, 200, 2100}) {
        CAPTURE(q);
        std::vector<float> out(size_t(heads * (q + 1)), NAN);
        cpu.relative_position_bias(rel.w, buckets, max_distance, q, out.data());
        int wrong = 0;
        for (int h = 0; h < heads; ++h)
            for (int64_t k = 0; k <= q; ++k)
                wrong += out[size_t(h * (q + 1) + k)] !=
                         rel.values[size_t(relative_position_bucket(k - q, false, buckets, max_distance) * heads + h)];
        CHECK(wrong == 0);
    }
}
