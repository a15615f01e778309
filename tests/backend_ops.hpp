// The backend-primitive harness, in the spirit of llama.cpp's test-backend-ops: every primitive of the
// Backend concept (backend/backend.hpp) against one float64 evaluation of its formula, over a table of
// shapes with the awkward ones (one row, odd widths, d_kv 24/32/64/128, the large model's 1536/3968 widths,
// several K blocks, a mask that pads every key but one). Templated on the backend: test_backend_ops.cpp runs
// it on the CPU backend (each SIMD set, 1 and 2 threads), gpu/test_backend_ops_gpu.cu on CudaBackend and
// CudaBackendBf16. Values go in and out through the backend's own buffers and transfers.
//
// Error measure: |ours - ref| per element against a bound that scales with the magnitudes summed into it
// (Σ|terms|), so a long dot product is held to the same relative standard as a short one; a backend whose
// activations are bf16 also gets the rounding of its output (Tolerance::out) and computes from inputs
// rounded to bf16 (the reference uses the same rounded values).
#pragma once

#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "pix2struct/backend/backend.hpp"
#include "pix2struct/nn/position_bucket.hpp"
#include "pix2struct/safetensors.hpp"

namespace backend_ops {

using namespace pix2struct;

struct Rng {
    std::mt19937 gen{20261130};
    std::vector<float> normal(size_t n, float scale = 1.f) {
        std::normal_distribution<float> d(0.f, scale);
        std::vector<float> v(n);
        for (float& x : v) x = d(gen);
        return v;
    }
};

// How close a backend must come to float64: |ours - ref| ≤ terms · Σ|terms| + out · |ref|.
struct Tolerance {
    double terms = 1e-5;    // fp32 arithmetic
    double softmax = 1e-4;  // attention: exp and sums in fp32
    double out = 0;         // the output's rounding (bf16 activations: 2^-8)
    double value_range = 0; // attention: × max |V| of the channel over all keys (int8 values, quantised per channel)
};

// A weight [rows, cols] in float, optionally also stored as BF16 with its Weight::bf16 copy (values rounded
// so both views agree), as Checkpoint::load gives a decode matrix. `index`: its place in the list a device
// backend uploads.
struct TestWeight {
    std::vector<float> values;
    std::vector<uint16_t> bf16;
    TensorView view;
    Weight w;
    TestWeight(std::vector<float> v, std::vector<int64_t> shape, bool as_bf16, int index = 0) : values(std::move(v)) {
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
        w.bf16 = as_bf16 ? bf16.data() : nullptr;
        w.index = index;
    }
    TestWeight(const TestWeight&) = delete;
};

// Makes a backend that knows `weights` (a device backend uploads them; weights[i]->index == i).
template <class B>
using Factory = std::function<std::unique_ptr<B>(std::span<const Weight* const> weights)>;

// Largest |ours - ref| / bound over the elements (infinite for a non-finite value).
inline double worst(const std::vector<float>& ours, const std::vector<double>& ref, const std::vector<double>& bound) {
    double w = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
        const double e = std::fabs(double(ours[i]) - ref[i]);
        w = std::max(w, std::isfinite(ours[i]) ? e / std::max(bound[i], 1e-30) : INFINITY);
    }
    return w;
}

// Scalar conversions; a backend with another activation type declares convert() for it beside that type
// (found by argument-dependent lookup).
inline void convert(float from, float& to) { to = from; }

// Values into and out of a backend's buffers, as float on the host.
template <class B>
struct Io {
    using S = scalar_t<B>;
    B& b;

    typename B::Buffer put(const std::vector<float>& v) {
        typename B::Buffer buf = b.alloc(v.size());
        std::vector<S> s(v.size());
        for (size_t i = 0; i < v.size(); ++i) convert(v[i], s[i]);
        detail::to_backend(b, buf.data(), s.data(), int64_t(v.size()));
        return buf;
    }
    std::vector<float> get(const S* p, size_t n) {
        std::vector<S> s(n);
        detail::to_host(b, s.data(), p, int64_t(n));
        std::vector<float> v(n);
        for (size_t i = 0; i < n; ++i) convert(s[i], v[i]);
        return v;
    }
    typename B::FloatBuffer put_float(const std::vector<float>& v) {
        typename B::FloatBuffer buf = b.alloc_float(v.size());
        detail::to_backend(b, buf.data(), v.data(), int64_t(v.size()));
        return buf;
    }
    std::vector<float> get_float(const float* p, size_t n) {
        std::vector<float> v(n);
        detail::to_host(b, v.data(), p, int64_t(n));
        return v;
    }
    // The values as the backend's activations and weights hold them.
    static std::vector<float> representable(std::vector<float> v) {
        if constexpr (requires { requires B::bf16_values; }) {  // bf16 values in fp32 storage (CpuBf16Backend)
            for (float& x : v) x = bf16_to_float(float_to_bf16(x));
            return v;
        }
        for (float& x : v) {
            S s;
            convert(x, s);
            convert(s, x);
        }
        return v;
    }
};

