// Every primitive of the Backend concept on the CPU backend (tests/backend_ops.hpp: the harness, its shapes
// and its float64 reference), with each kernel variant: every SIMD set this CPU runs (AVX-512, AVX2,
// generic: backend/cpu_kernels.hpp, Eigen), 1 and 2 threads, fp32 weights and BF16 ones with their decode
// copy (the GEMV of 1 to 16 rows); and the int8 products (backend/cpu_int8.hpp) of every int8 set.
#include <doctest/doctest.h>

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
