// Every primitive of the Backend concept on the CPU backend (tests/backend_ops.hpp: the harness, its shapes
// and its float64 reference), with each kernel variant: every SIMD set this CPU runs (AVX-512, AVX2,
// generic: backend/cpu_kernels.hpp, Eigen), 1 and 2 threads, fp32 weights and BF16 ones with their decode
// copy (the GEMV of 1 to 16 rows); and the int8 products (backend/cpu_int8.hpp) of every int8 set.
#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "backend_ops.hpp"
#include "pix2struct/backend/cpu.hpp"

using namespace pix2struct;
using namespace backend_ops;

namespace {

std::vector<CpuIsa> isas() {  // every kernel set this CPU runs
    std::vector<CpuIsa> out;
    for (int i = 0; i <= int(host_isa()); ++i) out.push_back(CpuIsa(i));
    return out;
}

Factory<CpuBackend> cpu(int threads, CpuIsa isa) {
    return [=](std::span<const Weight* const>) { return std::make_unique<CpuBackend>(threads, isa); };
}

std::vector<Bf16Isa> bf16_isas() {  // every kind of bf16 product this CPU runs
    std::vector<Bf16Isa> out;
    for (int i = 0; i <= int(host_bf16_isa()); ++i) out.push_back(Bf16Isa(i));
    return out;
}

std::vector<Int8Isa> int8_isas() {  // every int8 kernel set this CPU runs
    std::vector<Int8Isa> out;
    for (int i = 0; i <= int(host_int8_isa()); ++i) out.push_back(Int8Isa(i));
    return out;
}

// A backend whose int8 products multiply by the first weight (the linear's W) quantised.
Factory<CpuBackend> cpu_int8(int threads, Int8Isa isa) {
    return [=](std::span<const Weight* const> w) {
        auto b = std::make_unique<CpuBackend>(threads, host_isa(), isa);
        b->quantise(w.first(1));
        return b;
    };
}

}  // namespace

TEST_CASE("backend ops (CPU): linear — SGEMM, GEMV of fp32 and BF16 rows, bias, accumulate; every SIMD set, 1 and 2 threads") {
    MESSAGE("SIMD sets tested: ", isas().size(), " (widest: ", std::string(isa_name(host_isa())), ")");
    Rng rng;
    int cases = 0;
    for (CpuIsa isa : isas())
        for (int threads : {1, 2})
            for (bool bf16 : {false, true}) {
                const std::string label = isa_name(isa);
                CAPTURE(label); CAPTURE(threads);
                cases += check_linear(cpu(threads, isa), {}, bf16, rng);
            }
    CHECK(cases == int(isas().size()) * 2 * 2 * int(std::size(kLinearShapes)) * 4);
}

TEST_CASE("backend ops (CPU): rms_norm, gelu_gate, add_rows") {
    Rng rng;
    for (CpuIsa isa : isas()) {
        const std::string label = isa_name(isa);
        CAPTURE(label);
        check_elementwise(cpu(2, isa), {}, rng);
    }
}

TEST_CASE("backend ops (CPU): attention — every SIMD set; d_kv 24/32/64/128, one query and many, one real key, bias; 1 and 2 threads give the same bits") {
    Rng rng;
    for (CpuIsa isa : isas()) {
        const std::string label = isa_name(isa);
        CAPTURE(label);
        const Factory<CpuBackend> makes[] = {cpu(1, isa), cpu(2, isa)};
        check_attention<CpuBackend>(makes, {}, true, rng);
    }
}

TEST_CASE("backend ops (CPU): embed, embed_token, argmax (NaN/inf: kNonFiniteLogits), relative_position_bias") {
    Rng rng;
    check_lookups(cpu(2, host_isa()), {}, rng);
}

