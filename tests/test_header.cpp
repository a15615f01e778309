// The question header: textwrap line breaking, Pillow's textbbox layout and the rendered pixels, against
// transformers' render_text with Liberation Sans (tests/reference/make_frontend_goldens.py).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "frontend_goldens.hpp"
#include "pix2struct/image/header.hpp"

using goldens::Frontend;

namespace {
pix2struct::Font golden_font() { return pix2struct::Font::load(std::string(Frontend::get().meta["font"])); }
}  // namespace

TEST_CASE("wrap_text reproduces textwrap.TextWrapper(width=80).wrap") {
    for (const auto& c : Frontend::get().meta["wrap"]) {
        const std::string text = c["text"];
        CAPTURE(text);
        const std::vector<std::string> want = c["lines"];
        CHECK(pix2struct::wrap_text(text) == want);
    }
}

TEST_CASE("header layout: lines, textbbox and size identical to Pillow") {
    const pix2struct::Font font = golden_font();
    CHECK(font.has_hinted_table());
    for (const auto& c : Frontend::get().meta["header"]) {
        const std::string name = c["name"];
        CAPTURE(name);
        const pix2struct::HeaderLayout h = pix2struct::layout_header(std::string(c["text"]), font);
        CHECK(h.lines == c["lines"].get<std::vector<std::string>>());
        const std::vector<int> bbox = c["bbox"];
        CHECK(h.right == bbox[2]);
        CHECK(h.bottom == bbox[3]);
        CHECK(h.top == bbox[1]);
        CHECK(h.width == int(c["width"]));
        CHECK(h.height == int(c["height"]));
    }
}

TEST_CASE("layout of random mixed-script text identical to Pillow + libraqm") {
    const pix2struct::Font font = golden_font();
    int cases = 0;
    for (const auto& c : Frontend::get().meta["layout"]) {
        const std::string text = c["text"];
        CAPTURE(text);
        const pix2struct::HeaderLayout h = pix2struct::layout_header(text, font);
        const std::vector<int> bbox = c["bbox"];
        CHECK(h.top == bbox[1]);
        CHECK(h.right == bbox[2]);
        CHECK(h.bottom == bbox[3]);
        ++cases;
    }
    MESSAGE(cases, " random layouts compared");
}

TEST_CASE("header pixels: stb_truetype against FreeType") {
    const pix2struct::Font font = golden_font();
    double worst_mean = 0;
    for (const auto& c : Frontend::get().meta["header"]) {
        const std::string name = c["name"];
        CAPTURE(name);
        const pix2struct::Image got = pix2struct::render_header_text(std::string(c["text"]), font);
        const pix2struct::Image want = pix2struct::load_image(goldens::golden_path(c["png"]));  // grey -> RGB
        REQUIRE(got.width == want.width);
        REQUIRE(got.height == want.height);
        const double mean = goldens::mean_abs_diff(got, want);
        const int max = goldens::max_abs_diff(got, want);
        MESSAGE("header '", name, "' ", got.width, "x", got.height, ": mean |diff| ", mean, " levels of 255, max ", max);
        worst_mean = std::max(worst_mean, mean);
#ifdef PIX2STRUCT_WITH_FREETYPE
        CHECK(max == 0);  // FreeType glyphs, as Pillow's: bit-identical (measured)
#else
        // FreeType's hinted outlines (table) rasterised by stb_truetype: measured mean 0.04-0.055 levels,
        // max 4 (the two rasterisers' coverage arithmetic).
        CHECK(mean <= 0.1);
        CHECK(max <= 6);
#endif
    }
    MESSAGE("worst mean |diff| over the questions: ", worst_mean, " levels");
}

TEST_CASE("header errors are sentences") {
    CHECK_THROWS_WITH_AS(pix2struct::Font::load("/nonexistent/font.ttf"), doctest::Contains("font.ttf"),
                         pix2struct::Error);
    CHECK_THROWS_AS(pix2struct::wrap_text("bad \xff utf-8"), pix2struct::Error);
    CHECK_THROWS_AS(pix2struct::Font::load(goldens::image_path("rgb.png")), pix2struct::Error);
}
