// Decoding + convert_to_rgb against Pillow 13 / transformers 4.57.6 (tests/reference/make_frontend_goldens.py);
// every other format and variant: test_formats.cpp.
#include <doctest/doctest.h>

#include <fstream>
#include <string>

#include "frontend_goldens.hpp"
#include "pix2struct/image/load.hpp"

using goldens::Frontend;

TEST_CASE("every valid test image decodes to the reference's RGB pixels") {
    const Frontend& g = Frontend::get();
    for (const auto& c : g.meta["load"]) {
        const std::string file = c["file"];
        CAPTURE(file);
        const pix2struct::Image got = pix2struct::load_image(goldens::image_path(file));
        const pix2struct::Image want = g.image(c["tensor"]);
        REQUIRE(got.width == want.width);
        REQUIRE(got.height == want.height);
        CHECK(goldens::max_abs_diff(got, want) == 0);  // JPEG too: libjpeg-turbo set up as Pillow sets it up
    }
}

TEST_CASE("memory and file loading agree") {
    const auto path = goldens::image_path("rgba.png");
    std::ifstream in(path, std::ios::binary);
    std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const auto a = pix2struct::load_image(path);
    const auto b = pix2struct::load_image_from_memory(std::as_bytes(std::span(bytes)), "rgba.png");
    CHECK(a.rgb == b.rgb);
}

TEST_CASE("every malformed file is an Error naming the file") {
    const Frontend& g = Frontend::get();
    for (const auto& f : g.meta["malformed"]) {
        const std::string file = f;
        CAPTURE(file);
        bool threw = false;
        try {
            (void)pix2struct::load_image(goldens::image_path(file));
        } catch (const pix2struct::Error& e) {
            threw = true;
            const std::string what = e.what();
            MESSAGE(what);
            CHECK(what.find(file) != std::string::npos);
        }
        CHECK(threw);
    }
    CHECK_THROWS_AS(pix2struct::load_image(goldens::image_path("does_not_exist.png")), pix2struct::Error);
    // a directory (or a device) is refused, not read
    const auto dir = std::filesystem::temp_directory_path();
    CHECK_THROWS_WITH_AS(pix2struct::load_image(dir), doctest::Contains("not a regular file"), pix2struct::Error);
    CHECK_THROWS_WITH_AS(pix2struct::load_image("/dev/zero"), doctest::Contains("not a regular file"), pix2struct::Error);
}

TEST_CASE("the decoded-size limit is enforced before decoding") {
    pix2struct::ImageLimits small;
    small.max_pixels = 1000;
    CHECK_THROWS_WITH_AS(pix2struct::load_image(goldens::image_path("bad_huge_dims.png")),
                         doctest::Contains("200000x200000"), pix2struct::Error);
    CHECK_THROWS_WITH_AS(pix2struct::load_image(goldens::image_path("huge_flat.png"), small),
                         doctest::Contains("ImageLimits::max_pixels"), pix2struct::Error);
    small.max_pixels = 61 * 47;  // rgb.png exactly
    CHECK_NOTHROW(pix2struct::load_image(goldens::image_path("rgb.png"), small));
}

TEST_CASE("save_png round-trips") {
    const auto im = pix2struct::load_image(goldens::image_path("diagram.png"));
    const auto out = std::filesystem::temp_directory_path() / "p2s_test_save.png";
    pix2struct::save_png(im, out);
    CHECK(pix2struct::load_image(out).rgb == im.rgb);
    std::filesystem::remove(out);
    CHECK_THROWS_AS(pix2struct::save_png(pix2struct::Image{}, out), pix2struct::Error);
}