struct LinearShape {
    int64_t M, K, N;
};
inline const LinearShape kLinearShapes[] = {
    {1, 1, 1},     {1, 64, 64},    {3, 17, 5},     {2, 768, 64},    {8, 130, 67},   {16, 256, 96},  {17, 128, 96},
    {5, 1536, 260}, {1, 3968, 129}, {64, 96, 1536}, {9, 33, 3968}, {40, 700, 70}, {300, 257, 33}};  // last two:
// K blocks of 256, more rows than a 240-row block, tails of every tile

// linear: every shape, with and without bias, overwrite and accumulate; weights stored as BF16 (with
// their decode copy) when `bf16_weights`. Returns the cases run.
template <class B>
int check_linear(const Factory<B>& make, const Tolerance& tol, bool bf16_weights, Rng& rng) {
    int cases = 0;
    for (const LinearShape& s : kLinearShapes)
        for (bool with_bias : {false, true})
            for (Write mode : {Write::Overwrite, Write::Accumulate}) {
                CAPTURE(s.M); CAPTURE(s.K); CAPTURE(s.N); CAPTURE(bf16_weights); CAPTURE(with_bias);
                CAPTURE(mode == Write::Accumulate);
                const TestWeight W(rng.normal(size_t(s.N * s.K), 1.f / std::sqrt(float(s.K))), {s.N, s.K}, bf16_weights, 0);
                const TestWeight b(rng.normal(size_t(s.N)), {s.N}, false, 1);
                const Weight* weights[] = {&W.w, &b.w};
                std::unique_ptr<B> backend = make(weights);
                Io<B> io{*backend};
                const std::vector<float> X = io.representable(rng.normal(size_t(s.M * s.K)));
                const std::vector<float> Y0 = io.representable(rng.normal(size_t(s.M * s.N)));
                std::vector<double> ref(Y0.size()), bound(Y0.size());
                for (int64_t m = 0; m < s.M; ++m)
                    for (int64_t n = 0; n < s.N; ++n) {
                        double acc = 0, mag = 0;
                        for (int64_t k = 0; k < s.K; ++k) {
                            const double t = double(W.values[size_t(n * s.K + k)]) * X[size_t(m * s.K + k)];
                            acc += t, mag += std::fabs(t);
                        }
                        const size_t i = size_t(m * s.N + n);
                        if (with_bias) acc += b.values[size_t(n)], mag += std::fabs(b.values[size_t(n)]);
                        if (mode == Write::Accumulate) acc += Y0[i], mag += std::fabs(Y0[i]);
                        ref[i] = acc;
                        bound[i] = tol.terms * mag + tol.out * std::fabs(acc);
                    }
                const auto x = io.put(X);
                auto y = io.put(Y0);
                backend->linear(x.data(), s.M, W.w, y.data(), mode, with_bias ? &b.w : nullptr);
                CHECK(worst(io.get(y.data(), Y0.size()), ref, bound) <= 1.0);
                ++cases;
            }
    return cases;
}

