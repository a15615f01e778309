// bench/gpu/bench_e2e_gpu.cu — end to end on the GPU: the model's blocks on CudaBackend (fp32) or
// CudaBackendBf16 (--dtype bf16), per-stage medians.
//
//   gpu_bench_e2e_gpu --model bench/out/base --patches bench/out/gpu/patches.safetensors --repeats 10 \
//                     --tokens 20 [--json]
//
// Input: the patches bench/gpu/compare_hf_gpu.py writes (HF's Pix2StructImageProcessor on the image and
// question; tensors `flattened_patches` [P, 2 + 768] and `attention_mask` [P]), so that HF and we run the
// same rows; without --patches, a grid of --real random patches padded to the checkpoint's max_patches.
// Stages, with the backend in its asynchronous mode (one stream):
//   encoder    model.encode(): the vision tower on the real patches, up to its fence
//   cross K/V  model.compute_cross_kv(): every decoder layer's K/V of the encoder states (once per image)
//   decode     generate() as an app calls it, every step run (stop_at_eos = false, so every repeat does the
//              same work): per step, its launches, the argmax on the device and the fence where the host
//              reads the chosen token (medians over repeats × tokens steps)
//   decode, CUDA graph            the same with CudaOptions::graphs: each step recorded once, then replayed
//   decode, synchronous backend   the same with a fence after every primitive (CudaOptions' default)
//   batch (--batch B > 1)   B copies of the input as one batch: encode_batch, the cross K/V of all B, then
//              generate_batch's steps of B sequences as CUDA graphs
// Beside each time: TFLOP/s (encoder, cross K/V) or GB/s of weights + cross K/V read (decode; 4 or 2 bytes
// each), and two yardsticks measured in the same run: cuBLAS GEMM of the same dtype at an encoder product
// and a device-to-device copy.
#include <CLI/CLI.hpp>
#include <cublas_v2.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "pix2struct/version.hpp"
#include "pix2struct/backend/cuda.hpp"
#include "pix2struct/model/generate.hpp"
#include "pix2struct/safetensors.hpp"
#include "pix2struct/weights.hpp"

#include "bench_util.cuh"

namespace {

using clock_type = std::chrono::steady_clock;
double ms_since(clock_type::time_point t) {
    return std::chrono::duration<double, std::milli>(clock_type::now() - t).count();
}
double median(std::vector<double> v) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

// cuBLAS C[M, F] = X[M, H] · W[F, H]ᵀ, best of 5 after a warm-up: TFLOP/s. fp32 without TF32 (as our exact
// path), or bf16 in and out with fp32 accumulation (as our bf16 path).
double gemm_tflops(int64_t M, int64_t H, int64_t F, bool bf16, cudaStream_t stream) {
    const size_t e = bf16 ? 2 : 4;
    void *x = nullptr, *w = nullptr, *c = nullptr;
    PIX2STRUCT_CUDA_CHECK(cudaMalloc(&x, size_t(M * H) * e));
    PIX2STRUCT_CUDA_CHECK(cudaMalloc(&w, size_t(F * H) * e));
    PIX2STRUCT_CUDA_CHECK(cudaMalloc(&c, size_t(M * F) * e));
    PIX2STRUCT_CUDA_CHECK(cudaMemsetAsync(x, 0, size_t(M * H) * e, stream));
    PIX2STRUCT_CUDA_CHECK(cudaMemsetAsync(w, 0, size_t(F * H) * e, stream));
    cublasHandle_t h;
    CUBLAS_CHECK(cublasCreate(&h));
    CUBLAS_CHECK(cublasSetStream(h, stream));
    const cudaDataType_t type = bf16 ? CUDA_R_16BF : CUDA_R_32F;
    const cublasComputeType_t compute = bf16 ? CUBLAS_COMPUTE_32F : CUBLAS_COMPUTE_32F_PEDANTIC;
    const float one = 1, zero = 0;
    double best = 1e30;
    for (int i = 0; i < 6; ++i) {
        PIX2STRUCT_CUDA_CHECK(cudaStreamSynchronize(stream));
        const auto t = clock_type::now();
        // column-major: Cᵀ [F, M] = W [F, H] · Xᵀ [H, M]
        CUBLAS_CHECK(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, int(F), int(M), int(H), &one, w, type, int(H), x, type,
                                  int(H), &zero, c, type, int(F), compute, CUBLAS_GEMM_DEFAULT));
        PIX2STRUCT_CUDA_CHECK(cudaStreamSynchronize(stream));
        if (i) best = std::min(best, ms_since(t));
    }
    cublasDestroy(h);
    cudaFree(x);
    cudaFree(w);
    cudaFree(c);
    return 2.0 * double(M) * double(H) * double(F) / (best * 1e9);
}

