// Every primitive of the Backend concept on the CPU backend (tests/backend_ops.hpp: the harness, its shapes
// and its float64 reference), with each kernel variant: every SIMD set this CPU runs (AVX-512, AVX2,
// generic: backend/cpu_kernels.hpp, Eigen), 1 and 2 threads, fp32 weights and BF16 ones with their decode
// copy (the GEMV of 1 to 16 rows).
#include <doctest/doctest.h>

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