// rms_norm, gelu_gate, add_rows.
template <class B>
void check_elementwise(const Factory<B>& make, const Tolerance& tol, Rng& rng) {
    for (int64_t M : {1, 7})
        for (int64_t H : {1, 64, 1536, 1537}) {
            CAPTURE(M); CAPTURE(H);
            const TestWeight g(Io<B>::representable(rng.normal(size_t(H))), {H}, false, 0);
            const Weight* weights[] = {&g.w};
            std::unique_ptr<B> backend = make(weights);
            Io<B> io{*backend};
            const std::vector<float> X = io.representable(rng.normal(size_t(M * H), 3.f));
            std::vector<double> ref(X.size()), bound(X.size());
            for (int64_t m = 0; m < M; ++m) {
                double ss = 0;
                for (int64_t h = 0; h < H; ++h) ss += double(X[size_t(m * H + h)]) * X[size_t(m * H + h)];
                const double inv = 1.0 / std::sqrt(ss / double(H) + 1e-6);
                for (int64_t h = 0; h < H; ++h) {
                    const size_t i = size_t(m * H + h);
                    ref[i] = g.values[size_t(h)] * (X[i] * inv);
                    bound[i] = tol.terms * (std::fabs(ref[i]) + 1e-3) + tol.out * std::fabs(ref[i]);
                }
            }
            const auto x = io.put(X);
            auto y = io.put(std::vector<float>(X.size()));
            backend->rms_norm(x.data(), M, g.w, 1e-6f, y.data());
            CHECK(worst(io.get(y.data(), X.size()), ref, bound) <= 1.0);
        }
    std::unique_ptr<B> backend = make({});
    Io<B> io{*backend};
    for (int64_t n : {1, 17, 3 * 3968, 40000}) {
        CAPTURE(n);
        const std::vector<float> A = io.representable(rng.normal(size_t(n), 3.f)), Bv = io.representable(rng.normal(size_t(n)));
        std::vector<double> ref(static_cast<size_t>(n)), bound(static_cast<size_t>(n));
        for (size_t i = 0; i < size_t(n); ++i) {
            const double a = A[i];
            ref[i] = 0.5 * a * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (a + 0.044715 * a * a * a))) * Bv[i];
            bound[i] = 1e-5 * (std::fabs(a * Bv[i]) + 1e-3) + tol.out * std::fabs(ref[i]);
        }
        auto a = io.put(A);
        const auto bb = io.put(Bv);
        backend->gelu_gate(a.data(), bb.data(), n);
        CHECK(worst(io.get(a.data(), A.size()), ref, bound) <= 1.0);

        const std::vector<float> Y = io.representable(rng.normal(size_t(n))), X = io.representable(rng.normal(size_t(n)));
        for (size_t i = 0; i < size_t(n); ++i) {
            ref[i] = double(Y[i]) + X[i];
            bound[i] = tol.terms * (std::fabs(Y[i]) + std::fabs(X[i])) + tol.out * std::fabs(ref[i]);
        }
        auto y = io.put(Y);
        const auto x = io.put(X);
        backend->add_rows(y.data(), x.data(), n);
        CHECK(worst(io.get(y.data(), Y.size()), ref, bound) <= 1.0);
    }
}

struct AttentionShape {
    int Lq, Lk, H, D;
};
inline const AttentionShape kAttentionShapes[] = {{1, 1, 1, 24},     {1, 1000, 2, 64}, {5, 7, 3, 32},
                                                  {64, 64, 2, 128},  {130, 130, 24, 64}, {1, 2048, 12, 64},
                                                  {65, 3, 1, 24},    {40, 700, 2, 64},  {17, 300, 3, 24}};

// attention: every shape, no mask / every third key padded / all keys padded but one, with and without a
// bias; strided rows. Each backend `makes` gives runs on the same inputs; with `same_bits` their outputs
// must be identical (the CPU's whatever the thread count).
template <class B>
void check_attention(std::span<const Factory<B>> makes, const Tolerance& tol, bool same_bits, Rng& rng) {
    using S = scalar_t<B>;
    for (const AttentionShape& s : kAttentionShapes)
        for (int mask_kind : {0, 1, 2})
            for (bool with_bias : {false, true}) {
                CAPTURE(s.Lq); CAPTURE(s.Lk); CAPTURE(s.H); CAPTURE(s.D); CAPTURE(mask_kind); CAPTURE(with_bias);
                const int64_t I = int64_t(s.H) * s.D, ld = I + 8;  // strided rows
                const std::vector<float> q = Io<B>::representable(rng.normal(size_t(s.Lq * ld), 0.3f));
                const std::vector<float> k = Io<B>::representable(rng.normal(size_t(s.Lk * ld), 0.3f));
                const std::vector<float> v = Io<B>::representable(rng.normal(size_t(s.Lk * ld)));
                const std::vector<float> bias = rng.normal(size_t(int64_t(s.H) * s.Lq * s.Lk));
                std::vector<float> mask(size_t(s.Lk), 1.f);
                const int keep = s.Lk / 2;
                for (int j = 0; j < s.Lk; ++j)
                    if ((mask_kind == 1 && j % 3 == 1) || (mask_kind == 2 && j != keep)) mask[size_t(j)] = 0.f;
                std::vector<double> ref(size_t(s.Lq * I)), bound(ref.size());
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
                            double acc = 0, mag = 0, range = 0;
                            for (int j = 0; j < s.Lk; ++j) {
                                const double t = p[size_t(j)] / sum * v[size_t(j * ld + h * s.D + e)];
                                acc += t, mag += std::fabs(t);
                                range = std::max(range, double(std::fabs(v[size_t(j * ld + h * s.D + e)])));
                            }
                            const size_t idx = size_t(int64_t(i) * I + h * s.D + e);
                            ref[idx] = acc;
                            bound[idx] = tol.softmax * (mag + 1e-4) + tol.out * std::fabs(acc) + tol.value_range * range;
                        }
                    }
                std::vector<std::vector<float>> outs;
                for (const Factory<B>& make : makes) {
                    std::unique_ptr<B> backend = make({});
                    Io<B> io{*backend};
                    const auto qb = io.put(q), kb = io.put(k), vb = io.put(v);
                    auto ob = io.put(std::vector<float>(ref.size(), NAN));
                    const auto mb = io.put_float(mask), bb = io.put_float(bias);
                    const AttentionArgs<S> args{.q = qb.data(), .k = kb.data(), .v = vb.data(), .o = ob.data(), .H = s.H,
                                                .Lq = s.Lq, .Lk = s.Lk, .D = s.D, .q_row = ld, .k_row = ld, .v_row = ld,
                                                .o_row = I, .key_mask = mask_kind ? mb.data() : nullptr,
                                                .bias = with_bias ? bb.data() : nullptr};
                    backend->attention(args);
                    outs.push_back(io.get(ob.data(), ref.size()));
                    CHECK(worst(outs.back(), ref, bound) <= 1.0);
                }
                if (same_bits)
                    for (const std::vector<float>& o : outs) CHECK(std::memcmp(o.data(), outs[0].data(), o.size() * sizeof(float)) == 0);
            }
}

