// The whole processor: composed size, patch grid, flattened patches and mask against
// Pix2StructImageProcessor (tests/reference/make_frontend_goldens.py).
#include <doctest/doctest.h>

#include <cmath>
#include <map>
#include <string>
#include <tuple>
#include <utility>

#include "frontend_goldens.hpp"
#include "pix2struct/image/patches.hpp"

using goldens::Frontend;

namespace {

std::string question_text(const nlohmann::json& q) {
    if (q.is_null()) return {};
    for (const auto& h : Frontend::get().meta["header"])
        if (h["name"] == q) return h["text"];
    FAIL("unknown question ", std::string(q));
    return {};
}

}  // namespace

TEST_CASE("composed size and patch grid identical on every image, question and max_patches") {
    const Frontend& g = Frontend::get();
    const std::string font = g.meta["font"];
    std::map<std::pair<std::string, std::string>, std::pair<int, int>> composed;  // (file, q) -> (h, w)
    int cases = 0;
    for (const auto& c : g.meta["grid"]) {
        const std::string file = c["file"];
        const std::string q = c["question"].is_null() ? "" : std::string(c["question"]);
        CAPTURE(file);
        CAPTURE(q);
        auto key = std::make_pair(file, q);
        if (!composed.count(key)) {
            const pix2struct::Image im = pix2struct::load_image(goldens::image_path(file));
            if (q.empty()) {
                composed[key] = {im.height, im.width};
            } else {
                const pix2struct::Image out = pix2struct::render_question(im, question_text(c["question"]), font);
                composed[key] = {out.height, out.width};
            }
        }
        const auto [h, w] = composed[key];
        CHECK(h == int(c["composed_height"]));
        CHECK(w == int(c["composed_width"]));
        const pix2struct::PatchGrid grid = pix2struct::patch_grid(h, w, c["max_patches"]);
        CHECK(grid.rows == int(c["rows"]));
        CHECK(grid.cols == int(c["cols"]));
        ++cases;
    }
    MESSAGE(cases, " grid cases compared");
}

TEST_CASE("flattened patches match the processor") {
    const Frontend& g = Frontend::get();
    for (const auto& c : g.meta["patches"]) {
        const std::string file = c["file"];
        const bool vqa = !c["question"].is_null();
        const std::string label = file + (vqa ? " + '" + std::string(c["question"]) + "'" : " (caption)");
        CAPTURE(label);
        pix2struct::PreprocessOptions opt;
        opt.max_patches = c["max_patches"];
        opt.is_vqa = vqa;
        opt.font_path = g.meta["font"];
        const pix2struct::Image im = pix2struct::load_image(goldens::image_path(file));
        const pix2struct::Patches p = pix2struct::preprocess(im, question_text(c["question"]), opt);
        REQUIRE(p.rows == int(c["rows"]));
        REQUIRE(p.cols == int(c["cols"]));
        REQUIRE(p.patch_dim == 770);
        REQUIRE(p.flattened.size() == size_t(opt.max_patches) * 770);

        const std::vector<float> want = g.floats(c["tensor"]);  // the real rows only
        REQUIRE(want.size() == size_t(p.num_real()) * 770);
        double max_diff = 0;
        for (size_t i = 0; i < want.size(); ++i) max_diff = std::max(max_diff, double(std::abs(p.flattened[i] - want[i])));
        bool padding_zero = true;
        for (size_t i = want.size(); i < p.flattened.size(); ++i) padding_zero &= p.flattened[i] == 0.0f;
        CHECK(padding_zero);
        for (int i = 0; i < opt.max_patches; ++i) CHECK(p.mask[i] == (i < p.num_real() ? 1.0f : 0.0f));

        // The composed image (header + image) against the reference's, where it was stored.
        bool composed_identical = !vqa;
        if (c.contains("composed_png")) {
            const pix2struct::Image ref = pix2struct::load_image(goldens::golden_path(c["composed_png"]));
            const pix2struct::Image ours = pix2struct::render_question(im, question_text(c["question"]), opt.font_path);
            REQUIRE(ours.width == ref.width);
            REQUIRE(ours.height == ref.height);
            composed_identical = goldens::max_abs_diff(ours, ref) == 0;
            MESSAGE(label, ": composed ", ours.width, "x", ours.height, " mean |diff| ",
                    goldens::mean_abs_diff(ours, ref), " max ", goldens::max_abs_diff(ours, ref));
        }
        MESSAGE(label, ": ", p.rows, "x", p.cols, " patches, max |diff| ", max_diff,
                composed_identical ? " (same pixels in)" : " (header pixels differ)");
#ifdef PIX2STRUCT_WITH_FREETYPE
        CHECK(max_diff <= 1e-5);  // same pixels in (FreeType headers): only float rounding of the standardisation
#else
        // stb_truetype headers differ by a few levels on anti-aliased edges (test_header measures it).
        if (composed_identical) CHECK(max_diff <= 1e-5);
        else CHECK(max_diff <= 0.02);  // measured max 0.006
#endif
    }
}

