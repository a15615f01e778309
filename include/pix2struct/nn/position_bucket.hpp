// pix2struct/nn/position_bucket.hpp — T5's relative-position bucket, the one definition used by the CPU
// (nn/relative_position.hpp), the CUDA kernel (kernels/embed.cuh) and the tests; checked against the
// reference's own buckets (tests/reference/make_bucket_goldens.py → tests/data/position_buckets.json).
//
// transformers Pix2StructTextAttention._relative_position_bucket, relative_position = key - query:
//   unidirectional (the decoder): n = max(0, -relative_position); bidirectional: half the buckets each way.
//   n < max_exact = buckets/2 → n; else max_exact + trunc(log(n / max_exact) / log(max_distance / max_exact)
//   · (buckets - max_exact)), capped at buckets - 1. The reference evaluates log(n / max_exact) in float32
//   (torch.log of a float tensor) and log(max_distance / max_exact) in double (math.log), as here.
#pragma once

#include <math.h>
#include <stdint.h>

#if defined(__CUDACC__)
#define PIX2STRUCT_HOST_DEVICE __host__ __device__
#else
#define PIX2STRUCT_HOST_DEVICE
#endif

namespace pix2struct {

PIX2STRUCT_HOST_DEVICE inline int relative_position_bucket(int64_t relative_position, bool bidirectional,
                                                           int num_buckets, int max_distance) {
    int bucket = 0;
    int64_t n;
    if (bidirectional) {
        num_buckets /= 2;
        if (relative_position > 0) bucket += num_buckets;
        n = relative_position < 0 ? -relative_position : relative_position;
    } else {
        n = relative_position < 0 ? -relative_position : 0;
    }
    const int max_exact = num_buckets / 2;
    if (n < max_exact) return bucket + int(n);
    const float log_ratio = logf(float(n) / float(max_exact));
    const float log_max = float(log(double(max_distance) / double(max_exact)));
    const int64_t large = max_exact + int64_t(log_ratio / log_max * float(num_buckets - max_exact));
    // Clamped below too: in range even for buckets / max_distance that Config::validate refuses.
    return bucket + int(large < max_exact ? max_exact : large > num_buckets - 1 ? num_buckets - 1 : large);
}

}  // namespace pix2struct