// embed, embed_token, argmax (ties: the first; NaN/inf: kNonFiniteLogits), relative_position_bias.
template <class B>
void check_lookups(const Factory<B>& make, const Tolerance& tol, Rng& rng) {
    const int64_t V = 37, H = 24;
    const int buckets = 32, max_distance = 128, heads = 12;
    const TestWeight table(Io<B>::representable(rng.normal(size_t(V * H))), {V, H}, false, 0);
    const TestWeight rel(Io<B>::representable(rng.normal(size_t(buckets * heads))), {buckets, heads}, false, 1);
    const Weight* weights[] = {&table.w, &rel.w};
    std::unique_ptr<B> backend = make(weights);
    Io<B> io{*backend};
    const std::vector<int64_t> ids{0, V - 1, 5, 5, 17};
    for (Write mode : {Write::Overwrite, Write::Accumulate}) {
        const std::vector<float> before = io.representable(rng.normal(ids.size() * size_t(H)));
        auto y = io.put(before);
        backend->embed(table.w, ids.data(), int64_t(ids.size()), y.data(), mode);
        const std::vector<float> got = io.get(y.data(), before.size());
        int wrong = 0;
        for (size_t r = 0; r < ids.size(); ++r)
            for (int64_t c = 0; c < H; ++c) {
                const float want = table.values[size_t(ids[r] * H + c)] + (mode == Write::Accumulate ? before[r * H + c] : 0.f);
                wrong += std::fabs(double(got[r * H + c]) - want) > tol.out * std::fabs(want);  // exact in fp32
            }
        CHECK(wrong == 0);
    }
    auto y = io.put(std::vector<float>(size_t(H)));
    const int64_t bad = V;
    CHECK_THROWS_WITH_AS(backend->embed(table.w, &bad, 1, y.data()), doctest::Contains("outside [0, 37)"), Error);
    auto token = backend->alloc_ids(1);
    const int32_t eleven = 11;
    detail::to_backend(*backend, token.data(), &eleven, 1);
    backend->embed_token(table.w, token.data(), y.data());
    CHECK(io.get(y.data(), size_t(H)) == std::vector<float>(table.values.begin() + 11 * H, table.values.begin() + 12 * H));

    auto argmax = [&](const std::vector<float>& x) {
        const auto xb = io.put(x);
        backend->argmax(xb.data(), int64_t(x.size()), token.data());
        int32_t t = 12345;
        detail::to_host(*backend, &t, token.data(), 1);
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
    for (int64_t q : {0, 1, 15, 16, 200, 2100}) {
        CAPTURE(q);
        auto out = io.put_float(std::vector<float>(size_t(heads * (q + 1)), NAN));
        backend->relative_position_bias(rel.w, buckets, max_distance, q, out.data());
        const std::vector<float> got = io.get_float(out.data(), size_t(heads * (q + 1)));
        int wrong = 0;
        for (int h = 0; h < heads; ++h)
            for (int64_t k = 0; k <= q; ++k)
                wrong += got[size_t(h * (q + 1) + k)] !=
                         rel.values[size_t(relative_position_bucket(k - q, false, buckets, max_distance) * heads + h)];
        CHECK(wrong == 0);
    }
}

}  // namespace backend_ops