// The bf16 mode (CpuBf16Backend): every output rounded to bf16 (2^-8 of it), a linear's input rounded to bf16
// too (the harness gives fp32 inputs: 2^-9 of each term), weights stored as BF16 (exact), softmax in fp32 —
// the GPU bf16 path's tolerances (gpu/test_backend_ops_gpu.cu) with the input rounding added.
// Each set of fp32 kernels, and the AVX512-BF16 products where the CPU chooses them (bf16_isas()).
TEST_CASE("backend ops (CPU): the bf16 mode (CpuBf16Backend) — every primitive, every SIMD set, both kinds of products") {
    MESSAGE("bf16 products tested: ", bf16_isas().size(), " (chosen here: ", std::string(isa_name(host_bf16_isa())), ")");
    const Tolerance bf16{.terms = 1.0 / 512 + 1e-5, .softmax = 8e-3, .out = 1.0 / 256};
    Rng rng;
    std::vector<std::pair<CpuIsa, Bf16Isa>> sets;
    for (CpuIsa isa : isas()) sets.emplace_back(isa, Bf16Isa::Fp32);
    for (Bf16Isa b : bf16_isas())
        if (b != Bf16Isa::Fp32) sets.emplace_back(host_isa(), b);
    for (const std::pair<CpuIsa, Bf16Isa>& set : sets) {
        const CpuIsa isa = set.first;
        const Bf16Isa products = set.second;
        const std::string label = std::string(isa_name(isa)) + ", " + isa_name(products);
        CAPTURE(label);
        const auto make = [isa, products](int threads) -> Factory<CpuBf16Backend> {
            return [=](std::span<const Weight* const> w) {
                return std::make_unique<CpuBf16Backend>(w, CpuOptions{.threads = threads, .isa = isa, .bf16_isa = products});
            };
        };
        CHECK(check_linear(make(2), bf16, true, rng) == int(std::size(kLinearShapes)) * 4);
        check_elementwise(make(2), bf16, rng);
        const Factory<CpuBf16Backend> makes[] = {make(1), make(2)};
        check_attention<CpuBf16Backend>(makes, bf16, true, rng);
        check_lookups(make(2), bf16, rng);
    }
}

// CpuBf16Backend's own rules: outputs are bf16 values, an fp32 weight it was not given is refused (it would
// multiply unrounded values), and an fp32 weight it was given is multiplied rounded.
TEST_CASE("backend ops (CPU): the bf16 mode rounds its weights and outputs, and refuses a weight it did not round") {
    Rng rng;
    const TestWeight W(rng.normal(64 * 32), {32, 64}, false, 0), other(rng.normal(64 * 32), {32, 64}, false, 0);
    const Weight* list[] = {&W.w};
    CpuBf16Backend b(list, CpuOptions{.threads = 2});
    const std::vector<float> X = rng.normal(3 * 64);
    std::vector<float> Y(3 * 32);
    b.linear(X.data(), 3, W.w, Y.data());
    for (size_t i = 0; i < Y.size(); ++i) {
        CAPTURE(i);
        CHECK(bf16_to_float(float_to_bf16(Y[i])) == Y[i]);
        double ref = 0;  // the bf16-rounded operands' product in float64
        for (int k = 0; k < 64; ++k)
            ref += double(bf16_to_float(float_to_bf16(X[i / 32 * 64 + size_t(k)]))) *
                   bf16_to_float(float_to_bf16(W.values[i % 32 * 64 + size_t(k)]));
        CHECK(std::fabs(Y[i] - ref) <= std::fabs(ref) / 256 + 1e-4);
    }
    CHECK_THROWS_WITH_AS(b.linear(X.data(), 3, other.w, Y.data()), doctest::Contains("not the weight rounded"), Error);
    TestWeight stranger(rng.normal(64 * 32), {32, 64}, false, 5);
    CHECK_THROWS_WITH_AS(b.linear(X.data(), 3, stranger.w, Y.data()), doctest::Contains("was not rounded to bf16"), Error);
    CHECK_THROWS_WITH_AS(CpuBackend(CpuOptions{.dtype = Dtype::Bf16}), doctest::Contains("CpuBf16Backend"), Error);
}

// Int8 against float64: the error of a product is bounded by the two quantisation steps (max |row| / 254 of
// x and of w, per element; for normal data about 2% of Σ|w·x| each), so 6% of Σ|w·x| holds for every shape
// while a wrong scale, offset or panel layout is far outside it.
TEST_CASE("backend ops (CPU): int8 linear — every int8 set, 1 and 2 threads, against float64 within the quantisation bound") {
    MESSAGE("int8 sets tested: ", int8_isas().size(), " (widest: ", std::string(isa_name(host_int8_isa())), ")");
    Rng rng;
    int cases = 0;
    for (Int8Isa isa : int8_isas())
        for (int threads : {1, 2}) {
            const std::string label = isa_name(isa);
            CAPTURE(label); CAPTURE(threads);
            cases += check_linear(cpu_int8(threads, isa), {.terms = 0.06}, false, rng);
        }
    CHECK(cases == int(int8_isas().size()) * 2 * int(std::size(kLinearShapes)) * 4);
}

