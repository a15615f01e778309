// tests/gpu/gpu_test.cuh — what every GPU test shares: whether a CUDA device is present, and
// SKIP_WITHOUT_GPU(), which prints "SKIPPED: no CUDA device" (CTest's SKIP_REGULAR_EXPRESSION for the
// tests/gpu/ tests) and returns from the test case when there is none.
#pragma once

#include <cuda_runtime.h>
#include <doctest/doctest.h>

#include <cstdio>

namespace p2s_test {

inline bool has_cuda_device() {
    static const bool has = [] {
        int n = 0;
        const bool ok = cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
        (void)cudaGetLastError();  // clear the error cudaGetDeviceCount leaves without a device
        return ok;
    }();
    return has;
}

}  // namespace p2s_test

#define SKIP_WITHOUT_GPU()                            \
    do {                                              \
        if (!::p2s_test::has_cuda_device()) {         \
            std::printf("SKIPPED: no CUDA device\n"); \
            std::fflush(stdout);                      \
            MESSAGE("SKIPPED: no CUDA device");       \
            return;                                   \
        }                                             \
    } while (0)
