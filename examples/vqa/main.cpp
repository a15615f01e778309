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
// Decoding: greedy unless the checkpoint's generation_config.json or --num-beams say beam search (with
// --length-penalty, --early-stopping, --no-repeat-ngram-size, --num-return-sequences; transformers' semantics);
// --verbose prints the settings in force. --choices scores candidate answers instead of generating one
// ("auto": the options written in the question, "(1) lava (2) core …"; or "lava|core|…") and prints the most
// likely. --attention-map map.png draws where the answer's tokens looked (cross-attention, mean over heads and
// layers, or --attention-layer) over the picture the model saw; --attention-per-token one panel per token.
// With no --question on a VQA checkpoint and a terminal on stdin (or --interactive), questions are read from
// stdin, one per line, about the same image: the loaded model, tokenizer, font, decoded image and buffers are
// reused; each question is drawn, resized and encoded anew (the header changes the picture).
// DePlot-style row separators (<0x0A>) print as newlines (not in --json, which keeps the reference's text).
// Prints the answer as it is generated (or one JSON object with --json). Exit status 1 with a one-line
// error for a missing or incomplete model folder, an unreadable image, a missing question on a VQA model,
// --device cuda without a usable GPU (or in a build without CUDA), --dtype int8 on the GPU.
#include <CLI/CLI.hpp>

#include <cmath>
#include <cstdio>
#include <iostream>
#include <unistd.h>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

// This program's one implementation file of the library.
#define PIX2STRUCT_IMPLEMENTATION
#include "pix2struct/pix2struct.hpp"
#include "pix2struct/basic_pipeline.hpp"
#include "pix2struct/choices.hpp"
#include "pix2struct/hub.hpp"
#include "pix2struct/image/attention_map.hpp"
#include "pix2struct/image/header.hpp"
#include "pix2struct/image/load.hpp"
#include "pix2struct/safetensors.hpp"
#ifdef PIX2STRUCT_VQA_CUDA
#include "examples/vqa/cuda_backend.hpp"
#endif

