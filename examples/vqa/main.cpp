// pix2struct-vqa — answer a question about an image (or caption it) with a Pix2Struct checkpoint.
//
//   pix2struct-vqa --model pix2struct-ai2d-base --image diagram.png --question "What comes after the larva?"
//   pix2struct-vqa --model examples/demo/model --image examples/demo/diagram.png --question "What is shown?"
//   pix2struct-vqa --model pix2struct-textcaps-base --image photo.jpg              # captioning: no question
//   pix2struct-vqa --model pix2struct-textcaps-base --image photo.jpg --question "A picture of"  # caption prompt
//
// Prints the answer as it is generated (or one JSON object with --json). Exit status 1 with a one-line
// error for a missing or incomplete model folder, an unreadable image, a missing question on a VQA model.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "pix2struct/pix2struct.hpp"

int main(int argc, char** argv) {
    CLI::App app{"Answer a question about an image (or caption it) with a Pix2Struct checkpoint, on the CPU."};
    std::string model_dir, image_path, question, font, save_input, dump_inputs;
    int max_new_tokens = 0, threads = 0, max_patches = 0;
    bool json = false, verbose = false;
    app.add_option("--model", model_dir,
                   "Model folder: config.json, preprocessor_config.json, model.safetensors, spiece.model")
        ->required();
    app.add_option("--image", image_path, "Image file (PNG, JPEG, BMP, GIF, …)")->required();
    app.add_option("--question", question,
                   "The question (required by VQA checkpoints); for captioning checkpoints, the start of the caption");
    app.add_option("--max-new-tokens", max_new_tokens, "Most tokens to generate (0: HF's default, 20)")
        ->check(CLI::NonNegativeNumber);
    app.add_option("--threads", threads, "CPU threads (0: all)")->check(CLI::NonNegativeNumber);
    app.add_option("--max-patches", max_patches, "Patches budget (0: the checkpoint's preprocessor_config.json)")
        ->check(CLI::NonNegativeNumber);
    app.add_option("--font", font, "TrueType font for the question header (default: Liberation Sans)");
    app.add_option("--save-input", save_input, "Save the image the model sees (question header + image) as PNG");
    app.add_option("--dump-inputs", dump_inputs,
                   "Write the model inputs (flattened_patches, attention_mask) to a .safetensors file");
    app.add_flag("--json", json, "Print one JSON object: answer, token ids, per-stage timings");
    app.add_flag("--verbose", verbose, "Print the model shape, patch grid and timings to stderr");
    CLI11_PARSE(app, argc, argv);

    try {
        using clock = std::chrono::steady_clock;
        const auto t_load = clock::now();
        pix2struct::Pipeline pipe = pix2struct::Pipeline::load(
            model_dir, {.threads = threads, .max_patches = max_patches, .font_path = font});
        const double load_ms = std::chrono::duration<double, std::milli>(clock::now() - t_load).count();
        if (verbose) {
            const auto& c = pipe.config();
            std::fprintf(stderr, "model: %s (vision %d layers × %d, text %d layers × %d, vocab %d), %s, max_patches %d, "
                         "loaded in %.0f ms\n", model_dir.c_str(), c.vision.num_hidden_layers, c.vision.hidden_size,
                         c.text.num_layers, c.text.hidden_size, c.text.vocab_size, pipe.is_vqa() ? "VQA" : "captioning",
                         pipe.preprocess_options().max_patches, load_ms);
        }
        if (!pipe.is_vqa() && !question.empty() && verbose)
            std::fprintf(stderr, "note: captioning checkpoint (is_vqa false): the text starts the caption\n");

        const pix2struct::Image image = pix2struct::load_image(image_path);
        const auto t_pre = clock::now();
        const pix2struct::Patches patches = pipe.prepare(image, question);
        const double pre_ms = std::chrono::duration<double, std::milli>(clock::now() - t_pre).count();
        if (verbose)
            std::fprintf(stderr, "image: %s %dx%d → %d×%d patches (%d real of %d)\n", image_path.c_str(), image.width,
                         image.height, patches.rows, patches.cols, patches.num_real(), patches.max_patches);

        if (!save_input.empty()) {
            const pix2struct::Image seen = pipe.is_vqa()
                ? pix2struct::render_question(image, question, pipe.preprocess_options().font_path)
                : image;
            pix2struct::save_png(seen, save_input);
        }
        if (!dump_inputs.empty()) {
            pix2struct::SafetensorsWriter w;
            w.add_f32("flattened_patches", {patches.max_patches, patches.patch_dim}, patches.flattened);
            w.add_f32("attention_mask", {patches.max_patches}, patches.mask);
            w.set_metadata("image", image_path);
            w.set_metadata("question", question);
            w.write(dump_inputs);
        }

        pix2struct::AskOptions ask;
        ask.max_new_tokens = max_new_tokens;
        if (!json)
            ask.on_text = [](std::string_view piece) {
                std::fwrite(piece.data(), 1, piece.size(), stdout);
                std::fflush(stdout);
                return true;
            };
        pix2struct::Answer a = pipe.run(patches, ask, pipe.is_vqa() ? std::string_view{} : std::string_view(question));
        a.times.preprocess_ms = pre_ms;

        if (json) {
            nlohmann::json j;
            j["answer"] = a.text;
            j["ids"] = a.ids;
            j["real_patches"] = a.real_patches;
            j["max_patches"] = patches.max_patches;
            j["timings_ms"] = {{"load", load_ms},
                               {"preprocess", a.times.preprocess_ms},
                               {"encoder", a.times.encoder_ms},
                               {"cross_kv", a.times.cross_kv_ms},
                               {"decode", a.times.decode_ms},
                               {"per_token", a.times.token_ms}};
            std::cout << j.dump() << "\n";
        } else {
            std::cout << "\n";
        }
        if (verbose) {
            std::fprintf(stderr, "timings: preprocess %.1f ms, encoder %.1f ms, cross K/V %.1f ms, decode %.1f ms "
                         "(%zu tokens, %.2f ms/token)\n", a.times.preprocess_ms, a.times.encoder_ms, a.times.cross_kv_ms,
                         a.times.decode_ms, a.times.token_ms.size(),
                         a.times.token_ms.empty() ? 0.0 : a.times.decode_ms / double(a.times.token_ms.size()));
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "pix2struct-vqa: %s\n", e.what());
        return 1;
    }
    return 0;
}
