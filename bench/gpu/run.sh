#!/usr/bin/env bash
# bench/gpu/run.sh — on a GPU machine: build (or reuse) the CUDA kernel tests and microbenchmarks, run all
# GPU tests, then bench_kernels and the PyTorch SDPA yardstick, then the end-to-end comparison with HF
# (bench_e2e_gpu + compare_hf_gpu.py, when their programs are there), and print a short table last.
#
# usage: bash bench/gpu/run.sh [build-dir]
#   build-dir already holding gpu_test_kernels and gpu_bench_kernels (e.g. a build-cuda carried from the
#   development machine): used as is. Otherwise they are built there (default build-gpu) with CMake
#   (-DPIX2STRUCT_CUDA=ON, sm_90a); where CMake's dependencies are missing (Eigen, doctest, ...), with nvcc
#   directly, doctest.h taken from $DOCTEST_INCLUDE or .gpu-deps/ (carry it: .gpu-deps/doctest/doctest.h).
# End to end: the model folder is $P2S_E2E_MODEL (default bench/out/base), made with
# pix2struct-make_random_checkpoint (base shape, BF16) from build-dir when missing; the patches are
# bench/out/gpu/patches.safetensors (carry it: compare_hf_gpu.py --make-patches-only writes it on the
# development machine, which has the header font).
# Logs go to $OUT (the device tool's folder) or build-dir/out.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=$(realpath -m "${1:-$root/build-gpu}")
out=${OUT:-$build/out}
mkdir -p "$build" "$out"
cublas_dir=$(python3 -c 'import nvidia.cublas, os; print(os.path.join(list(nvidia.cublas.__path__)[0], "lib"))' 2>/dev/null || true)
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:/usr/local/cuda/lib${cublas_dir:+:$cublas_dir}:${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv,noheader || true

if [[ ! -x $build/gpu_test_kernels || ! -x $build/gpu_bench_kernels ]]; then
    jobs=$(nproc)
    if cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DPIX2STRUCT_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90a \
            -DPIX2STRUCT_BUILD_EXAMPLES=OFF >"$out/build.log" 2>&1 &&
        cmake --build "$build" --target gpu_test_kernels gpu_bench_kernels -j "$jobs" >>"$out/build.log" 2>&1; then
        echo "built with CMake in $build"
        cmake --build "$build" --target gpu_test_backend_ops_gpu gpu_test_model_gpu gpu_test_pipeline_gpu gpu_bench_e2e_gpu -j "$jobs" >>"$out/build.log" 2>&1 ||
            echo "the model test / end-to-end bench did not build (see $out/build.log)"
    else
        echo "CMake build failed (tail of $out/build.log below); building with nvcc directly"
        tail -n 5 "$out/build.log"
        nvcc=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
        flags=(-std=c++20 -O3 -gencode=arch=compute_90a,code=sm_90a --expt-relaxed-constexpr -lineinfo
               -I"$root" -I"$root/include")
        "$nvcc" "${flags[@]}" -I"${DOCTEST_INCLUDE:-$root/.gpu-deps}" "$root/tests/gpu/test_kernels.cu" \
            "$root/tests/test_main.cpp" -o "$build/gpu_test_kernels" >>"$out/build.log" 2>&1 &
        p1=$!
        "$nvcc" "${flags[@]}" "$root/bench/gpu/bench_kernels.cu" -lcublas -o "$build/gpu_bench_kernels" \
            >>"$out/build.log" 2>&1 &
        p2=$!
        ok=1
        wait $p1 || ok=0
        wait $p2 || ok=0
        if [[ $ok != 1 ]]; then
            echo "nvcc build failed:"
            tail -n 30 "$out/build.log"
            exit 1
        fi
    fi
fi

echo "== GPU tests =="
tests_ok=1
if [[ -f $build/CTestTestfile.cmake ]] && grep -q "$build" "$build/CTestTestfile.cmake"; then
    (cd "$build" && ctest -R gpu_ --output-on-failure) >"$out/tests.log" 2>&1 || tests_ok=0
else  # a carried build dir: CTest's absolute paths point elsewhere, run the test programs themselves
    for t in "$build"/gpu_test_*; do
        (cd "$root" && "$t") >>"$out/tests.log" 2>&1 || tests_ok=0  # the model test finds tests/data from the root
    done
fi
grep -E "test cases:|assertions:|FAILED|ERROR|rel error|unwritten|seed=|Passed|Failed|tests passed|on the GPU" "$out/tests.log" | head -n 60

echo "== microbenchmarks =="
"$build/gpu_bench_kernels" >"$out/bench_kernels.txt" 2>&1 || echo "gpu_bench_kernels failed"
PYTHONUNBUFFERED=1 python3 "$root/bench/gpu/sdpa.py" >"$out/sdpa.txt" 2>&1 || echo "sdpa.py failed"

e2e_ok=1
if [[ -x $build/gpu_bench_e2e_gpu ]]; then
    model=${P2S_E2E_MODEL:-$root/bench/out/base}
    patches=$root/bench/out/gpu/patches.safetensors
    if [[ ! -f $model/model.safetensors && -x $build/pix2struct-make_random_checkpoint ]]; then
        "$build/pix2struct-make_random_checkpoint" --preset base --dtype bf16 --out "$model" >"$out/checkpoint.log" 2>&1 ||
            echo "make_random_checkpoint failed: $(tail -n 2 "$out/checkpoint.log")"
    fi
    if [[ -f $model/model.safetensors ]]; then
        (cd "$root" && PYTHONUNBUFFERED=1 python3 bench/gpu/compare_hf_gpu.py --model "$model" --patches "$patches" \
            --bench "$build/gpu_bench_e2e_gpu" --repeats 10 --tokens 20 --batch 8) >"$out/e2e.txt" 2>&1 || {
            e2e_ok=0
            echo "compare_hf_gpu.py failed (tail of $out/e2e.txt below); ours alone:"
            tail -n 5 "$out/e2e.txt"
            extra=()
            [[ -f $patches ]] && extra=(--patches "$patches")
            for dtype in f32 bf16; do
                "$build/gpu_bench_e2e_gpu" --model "$model" --dtype $dtype --batch 8 "${extra[@]}" >>"$out/e2e.txt" 2>&1 ||
                    echo "gpu_bench_e2e_gpu --dtype $dtype failed"
            done
        }
    else
        echo "end to end skipped: no checkpoint at $model (and no pix2struct-make_random_checkpoint in $build)"
    fi
else
    echo "end to end skipped: $build/gpu_bench_e2e_gpu not built"
fi

echo
sed -n '1,2p' "$out/bench_kernels.txt"
grep -E "copy:" "$out/bench_kernels.txt"
sed -n '/== summary/,$p' "$out/bench_kernels.txt"
[[ -s $out/bench_kernels.txt ]] && ! grep -q "== summary" "$out/bench_kernels.txt" && tail -n 20 "$out/bench_kernels.txt"
echo "== PyTorch SDPA yardstick =="
cat "$out/sdpa.txt"
echo "== end to end vs HF transformers (same GPU) =="
[[ -f $out/e2e.txt ]] && grep -v '^{' "$out/e2e.txt"
[[ $e2e_ok == 1 ]] || echo "(HF comparison incomplete)"
echo "GPU tests: $([[ $tests_ok == 1 ]] && echo PASS || echo FAIL)"
[[ $tests_ok == 1 ]]
