// pix2struct-vqa — answer a question about an image (or caption it) with a Pix2Struct checkpoint.
//
//   pix2struct-vqa --model pix2struct-ai2d-base --image diagram.png --question "What comes after the larva?"
//   pix2struct-vqa --model examples/demo/model --image examples/demo/diagram.png --question "What is shown?"
//   pix2struct-vqa --model pix2struct-textcaps-base --image photo.jpg              # captioning: no question
//   pix2struct-vqa --model pix2struct-textcaps-base --image photo.jpg --question "A picture of"  # caption prompt
//   pix2struct-vqa --device cuda --model pix2struct-ai2d-base --image diagram.png --question "…"  # on the GPU
//   pix2struct-vqa --model m --image a.png --question "…" --image b.png --question "…"  # a batch: one line each
//
// Several --image options make a batch (one encoder pass, shared decode steps): each answer is printed on
// its own line, in order, once all are done (or one JSON object per line with --json); --question is
// given once for all images or once per image.
// --device cuda runs the model on the GPU (cuda_backend.cu, compiled when the build has CUDA:
// PIX2STRUCT_VQA_CUDA): CudaBackend (--dtype f32, exact fp32) or CudaBackendBf16 (--dtype bf16: bf16
// weights and activations, fp32 accumulation, as HF with torch_dtype=bfloat16); preprocessing and
// tokenizing stay on the CPU. On the CPU the model runs in fp32 (exact), with --dtype int8 with int8
// products in its linear layers (about 2x faster; answers can differ where the model is unsure), or with
// --dtype bf16 as the GPU's bf16 path and HF's bfloat16 mode compute (for parity and debugging).
// Prints the answer as it is generated (or one JSON object with --json). Exit status 1 with a one-line
// error for a missing or incomplete model folder, an unreadable image, a missing question on a VQA model,
// --device cuda without a usable GPU (or in a build without CUDA), --dtype int8 on the GPU.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

// This program's one implementation file of the library.
#define PIX2STRUCT_IMPLEMENTATION
#include "pix2struct/pix2struct.hpp"
#include "pix2struct/basic_pipeline.hpp"
#include "pix2struct/image/header.hpp"
#include "pix2struct/image/load.hpp"
#include "pix2struct/safetensors.hpp"
#ifdef PIX2STRUCT_VQA_CUDA
#include "examples/vqa/cuda_backend.hpp"
#endif

