// Pillow bicubic resize (bit-exact) and torch antialiased bilinear interpolate (≤ 1e-5) against goldens.
#include <doctest/doctest.h>

#include <cmath>
#include <string>

#include "frontend_goldens.hpp"
#include "pix2struct/image/resample.hpp"

using goldens::Frontend;

TEST_CASE("resize_bicubic is bit-identical to Pillow's Image.resize") {
    const Frontend& g = Frontend::get();
    int cases = 0;
    for (const auto& c : g.meta["resize"]) {
        const std::string file = c["file"];
        const int w = c["width"], h = c["height"];
        CAPTURE(file);
        CAPTURE(w);
        CAPTURE(h);
        const pix2struct::Image src = g.image("load/" + file);
        const pix2struct::Image want = g.image(c["tensor"]);
        const pix2struct::Image got = pix2struct::resize_bicubic(src, w, h);
        REQUIRE(got.width == want.width);
        REQUIRE(got.height == want.height);
        CHECK(goldens::max_abs_diff(got, want) == 0);
        ++cases;
    }
    MESSAGE(cases, " Pillow resize cases compared bit for bit");
    CHECK_THROWS_AS(pix2struct::resize_bicubic(g.image("load/rgb.png"), 0, 5), pix2struct::Error);
}

TEST_CASE("resize_bilinear_antialias matches torch interpolate(antialias=True)") {
    const Frontend& g = Frontend::get();
    const auto& in = g.arrays.at("aa/input");
    const std::vector<float> src = in.to_float();
    const int C = int(in.shape[0]), H = int(in.shape[1]), W = int(in.shape[2]);
    for (const auto& c : g.meta["aa"]) {
        const int h = c["height"], w = c["width"];
        CAPTURE(h);
        CAPTURE(w);
        const std::vector<float> want = g.floats(c["tensor"]);
        const std::vector<float> got = pix2struct::resize_bilinear_antialias(src, C, H, W, h, w);
        REQUIRE(got.size() == want.size());
        double max_diff = 0;
        for (size_t i = 0; i < got.size(); ++i) max_diff = std::max(max_diff, double(std::abs(got[i] - want[i])));
        MESSAGE(H, "x", W, " -> ", h, "x", w, ": max |diff| ", max_diff);
        CHECK(max_diff <= 1e-5);
    }
}