namespace {
// --attention-map: the answer's cross-attention over the picture the model saw; per token, one panel each in a
// grid (printed on stderr: which panel is which token).
void write_attention_map(const std::string& path, const pix2struct::Patches& patches, const pix2struct::Answer& a,
                         int layer, bool per_token) {
    if (!per_token) {
        pix2struct::save_png(pix2struct::attention_overlay(patches, pix2struct::attention_weights(a.cross_attention, layer)), path);
        return;
    }
    const int64_t T = a.cross_attention.tokens;
    const int cols = int(std::ceil(std::sqrt(double(T)))), rows = int((T + cols - 1) / cols), gap = 4;
    pix2struct::Image grid;
    for (int64_t t = 0; t < T; ++t) {
        const pix2struct::Image panel =
            pix2struct::attention_overlay(patches, pix2struct::attention_weights(a.cross_attention, layer, std::vector<int64_t>{t}));
        if (grid.empty()) {
            grid.width = cols * (panel.width + gap) - gap;
            grid.height = rows * (panel.height + gap) - gap;
            grid.rgb.assign(size_t(grid.width) * grid.height * 3, 255);
        }
        const int x0 = int(t % cols) * (panel.width + gap), y0 = int(t / cols) * (panel.height + gap);
        for (int y = 0; y < panel.height; ++y)
            std::copy_n(panel.rgb.data() + size_t(y) * panel.width * 3, size_t(panel.width) * 3,
                        grid.rgb.data() + (size_t(y0 + y) * grid.width + x0) * 3);
        std::fprintf(stderr, "attention map: panel %lld (row %lld, column %lld): token %lld\n", (long long)t,
                     (long long)(t / cols), (long long)(t % cols), (long long)a.ids[size_t(a.ids.size() - size_t(T) + size_t(t))]);
    }
    pix2struct::save_png(grid, path);
}
}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"Answer a question about an image (or caption it) with a Pix2Struct checkpoint, on the CPU or GPU."};
    app.set_version_flag("--version", std::string("pix2struct ") + PIX2STRUCT_VERSION)->trigger_on_parse();
    std::string model_dir, font, save_input, dump_inputs, device = "cpu", dtype = "f32";
    std::vector<std::string> image_paths, questions;
    int max_new_tokens = 0, threads = 0, max_patches = 0;
    bool json = false, verbose = false, no_mmap = false;
    int64_t max_memory_mb = 0;
    app.add_option("--model", model_dir, "Model folder (config.json, preprocessor_config.json, model.safetensors, spiece.model), or a Hugging Face repo id, owner/name[@revision]: read from the Hugging Face cache, downloaded into it if missing")
        ->required();
    bool offline = false;
    app.add_flag("--offline", offline, "Never touch the network: a repo id must be in the Hugging Face cache (also HF_HUB_OFFLINE=1)");
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
    int num_beams = 1, no_repeat_ngram_size = 0, num_return_sequences = 1, attention_layer = -1;
    float length_penalty = 1.0f;
    std::string early_stopping, choices_spec, attention_map;
    bool attention_per_token = false, interactive = false;
    app.add_option("--num-beams", num_beams, "Beam search with this many beams (default: the checkpoint's "
                   "generation_config.json, else 1: greedy)")->check(CLI::Range(1, 256));
    app.add_option("--length-penalty", length_penalty, "Beam search: a finished beam scores sum(logprob) / length^this "
                   "(transformers' length_penalty; default 1)");
    app.add_option("--early-stopping", early_stopping, "Beam search: true, false or never (transformers' early_stopping)")
        ->check(CLI::IsMember({"true", "false", "never"}));
    app.add_option("--no-repeat-ngram-size", no_repeat_ngram_size, "No n-gram of this size occurs twice in an answer")
        ->check(CLI::Range(0, 1 << 16));
    app.add_option("--num-return-sequences", num_return_sequences, "Beam search: print this many best beams, with scores")
        ->check(CLI::Range(1, 256));
    app.add_option("--choices", choices_spec, "Score candidate answers instead of generating: 'auto' (the options in "
                   "the question: '(1) x (2) y', 'A. x B. y', 'a) x b) y') or 'x|y|z'; prints the most likely");
    app.add_option("--attention-map", attention_map, "Write where the answer looked (cross-attention over the picture "
                   "the model saw, question header included) as a PNG");
    app.add_option("--attention-layer", attention_layer, "--attention-map: this decoder layer only (default: the mean "
                   "of all layers)")->check(CLI::Range(0, 1024));
    app.add_flag("--attention-per-token", attention_per_token, "--attention-map: one panel per generated token");
    app.add_flag("--interactive", interactive, "Read questions from stdin, one per line (the default with no "
                 "--question on a VQA checkpoint when stdin is a terminal)");
    CLI11_PARSE(app, argc, argv);

    try {
        using clock = std::chrono::steady_clock;
        const auto t_load = clock::now();
        if (dtype == "int8" && device == "cuda")
            throw pix2struct::Error("--dtype int8 runs on the CPU only; the GPU computes in f32 or bf16");
        if (questions.size() > 1 && questions.size() != image_paths.size())
            throw pix2struct::Error(std::to_string(questions.size()) + " --question for " +
                                    std::to_string(image_paths.size()) + " --image: give one per image, or one for all");
        if (image_paths.size() > 1 && (!save_input.empty() || !dump_inputs.empty() || !choices_spec.empty() ||
                                       !attention_map.empty() || interactive))
            throw pix2struct::Error("--save-input, --dump-inputs, --choices, --attention-map and --interactive take a "
                                    "single --image");
        model_dir = pix2struct::hub::resolve_model(model_dir, {.offline = offline}).string();
        const pix2struct::PipelineOptions options{
            .threads = threads, .max_patches = max_patches,
            .dtype = device == "cuda" ? pix2struct::Dtype::F32  // the GPU's arithmetic: load_cuda_pipeline's bf16
                                      : pix2struct::dtype_from_name(dtype),
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

        // how to decode: the checkpoint's generation config, then the options given
        pix2struct::GenerationConfig gen = pipe.generation();
        if (app.count("--num-beams")) gen.num_beams = num_beams;
        if (app.count("--length-penalty")) gen.length_penalty = length_penalty;
        if (!early_stopping.empty())
            gen.early_stopping = early_stopping == "true"    ? pix2struct::GenerationConfig::EarlyStopping::Done
                                 : early_stopping == "never" ? pix2struct::GenerationConfig::EarlyStopping::Never
                                                             : pix2struct::GenerationConfig::EarlyStopping::Heuristic;
        if (app.count("--no-repeat-ngram-size")) gen.no_repeat_ngram_size = no_repeat_ngram_size;
        if (app.count("--num-return-sequences")) gen.num_return_sequences = num_return_sequences;
        if (max_new_tokens > 0) gen.max_new_tokens = max_new_tokens;
        pix2struct::validate(gen, "options", pipe.base().config().text.vocab_size);
        if (gen.num_beams > 1 && image_paths.size() > 1)
            throw pix2struct::Error("beam search takes a single --image (ask the images one at a time)");
        if (gen.num_beams > 1 && !attention_map.empty())
            throw pix2struct::Error("--attention-map records greedy decoding: use --num-beams 1");
        if (verbose) {
            const char* es[] = {"false", "true", "never"};
            std::fprintf(stderr, "generation: %s, up to %d new tokens, start %d, eos %d", gen.num_beams == 1 ? "greedy" : "beam search",
                         gen.new_tokens(), gen.decoder_start_token_id, gen.eos_token_id);
            if (gen.num_beams > 1)
                std::fprintf(stderr, ", num_beams %d, length_penalty %g, early_stopping %s, num_return_sequences %d",
                             gen.num_beams, double(gen.length_penalty), es[int(gen.early_stopping)], gen.num_return_sequences);
            if (gen.no_repeat_ngram_size > 0) std::fprintf(stderr, ", no_repeat_ngram_size %d", gen.no_repeat_ngram_size);
            std::fprintf(stderr, " (%s)\n", std::filesystem::exists(std::filesystem::path(model_dir) / "generation_config.json")
                                                ? "generation_config.json and options" : "config.json and options");
        }
        // DePlot writes table rows separated by the byte token <0x0A>: a newline in text output
        auto shown = [](std::string_view text) {
            std::string out;
            for (size_t at = 0;;) {
                const size_t next = text.find("<0x0A>", at);
                out.append(text.substr(at, next == std::string_view::npos ? next : next - at));
                if (next == std::string_view::npos) return out;
                out.push_back('\n');
                at = next + 6;
            }
        };
        auto print_piece = [&](std::string_view piece) {
            const std::string s = shown(piece);
            std::fwrite(s.data(), 1, s.size(), stdout);
            std::fflush(stdout);
            return true;
        };

        if (questions.empty() && pipe.is_vqa() && (interactive || isatty(STDIN_FILENO))) {
            if (image_paths.size() > 1) throw pix2struct::Error("questions from stdin take a single --image");
            const pix2struct::Image image = pix2struct::load_image(image_paths[0]);
            const bool tty = isatty(STDIN_FILENO);
            if (tty) std::fprintf(stderr, "Ask about %s, one question per line (an empty line or Ctrl-D ends).\n", image_paths[0].c_str());
            std::string line;
            for (;;) {
                if (tty) std::fprintf(stderr, "? ");
                if (!std::getline(std::cin, line) || (tty && line.empty())) break;
                if (line.empty()) continue;
                pix2struct::AskOptions ask{.on_text = {}, .generation = gen};
                if (!json && gen.num_beams == 1) ask.on_text = print_piece;
                const pix2struct::Answer a = pipe.ask(image, line, ask);
                if (json) std::cout << nlohmann::json{{"question", line}, {"answer", a.text}, {"ids", a.ids}}.dump() << "\n";
                else std::cout << (gen.num_beams == 1 ? "" : shown(a.text)) << "\n";
                std::cout.flush();
            }
            return 0;
        }

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

        if (!choices_spec.empty()) {  // score the candidates instead of generating
            std::vector<std::string> candidates;
            if (choices_spec == "auto") {
                candidates = pix2struct::parse_choices(questions.empty() ? std::string{} : questions[0]);
                if (candidates.empty())
                    throw pix2struct::Error("--choices auto: the question lists no options ('(1) x (2) y', 'A. x B. y' "
                                            "or 'a) x b) y'); give them as --choices 'x|y|z'");
            } else {
                for (size_t at = 0;;) {
                    const size_t bar = choices_spec.find('|', at);
                    candidates.push_back(choices_spec.substr(at, bar == std::string::npos ? bar : bar - at));
                    if (bar == std::string::npos) break;
                    at = bar + 1;
                }
            }
            const pix2struct::Image image = pix2struct::load_image(image_paths[0]);
            const std::vector<pix2struct::Choice> scored = pipe.score(image, questions.empty() ? std::string{} : questions[0], candidates);
            size_t best = 0;
            for (size_t c = 1; c < scored.size(); ++c)
                if (scored[c].logprob > scored[best].logprob) best = c;
            if (json) {
                nlohmann::json list = nlohmann::json::array();
                for (const pix2struct::Choice& c : scored)
                    list.push_back({{"text", c.text}, {"logprob", c.logprob}, {"mean_logprob", c.mean_logprob}, {"prob", c.prob}});
                std::cout << nlohmann::json{{"image", image_paths[0]}, {"answer", scored[best].text}, {"choices", list}}.dump() << "\n";
            } else {
                std::cout << scored[best].text << "\n";
            }
            if (verbose)
                for (const pix2struct::Choice& c : scored)
                    std::fprintf(stderr, "choice: p %.4f  logprob %.4f  mean %.4f  %s\n", c.prob, c.logprob, c.mean_logprob, c.text.c_str());
            return 0;
        }

        std::vector<pix2struct::Answer> answers;
        if (patches.size() == 1) {  // one image: print the answer as it is generated (greedy)
            pix2struct::AskOptions ask{.on_text = {}, .generation = gen, .cross_attention = !attention_map.empty()};
            if (!json && gen.num_beams == 1) ask.on_text = print_piece;
            answers.push_back(pipe.run(patches[0], ask, prompts[0]));
            if (!attention_map.empty()) write_attention_map(attention_map, patches[0], answers[0], attention_layer, attention_per_token);
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
                if (!a.sequences.empty()) {
                    j["sequences"] = nlohmann::json::array();
                    for (const pix2struct::Sequence& q : a.sequences)
                        j["sequences"].push_back({{"text", q.text}, {"ids", q.ids}, {"score", q.score}});
                }
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
            } else if (a.sequences.size() > 1) {  // beams: each with its score
                for (const pix2struct::Sequence& q : a.sequences) std::cout << q.score << "\t" << shown(q.text) << "\n";
            } else {
                std::cout << (answers.size() == 1 && a.sequences.empty() ? "" : shown(a.text)) << "\n";
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
