// bench_e2e — end-to-end CPU timing of one question: per-stage medians over repeats.
//
//   bench_e2e --model tests/reference/out/base-random --image tests/data/models/images/diagram.png
//             --question "What is shown?" --repeats 5 --tokens 20 --threads 2 [--dtype int8] [--json]
//
// Stages: preprocess (header + resize + patches; timed back to back, before the model runs), encoder (vision tower on the real patches), cross K/V
// (every decoder layer's K/V of the encoder states, once per image), decode (per-token median of `tokens`
// greedy steps, forced to run all steps even past eos so every run does the same work).
// Beside each time: the stage's GFLOP/s (encoder, cross K/V) or GB/s of weights+cache read (decode), and
// the machine's ceilings measured in the same run: the peak fp32 FMA rate (independent FMAs in registers on
// every thread, the widest SIMD the CPU runs) and the memory bandwidth of a large copy (on as many threads,
// read + write bytes); beside them the
// backend's own GEMM rate on an encoder-sized product. --dtype int8 times the int8 mode (CpuOptions), its
// ceiling the peak rate of the int8 kernels' instruction (vpdpbusd, or AVX2's vpmaddwd) beside the fp32 one;
// --dtype bf16 the bf16 mode (CpuBf16Backend: vdpbf16ps where it outruns fp32 FMA, its peak beside; else the
// fp32 kernels on bf16 values).
// --batch B (> 1) also times B copies of the input as one batch (generate_batch's path: one encoder pass
// over B·N rows, decode steps of B sequences): the batch's encoder, cross K/V and per-step medians.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#define PIX2STRUCT_IMPLEMENTATION  // this program's one implementation file of the library
#include "pix2struct/pix2struct.hpp"
#include "pix2struct/backend/cpu.hpp"
#include "pix2struct/image/patches.hpp"
#include "pix2struct/model/generate.hpp"
#include "pix2struct/weights.hpp"

#include "peak.hpp"

using clock_type = std::chrono::steady_clock;
static double ms_since(clock_type::time_point t) {
    return std::chrono::duration<double, std::milli>(clock_type::now() - t).count();
}
static double median(std::vector<double> v) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