int main(int argc, char** argv) {
    CLI::App app{"Answer a question about an image (or caption it) with a Pix2Struct checkpoint, on the CPU or GPU."};
    app.set_version_flag("--version", std::string("pix2struct ") + PIX2STRUCT_VERSION)->trigger_on_parse();
    std::string model_dir, font, save_input, dump_inputs, device = "cpu", dtype = "f32";
    std::vector<std::string> image_paths, questions;
    int max_new_tokens = 0, threads = 0, max_patches = 0;
    bool json = false, verbose = false, no_mmap = false;
    int64_t max_memory_mb = 0;
    app.add_option("--model", model_dir,
                   "Model folder: config.json, preprocessor_config.json, model.safetensors, spiece.model")
        ->required();
    app.add_option("--image", image_paths, "Image file (PNG, JPEG, BMP, GIF, …); repeat for a batch")->required();
    app.add_option("--question", questions,
                   "The question (required by VQA checkpoints); for captioning checkpoints, the start of the caption. "
                   "Once for all images, or once per image")
        ->allow_extra_args(false);  // one value per --question: an unquoted question is an error, not several
    app.add_option("--max-new-tokens", max_new_tokens, "Most tokens to generate (0: HF's default, 20)")
        ->check(CLI::NonNegativeNumber);
    app.add_option("--device", device, "Where the model runs: cpu, or cuda (an NVIDIA GPU, sm_80+; needs a build with CUDA)")
        ->check(CLI::IsMember({"cpu", "cuda"}))
        ->capture_default_str();
    app.add_option("--dtype", dtype,
                   "Arithmetic of the model: f32; int8 (CPU only: int8 products in the linear layers); bf16 (bf16 "
                   "weights and activations, fp32 accumulation, as HF's torch_dtype=bfloat16)")
        ->check(CLI::IsMember({"f32", "int8", "bf16"}))
        ->capture_default_str();
    app.add_option("--threads", threads, "CPU threads for --device cpu (0: all)")->check(CLI::Range(0, 1024));
    app.add_option("--max-patches", max_patches, "Patches budget (0: the checkpoint's preprocessor_config.json)")
        ->check(CLI::NonNegativeNumber);
    app.add_option("--font", font, "TrueType font for the question header (default: Liberation Sans)");
    app.add_option("--save-input", save_input, "Save the image the model sees (question header + image) as PNG");
    app.add_option("--dump-inputs", dump_inputs,
                   "Write the model inputs (flattened_patches, attention_mask) to a .safetensors file");
    app.add_option("--max-memory-mb", max_memory_mb,
                   "Memory budget for activations and caches; a question needing more is refused (0: physical memory)")
        ->check(CLI::Range(int64_t(0), int64_t(1) << 30));
    app.add_flag("--no-mmap", no_mmap,
                 "Read model.safetensors into memory instead of mapping it (immune to the file changing while loaded)");
    app.add_flag("--json", json, "Print one JSON object: answer, token ids, per-stage timings");
    app.add_flag("--verbose", verbose, "Print the model shape, the kernels chosen, patch grid and timings to stderr");
    CLI11_PARSE(app, argc, argv);

    try {
        using clock = std::chrono::steady_clock;
        const auto t_load = clock::now();
        if (dtype == "int8" && device == "cuda")
            throw pix2struct::Error("--dtype int8 runs on the CPU only; the GPU computes in f32 or bf16");
        if (questions.size() > 1 && questions.size() != image_paths.size())
            throw pix2struct::Error(std::to_string(questions.size()) + " --question for " +
                                    std::to_string(image_paths.size()) + " --image: give one per image, or one for all");
        if (image_paths.size() > 1 && (!save_input.empty() || !dump_inputs.empty()))
            throw pix2struct::Error("--save-input and --dump-inputs take a single --image");
        const pix2struct::PipelineOptions options{
            .threads = threads, .max_patches = max_patches,
            .dtype = device == "cuda" ? pix2struct::Dtype::F32  // the GPU's arithmetic: load_cuda_pipeline's bf16
                     : dtype == "int8" ? pix2struct::Dtype::Int8
                     : dtype == "bf16" ? pix2struct::Dtype::Bf16
                                       : pix2struct::Dtype::F32,
            .font_path = font, .mmap = !no_mmap,
            .max_memory_bytes = max_memory_mb << 20};
        auto load = [&]() -> pix2struct::Pipeline {
            if (device != "cuda") return pix2struct::Pipeline::load(model_dir, options);
#ifdef PIX2STRUCT_VQA_CUDA
            return pix2struct::Pipeline(vqa::load_cuda_pipeline(model_dir, options, dtype == "bf16"));
#else
            throw pix2struct::Error("--device cuda: this pix2struct-vqa was built without CUDA "
                                    "(configure with -DPIX2STRUCT_CUDA=ON, or Meson with -Dcuda=enabled)");
#endif
        };
        pix2struct::Pipeline pipe = load();
        const double load_ms = std::chrono::duration<double, std::milli>(clock::now() - t_load).count();
        if (verbose) {
            const auto& c = pipe.base().config();
            std::fprintf(stderr, "model: %s (vision %d layers × %d, text %d layers × %d, vocab %d), %s, max_patches %d, "
                         "%s, loaded in %.0f ms\n", model_dir.c_str(), c.vision.num_hidden_layers,
                         c.vision.hidden_size, c.text.num_layers, c.text.hidden_size, c.text.vocab_size,
                         pipe.is_vqa() ? "VQA" : "captioning", pipe.max_patches(), pipe.describe().c_str(), load_ms);
        }
        if (!pipe.is_vqa() && !questions.empty() && verbose)
            std::fprintf(stderr, "note: captioning checkpoint (is_vqa false): the text starts the caption\n");

        // the model inputs, one per image
        std::vector<pix2struct::Patches> patches;
        std::vector<std::string> prompts;  // captioning checkpoints: the question starts the caption
        std::vector<double> pre_ms;
        for (size_t i = 0; i < image_paths.size(); ++i) {
            const std::string& path = image_paths[i];
            const std::string& question = questions.empty() ? std::string{} : questions[questions.size() == 1 ? 0 : i];
            const pix2struct::Image image = pix2struct::load_image(path);
            const auto t_pre = clock::now();
            const pix2struct::Patches& p = patches.emplace_back(pipe.prepare(image, question));
            pre_ms.push_back(std::chrono::duration<double, std::milli>(clock::now() - t_pre).count());
            prompts.push_back(pipe.is_vqa() ? std::string{} : question);
            if (verbose)
                std::fprintf(stderr, "image: %s %dx%d → %d×%d patches (%d real of %d)\n", path.c_str(), image.width,
                             image.height, p.rows, p.cols, p.num_real(), p.max_patches);
            if (!save_input.empty()) {
                const pix2struct::Image seen = pipe.is_vqa()
                    ? pix2struct::render_question(image, question, pipe.base().preprocess_options().font_path)
                    : image;
                pix2struct::save_png(seen, save_input);
            }
            if (!dump_inputs.empty()) {
                pix2struct::SafetensorsWriter w;
                w.add_f32("flattened_patches", {p.max_patches, p.patch_dim}, p.flattened);
                w.add_f32("attention_mask", {p.max_patches}, p.mask);
                w.set_metadata("image", path);
                w.set_metadata("question", question);
                w.write(dump_inputs);
            }
        }

        std::vector<pix2struct::Answer> answers;
        if (patches.size() == 1) {  // one image: print the answer as it is generated
            pix2struct::AskOptions ask;
            ask.max_new_tokens = max_new_tokens;
            if (!json)
                ask.on_text = [](std::string_view piece) {
                    std::fwrite(piece.data(), 1, piece.size(), stdout);
                    std::fflush(stdout);
                    return true;
                };
            answers.push_back(pipe.run(patches[0], ask, prompts[0]));
        } else {
            answers = pipe.run_batch(patches, prompts, max_new_tokens);
        }

        for (size_t i = 0; i < answers.size(); ++i) {
            pix2struct::Answer& a = answers[i];
            a.times.preprocess_ms = pre_ms[i];
            if (json) {
                nlohmann::json j;
                j["image"] = image_paths[i];
                j["answer"] = a.text;
                j["ids"] = a.ids;
                j["real_patches"] = a.real_patches;
                j["max_patches"] = patches[i].max_patches;
                j["batch"] = answers.size();
                j["timings_ms"] = {{"load", load_ms},
                                   {"preprocess", a.times.preprocess_ms},
                                   {"encoder", a.times.encoder_ms},
                                   {"cross_kv", a.times.cross_kv_ms},
                                   {"decode", a.times.decode_ms},
                                   {"per_token", a.times.token_ms}};
                std::cout << j.dump() << "\n";
            } else {
                std::cout << (answers.size() == 1 ? "" : a.text) << "\n";
            }
            if (verbose)
                std::fprintf(stderr, "timings%s%s: preprocess %.1f ms, encoder %.1f ms, cross K/V %.1f ms, decode %.1f ms "
                             "(%zu tokens, %.2f ms/token)\n", answers.size() == 1 ? "" : " of ",
                             answers.size() == 1 ? "" : image_paths[i].c_str(), a.times.preprocess_ms, a.times.encoder_ms,
                             a.times.cross_kv_ms, a.times.decode_ms, a.times.token_ms.size(),
                             a.times.token_ms.empty() ? 0.0 : a.times.decode_ms / double(a.times.token_ms.size()));
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "pix2struct-vqa: %s\n", e.what());
        return 1;
    }
    return 0;
}
