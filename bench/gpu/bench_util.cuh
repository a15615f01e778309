// bench/gpu/bench_util.cuh — helpers the GPU benchmarks share.
#pragma once

#include <cublas_v2.h>

#include "pix2struct/error.hpp"

// Throws pix2struct::Error naming the cuBLAS call and its status when it does not succeed.
#define CUBLAS_CHECK(call)                                                                              \
    do {                                                                                                \
        const cublasStatus_t st_ = (call);                                                              \
        if (st_ != CUBLAS_STATUS_SUCCESS)                                                               \
            pix2struct::detail::fail("cuBLAS call '", #call, "' failed: ", cublasGetStatusString(st_)); \
    } while (0)
