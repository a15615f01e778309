// pix2struct-make_random_checkpoint — writes a random-weight checkpoint in Hugging Face layout
// (config.json, preprocessor_config.json, model.safetensors) at the base, large or tiny shape, so
// that benchmarks run at the real shapes without downloading anything.
//
//   pix2struct-make_random_checkpoint --preset base --dtype bf16 --out bench/out/base
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>

#include "pix2struct/version.hpp"
#include "pix2struct/random_checkpoint.hpp"

int main(int argc, char** argv) {
    CLI::App app{"Write a random-weight Pix2Struct checkpoint in Hugging Face layout."};
    app.set_version_flag("--version", std::string("pix2struct ") + PIX2STRUCT_VERSION)->trigger_on_parse();
    std::string preset = "base", dtype = "bf16", out;
    int max_patches = 2048, layers = 0;
    uint64_t seed = 0;
    bool captioning = false;
    app.add_option("--preset", preset, "Model shape: base, large or tiny")
        ->check(CLI::IsMember({"base", "large", "tiny"}))
        ->capture_default_str();
    app.add_option("--dtype", dtype, "Storage dtype of model.safetensors: f32 or bf16")
        ->check(CLI::IsMember({"f32", "bf16"}))
        ->capture_default_str();
    app.add_option("--out", out, "Output folder (created)")->required();
    app.add_option("--max-patches", max_patches, "max_patches written to preprocessor_config.json")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    app.add_option("--layers", layers, "Override the number of encoder and decoder layers (0: the preset's)")
        ->check(CLI::NonNegativeNumber);
    app.add_option("--seed", seed, "Random seed")->capture_default_str();
    app.add_flag("--captioning", captioning, "Write is_vqa false (no question header) instead of a VQA checkpoint");
    CLI11_PARSE(app, argc, argv);

    try {
        pix2struct::Config config = preset == "base"    ? pix2struct::Config::base()
                                    : preset == "large" ? pix2struct::Config::large()
                                                        : pix2struct::Config::tiny();
        if (layers > 0) config.vision.num_hidden_layers = config.text.num_layers = layers;
        config.is_vqa = !captioning;
        const pix2struct::PreprocessorConfig pre{.max_patches = max_patches, .is_vqa = !captioning};
        const auto start = std::chrono::steady_clock::now();
        pix2struct::write_random_checkpoint(out, config, pre,
                                            dtype == "f32" ? pix2struct::DType::F32 : pix2struct::DType::BF16, seed);
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        std::printf("wrote %s (%s, %s) in %.1f s\n", out.c_str(), preset.c_str(), dtype.c_str(), s);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "pix2struct-make_random_checkpoint: %s\n", e.what());
        return 1;
    }
    return 0;
}
