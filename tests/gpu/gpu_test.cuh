// tests/gpu/gpu_test.cuh — what every GPU test shares: whether a CUDA device is present, and
// SKIP_WITHOUT_GPU(), which prints "SKIPPED: no CUDA device", counts the case for test_main.cpp (the
// program then exits 77: skipped, for ctest and meson alike) and returns from the test case.
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

void note_skipped_without_device();  // tests/test_main.cpp: the run then exits 77 (skipped)

}  // namespace p2s_test

#define SKIP_WITHOUT_GPU()                            \
    do {                                              \
        if (!::p2s_test::has_cuda_device()) {         \
            std::printf("SKIPPED: no CUDA device\n"); \
            std::fflush(stdout);                      \
            MESSAGE("SKIPPED: no CUDA device");       \
            ::p2s_test::note_skipped_without_device(); \
            return;                                   \
        }                                             \
    } while (0)