// Device-to-device copy of 256 MiB, best of 5: GB/s counting bytes read + written.
double copy_gbs(cudaStream_t stream) {
    const size_t bytes = size_t(256) << 20;
    void *a = nullptr, *b = nullptr;
    PIX2STRUCT_CUDA_CHECK(cudaMalloc(&a, bytes));
    PIX2STRUCT_CUDA_CHECK(cudaMalloc(&b, bytes));
    PIX2STRUCT_CUDA_CHECK(cudaMemsetAsync(a, 1, bytes, stream));
    double best = 1e30;
    for (int i = 0; i < 6; ++i) {
        PIX2STRUCT_CUDA_CHECK(cudaStreamSynchronize(stream));
        const auto t = clock_type::now();
        PIX2STRUCT_CUDA_CHECK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, stream));
        PIX2STRUCT_CUDA_CHECK(cudaStreamSynchronize(stream));
        if (i) best = std::min(best, ms_since(t));
    }
    cudaFree(a);
    cudaFree(b);
    return 2.0 * double(bytes) / (best * 1e6);
}

}  // namespace

struct Args {
    std::string model_dir = "bench/out/base", patches_path, dtype = "f32";
    int repeats = 10, tokens = 20, real = 2009, device = 0, batch = 1;
    bool json = false;
};

