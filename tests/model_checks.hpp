// Shared by test_model.cpp and test_model_big.cpp: one checkpoint against its HF goldens (encoder states,
// teacher-forced logits, generations, pipeline inputs, prompted captions).
#pragma once

#include <doctest/doctest.h>

#include <filesystem>
#include <string>

#include "model_goldens.hpp"
#include "pix2struct/backend/cpu.hpp"
#include "pix2struct/model/generate.hpp"
#include "pix2struct/tokenizer.hpp"
#include "pix2struct/weights.hpp"

#if __has_include("pix2struct/image/patches.hpp") && __has_include("pix2struct/image/load.hpp")
#include "pix2struct/image/load.hpp"
#include "pix2struct/image/patches.hpp"
#define P2S_HAVE_FRONTEND 1
#endif

namespace p2s_test {

using namespace pix2struct;

inline // Checks one checkpoint against its goldens. Returns the figures for the report.
Figures check_checkpoint(const std::filesystem::path& model_dir, const Goldens& g, const Tokenizer* tok, int threads,
                         float logits_tol = 1e-3f) {
    Figures f;
    const Checkpoint ckpt = Checkpoint::load(model_dir);
    CpuBackend backend(threads);
    ForConditionalGeneration<CpuBackend> model(ckpt, backend);
    check_random_cases(model, g, model_dir, logits_tol, f,
                       [&](const Input&, const nlohmann::json& gen, const GenerateOptions&, const GenerateResult& r) {
                           if (tok && gen["text"].is_string()) CHECK(tok->decode(r.ids) == gen["text"].get<std::string>());
                       });
    check_pipeline_cases(model, g, f, [&](const nlohmann::json& c, const GenerateResult& r) {
        if (tok && c["text"].is_string()) CHECK(tok->decode(r.ids) == c["text"].get<std::string>());
    });
    // captioning with a decoder prompt (HF: processor(images, text) on a non-VQA checkpoint → generate)
    if (g.meta.contains("prompted") && tok) {
        const double min_margin = g.meta["min_margin_required"].get<double>();
        for (const auto& c : g.meta["prompted"]) {
            if (c["min_margin"].get<double>() < min_margin) continue;
#ifdef P2S_HAVE_FRONTEND
            const Image img = load_image(std::filesystem::path(PIX2STRUCT_SOURCE_DIR) / c["image"].get<std::string>());
            PreprocessOptions po;
            po.max_patches = g.meta["max_patches"].get<int>();
            const Patches p = preprocess(img, "", po);
            const auto prompt = tok->encode(c["prompt"].get<std::string>());
            CHECK(prompt == c["prompt_ids"].get<std::vector<int64_t>>());
            GenerateOptions opt;
            opt.decoder_prompt = prompt;
            const GenerateResult r = model.generate(p.flattened, p.mask, opt);
            CHECK(r.ids == without_start(c["ids"]));
            CHECK(tok->decode(r.ids) == c["text"].get<std::string>());
            ++f.prompted;
#endif
        }
    }
    return f;
}

}  // namespace p2s_test