// Every int8 set computes the same integers and the same fp32 epilogue: outputs bit-identical to the plain
// loops', for every shape and thread count; a row of X holding NaN or inf gives NaN outputs in that row only.
TEST_CASE("backend ops (CPU): int8 linear — every int8 set gives the plain loops' bits; a non-finite row gives NaN") {
    Rng rng;
    int compared = 0;
    for (const LinearShape& s : kLinearShapes) {
        CAPTURE(s.M); CAPTURE(s.K); CAPTURE(s.N);
        const TestWeight W(rng.normal(size_t(s.N * s.K), 1.f / std::sqrt(float(s.K))), {s.N, s.K}, false, 0);
        std::vector<float> X = rng.normal(size_t(s.M * s.K));
        if (s.M > 1) X[size_t(s.K + s.K / 2)] = std::numeric_limits<float>::quiet_NaN();  // row 1
        if (s.M > 2) X[size_t(2 * s.K)] = std::numeric_limits<float>::infinity();            // row 2
        const std::vector<float> Y0 = rng.normal(size_t(s.M * s.N));
        std::vector<float> plain;
        for (Int8Isa isa : int8_isas())
            for (int threads : {1, 2}) {
                CpuBackend b(threads, host_isa(), isa);
                b.quantise(std::vector<const Weight*>{&W.w});
                std::vector<float> Y = Y0;
                b.linear(X.data(), s.M, W.w, Y.data(), Write::Accumulate);
                for (int64_t m = 0; m < s.M; ++m)
                    for (int64_t n = 0; n < s.N; ++n) {
                        const float y = Y[size_t(m * s.N + n)];
                        if (m == 1 || m == 2) REQUIRE(std::isnan(y));
                        else REQUIRE(std::isfinite(y));
                    }
                if (plain.empty()) {
                    plain = Y;
                } else {
                    CHECK(std::memcmp(plain.data(), Y.data(), Y.size() * sizeof(float)) == 0);
                    ++compared;
                }
            }
    }
    CHECK(compared == int(std::size(kLinearShapes)) * (int(int8_isas().size()) * 2 - 1));
}

// The encoder's attention in int8 (Int8Layers::attention): against float64 within 6% of Σ p·|v| (scores from
// int8 queries and keys, softmax weights in 8 bits) plus 1% of the channel's largest |v| over all keys (values
// quantised per channel: a step of max/127), and the same bits from every int8 set and thread count (each set
// quantises keys and values with its own kernels).
TEST_CASE("backend ops (CPU): int8 attention — within the quantisation bound; every int8 set and thread count gives the same bits") {
    Rng rng;
    std::vector<Factory<CpuBackend>> makes;
    for (Int8Isa isa : int8_isas())
        for (int threads : {1, 2})
            makes.push_back([=](std::span<const Weight* const>) {
                return std::make_unique<CpuBackend>(CpuOptions{.threads = threads, .dtype = Dtype::Int8, .int8_isa = isa});
            });
    check_attention<CpuBackend>(makes, {.softmax = 0.06, .value_range = 0.01}, true, rng);
}