// Everything below for one backend: CudaBackend (--dtype f32) or CudaBackendBf16 (--dtype bf16).
template <class Backend>
int run(const Args& args) {
    const std::string &model_dir = args.model_dir, &patches_path = args.patches_path;
    const int repeats = args.repeats, tokens = args.tokens, real = args.real, device = args.device, batch = args.batch;
    const bool json = args.json;
    constexpr bool kBf16 = std::is_same_v<typename Backend::Scalar, pix2struct::kernels::bf16>;
    try {
        auto t = clock_type::now();
        const pix2struct::Checkpoint ckpt = pix2struct::Checkpoint::load(model_dir, {.decode_copies = false});
        const double load_ms = ms_since(t);
        pix2struct::CudaOptions options;
        options.device = device;
        options.synchronous = false;
        t = clock_type::now();
        Backend gpu(ckpt, options);
        const double upload_ms = ms_since(t);
        pix2struct::ForConditionalGeneration<Backend> model(ckpt, gpu);
        const pix2struct::Config& cfg = ckpt.config();
        const int64_t W = cfg.vision.patch_embed_hidden_size + 2;

        // The input rows.
        std::vector<float> flattened, mask;
        if (!patches_path.empty()) {
            const pix2struct::SafetensorsFile f = pix2struct::SafetensorsFile::open(patches_path);
            flattened = f.at("flattened_patches").to_float();
            mask = f.at("attention_mask").to_float();
            if (int64_t(flattened.size()) != int64_t(mask.size()) * W)
                pix2struct::detail::fail(patches_path, ": flattened_patches holds ", flattened.size(), " values for ",
                                         mask.size(), " mask entries of ", W, " values each");
        } else {
            const int64_t P = ckpt.preprocessor().max_patches;
            const int64_t n = std::clamp<int64_t>(real, 1, P);
            const int64_t cols = int64_t(std::ceil(std::sqrt(double(n))));
            flattened.assign(size_t(P * W), 0.0f);
            mask.assign(size_t(P), 0.0f);
            std::mt19937 rng(1);
            std::normal_distribution<float> nd;
            for (int64_t i = 0; i < n; ++i) {
                flattened[size_t(i * W)] = float(i / cols + 1);
                flattened[size_t(i * W + 1)] = float(i % cols + 1);
                for (int64_t k = 2; k < W; ++k) flattened[size_t(i * W + k)] = nd(rng);
                mask[size_t(i)] = 1;
            }
        }

        const int64_t V = cfg.text.vocab_size;
        // The encoder and the cross K/V alone, each up to its fence.
        std::vector<double> t_enc, t_kv;
        int64_t N = 0;
        for (int r = 0; r < repeats + 1; ++r) {  // run 0 warms up (allocations, page migration) and is not counted
            t = clock_type::now();
            N = model.encode(flattened, mask);
            gpu.synchronize();
            if (r > 0) t_enc.push_back(ms_since(t));
            t = clock_type::now();
            model.compute_cross_kv();
            gpu.synchronize();
            if (r > 0) t_kv.push_back(ms_since(t));
        }
        // Decoding as an app runs it: generate_batch() of `copies` copies of the input, every step run (no stop
        // at eos), `runs` + 1 times (the first warms up, or records the CUDA graphs); each step's time (its
        // launches and the fence where the host reads the chosen tokens) goes into `per_step`. Returns the
        // first sequence's ids.
        auto decode = [&](int copies, int runs, std::vector<double>& per_step) {
            const pix2struct::GenerateOptions every_step{.max_new_tokens = tokens, .stop_at_eos = false};
            const std::vector<pix2struct::GenerateRequest> requests(
                size_t(copies), pix2struct::GenerateRequest{flattened, mask, every_step});
            std::vector<int64_t> ids;
            for (int r = 0; r < runs + 1; ++r) {
                const std::vector<pix2struct::GenerateResult> results = model.generate_batch(requests);
                const std::vector<double>& ms = results[0].times.token_ms;
                if (r > 0) per_step.insert(per_step.end(), ms.begin(), ms.end());
                ids = results[0].ids;
            }
            return ids;
        };
        std::vector<double> t_tok, t_tok_graph, t_tok_sync;
        const std::vector<int64_t> first_ids = decode(1, repeats, t_tok);  // asynchronous backend, eager launches
        gpu.set_graphs(true);
        const std::vector<int64_t> graph_ids = decode(1, repeats, t_tok_graph);  // steps replayed as CUDA graphs
        const std::string graph_error = gpu.graph_error();
        if (!graph_error.empty()) std::fprintf(stderr, "bench_e2e_gpu: CUDA graphs switched off: %s\n", graph_error.c_str());
        if (graph_ids != first_ids) std::fprintf(stderr, "bench_e2e_gpu: warning: the CUDA graph steps chose other tokens\n");
        // The synchronous backend (a fence after every primitive): CudaOptions' default.
        gpu.set_graphs(false);
        gpu.set_synchronous(true);
        decode(1, std::max(1, repeats / 2), t_tok_sync);

        // The same input B times as one batch: its encoder and cross K/V, then steps of B sequences as CUDA graphs.
        gpu.set_synchronous(false);
        gpu.set_graphs(true);
        std::vector<double> b_enc, b_kv, b_step;
        if (batch > 1) {
            const std::vector<pix2struct::PatchInput> images(size_t(batch), pix2struct::PatchInput{flattened, mask});
            for (int r = 0; r < repeats + 1; ++r) {
                t = clock_type::now();
                model.encode_batch(images);
                gpu.synchronize();
                if (r > 0) b_enc.push_back(ms_since(t));
                t = clock_type::now();
                model.compute_cross_kv();
                gpu.synchronize();
                if (r > 0) b_kv.push_back(ms_since(t));
            }
            decode(batch, repeats, b_step);
        }

        // Work per stage (as bench/bench_e2e.cpp counts it).
        const double H = cfg.vision.hidden_size, I = cfg.vision.inner_dim(), F = cfg.vision.d_ff,
                     D = cfg.vision.patch_embed_hidden_size, L = cfg.vision.num_hidden_layers, n = double(N);
        const double enc_flop = 2 * n * D * H + L * (2 * n * H * I * 4 + 2 * 2 * n * n * I + 3 * 2 * n * H * F);
        const double Ht = cfg.text.hidden_size, It = cfg.text.inner_dim(), Ft = cfg.text.d_ff, Lt = cfg.text.num_layers;
        const double kv_flop = Lt * 2 * 2 * n * Ht * It;
        const double dec_params = Lt * (8 * Ht * It + 3 * Ht * Ft) + double(V) * Ht;
        const double e = kBf16 ? 2 : 4;                                  // bytes per weight and activation
        const double dec_bytes = e * dec_params + e * Lt * 2 * n * It;  // weights + the cross K/V cache

        const double gemm = gemm_tflops(std::max<int64_t>(N, 256), int64_t(H), int64_t(F), kBf16, gpu.stream());
        const double copy = copy_gbs(gpu.stream());
        const double enc = median(t_enc), kv = median(t_kv), tok = median(t_tok), tok_sync = median(t_tok_sync);
        if (json) {
            nlohmann::json j{{"model", model_dir}, {"device", gpu.device_name()}, {"dtype", kBf16 ? "bf16" : "f32"}, {"real_patches", N},
                             {"max_patches", int64_t(mask.size())}, {"repeats", repeats}, {"tokens", tokens},
                             {"load_ms", load_ms}, {"upload_ms", upload_ms}, {"encoder_ms", enc}, {"cross_kv_ms", kv},
                             {"token_ms", tok}, {"token_sync_ms", tok_sync},
                             {"token_graph_ms", graph_error.empty() ? median(t_tok_graph) : 0.0},
                             {"graph_error", graph_error},
                             {"encoder_tflops", enc_flop / (enc * 1e9)}, {"cross_kv_tflops", kv_flop / (kv * 1e9)},
                             {"decode_gbs", dec_bytes / (tok * 1e6)}, {"yardstick_gemm_tflops", gemm},
                             {"yardstick_copy_gbs", copy}, {"first_ids", first_ids}};
            if (!b_step.empty())
                j["batch"] = {{"size", batch}, {"encoder_ms", median(b_enc)}, {"cross_kv_ms", median(b_kv)},
                              {"step_ms", median(b_step)}};
            std::cout << j.dump() << "\n";
        } else {
            std::printf("model %s on %s (%s), %lld real patches of %zu, %d repeats x %d tokens (medians)\n",
                        model_dir.c_str(), gpu.device_name().c_str(), kBf16 ? "bf16, CudaBackendBf16" : "fp32, CudaBackend", (long long)N, mask.size(), repeats, tokens);
            std::printf("  load %.0f ms, upload %.0f ms (%.0f MiB of weights)\n", load_ms, upload_ms,
                        pix2struct::detail::mib(gpu.weight_bytes()));
            std::printf("  encoder     %9.2f ms   %6.2f TFLOP/s (%.1f GFLOP)\n", enc, enc_flop / (enc * 1e9), enc_flop / 1e9);
            std::printf("  cross K/V   %9.2f ms   %6.2f TFLOP/s\n", kv, kv_flop / (kv * 1e9));
            std::printf("  decode      %9.3f ms/token  %6.0f GB/s (%.0f MB read per token)\n", tok,
                        dec_bytes / (tok * 1e6), dec_bytes / 1e6);
            std::printf("  decode, CUDA graph per step %9.3f ms/token%s\n", median(t_tok_graph),
                        graph_error.empty() ? "" : " (graphs failed: eager)");
            std::printf("  decode, synchronous backend %9.3f ms/token\n", tok_sync);
            std::printf("  yardsticks: cuBLAS %s GEMM %.2f TFLOP/s ([%lld, %.0f]·[%.0f, %.0f]ᵀ), D2D copy %.0f GB/s\n",
                        kBf16 ? "bf16" : "fp32", gemm, (long long)std::max<int64_t>(N, 256), H, F, H, copy);
            if (!b_step.empty())
                std::printf("  batch of %d: encoder %.2f ms, cross K/V %.2f ms, decode %.3f ms/step (CUDA graphs; "
                            "%.3f ms/token)\n", batch, median(b_enc), median(b_kv), median(b_step), median(b_step) / batch);
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_e2e_gpu: %s\n", e.what());
        return 1;
    }
    return 0;
}

int main(int argc, char** argv) {
    CLI::App app{"End-to-end GPU benchmark (CudaBackend fp32 or CudaBackendBf16): encoder, cross K/V, per-token decode "
                 "(medians)."};
    app.set_version_flag("--version", std::string("pix2struct ") + PIX2STRUCT_VERSION)->trigger_on_parse();
    Args a;
    app.add_option("--model", a.model_dir, "Model folder (HF layout)")->capture_default_str();
    app.add_option("--patches", a.patches_path, "safetensors with flattened_patches [P, 770] and attention_mask [P]");
    app.add_option("--real", a.real, "Without --patches: random real patches (padded to max_patches)")->capture_default_str();
    app.add_option("--repeats", a.repeats, "Repeats (medians reported)")->capture_default_str();
    app.add_option("--tokens", a.tokens, "Decode steps per repeat")->capture_default_str();
    app.add_option("--device", a.device, "CUDA device")->capture_default_str();
    app.add_option("--dtype", a.dtype, "Activations: f32 (CudaBackend) or bf16 (CudaBackendBf16)")
        ->check(CLI::IsMember({"f32", "bf16"}))
        ->capture_default_str();
    app.add_option("--batch", a.batch, "Also time a batch of this many copies of the input (1: no)")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    app.add_flag("--json", a.json, "Print one JSON object");
    CLI11_PARSE(app, argc, argv);
    return a.dtype == "bf16" ? run<pix2struct::CudaBackendBf16>(a) : run<pix2struct::CudaBackend>(a);
}