int main(int argc, char** argv) {
    CLI::App app{"End-to-end CPU benchmark: preprocess, encoder, cross K/V, per-token decode (medians)."};
    app.set_version_flag("--version", std::string("pix2struct ") + PIX2STRUCT_VERSION)->trigger_on_parse();
    std::string model_dir = "tests/reference/out/base-random", image_path = "tests/data/models/images/diagram.png";
    std::string question = "What is shown in the diagram?";
    int repeats = 5, tokens = 20, threads = 0, max_patches = 0, batch = 1;
    std::string dtype = "f32";
    bool json = false, int8_lm_head = false, fp32_wo = false, fp32_attention = false;
    app.add_option("--model", model_dir, "Model folder (HF layout)")->capture_default_str();
    app.add_option("--image", image_path, "Image")->capture_default_str();
    app.add_option("--question", question, "Question (VQA checkpoints)")->capture_default_str();
    app.add_option("--repeats", repeats, "Repeats (medians reported)")->capture_default_str();
    app.add_option("--tokens", tokens, "Decode steps per repeat")->capture_default_str();
    app.add_option("--threads", threads, "Threads (0: all)")->capture_default_str();
    app.add_option("--max-patches", max_patches, "Patch budget (0: the checkpoint's)")->capture_default_str();
    app.add_option("--batch", batch, "Also time a batch of this many copies of the input (1: no)")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    app.add_option("--dtype", dtype, "Arithmetic: f32, int8 or bf16")->check(CLI::IsMember({"f32", "int8", "bf16"}))->capture_default_str();
    app.add_flag("--int8-lm-head", int8_lm_head, "With --dtype int8: quantise lm_head too");
    app.add_flag("--fp32-wo", fp32_wo, "With --dtype int8: keep the MLPs' output projections (wo) in fp32");
    app.add_flag("--fp32-attention", fp32_attention, "With --dtype int8: the encoder's attention products in fp32");
    app.add_flag("--json", json, "Print one JSON object");
    CLI11_PARSE(app, argc, argv);

    try {
        const auto t_load = clock_type::now();
        const pix2struct::Checkpoint ckpt = pix2struct::Checkpoint::load(model_dir);
        const double load_ms = ms_since(t_load);
        pix2struct::CpuOptions cpu{.threads = threads, .dtype = pix2struct::dtype_from_name(dtype)};
        cpu.int8.lm_head = int8_lm_head;
        cpu.int8.mlp_out = !fp32_wo;
        cpu.int8.attention = !fp32_attention;
        // the backend a pipeline runs: CpuInt8Backend (int8 cross K/V) for int8, CpuBf16Backend for bf16,
        // CpuBackend for f32
        auto run = [&](auto& backend) {
        using B = std::remove_reference_t<decltype(backend)>;
        pix2struct::ForConditionalGeneration<B> model(ckpt, backend);
        const auto& cfg = ckpt.config();
        const int P = max_patches > 0 ? max_patches : ckpt.preprocessor().max_patches;

        std::vector<double> t_pre, t_enc, t_kv, t_tok;
        std::vector<int64_t> ids;  // the generated ids (the same every run)
        int64_t N = 0;
        const pix2struct::Image image = pix2struct::load_image(image_path);
        pix2struct::PreprocessOptions po;
        po.max_patches = P;
        po.is_vqa = ckpt.preprocessor().is_vqa;
        // Preprocessing back to back (as compare_hf.py times the reference's); run 0 of each loop warms up
        // (allocations, page faults) and is not counted.
        for (int r = 0; r < repeats + 1; ++r) {
            auto t = clock_type::now();
            const pix2struct::Patches p = pix2struct::preprocess(image, po.is_vqa ? question : "", po);
            if (r > 0) t_pre.push_back(ms_since(t));
        }
        const pix2struct::Patches p = pix2struct::preprocess(image, po.is_vqa ? question : "", po);
        for (int r = 0; r < repeats + 1; ++r) {
            const bool count = r > 0;
            // The library's own decode loop; past eos too, so every run does the same work.
            const pix2struct::GenerateResult g =
                model.generate(p.flattened, p.mask, {.max_new_tokens = tokens, .stop_at_eos = false});
            N = g.encoder_rows;
            ids = g.ids;
            if (count) {
                t_enc.push_back(g.times.encoder_ms);
                t_kv.push_back(g.times.cross_kv_ms);
                t_tok.insert(t_tok.end(), g.times.token_ms.begin(), g.times.token_ms.end());
            }
        }

        // The same input B times as one batch.
        std::vector<double> b_enc, b_kv, b_step;
        if (batch > 1) {
            const pix2struct::Patches p = pix2struct::preprocess(image, po.is_vqa ? question : "", po);
            const std::vector<pix2struct::GenerateRequest> requests(
                size_t(batch), pix2struct::GenerateRequest{p.flattened, p.mask, {.max_new_tokens = tokens, .stop_at_eos = false}});
            for (int r = 0; r < repeats + 1; ++r) {
                const std::vector<pix2struct::GenerateResult> g = model.generate_batch(requests);
                if (r == 0) continue;
                b_enc.push_back(g[0].times.encoder_ms);
                b_kv.push_back(g[0].times.cross_kv_ms);
                b_step.insert(b_step.end(), g[0].times.token_ms.begin(), g[0].times.token_ms.end());
            }
        }

        // Work per stage.
        const double H = cfg.vision.hidden_size, I = cfg.vision.inner_dim(), F = cfg.vision.d_ff,
                     D = cfg.vision.patch_embed_hidden_size, L = cfg.vision.num_hidden_layers, n = double(N);
        const double enc_flop = 2 * n * D * H + L * (2 * n * H * I * 4 + 2 * 2 * n * n * I + 3 * 2 * n * H * F);
        const double Ht = cfg.text.hidden_size, It = cfg.text.inner_dim(), Lt = cfg.text.num_layers;
        const double kv_flop = Lt * 2 * 2 * n * Ht * It;
        // Bytes read per token: decoder weights as the backend reads them (int8 panels: 1 byte; BF16 copies: 2;
        // otherwise the fp32 view; cross K/V projections are not read at decode time) + the cross K/V cache (fp32;
        // int8 with a scale per row in int8 mode).
        double weight_bytes = 0;
        pix2struct::for_each_decode_matrix(ckpt.text(), [&](const pix2struct::Weight& w) {
            weight_bytes += double(w.size()) * backend.bytes_per_value(w);
        });
        double dec_bytes = weight_bytes + double(sizeof(pix2struct::cross_t<B>)) * Lt * 2 * n * It;
        if (std::is_same_v<pix2struct::cross_t<B>, int8_t>) dec_bytes += sizeof(float) * Lt * 2 * n;  // row scales

        // Ceilings, same run: peak FMA rate, copy bandwidth; and the backend's GEMM rate on an encoder-sized product.
        double gemm_gflops = 0, copy_gbs = 0;
        const double fma_gflops = peak::fp32_fma_gflops(backend.isa(), backend.threads());
        const double int8_gops = cpu.dtype == pix2struct::Dtype::Int8 ? peak::int8_dot_gops(backend.int8_isa(), backend.threads()) : 0;
        double bf16_gflops = 0;
        if constexpr (std::is_same_v<B, pix2struct::CpuBf16Backend>) bf16_gflops = peak::bf16_dot_gflops(backend.bf16_isa(), backend.threads());
        {
            const int64_t M = std::max<int64_t>(N, 256), K = int64_t(H), Nn = int64_t(F);
            std::vector<float> x(size_t(M * K), 0.5f), y(size_t(M * Nn)), wdata(size_t(Nn * K), 0.25f);
            pix2struct::Weight w{"yardstick", {Nn, K}, wdata.data(), nullptr};
            ckpt.for_each([&](const pix2struct::Weight&) { ++w.index; });  // the index after the checkpoint's
            ++w.index;
            if constexpr (std::is_same_v<B, pix2struct::CpuBf16Backend>) backend.adopt(std::vector<const pix2struct::Weight*>{&w});
            else if (cpu.dtype == pix2struct::Dtype::Int8) backend.quantise(std::vector<const pix2struct::Weight*>{&w});
            std::vector<double> ts;
            for (int i = 0; i < 4; ++i) {
                auto t = clock_type::now();
                backend.linear(x.data(), M, w, y.data());
                ts.push_back(ms_since(t));
            }
            gemm_gflops = 2.0 * M * K * Nn / (*std::min_element(ts.begin() + 1, ts.end()) * 1e6);
            // memcpy on as many threads as the backend's, each a slice: the bandwidth those threads can have
            std::vector<char> a(size_t(256) << 20, 1), b(a.size());
            std::vector<double> tc;
            const size_t slice = a.size() / size_t(backend.threads());
            for (int i = 0; i < 3; ++i) {
                auto t = clock_type::now();
                std::vector<std::thread> copiers;
                for (int c = 0; c < backend.threads(); ++c)
                    copiers.emplace_back([&, c] { std::memcpy(b.data() + size_t(c) * slice, a.data() + size_t(c) * slice, slice); });
                for (std::thread& c : copiers) c.join();
                tc.push_back(ms_since(t));
            }
            copy_gbs = 2.0 * double(slice) * backend.threads() / (*std::min_element(tc.begin() + 1, tc.end()) * 1e6);  // read + write
        }

        const double pre = median(t_pre), enc = median(t_enc), kv = median(t_kv), tok = median(t_tok);
        if (json) {
            nlohmann::json j{{"model", model_dir}, {"threads", backend.threads()}, {"real_patches", N},
                             {"max_patches", P}, {"repeats", repeats}, {"tokens", tokens}, {"load_ms", load_ms},
                             {"preprocess_ms", pre}, {"encoder_ms", enc}, {"cross_kv_ms", kv}, {"token_ms", tok},
                             {"encoder_gflops", enc_flop / (enc * 1e6)}, {"decode_gbs", dec_bytes / (tok * 1e6)},
                             {"yardstick_gemm_gflops", gemm_gflops}, {"yardstick_copy_gbs", copy_gbs},
                             {"peak_fma_gflops", fma_gflops}, {"peak_int8_gops", int8_gops}, {"peak_bf16_gflops", bf16_gflops},
                             {"isa", pix2struct::isa_name(backend.isa())}, {"dtype", dtype}, {"kernels", backend.describe()},
                             {"ids", ids}};
            if (batch > 1)
                j["batch"] = {{"size", batch}, {"encoder_ms", median(b_enc)}, {"cross_kv_ms", median(b_kv)},
                              {"step_ms", median(b_step)}};
            std::cout << j.dump() << "\n";
        } else {
            std::printf("model %s, %s, %lld real patches of %d, %d repeats (medians)\n", model_dir.c_str(),
                        backend.describe().c_str(), (long long)N, P, repeats);
            std::printf("  load        %9.1f ms\n", load_ms);
            std::printf("  preprocess  %9.2f ms\n", pre);
            std::printf("  encoder     %9.1f ms   %7.1f GFLOP/s (%.1f GFLOP)\n", enc, enc_flop / (enc * 1e6), enc_flop / 1e9);
            std::printf("  cross K/V   %9.1f ms   %7.1f GFLOP/s\n", kv, kv_flop / (kv * 1e6));
            std::printf("  decode      %9.2f ms/token  %5.1f GB/s (%.0f MB read per token)\n", tok,
                        dec_bytes / (tok * 1e6), dec_bytes / 1e6);
            std::printf("  ceilings: peak FMA %.1f GFLOP/s (%s, %d threads), ", fma_gflops, pix2struct::isa_name(backend.isa()),
                        backend.threads());
            if (int8_gops > 0) std::printf("peak int8 dot %.1f GOP/s, ", int8_gops);
            if (bf16_gflops > 0) std::printf("peak bf16 dot %.1f GFLOP/s, ", bf16_gflops);
            std::printf("memcpy %.1f GB/s; backend %s GEMM %.1f G%s/s ([%lld, %.0f]·[%.0f, %.0f]ᵀ)\n", copy_gbs, dtype.c_str(),
                        gemm_gflops, dtype == "int8" ? "OP" : "FLOP", (long long)std::max<int64_t>(N, 256), H, F, H);
            if (batch > 1)
                std::printf("  batch of %d: encoder %.1f ms, cross K/V %.1f ms, decode %.2f ms/step (%.2f ms/token; "
                            "alone %.2f)\n", batch, median(b_enc), median(b_kv), median(b_step), median(b_step) / batch, tok);
        }
        };
        if (cpu.dtype == pix2struct::Dtype::Int8) {
            pix2struct::CpuInt8Backend backend(ckpt, cpu);
            run(backend);
        } else if (cpu.dtype == pix2struct::Dtype::Bf16) {
            pix2struct::CpuBf16Backend backend(ckpt, cpu);
            run(backend);
        } else {
            pix2struct::CpuBackend backend(ckpt, cpu);
            run(backend);
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_e2e: %s\n", e.what());
        return 1;
    }
    return 0;
}