TEST_CASE("preprocess errors") {
    const pix2struct::Image im = pix2struct::load_image(goldens::image_path("rgb.png"));
    pix2struct::PreprocessOptions vqa;
    vqa.is_vqa = true;
    CHECK_THROWS_WITH_AS(pix2struct::preprocess(im, vqa), doctest::Contains("question"), pix2struct::Error);
    pix2struct::PreprocessOptions bad;
    bad.max_patches = 0;
    CHECK_THROWS_AS(pix2struct::preprocess(im, "", bad), pix2struct::Error);
    CHECK_THROWS_AS(pix2struct::preprocess(pix2struct::Image{}, "", {}), pix2struct::Error);
    vqa.font_path = "/nonexistent/font.ttf";
    CHECK_THROWS_WITH_AS(pix2struct::preprocess(im, "What?", vqa), doctest::Contains("font.ttf"), pix2struct::Error);
    // A 120 KB question (once 1-6 GB of header image and resampling buffers): refused before drawing.
    vqa.font_path.clear();
    std::string long_question;
    while (long_question.size() < 120'000) long_question += "word ";
    CHECK_THROWS_WITH_AS(pix2struct::preprocess(im, long_question, vqa), doctest::Contains("max_question_bytes"),
                         pix2struct::Error);
    // Options past preprocessor_config.json's bounds (once int overflows in rows × patch height, ph × pw × 3).
    for (const auto& [max_patches, ph, pw] : {std::tuple{1 << 20, 16, 16}, {2048, 1000, 16}, {2048, 16, 100000},
                                               {65536, 256, 256}}) {
        pix2struct::PreprocessOptions o;
        o.max_patches = max_patches;
        o.patch_height = ph;
        o.patch_width = pw;
        CAPTURE(o.max_patches);  // not the bindings: clang 14 cannot capture them
        CAPTURE(o.patch_height);
        CAPTURE(o.patch_width);
        CHECK_THROWS_WITH_AS(pix2struct::preprocess(im, "", o), doctest::Contains("preprocess: max_patches"), pix2struct::Error);
    }
}

TEST_CASE("narrow images widened to the question header: the picture's preprocessing is held to the memory budget") {
    // A 1×h image under a 264-pixel header becomes 264 × 264·h pixels (a 470-byte PNG can declare 1×100000:
    // 7·10^9 pixels, once GBs then std::bad_alloc, or an int overflow)
    pix2struct::PreprocessOptions vqa;
    vqa.is_vqa = true;
    vqa.max_patches = 64;
    for (const int h : {100'000, 1'000'000, 10'000'000}) {
        CAPTURE(h);
        pix2struct::Image narrow;
        narrow.width = 1;
        narrow.height = h;
        narrow.rgb.assign(size_t(h) * 3, 128);
        CHECK_THROWS_WITH_AS(pix2struct::preprocess(narrow, "What is shown?", vqa),
                             doctest::Contains("PreprocessOptions::max_memory_bytes"), pix2struct::Error);
    }
    // one that fits the budget is drawn as before; the same under a smaller budget is refused
    pix2struct::Image tall;
    tall.width = 20;
    tall.height = 400;
    tall.rgb.assign(size_t(tall.width) * tall.height * 3, 128);
    const pix2struct::Patches p = pix2struct::preprocess(tall, "What is shown?", vqa);
    CHECK(p.num_real() >= 1);
    CHECK(p.num_real() <= 64);
    vqa.max_memory_bytes = 1 << 20;
    CHECK_THROWS_WITH_AS(pix2struct::preprocess(tall, "What is shown?", vqa), doctest::Contains("budget of 1 MiB"),
                         pix2struct::Error);
}
