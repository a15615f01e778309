// Every image format and variant users send, against what the reference sees: Pillow 13's Image.open +
// transformers' convert_to_rgb (pixels) and Pix2StructImageProcessor (caption patches), written by
// tests/reference/make_format_goldens.py. Files Pillow refuses must be an Error here too; the few kinds we
// refuse on purpose (listed below) must be an Error that says why. Writes the parity table that
// tests/reference/parity_table.sh puts into tests/reference/README.md.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include "frontend_goldens.hpp"
#include "pix2struct/image/patches.hpp"

namespace {

struct Formats {
    nlohmann::json meta;
    pix2struct::SafetensorsFile arrays;
    static const Formats& get() {
        static const Formats f{nlohmann::json::parse(std::ifstream(goldens::golden_path("formats.json"))),
                               pix2struct::SafetensorsFile::open(goldens::golden_path("formats.safetensors"))};
        return f;
    }
};

std::filesystem::path format_path(const std::string& file) { return goldens::data_dir() / "images" / "formats" / file; }

// Files the reference reads but we refuse, and the words our error must contain.
const std::map<std::string, std::string> kRefused = {
    {"bmp_16bit.bmp", "16-bit BMP"},
    {"other_tiff.tif", "TIFF images are not supported"},
    {"other_ppm.ppm", "PNM"},
};

std::string error_of(const std::string& file) {
    try {
        (void)pix2struct::load_image(format_path(file));
    } catch (const pix2struct::Error& e) {
        return e.what();
    }
    return {};
}

}  // namespace

TEST_CASE("every format: the reference's pixels and patches, or an error naming the file") {
    const Formats& g = Formats::get();
    std::ostringstream table;
    table << "| file | what | Pillow mode | max pixel diff | max patch diff |\n|---|---|---|---|---|\n";
    int identical = 0, errors = 0;
    for (const auto& c : g.meta["cases"]) {
        const std::string file = c["file"];
        CAPTURE(file);
        const std::string what = c["what"];
        if (c.contains("pillow_error") || kRefused.count(file)) {
            const std::string err = error_of(file);
            MESSAGE(file, ": ", err);
            CHECK(!err.empty());
            CHECK(err.find(file) != std::string::npos);
            if (kRefused.count(file)) CHECK(err.find(kRefused.at(file)) != std::string::npos);
            const std::string mode = c.contains("pillow_mode") ? std::string(c["pillow_mode"]) : "-";
            table << "| " << file << " | " << what << " | " << mode << " | "
                  << (c.contains("pillow_error") ? "both refuse it" : "we refuse it") << " | - |\n";
            ++errors;
            continue;
        }
        const pix2struct::Image got = pix2struct::load_image(format_path(file));
        const pix2struct::TensorView& t = g.arrays.at(std::string(c["rgb"]));
        REQUIRE(t.shape.size() == 3);
        REQUIRE(got.height == int(t.shape[0]));
        REQUIRE(got.width == int(t.shape[1]));
        int max_px = 0;
        for (size_t i = 0; i < got.rgb.size(); ++i)
            max_px = std::max(max_px, std::abs(int(got.rgb[i]) - int(uint8_t(t.bytes[i]))));
        CHECK(max_px == 0);
        identical += max_px == 0;

        std::string patch_diff = "-";
        if (c.contains("patches")) {
            pix2struct::PreprocessOptions opt;
            opt.max_patches = g.meta["max_patches"];
            const pix2struct::Patches p = pix2struct::preprocess(got, "", opt);
            const std::vector<float> want = g.arrays.at(std::string(c["patches"])).to_float();
            REQUIRE(want.size() == size_t(p.num_real()) * size_t(p.patch_dim));
            double d = 0;
            for (size_t i = 0; i < want.size(); ++i) d = std::max(d, double(std::abs(p.flattened[i] - want[i])));
            CHECK(d <= 1e-5);
            std::ostringstream s;
            s.precision(2);
            s << d;
            patch_diff = s.str();
        }
        table << "| " << file << " | " << what << " | " << std::string(c["pillow_mode"]) << " | " << max_px << " | "
              << patch_diff << " |\n";
    }
    MESSAGE(identical, " files decoded to the reference's pixels, ", errors, " refused");
    CHECK(identical + errors == int(g.meta["cases"].size()));
    std::ofstream(std::filesystem::path(PIX2STRUCT_BUILD_DIR) / "parity_formats.md") << table.str();
}