// Packing: every int8 set writes the plain loops' bytes, scales and bias terms, for rows read along (weights,
// keys) and across (values) memory, odd sizes, and rows holding NaN or inf (scale NaN, zero bytes).
TEST_CASE("backend ops (CPU): int8 packing — every int8 set gives the plain loops' panels; non-finite rows get scale NaN") {
    Rng rng;
    int compared = 0;
    const LinearShape shapes[] = {{0, 1, 1}, {0, 3, 5}, {0, 64, 33}, {0, 130, 64}, {0, 2009, 70}};  // n = N, k = K
    for (const LinearShape& shape : shapes)
        for (bool across : {false, true})
            for (bool offset : {false, true}) {
                const int64_t n = shape.N, k = shape.K;
                CAPTURE(n); CAPTURE(k); CAPTURE(across); CAPTURE(offset);
                const int64_t ld = across ? n + 3 : k + 5;  // strided
                std::vector<float> src = rng.normal(size_t((across ? k : n) * ld));
                const int64_t rs = across ? 1 : ld, cs = across ? ld : 1;
                if (n > 2) src[size_t(1 * rs + (k / 2) * cs)] = std::numeric_limits<float>::quiet_NaN();
                if (n > 3) src[size_t(3 * rs)] = -std::numeric_limits<float>::infinity();
                std::vector<std::vector<int8_t>> bytes;
                std::vector<std::vector<float>> scales;
                std::vector<std::vector<int32_t>> biases;
                for (Int8Isa isa : int8_isas()) {
                    detail::AlignedArray<int8_t> data(size_t(detail::int8_panel_bytes(n, k)));
                    std::vector<float> scale(size_t(detail::int8_panel_rows(n)));
                    std::vector<int32_t> bias(scale.size());
                    detail::quantise_panels(isa, src.data(), rs, cs, n, k, 0, (n + 31) / 32, offset, data.data(), scale.data(),
                                            bias.data());
                    bytes.emplace_back(data.data(), data.data() + data.size());
                    scales.push_back(scale);
                    biases.push_back(bias);
                    for (int64_t r = 0; r < n; ++r) CHECK(std::isnan(scale[size_t(r)]) == ((r == 1 && n > 2) || (r == 3 && n > 3)));
                }
                for (size_t i = 1; i < bytes.size(); ++i) {
                    CHECK(bytes[i] == bytes[0]);
                    CHECK(std::memcmp(scales[i].data(), scales[0].data(), scales[0].size() * sizeof(float)) == 0);
                    CHECK(biases[i] == biases[0]);
                    ++compared;
                }
            }
    CHECK(compared == 5 * 2 * 2 * (int(int8_isas().size()) - 1));
}

// CpuInt8Backend's int8 cross K/V: the projection writes each row's codes round(y · 127 / max |row|) + 128
// (exactly: the test computes them in the same fp32 steps), and a decode step's attention over them (by chunks
// of keys) matches float64 on the dequantised keys and values (code · max |row| / 127) within the rounding of
// the queries to 8 bits (scores: Σ|q·k| / 127 per query head) and fp32's, with the same bits for 1 and 2 threads
// and every int8 set. Rows come from the projection with an identity weight (exact in fp32).
namespace {
// The codes and scales of x's rows of `width` values, as the backend's row quantiser makes them.
void int8_rows(const std::vector<float>& x, int64_t width, std::vector<uint8_t>& codes, std::vector<float>& scales) {
    codes.resize(x.size());
    scales.resize(x.size() / size_t(width));
    for (size_t r = 0; r < scales.size(); ++r) {
        float amax = 0;
        for (int64_t e = 0; e < width; ++e) amax = std::max(amax, std::fabs(x[r * size_t(width) + size_t(e)]));
        const float inv = amax > 0 ? 127.0f / amax : 0.0f;
        for (int64_t e = 0; e < width; ++e) {
            const size_t i = r * size_t(width) + size_t(e);
            codes[i] = uint8_t(std::clamp(int(std::nearbyint(x[i] * inv)), -127, 127) + 128);
        }
        scales[r] = amax / 127.0f;
    }
}
}  // namespace

