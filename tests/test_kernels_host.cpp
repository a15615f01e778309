// tests/test_kernels_host.cpp — the launch-geometry arithmetic of kernels/ (kernels/geometry.hpp), which
// includes no CUDA header: the plans the CUDA launchers follow, checked without nvcc or a GPU.
#include <doctest/doctest.h>

#include "pix2struct/kernels/geometry.hpp"

using namespace pix2struct::kernels;

TEST_CASE("ceil_div") {
    CHECK(ceil_div(0, 64) == 0);
    CHECK(ceil_div(1, 64) == 1);
    CHECK(ceil_div(64, 64) == 1);
    CHECK(ceil_div(65, 64) == 2);
    CHECK(ceil_div(int64_t(1) << 40, 3) == ((int64_t(1) << 40) + 2) / 3);
}

TEST_CASE("tensor-core tiles fit the hardware and divide among their threads") {
    for (const GemmTile& t : {kGemmLarge, kGemmSmall}) {
        CAPTURE(t.bm);
        CHECK(gemm_threads(t) <= 1024);
        CHECK(gemm_smem_bytes(t) <= 227 * 1024);                 // Hopper's per-block shared-memory limit
        CHECK((t.bm * kGemmSliceBytes / 16) % gemm_threads(t) == 0);  // A chunks per thread
        CHECK((t.bn * kGemmSliceBytes / 16) % gemm_threads(t) == 0);  // B chunks per thread
        CHECK((t.bm / t.warps_m) % 16 == 0);                     // m16 fragments
        CHECK((t.bn / t.warps_n) % 16 == 0);                     // an even number of n8 fragments (gated pairs)
        CHECK(kGemmRowBytes % 16 == 0);                          // 16-byte cp.async / ldmatrix rows
        CHECK((kGemmRowBytes / 16) % 2 == 1);                    // odd 16-byte stride: 8 rows hit 8 bank groups
    }
}

TEST_CASE("plan_matmul picks GEMV, SIMT and the tensor-core tiles as documented") {
    const int sms = 132;
    // A decode step: GEMV, one warp per column.
    MatmulPlan p = plan_matmul(1, 50244, 768, 2, true, sms);
    CHECK(p.path == MatmulPath::Gemv);
    CHECK(p.grid_x * kGemvWarps >= 50244);
    CHECK((p.grid_x - 1) * kGemvWarps < 50244);
    CHECK(plan_matmul(kGemvMaxM, 64, 64, 4, true, sms).path == MatmulPath::Gemv);
    CHECK(plan_matmul(kGemvMaxM + 1, 64, 64, 4, true, sms).path != MatmulPath::Gemv);
    // fp32 is exact (SIMT) unless TF32 is asked for; unaligned inputs always take SIMT.
    CHECK(plan_matmul(2048, 768, 768, 4, true, sms).path == MatmulPath::Simt);
    CHECK(plan_matmul(2048, 768, 768, 4, true, sms, Fp32Mode::TF32).path != MatmulPath::Simt);
    CHECK(plan_matmul(2048, 768, 770, 2, false, sms).path == MatmulPath::Simt);
    // bf16 encoder shapes: the base model's 2048x768 grid is too small for the large tile.
    p = plan_matmul(2048, 768, 768, 2, true, sms);
    CHECK(p.path == MatmulPath::TensorCoreSmall);
    CHECK(p.grid_x == 768 / 64);
    CHECK(p.grid_y == 2048 / 64);
    p = plan_matmul(2048, 3968, 1536, 2, true, sms);
    CHECK(p.path == MatmulPath::TensorCoreLarge);
    CHECK(p.grid_x == 31);
    CHECK(p.grid_y == 16);
    CHECK(p.smem_bytes == gemm_smem_bytes(kGemmLarge));
    // Wave quantisation: 2048x2048 fills two waves of large tiles better than eight of small ones.
    CHECK(plan_matmul(2048, 2048, 768, 2, true, sms).path == MatmulPath::TensorCoreLarge);
    // A gated block covers half as many output columns.
    p = plan_matmul(2048, 2048, 768, 2, true, sms, Fp32Mode::Exact, true);
    CHECK(p.grid_x == 2048 / (p.path == MatmulPath::TensorCoreLarge ? kGemmLarge.bn / 2 : kGemmSmall.bn / 2));
    CHECK(matmul_plan_for(MatmulPath::TensorCoreSmall, 100, 100, true).grid_x == ceil_div(100, kGemmSmall.bn / 2));
    CHECK(matmul_plan_for(MatmulPath::TensorCoreLarge, 100, 100, false).grid_x == 1);
    // Ragged shapes round the grid up.
    p = plan_matmul(130, 65, 8, 2, true, sms);
    CHECK(p.grid_x == 2);
    CHECK(p.grid_y == 3);
    p = plan_matmul(65, 63, 13, 4, false, sms);
    CHECK(p.path == MatmulPath::Simt);
    CHECK(p.grid_x == 1);
    CHECK(p.grid_y == 2);
}

TEST_CASE("plan_decode_splits covers every key once with chunks of whole 64-key tiles") {
    for (int sms : {1, 78, 132}) {
        for (int64_t B : {1, 2}) {
            for (int64_t H : {1, 12, 24}) {
                for (int64_t Lk : {1, 7, 63, 64, 65, 100, 300, 1000, 2048, 4096, 4100, 100000}) {
                    CAPTURE(sms);
                    CAPTURE(B);
                    CAPTURE(H);
                    CAPTURE(Lk);
                    const DecodeSplit s = plan_decode_splits(B, H, Lk, sms);
                    CHECK(s.splits >= 1);
                    CHECK(s.splits <= kDecodeMaxSplits);
                    CHECK(s.chunk % kDecodeMinChunk == 0);
                    CHECK(int64_t(s.splits) * s.chunk >= Lk);        // every key in some split
                    CHECK(int64_t(s.splits - 1) * s.chunk < Lk);     // no empty split
                }
            }
        }
    }
    // Base decoder cross-attention: 12 heads over 2048 patches on 132 SMs -> 2 to 4 blocks per SM.
    const DecodeSplit s = plan_decode_splits(1, 12, 2048, 132);
    CHECK(s.splits * 12 >= 2 * 132);
    CHECK(s.splits * 12 <= kDecodeBlocksPerSm * 132 + 12);
}
