// tests/gpu/test_backend_ops_gpu.cu — every primitive of the Backend concept on CudaBackend (fp32 activations,
// exact fp32 arithmetic) and CudaBackendBf16 (bf16 activations and weights, fp32 accumulation), with the
// harness the CPU backend runs (tests/backend_ops.hpp: the same shapes, the same float64 reference). The
// bf16 backend computes from inputs rounded to bf16 (the reference uses the same values) and may round its
// outputs and the softmax weights it multiplies the values by to bf16: 2^-8 of the result, and of the
// summed magnitudes in attention.
#include <cuda_bf16.h>
#include <doctest/doctest.h>

#include <memory>
#include <span>

// bf16 activations in and out of the harness (found by argument-dependent lookup: __nv_bfloat16 is global).
inline void convert(float from, __nv_bfloat16& to) { to = __float2bfloat16_rn(from); }
inline void convert(__nv_bfloat16 from, float& to) { to = __bfloat162float(from); }

#include "../backend_ops.hpp"
#include "gpu_test.cuh"
#include "pix2struct/backend/cuda.hpp"

using namespace pix2struct;
using namespace backend_ops;

namespace {

template <class B>
Factory<B> gpu() {
    return [](std::span<const Weight* const> weights) { return std::make_unique<B>(weights); };
}

const Tolerance kFp32{};                                                   // as the CPU
const Tolerance kBf16{.terms = 1e-5, .softmax = 8e-3, .out = 1.0 / 256};   // bf16 roundings

}  // namespace

TEST_CASE("backend ops (CUDA): linear — every shape, bias, accumulate; fp32 and BF16-stored weights") {
    SKIP_WITHOUT_GPU();
    Rng rng;
    for (bool bf16 : {false, true}) CHECK(check_linear(gpu<CudaBackend>(), kFp32, bf16, rng) == int(std::size(kLinearShapes)) * 4);
    CHECK(check_linear(gpu<CudaBackendBf16>(), kBf16, true, rng) == int(std::size(kLinearShapes)) * 4);
}

TEST_CASE("backend ops (CUDA): rms_norm, gelu_gate, add_rows") {
    SKIP_WITHOUT_GPU();
    Rng rng;
    check_elementwise(gpu<CudaBackend>(), kFp32, rng);
    check_elementwise(gpu<CudaBackendBf16>(), kBf16, rng);
}

TEST_CASE("backend ops (CUDA): attention — d_kv 24/32/64/128, one query and many, one real key, bias") {
    SKIP_WITHOUT_GPU();
    Rng rng;
    const Factory<CudaBackend> fp32[] = {gpu<CudaBackend>()};
    check_attention<CudaBackend>(fp32, kFp32, false, rng);
    const Factory<CudaBackendBf16> bf16[] = {gpu<CudaBackendBf16>()};
    check_attention<CudaBackendBf16>(bf16, kBf16, false, rng);
}

TEST_CASE("backend ops (CUDA): embed, embed_token, argmax (NaN/inf: kNonFiniteLogits), relative_position_bias") {
    SKIP_WITHOUT_GPU();
    Rng rng;
    check_lookups(gpu<CudaBackend>(), kFp32, rng);
    check_lookups(gpu<CudaBackendBf16>(), kBf16, rng);
}