TEST_CASE("backend ops (CPU): CpuInt8Backend — int8 K/V projection with row scales, few-query attention over them") {
    Rng rng;
    {
        const int64_t M = 300, K = 96, N = 80;  // more rows than a block of 256
        const TestWeight W(rng.normal(size_t(N * K), 0.1f), {N, K}, false, 0);
        const std::vector<float> X = rng.normal(size_t(M * K));
        CpuInt8Backend b(CpuOptions{.threads = 2});
        std::vector<float> y32(size_t(M * N));
        b.linear(X.data(), M, W.w, y32.data());
        auto y8 = b.alloc_cross(size_t((M + 3) * N));
        b.linear(X.data(), M, W.w, y8.data() + 3 * N);  // from row 3 on
        std::vector<uint8_t> codes;
        std::vector<float> scales;
        int8_rows(y32, N, codes, scales);
        CHECK(std::memcmp(codes.data(), y8.data() + 3 * N, codes.size()) == 0);
        CHECK_THROWS_WITH_AS(b.linear(X.data(), M, W.w, y8.data(), Write::Accumulate), doctest::Contains("not accumulated"),
                             Error);
        CHECK_THROWS_WITH_AS(b.linear(X.data(), M, W.w, y8.data() + 4 * N), doctest::Contains("do not fit"), Error);
        std::vector<uint8_t> foreign(y8.size());
        CHECK_THROWS_WITH_AS(b.linear(X.data(), M, W.w, foreign.data()), doctest::Contains("alloc_cross() did not make"),
                             Error);
    }
    for (const std::array<int, 4>& shape : {std::array<int, 4>{1, 2009, 12, 64}, {3, 300, 2, 24}, {1, 17, 1, 128}, {2, 513, 3, 32}}) {
        const int Lq = shape[0], Lk = shape[1], H = shape[2], D = shape[3];
        CAPTURE(Lq); CAPTURE(Lk); CAPTURE(H); CAPTURE(D);
        const int64_t I = int64_t(H) * D;
        std::vector<float> eye(size_t(I * I));
        for (int64_t e = 0; e < I; ++e) eye[size_t(e * I + e)] = 1.0f;
        const TestWeight identity(eye, {I, I}, false, 0);
        const std::vector<float> q = rng.normal(size_t(Lq * I), 0.3f), k = rng.normal(size_t(Lk * I), 0.3f),
                                 v = rng.normal(size_t(Lk * I));
        std::vector<uint8_t> kc, vc;
        std::vector<float> ks, vs;
        int8_rows(k, I, kc, ks);
        int8_rows(v, I, vc, vs);
        // Scores within δ_j = Σ_e |q_e · k_je| / 127 (the queries' rounding); a weight p_j then within its factor
        // exp(±2 max δ), so the output within (e^{2 max δ} - 1) · Σ_j p_j |v_j| of the float64 one.
        std::vector<double> ref(size_t(Lq * I)), bound(ref.size());
        for (int h = 0; h < H; ++h)
            for (int i = 0; i < Lq; ++i) {
                std::vector<double> p(static_cast<size_t>(Lk));
                double mx = -INFINITY, sum = 0, delta = 0;
                for (int j = 0; j < Lk; ++j) {
                    double d = 0, mag = 0;
                    for (int e = 0; e < D; ++e) {
                        const double t = double(q[size_t(i * I + h * D + e)]) * (kc[size_t(j * I + h * D + e)] - 128) * ks[size_t(j)];
                        d += t, mag += std::fabs(t);
                    }
                    mx = std::max(mx, p[size_t(j)] = d);
                    delta = std::max(delta, mag / 127);
                }
                for (double& x : p) sum += (x = std::exp(x - mx));
                for (int e = 0; e < D; ++e) {
                    double acc = 0, mag = 0;
                    for (int j = 0; j < Lk; ++j) {
                        const double t = p[size_t(j)] / sum * (vc[size_t(j * I + h * D + e)] - 128) * vs[size_t(j)];
                        acc += t, mag += std::fabs(t);
                    }
                    ref[size_t(i * I + h * D + e)] = acc;
                    bound[size_t(i * I + h * D + e)] = (std::expm1(2 * delta) + 1e-4) * (mag + 1e-4);
                }
            }
        std::vector<std::vector<float>> outs;
        for (Int8Isa isa : int8_isas())
            for (int threads : {1, 2}) {
                const std::string label = isa_name(isa);
                CAPTURE(label); CAPTURE(threads);
                CpuInt8Backend b(CpuOptions{.threads = threads, .int8_isa = isa});
                auto kb = b.alloc_cross(k.size()), vb = b.alloc_cross(v.size());
                b.linear(k.data(), Lk, identity.w, kb.data());
                b.linear(v.data(), Lk, identity.w, vb.data());
                std::vector<float> o(ref.size(), NAN);
                b.attention(AttentionArgs<float, uint8_t>{.q = q.data(), .k = kb.data(), .v = vb.data(), .o = o.data(),
                                                          .H = H, .Lq = Lq, .Lk = Lk, .D = D});
                CHECK(worst(o, ref, bound) <= 1.0);
                outs.push_back(o);
            }
        for (const std::vector<float>& o : outs) CHECK(std::memcmp(outs[0].data(), o.data(), o.size() * sizeof(float)) == 0);
    }
}
