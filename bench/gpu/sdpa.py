"""PyTorch SDPA yardstick for bench/gpu/bench_kernels.cu's attention rows (run on the GPU machine).

Same problem as ours: batch 1, 12 heads, head dim 64, N = 2048 and 4096 queries and keys, no 1/sqrt(d)
scaling (scale=1.0), the last N/8 keys padded (boolean mask), bf16 and fp32; also without a mask, where
PyTorch may take its flash backend. TFLOP/s counts 4·N²·d·H. Median of 30 cudaEvent-timed runs after 5
warm-ups, random inputs.
"""
import statistics

import torch
import torch.nn.functional as F


def median_ms(fn, warmup=5, reps=30):
    for _ in range(warmup):
        fn()
    events = []
    for _ in range(reps):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        events.append((s, e))
    torch.cuda.synchronize()
    return statistics.median(s.elapsed_time(e) for s, e in events)


def main():
    if not torch.cuda.is_available():
        print("SKIPPED: no CUDA device")
        return
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name()}")
    H, D = 12, 64
    for dtype, name in ((torch.bfloat16, "bf16"), (torch.float32, "fp32")):
        for N in (2048, 4096):
            q, k, v = (torch.randn(1, H, N, D, device="cuda", dtype=dtype) for _ in range(3))
            mask = torch.ones(1, 1, 1, N, dtype=torch.bool, device="cuda")
            mask[..., N - N // 8:] = False
            flop = 4.0 * N * N * D * H
            for label, kw in (("mask", {"attn_mask": mask}), ("no mask", {})):
                t = median_ms(lambda: F.scaled_dot_product_attention(q, k, v, scale=1.0, **kw))
                print(f"sdpa {name} N={N} H={H} d={D} {label:8s} {flop / t / 1e9:8.1f} TFLOP/s  ({t:.3f} ms)")


if __name__ == "__main__":
    main()
